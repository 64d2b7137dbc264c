"""Fixed-length token sequences: the datasets, the seeded sampler and the collate function of every benchmark.

Every item is `(tokens, score_from)`: `tokens` an int64 tensor [seq_len] of values 0..255, `score_from` an int,
the first position whose prediction counts in the loss or metric. `collate_tokens` stacks items into the batch
`(tokens [B, seq_len] int64, score_from [B] int64)`.

- `ImageRows`: rows of a uint8 [N, seq_len] array already in token order (images); score_from 0.
- `RandomWindows`: every window of seq_len tokens lying inside one piece (a 1-D uint8 array: a text split, a
  part of an audio file); item i is the i-th possible start, counted piece after piece, so a uniform draw of
  indices draws windows uniformly over all positions. Windows never straddle two pieces. For training.
- `EvalWindows` with `plan_eval_windows`: windows that score every token of each piece exactly once, after a
  minimum context (see `plan_eval_windows`). For validation and test.
- `EpochSampler`: indices from (seed, epoch) alone, so the same seed gives the same batches, also after a
  resume; a permutation, or uniform draws with replacement (random windows).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def collate_tokens(items: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack `(tokens, score_from)` items into `(tokens [B, seq_len], score_from [B])`, both int64."""
    tokens = torch.stack([tokens for tokens, _ in items])
    score_from = torch.tensor([score_from for _, score_from in items], dtype=torch.long)
    return tokens, score_from


def _as_tokens(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.int64))


class ImageRows(Dataset):
    """Rows `indices` of a uint8 [N, seq_len] array, or of a .npy file opened memory-mapped in each process
    (so that DataLoader workers share the page cache instead of copying the array)."""

    def __init__(self, rows: np.ndarray | str | os.PathLike, indices: np.ndarray | None = None) -> None:
        self._path = None if isinstance(rows, np.ndarray) else Path(rows)
        self._rows = rows if isinstance(rows, np.ndarray) else None
        count = len(self._array())
        self.indices = np.arange(count) if indices is None else np.asarray(indices, dtype=np.int64)

    def _array(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.load(self._path, mmap_mode="r")
        return self._rows

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._path is not None:
            state["_rows"] = None  # reopened by the worker
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return _as_tokens(self._array()[self.indices[index]]), 0


class RandomWindows(Dataset):
    """Every window of `seq_len` tokens inside one of `pieces`; see the module docstring."""

    def __init__(self, pieces: Sequence[np.ndarray], seq_len: int) -> None:
        self.pieces = list(pieces)
        self.seq_len = seq_len
        counts = np.array([max(0, len(piece) - seq_len + 1) for piece in self.pieces], dtype=np.int64)
        self._first_index = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self._first_index[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range [0, {len(self)})")
        piece = int(np.searchsorted(self._first_index, index, side="right")) - 1
        start = index - int(self._first_index[piece])
        return _as_tokens(self.pieces[piece][start : start + self.seq_len]), 0


def plan_eval_windows(length: int, seq_len: int, min_context: int = 0) -> list[tuple[int, int]]:
    """`(start, score_from)` of the windows that score positions min_context .. length - 1 of a piece exactly once,
    each scored token seeing at least `min_context` earlier tokens of the piece.

    Windows start every `seq_len - min_context` tokens and score their last `seq_len - min_context` positions;
    the first `min_context` tokens of the piece are context only. Where the piece's end is not reached exactly,
    one more window ends at the piece's end and scores only the tokens not scored yet (its score_from is then
    larger than min_context). With min_context 0 these are the non-overlapping windows. Requires
    length >= seq_len (the caller reports which split is too short).
    """
    if not 0 <= min_context < seq_len:
        raise ValueError(f"min_context must be in [0, seq_len={seq_len}), got {min_context}")
    if length < seq_len:
        raise ValueError(f"a piece of {length} tokens holds no window of seq_len={seq_len}")
    stride = seq_len - min_context
    windows = [(start, min_context) for start in range(0, length - seq_len + 1, stride)]
    covered = windows[-1][0] + seq_len
    if covered < length:
        windows.append((length - seq_len, seq_len - (length - covered)))
    return windows


class EvalWindows(Dataset):
    """Windows `(piece, start, score_from)` planned by `plan_eval_windows` over each of `pieces`."""

    def __init__(self, pieces: Sequence[np.ndarray], seq_len: int, min_context: int = 0) -> None:
        self.pieces = list(pieces)
        self.seq_len = seq_len
        self.windows = [
            (piece, start, score_from)
            for piece, tokens in enumerate(self.pieces)
            for start, score_from in plan_eval_windows(len(tokens), seq_len, min_context)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        piece, start, score_from = self.windows[index]
        return _as_tokens(self.pieces[piece][start : start + self.seq_len]), score_from


class EpochSampler(Sampler[int]):
    """Indices 0..size-1 drawn from (seed, epoch): a permutation, or `num_samples` uniform draws with replacement.

    Lightning calls `set_epoch` before each epoch (also after a resume). Where nobody does (for example under
    Lightning's DistributedSamplerWrapper, which re-reads this sampler each epoch), every pass counts as the next
    epoch. Same seed and epoch: same indices.
    """

    def __init__(self, size: int, seed: int, num_samples: int | None = None, replacement: bool = False) -> None:
        if size <= 0:
            raise ValueError(f"cannot sample from an empty dataset (size {size})")
        self.size = size
        self.seed = seed
        self.replacement = replacement
        self.num_samples = size if num_samples is None else num_samples
        if not replacement and self.num_samples != size:
            raise ValueError("num_samples differs from size only with replacement=True")
        self.epoch = 0
        # (epoch, indices already consumed in it) from a mid-epoch checkpoint; see ResumableDataLoader.
        self.resume_at: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        if self.replacement:
            indices = rng.integers(0, self.size, size=self.num_samples)
        else:
            indices = rng.permutation(self.size)
        skip = 0
        if self.resume_at is not None and self.resume_at[0] == self.epoch - 1:
            skip = self.resume_at[1]
        self.resume_at = None
        return iter(indices[skip:].tolist())
