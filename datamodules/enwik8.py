"""Enwik8 as byte sequences (the paper's section 7.2 and Table 3).

Files: `<data_dir>/enwik8/enwik8` (raw bytes) or `<data_dir>/enwik8/enwik8.zip` (the Hutter Prize archive, one
member `enwik8`; its CRC is checked while reading). Official content wins when both exist, else the raw file.
`download=True` fetches http://mattmahoney.net/dc/enwik8.zip when no official content is present; the member's
MD5 is checked before the archive is renamed into place, so a bad download leaves nothing behind.

Variant: "official" for 100,000,000 bytes with MD5 a1fa5ffddb56f4953e226637dabbb36a. Anything else is refused
unless `allow_partial=True`; then f"prefix-{size}" for content shorter than the official file (the shared part
gives "prefix-4154399"), f"md5-{first 12 hex digits}" for content of official length or more.

Splits: the first 90% of the bytes for training, the next 5% for validation, the last 5% for test (the standard
90M / 5M / 5M on the official file, proportional on a part). Each split must hold at least seq_len bytes.

Sequences (tokens are the raw bytes, token_axes (seq_len // row_width, row_width)):
- training: windows of seq_len bytes at uniformly random starts, `train_samples_per_epoch` per epoch (default
  len(train) // seq_len). The model prepends its start token, so seq_len bytes give seq_len predictions: the
  issue's window of n + 1 bytes with its first byte as input only is this window seen from the model's side.
- validation and test: with eval_min_context = m (default 0), windows start every seq_len - m bytes and score
  positions [m, seq_len), so every byte of the split after its first m is scored exactly once with at least m
  bytes of context; a last window ends at the split's end and scores only the bytes not yet scored (its
  score_from is larger than m). m = 0: non-overlapping windows. The paper's Table 3 varies m up to 12,160.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from datamodules.base import TokenDataModule, row_axes
from datamodules.sequences import EpochSampler, EvalWindows, RandomWindows
from datamodules.storage import DataError, DataNotFoundError, atomic_path, download, md5_of_bytes

log = logging.getLogger(__name__)

ENWIK8_URL = "http://mattmahoney.net/dc/enwik8.zip"
ENWIK8_MD5 = "a1fa5ffddb56f4953e226637dabbb36a"
ENWIK8_BYTES = 100_000_000
ZIP_MEMBER = "enwik8"


def read_enwik8(path: Path, shown_as: Path | None = None) -> bytes:
    """The content of a raw enwik8 file, or of the `enwik8` member of a zip (CRC-checked). `shown_as`: the name
    errors give, and whose suffix tells a zip (a download is read under its temporary name)."""
    shown_as = shown_as or path
    if shown_as.suffix != ".zip":
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            if ZIP_MEMBER not in archive.namelist():
                raise DataError(f"{shown_as}: no member {ZIP_MEMBER!r} in the zip (found {archive.namelist()})")
            return archive.read(ZIP_MEMBER)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise DataError(
            f"{shown_as}: not a readable enwik8 zip ({type(err).__name__}: {err}); expected the Hutter Prize "
            f"archive {ENWIK8_URL} holding one member {ZIP_MEMBER!r}"
        ) from err


class Enwik8DataModule(TokenDataModule):
    """Enwik8, n = seq_len bytes: see the module docstring for files, variants, splits and windows."""

    benchmark = "enwik8"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 2,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = False,
        allow_partial: bool = False,
        seq_len: int = 12_288,
        row_width: int = 128,
        eval_min_context: int | None = None,
        train_samples_per_epoch: int | None = None,
    ) -> None:
        """
        Args:
            data_dir: the data root; the data is read from <data_dir>/enwik8/enwik8 or <data_dir>/enwik8/enwik8.zip.
            batch_size: sequences per batch.
            num_workers: DataLoader worker processes.
            seed: seed of the training windows (same seed, same batches).
            download: fetch the official zip (MD5 of its content checked) when no official content is present.
            allow_partial: accept content that is not the official file (variant "prefix-<bytes>" or "md5-<hex>").
            seq_len: bytes per sequence (the paper: 12,288).
            row_width: width of the [seq_len // row_width, row_width] token axes (the paper: the stride, 128).
            eval_min_context: minimum context m of every scored byte in validation and test (None: 0); windows
                then score positions [m, seq_len). The paper's Table 3 uses 6,144 .. 12,160.
            train_samples_per_epoch: random training windows per epoch (None: training bytes // seq_len).
        """
        super().__init__(
            data_dir=data_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            download=download,
            allow_partial=allow_partial,
            seq_len=seq_len,
            token_axes=row_axes(seq_len, row_width),
        )
        if eval_min_context is not None and not 0 <= eval_min_context < seq_len:
            raise ValueError(f"eval_min_context must be in [0, seq_len={seq_len}), got {eval_min_context}")
        if train_samples_per_epoch is not None and train_samples_per_epoch < 1:
            raise ValueError(f"train_samples_per_epoch must be >= 1, got {train_samples_per_epoch}")
        self.row_width = row_width
        self.eval_min_context = eval_min_context
        self.train_samples_per_epoch = train_samples_per_epoch
        self._content: np.ndarray | None = None
        self.save_hyperparameters()

    @property
    def folder(self) -> Path:
        return self.data_dir / "enwik8"

    def _candidates(self) -> list[Path]:
        return [path for path in (self.folder / "enwik8", self.folder / "enwik8.zip") if path.is_file()]

    def prepare_data(self) -> None:
        if self.download and not any(self._is_official(path) for path in self._candidates()):
            final = self.folder / "enwik8.zip"
            with atomic_path(final) as tmp:
                download(ENWIK8_URL, tmp, "enwik8.zip")
                content = read_enwik8(tmp, shown_as=final)
                if len(content) != ENWIK8_BYTES or md5_of_bytes(content) != ENWIK8_MD5:
                    raise DataError(
                        f"downloaded {ENWIK8_URL}: member {ZIP_MEMBER!r} has {len(content):,} bytes and MD5 "
                        f"{md5_of_bytes(content)}, expected {ENWIK8_BYTES:,} bytes and MD5 {ENWIK8_MD5}; not kept"
                    )
        self._load()

    @staticmethod
    def _is_official(path: Path) -> bool:
        content = read_enwik8(path)
        return len(content) == ENWIK8_BYTES and md5_of_bytes(content) == ENWIK8_MD5

    def _load(self) -> np.ndarray:
        if self._content is not None:
            return self._content
        candidates = self._candidates()
        if not candidates:
            raise DataNotFoundError(
                f"Enwik8 not found: expected {self.folder / 'enwik8'} (raw bytes) or {self.folder / 'enwik8.zip'} "
                f"(the Hutter Prize archive); pass download=True to fetch {ENWIK8_URL}"
            )
        chosen = None
        for path in candidates:
            content = read_enwik8(path)
            md5 = md5_of_bytes(content)
            if len(content) == ENWIK8_BYTES and md5 == ENWIK8_MD5:
                chosen = path, content, md5
                break
            chosen = chosen or (path, content, md5)
        path, content, md5 = chosen
        if not content:
            raise DataError(f"{path}: empty; expected {ENWIK8_BYTES:,} bytes of enwik8")
        if len(content) == ENWIK8_BYTES and md5 == ENWIK8_MD5:
            self._found("official")
        else:
            variant = f"prefix-{len(content)}" if len(content) < ENWIK8_BYTES else f"md5-{md5[:12]}"
            problems = [f"{len(content):,} bytes with MD5 {md5}, official {ENWIK8_BYTES:,} bytes with MD5 {ENWIK8_MD5}"]
            remedy = "; or download=True to fetch the official file" if not self.download else ""
            self._refuse_partial(f"Enwik8 {path}", problems, variant, remedy)
            train_end, val_end = self.split_bounds(len(content))
            self._warn_partial(
                f"Enwik8 {path}",
                problems,
                variant,
                f"split 90:5:5 into {train_end:,} / {val_end - train_end:,} / {len(content) - val_end:,} bytes",
            )
            self._found(variant)
        self._content = np.frombuffer(content, dtype=np.uint8)
        return self._content

    def split_bounds(self, length: int) -> tuple[int, int]:
        """Ends of the training and validation parts of `length` bytes (90% / 5% / 5%)."""
        return length * 90 // 100, length * 95 // 100

    def setup(self, stage: str | None = None) -> None:
        if self.is_set_up:
            return
        content = self._load()
        train_end, val_end = self.split_bounds(len(content))
        splits = {"train": content[:train_end], "val": content[train_end:val_end], "test": content[val_end:]}
        for name, part in splits.items():
            if len(part) < self.seq_len:
                raise DataError(
                    f"Enwik8 ({self.variant}): the {name} split has {len(part):,} bytes, fewer than "
                    f"seq_len={self.seq_len:,}; use a shorter seq_len or more data"
                )
        min_context = self.eval_min_context or 0
        self.train_set = RandomWindows([splits["train"]], self.seq_len)
        samples = self.train_samples_per_epoch or max(1, train_end // self.seq_len)
        self.train_sampler = EpochSampler(len(self.train_set), self.seed, num_samples=samples, replacement=True)
        self.val_set = EvalWindows([splits["val"]], self.seq_len, min_context)
        self.test_set = EvalWindows([splits["test"]], self.seq_len, min_context)
