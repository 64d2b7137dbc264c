"""The base of the four benchmark datamodules: arguments, attributes, partial-data policy and dataloaders.

Attributes valid right after `__init__` (no I/O): `benchmark` ("cifar10" | "enwik8" | "imagenet64" | "audio"),
`seq_len`, `token_axes` (a tuple whose product is seq_len: the axes of the position embeddings). `variant` (what
data was found: "official" or the name of a part) is valid after `prepare_data()` or `setup()`; before, reading it
raises RuntimeError.

Every batch of every dataloader is `(tokens, score_from)`: tokens int64 [B, seq_len] with values 0..255 in the
benchmark's token order, score_from int64 [B], the first position whose prediction is scored. The model prepends
its own start token; the datamodule returns raw bytes.

Partial data (files shorter than the official ones, fewer files, other checksums) is refused with a
PartialDataError unless `allow_partial=True`; then the split is made proportionally, `variant` names the part,
and a warning is logged. Downloading and conversion happen only in `prepare_data`; `setup` reads, checks and
splits (and converts itself if `prepare_data` was not called, for use outside a Trainer).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.sequences import EpochSampler, collate_tokens
from datamodules.storage import PartialDataError

log = logging.getLogger(__name__)


def row_axes(seq_len: int, row_width: int) -> tuple[int, int]:
    """Token axes of text and audio: the sequence as a matrix [seq_len // row_width, row_width] (the paper uses
    a row width equal to the stride). Raises ValueError when seq_len is not a multiple of row_width."""
    if row_width <= 0 or seq_len <= 0:
        raise ValueError(f"seq_len and row_width must be positive, got seq_len={seq_len}, row_width={row_width}")
    if seq_len % row_width:
        raise ValueError(f"seq_len={seq_len} must be a multiple of row_width={row_width}")
    return seq_len // row_width, row_width


class TokenDataModule(L.LightningDataModule):
    """Shared behaviour of the benchmark datamodules; see the module docstring. Subclasses set the splits in
    `setup` (`train_set`, `val_set`, `test_set`, optionally `train_sampler`) and call `_found(variant)`."""

    benchmark: ClassVar[str] = ""

    def __init__(
        self,
        *,
        data_dir: str,
        batch_size: int,
        num_workers: int,
        seed: int,
        download: bool,
        allow_partial: bool,
        seq_len: int,
        token_axes: tuple[int, ...],
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if math.prod(token_axes) != seq_len:
            raise ValueError(f"token_axes {token_axes} do not multiply to seq_len={seq_len}")
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.download = download
        self.allow_partial = allow_partial
        self.seq_len = seq_len
        self.token_axes = tuple(token_axes)
        self._variant: str | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.train_sampler: Sampler[int] | None = None

    @property
    def variant(self) -> str:
        """Which data was found: "official" or the name of a part (recorded in every result row)."""
        if self._variant is None:
            raise RuntimeError(
                f"{type(self).__name__}.variant is known only after prepare_data() or setup(): "
                "it names the data actually found on disk"
            )
        return self._variant

    def _found(self, variant: str) -> None:
        self._variant = variant

    def _refuse_partial(self, what: str, problems: list[str], variant: str, remedy: str = "") -> None:
        """Raise PartialDataError naming `what`, its `problems` and the variant it would get, unless allow_partial."""
        if not self.allow_partial:
            raise PartialDataError(
                f"{what} is not the official data: {'; '.join(problems)}. Pass allow_partial=True to use it anyway "
                f"(variant {variant!r}){remedy}"
            )

    def _warn_partial(self, what: str, problems: list[str], variant: str, how: str) -> None:
        """Log that partial data is used as `variant`, and `how` it is split."""
        log.warning(
            "%s is not the official data (%s): using it as variant %r; %s", what, "; ".join(problems), variant, how
        )

    @property
    def is_set_up(self) -> bool:
        return self.train_set is not None

    def _loader(self, dataset: Dataset | None, name: str, sampler: Sampler[int] | None) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.{name}_dataloader() needs setup() first")
        loader_class = ResumableDataLoader if isinstance(sampler, EpochSampler) else DataLoader
        return loader_class(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_tokens,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        sampler = self.train_sampler
        if sampler is None and self.train_set is not None:
            sampler = EpochSampler(len(self.train_set), self.seed)
            self.train_sampler = sampler
        return self._loader(self.train_set, "train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "val", None)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", None)


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position inside an epoch goes into Lightning's checkpoints.

    Lightning saves `state_dict()` of a loader that has one and gives it back through `load_state_dict()` on
    resume. Without it, a run resumed from a mid-epoch checkpoint replays that epoch from its first batch and
    ends on other data than an uninterrupted run. Here the state is the number of batches handed out in the
    current pass and that pass's epoch; on resume the sampler skips those indices if, and only if, it is
    asked for the same epoch again (same seed and epoch: the same order). A checkpoint taken on an epoch's last
    batch resumes into the next epoch, which then starts from its first batch.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = 0
        self._batches_handed_out = 0

    def __iter__(self):
        sampler = self.sampler
        self._epoch = getattr(sampler, "epoch", 0)
        resume = getattr(sampler, "resume_at", None)
        self._batches_handed_out = resume[1] // self.batch_size if resume and resume[0] == self._epoch else 0
        for batch in super().__iter__():
            self._batches_handed_out += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batches_handed_out": self._batches_handed_out}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(self.sampler, EpochSampler):
            # Lightning wraps the sampler for distributed runs; that wrapper cannot skip ahead.
            log.warning(
                "resuming mid-epoch with a %s sampler: the epoch restarts from its first batch (exact resumes "
                "are implemented for the single-process EpochSampler)",
                type(self.sampler).__name__,
            )
            return
        self.sampler.resume_at = (int(state["epoch"]), int(state["batches_handed_out"]) * self.batch_size)
