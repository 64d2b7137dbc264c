"""Classical music as 8-bit mu-law sample sequences (the paper's section 7.4 and Table 4).

Files: `<data_dir>/audio/*.wav`, `*.flac`, `*.ogg` (any case), in name order. Each is decoded with soundfile
(libsndfile), mixed to mono (the mean of its channels), resampled to `sample_rate` (12 kHz) with
torchaudio.functional.resample, clipped to [-1, 1] and mu-law encoded to 256 levels with
torchaudio.functional.mu_law_encoding. The codes are cached once per file as uint8 .npy under
`<cache>/audio-<rate>hz-mulaw256/` (`cache_dir`, see datamodules.storage.resolve_cache_dir: <data_dir>/cache if
writable, else ~/.cache/sparse-repro), written under a temporary name and renamed when complete; the cache key
is the file's name, size and modification time. Every file is opened (header only) before any is decoded.

Variant: the paper's dataset (Dieleman et al. 2018) is not public, so any folder is a stand-in: it is refused
unless `allow_partial=True`, and the variant is f"excerpts-{number of files}" (the shared part: "excerpts-3").
`download=True` is refused for the same reason.

Splits, never overlapping (`split`):
- "files": whole files are held out, in a permutation drawn with `split_seed`: test files until they hold at
  least 5% of all samples, then validation files likewise (at least one file each; needs 3 files or more).
- "time": the files, in name order, are laid end to end and cut at 90% and 95% of all samples: the first 90%
  trains, the next 5% validates, the last 5% tests.
- "auto" (default): "files" with 20 files or more, else "time". With few files, holding out whole files leaves
  evaluation splits of arbitrary length: on the shared part it would put the 2-second MAESTRO clip (24,000
  samples at 12 kHz) in an evaluation split, shorter than the paper's shortest length, 65,536.
A piece (a file, or the part of a file in one split) shorter than seq_len holds no window: it is left out with a
logged warning naming it. A split left without any window is a DataError naming the split, its length in
samples and seq_len (the shared part's 5% splits hold about 100,600 samples: enough for 65,536, not 262,144).

Sequences (tokens are mu-law codes 0..255, token_axes (seq_len // row_width, row_width)); windows never
straddle two files:
- training: windows of seq_len samples at uniformly random starts, `train_samples_per_epoch` per epoch
  (default: training samples // seq_len);
- validation and test: non-overlapping windows of each piece; where a piece's end is not reached exactly, a
  last window ends there and scores only the samples not yet scored (score_from > 0).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchaudio.functional as audio_functional
from tqdm.auto import tqdm

from datamodules.base import TokenDataModule, row_axes
from datamodules.sequences import EpochSampler, EvalWindows, RandomWindows
from datamodules.storage import DataError, DataNotFoundError, atomic_path, listing_key, resolve_cache_dir

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
MU_LAW_CHANNELS = 256
FILE_SPLIT_MIN_FILES = 20
EVAL_FRACTION = 0.05  # of all samples, for validation and for test each
_CACHE_FORMAT = "audio-mulaw-v1"


@dataclass(frozen=True)
class Piece:
    """Samples [start, end) of one file's codes, belonging to one split."""

    file: int
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def _soundfile():
    """soundfile, imported when audio is first touched, so the other benchmarks run where it is absent."""
    try:
        import soundfile
    except ImportError as err:  # pragma: no cover - a pinned dependency of this project
        raise ImportError("the audio benchmark needs soundfile (pip install soundfile): " + str(err)) from err
    return soundfile


def check_audio(path: Path) -> None:
    """Raise DataError unless libsndfile can open `path` and it holds samples (reads the header only)."""
    soundfile = _soundfile()
    try:
        info = soundfile.info(str(path))
    except Exception as err:
        raise DataError(
            f"{path}: undecodable audio ({type(err).__name__}: {err}); expected a WAV, FLAC or Ogg Vorbis file "
            "readable by libsndfile"
        ) from err
    if info.frames <= 0:
        raise DataError(f"{path}: no audio samples ({info.format} {info.subtype})")


def encode_audio(path: Path, sample_rate: int) -> np.ndarray:
    """The mu-law codes of an audio file: mono, resampled to `sample_rate`, uint8 [samples]."""
    soundfile = _soundfile()
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise DataError(
            f"{path}: undecodable audio ({type(err).__name__}: {err}); expected a WAV, FLAC or Ogg Vorbis file "
            "readable by libsndfile"
        ) from err
    if len(samples) == 0:
        raise DataError(f"{path}: no audio samples")
    mono = torch.from_numpy(samples.mean(axis=1))
    if rate != sample_rate:
        mono = audio_functional.resample(mono, rate, sample_rate)
    # Resampling can overshoot [-1, 1] slightly; mu_law_encoding does not clip.
    codes = audio_functional.mu_law_encoding(mono.clamp(-1.0, 1.0), MU_LAW_CHANNELS)
    return codes.numpy().astype(np.uint8)


def split_by_time(lengths: list[int], eval_fraction: float = EVAL_FRACTION) -> dict[str, list[Piece]]:
    """Lay the files end to end and cut at 1 - 2f and 1 - f of all samples (f = eval_fraction: 90% and 95%)."""
    total = sum(lengths)
    # Exact rational arithmetic, so that f = 0.05 cuts at floor(0.90 T) and floor(0.95 T) to the sample.
    f = Fraction(eval_fraction).limit_denominator(10**6)
    val_start, test_start = math.floor(total * (1 - 2 * f)), math.floor(total * (1 - f))
    bounds = {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, total)}
    splits: dict[str, list[Piece]] = {name: [] for name in bounds}
    offset = 0
    for file, length in enumerate(lengths):
        for name, (low, high) in bounds.items():
            start, end = max(low, offset), min(high, offset + length)
            if start < end:
                splits[name].append(Piece(file, start - offset, end - offset))
        offset += length
    return splits


def split_by_files(lengths: list[int], split_seed: int, eval_fraction: float = EVAL_FRACTION) -> dict[str, list[Piece]]:
    """Hold out whole files: test, then validation, until each holds `eval_fraction` of all samples."""
    if len(lengths) < 3:
        raise ValueError(f"split='files' needs at least 3 audio files, found {len(lengths)}")
    order = np.random.default_rng(split_seed).permutation(len(lengths)).tolist()
    target = eval_fraction * sum(lengths)
    splits: dict[str, list[Piece]] = {"train": [], "val": [], "test": []}
    for name, keep in (("test", 2), ("val", 1)):  # keep: files left for the splits still to fill
        while len(order) > keep and (not splits[name] or sum(map(len, splits[name])) < target):
            file = order.pop(0)
            splits[name].append(Piece(file, 0, lengths[file]))
    splits["train"] = [Piece(file, 0, lengths[file]) for file in sorted(order)]
    for name in splits:
        splits[name].sort(key=lambda piece: piece.file)
    return splits


class AudioDataModule(TokenDataModule):
    """Classical music at 12 kHz, n = seq_len samples: see the module docstring for files, splits and windows."""

    benchmark = "audio"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 2,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = False,
        allow_partial: bool = False,
        seq_len: int = 65_536,
        row_width: int = 256,
        sample_rate: int = 12_000,
        split: Literal["auto", "files", "time"] = "auto",
        split_seed: int = 0,
        train_samples_per_epoch: int | None = None,
        cache_dir: str | None = None,
        eval_fraction: float = EVAL_FRACTION,
    ) -> None:
        """
        Args:
            data_dir: the data root; the audio files are read from <data_dir>/audio.
            batch_size: sequences per batch.
            num_workers: DataLoader worker processes.
            seed: seed of the training windows (same seed, same batches).
            download: must stay False: the paper's dataset is not public.
            allow_partial: must be True to use a folder of audio files, a stand-in for the paper's unreleased
                dataset (variant "excerpts-<number of files>").
            seq_len: samples per sequence (the paper: 65,536, 262,144 or 1,048,576).
            row_width: width of the [seq_len // row_width, row_width] token axes (the stride).
            sample_rate: the rate the audio is resampled to, in Hz (the paper: 12,000).
            split: how validation and test are held out: "files", "time" or "auto" (see the module docstring).
            split_seed: seed of the held-out files when split is "files", apart from `seed`.
            train_samples_per_epoch: random training windows per epoch (None: training samples // seq_len).
            cache_dir: folder of the encoded arrays (None: <data_dir>/cache if writable, else
                ~/.cache/sparse-repro).
            eval_fraction: share of all samples held out for validation and again for test (0.05; at most
                0.45). Longer sequences need longer evaluation splits: on the shared excerpts (about 2.0M
                samples) 0.15 gives each about 300,000, enough for 262,144. 0 holds nothing out: training only
                (train bits per byte), the one way to train at 1,048,576 on that little audio; validation and
                test then raise DataError, so run with --trainer.limit_val_batches 0.
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
        if download:
            raise ValueError(
                "the paper's classical-music dataset (Dieleman et al. 2018) is not public: set download=False and "
                f"put WAV, FLAC or Ogg files in {Path(data_dir) / 'audio'}"
            )
        if split not in ("auto", "files", "time"):
            raise ValueError(f"split must be 'auto', 'files' or 'time', got {split!r}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if train_samples_per_epoch is not None and train_samples_per_epoch < 1:
            raise ValueError(f"train_samples_per_epoch must be >= 1, got {train_samples_per_epoch}")
        if not 0 <= eval_fraction <= 0.45:
            raise ValueError(f"eval_fraction must be in [0, 0.45], got {eval_fraction}")
        self.eval_fraction = eval_fraction
        self.row_width = row_width
        self.sample_rate = sample_rate
        self.split = split
        self.split_seed = split_seed
        self.train_samples_per_epoch = train_samples_per_epoch
        self.cache_dir = cache_dir
        self._files: list[Path] | None = None
        self._arrays: list[Path] | None = None
        # Set by setup(): the split actually used ("files" or "time") and each split's pieces.
        self.split_mode: str | None = None
        self.split_pieces: dict[str, list[Piece]] | None = None
        self.save_hyperparameters()

    @property
    def folder(self) -> Path:
        return self.data_dir / "audio"

    def _inspect(self) -> list[Path]:
        """The audio files, each opened once (header only); names the variant; applies the partial policy."""
        if self._files is not None:
            return self._files
        files = []
        if self.folder.is_dir():
            files = sorted(path for path in self.folder.iterdir() if path.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise DataNotFoundError(
                f"no audio found: expected WAV, FLAC or Ogg files in {self.folder}. The paper's dataset (Dieleman "
                "et al. 2018) is not public; any classical-music recordings can stand in (with allow_partial=True)"
            )
        variant = f"excerpts-{len(files)}"
        self._refuse_partial(f"the audio in {self.folder}", self._stand_in(files), variant)
        for path in files:
            check_audio(path)
        self._found(variant)
        self._files = files
        return files

    @staticmethod
    def _stand_in(files: list[Path]) -> list[str]:
        return [f"{len(files)} file(s) standing in for the paper's unreleased dataset (Dieleman et al. 2018)"]

    def prepare_data(self) -> None:
        self._encode()

    def _encode(self) -> list[Path]:
        """Encode every file once into the cache; the cached arrays' paths, in file order."""
        if self._arrays is not None:
            return self._arrays
        files = self._inspect()
        cache = resolve_cache_dir(self.cache_dir, self.data_dir) / f"audio-{self.sample_rate}hz-mulaw{MU_LAW_CHANNELS}"
        arrays = []
        for path in files:
            key = listing_key([path], extra=f"{_CACHE_FORMAT}:{self.sample_rate}")[:12]
            arrays.append(cache / f"{path.name}-{key}.npy")
        todo = [(path, array) for path, array in zip(files, arrays) if not array.is_file()]
        for path, array in tqdm(todo, desc=f"encode audio at {self.sample_rate} Hz", unit="file", disable=not todo):
            codes = encode_audio(path, self.sample_rate)
            with atomic_path(array) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, codes)
        self._arrays = arrays
        return arrays

    def _usable(self, name: str, pieces: list[Piece], files: list[Path]) -> list[Piece]:
        """The pieces that hold a window; warns about the others; a split without any window is an error."""
        usable = [piece for piece in pieces if len(piece) >= self.seq_len]
        if not usable:
            longest = max((len(piece) for piece in pieces), default=0)
            total = sum(map(len, pieces))
            raise DataError(
                f"audio ({self.variant}, split by {self.split_mode}): the {name} split has {total:,} samples "
                f"at {self.sample_rate} Hz in {len(pieces)} piece(s), the longest {longest:,}, and no piece holds "
                f"seq_len={self.seq_len:,}; use a shorter seq_len or more audio"
            )
        dropped = [piece for piece in pieces if len(piece) < self.seq_len]
        if dropped:
            log.warning(
                "audio %s split: %d piece(s) shorter than seq_len=%d left out: %s",
                name,
                len(dropped),
                self.seq_len,
                ", ".join(f"{files[p.file].name} [{p.start}, {p.end})" for p in dropped),
            )
        return usable

    def setup(self, stage: str | None = None) -> None:
        if self.is_set_up:
            return
        arrays = self._encode()
        files = self._files
        codes = [np.load(array, mmap_mode="r") for array in arrays]
        lengths = [len(c) for c in codes]
        mode = self.split if self.split != "auto" else ("files" if len(files) >= FILE_SPLIT_MIN_FILES else "time")
        self.split_mode = mode
        if mode == "files":
            pieces = split_by_files(lengths, self.split_seed, self.eval_fraction)
        else:
            pieces = split_by_time(lengths, self.eval_fraction)
        held_out = ("val", "test") if self.eval_fraction > 0 else ()
        self.split_pieces = {
            name: self._usable(name, found, files) if name == "train" or name in held_out else []
            for name, found in pieces.items()
        }
        how = ", ".join(
            f"{name} {sum(map(len, kept)):,} samples in {len(kept)} piece(s)"
            for name, kept in self.split_pieces.items()
        )
        self._warn_partial(
            f"the audio in {self.folder}", self._stand_in(files), self.variant, f"split by {mode}: {how}"
        )

        def views(name: str) -> list[np.ndarray]:
            return [codes[piece.file][piece.start : piece.end] for piece in self.split_pieces[name]]

        self.train_set = RandomWindows(views("train"), self.seq_len)
        samples = self.train_samples_per_epoch or max(1, sum(map(len, self.split_pieces["train"])) // self.seq_len)
        self.train_sampler = EpochSampler(len(self.train_set), self.seed, num_samples=samples, replacement=True)
        if held_out:
            self.val_set = EvalWindows(views("val"), self.seq_len)
            self.test_set = EvalWindows(views("test"), self.seq_len)

    def val_dataloader(self):
        self._require_held_out("validation")
        return super().val_dataloader()

    def test_dataloader(self):
        self._require_held_out("test")
        return super().test_dataloader()

    def _require_held_out(self, what: str) -> None:
        if self.eval_fraction == 0:
            raise DataError(
                f"audio: eval_fraction=0 holds no {what} split (training only); run with "
                "--trainer.limit_val_batches 0 and no test, or set eval_fraction > 0"
            )
