"""ImageNet 64x64 as sequences of 12,288 bytes (the paper's section 7.3).

Files, under `<data_dir>/imagenet64/`, in either layout (PNG folders win when both are present):
- PNG folders `train_64x64/` and `valid_64x64/`, one 64x64 RGB PNG per image: the downsampled ImageNet of
  van den Oord et al. (2016), the paper's data (1,281,149 train and 49,999 valid images).
- npz batches `train_data_batch_1.npz` .. `train_data_batch_10.npz` and `val_data.npz`, directly there or one
  folder down (e.g. `Imagenet64_train_npz/`): Chrabaszcz et al. (2017), `data` uint8 [N, 12288] as R, G, B planes
  of 64x64 and `labels`. Another downsampling than the paper's (1,281,167 and 50,000 images).
There is no download: the licence requires registering at image-net.org. A missing folder raises
DataNotFoundError saying which files go where.

Variant. No checksum exists for these folders, so completeness is judged by image counts:
- PNG folders of the official counts: "official"; npz batches of the official counts: "npz-full" (accepted with
  a warning that it is not the paper's downsampling).
- Anything else is partial, refused unless `allow_partial=True`. The shared proxy part (../shared/data) is
  recognised by its listing (file names and sizes) and named as its README names it, "proxy-900-100"; other
  PNG folders are f"folder-{n_train}-{n_valid}", other npz sets f"npz-{n_train}-{n_valid}".

Splits: the valid images are the test set (the paper reports on them); validation is a held-out part of the
training images, chosen with `split_seed`: `val_size` images, by default 1/25 of them (the proportion of the
paper's CIFAR-10 split: 51,246 of the official set, 36 of the proxy). A `val_size` given explicitly is for the
official set and is scaled by found / official on a partial one.

Conversion: `prepare_data` checks every file's header first (PNG: 64x64 RGB; npz: `data` uint8 [N, 12288]), then
decodes everything once into uint8 [N, 12288] .npy arrays in token order under the cache folder (`cache_dir`, see
datamodules.storage.resolve_cache_dir), written under a temporary name and renamed when complete; `setup`
memory-maps them, so DataLoader workers share one copy. The cache key is the source listing (names, sizes,
modification times). With num_workers > 0 the PNGs are decoded by that many processes. The full train set
needs about 16 GB of cache.

Tokens: raster order with R, G, B interleaved per pixel, token 3 * (64 * row + column) + channel; token_axes
(64, 64, 3).
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from datamodules.base import TokenDataModule
from datamodules.sequences import ImageRows
from datamodules.storage import (
    DataError,
    DataNotFoundError,
    atomic_path,
    listing_key,
    resolve_cache_dir,
)

log = logging.getLogger(__name__)

SIDE = 64
IMAGE_TOKENS = SIDE * SIDE * 3
OFFICIAL_PNG_COUNTS = (1_281_149, 49_999)
OFFICIAL_NPZ_COUNTS = (1_281_167, 50_000)
# Parts recognised by the sha256 of their listing ("<folder>/<name>\t<size>\n" for every PNG, sorted by name).
KNOWN_PARTS = {"96229780ea5deb711c11450c1c2994145cb22bf6af6268cdaf6136d19b0fa27d": "proxy-900-100"}
_CACHE_FORMAT = "imagenet64-tokens-v1"


@dataclass
class Source:
    """What was found on disk: the layout, the files of each split and their image counts."""

    layout: str  # "png" or "npz"
    train: list[Path]
    valid: list[Path]
    train_count: int
    valid_count: int


def check_png(path: Path) -> None:
    """Raise DataError unless `path` is a 64x64 RGB PNG (reads the header only)."""
    try:
        with Image.open(path) as image:
            found = image.format, image.size, image.mode
    except Exception as err:
        raise DataError(f"{path}: not a readable PNG ({type(err).__name__}: {err}); expected a 64x64 RGB PNG") from err
    if found != ("PNG", (SIDE, SIDE), "RGB"):
        raise DataError(
            f"{path}: a {found[0]} image of {found[1][0]}x{found[1][1]} {found[2]}, expected a 64x64 RGB PNG"
        )


def decode_png(path: Path) -> np.ndarray:
    """The tokens of a 64x64 RGB PNG, uint8 [12288] in raster order with R, G, B interleaved."""
    check_png(path)
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image)
    except Exception as err:
        raise DataError(f"{path}: PNG data unreadable ({type(err).__name__}: {err}); is the file truncated?") from err
    return pixels.reshape(IMAGE_TOKENS)


def npz_rows(path: Path) -> int:
    """The image count of a downsampled-ImageNet npz batch, read from its `data` header; checks its layout."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"data.npy", "labels.npy"} <= names:
                raise DataError(f"{path}: arrays {sorted(names)}, expected 'data' and 'labels'")
            with archive.open("data.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in read_header:
                    raise DataError(f"{path}: 'data' is in .npy format version {version}, expected 1.0 or 2.0")
                shape, _, dtype = read_header[version](f)
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable npz batch ({type(err).__name__}: {err})") from err
    if dtype != np.uint8 or len(shape) != 2 or shape[1] != IMAGE_TOKENS:
        raise DataError(f"{path}: 'data' is {dtype} {list(shape)}, expected uint8 [N, {IMAGE_TOKENS}] (R, G, B planes)")
    return shape[0]


def read_npz(path: Path) -> np.ndarray:
    """The tokens of an npz batch, uint8 [N, 12288] in raster order with R, G, B interleaved."""
    try:
        with np.load(path) as batch:
            planes = batch["data"]
    except Exception as err:
        raise DataError(f"{path}: npz data unreadable ({type(err).__name__}: {err}); is the file truncated?") from err
    return planes.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1).reshape(-1, IMAGE_TOKENS)


def _batch_number(path: Path) -> int:
    return int(re.search(r"(\d+)\.npz$", path.name).group(1))


class ImageNet64DataModule(TokenDataModule):
    """ImageNet 64x64, n = 12,288: see the module docstring for files, variants, splits and token order."""

    benchmark = "imagenet64"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 2,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = False,
        allow_partial: bool = False,
        val_size: int | None = None,
        split_seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        """
        Args:
            data_dir: the data root; the images are read from <data_dir>/imagenet64.
            batch_size: images per batch.
            num_workers: DataLoader worker processes, also the processes decoding PNGs once into the cache.
            seed: seed of the training order (same seed, same batches).
            download: must stay False: ImageNet cannot be downloaded automatically (licence).
            allow_partial: accept folders or batches that are not the full official set (variant
                "proxy-900-100", "folder-<train>-<valid>" or "npz-<train>-<valid>").
            val_size: validation images held out of the training images (None: 1/25 of them); the valid
                images are the test set.
            split_seed: seed of the train/validation split, apart from `seed`.
            cache_dir: folder for the decoded arrays (None: <data_dir>/cache if writable, else
                ~/.cache/sparse-repro).
        """
        super().__init__(
            data_dir=data_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            download=download,
            allow_partial=allow_partial,
            seq_len=IMAGE_TOKENS,
            token_axes=(SIDE, SIDE, 3),
        )
        if download:
            raise ValueError(
                "ImageNet 64x64 cannot be downloaded automatically (its licence requires registering at "
                f"image-net.org); set download=False and put the data in {Path(data_dir) / 'imagenet64'} "
                "(train_64x64/ and valid_64x64/ PNG folders, or the npz batches)"
            )
        if val_size is not None and val_size < 1:
            raise ValueError(f"val_size must be >= 1 or None, got {val_size}")
        self.val_size = val_size
        self.split_seed = split_seed
        self.cache_dir = cache_dir
        self._source: Source | None = None
        self._arrays: dict[str, Path] | None = None
        self.save_hyperparameters()

    @property
    def folder(self) -> Path:
        return self.data_dir / "imagenet64"

    def _missing(self, what: str) -> DataNotFoundError:
        return DataNotFoundError(
            f"ImageNet 64x64 not found: {what}. Put either the folders {self.folder / 'train_64x64'} and "
            f"{self.folder / 'valid_64x64'} (64x64 RGB PNGs, the downsampled ImageNet of van den Oord et al. 2016, "
            f"the paper's data) or the npz batches train_data_batch_1..10.npz and val_data.npz (Chrabaszcz et al. "
            f"2017) in {self.folder}; both are at image-net.org after registering (their licence forbids "
            "automatic download)."
        )

    def _find(self) -> Source:
        folders = self.folder / "train_64x64", self.folder / "valid_64x64"
        if any(folder.is_dir() for folder in folders):
            files = []
            for folder in folders:
                if not folder.is_dir():
                    raise self._missing(f"{folder} is missing")
                pngs = sorted(path for path in folder.iterdir() if path.suffix.lower() == ".png")
                if not pngs:
                    raise self._missing(f"no .png file in {folder}")
                files.append(pngs)
            return Source("png", files[0], files[1], len(files[0]), len(files[1]))
        train = sorted(
            [*self.folder.glob("train_data_batch_*.npz"), *self.folder.glob("*/train_data_batch_*.npz")],
            key=_batch_number,
        )
        valid = [*self.folder.glob("val_data.npz"), *self.folder.glob("*/val_data.npz")]
        if not train and not valid:
            raise self._missing(f"neither PNG folders nor npz batches in {self.folder}")
        if not train or len(valid) != 1:
            what = "no train_data_batch_*.npz" if not train else f"{len(valid)} val_data.npz files, expected one"
            raise self._missing(f"{what} under {self.folder}")
        return Source("npz", train, valid, sum(map(npz_rows, train)), npz_rows(valid[0]))

    def _inspect(self) -> Source:
        """Find the data, name its variant and apply the partial-data policy; cheap (listings and headers)."""
        if self._source is not None:
            return self._source
        source = self._find()
        counts = source.train_count, source.valid_count
        official = OFFICIAL_PNG_COUNTS if source.layout == "png" else OFFICIAL_NPZ_COUNTS
        if counts == official and source.layout == "png":
            self._found("official")
        elif counts == official:
            self._found("npz-full")
            log.warning(
                "ImageNet 64x64 from npz batches (Chrabaszcz et al. 2017): another downsampling than the paper's "
                "(van den Oord et al. 2016); variant 'npz-full'"
            )
        else:
            layout_name = "folder" if source.layout == "png" else "npz"
            variant = self._known_part(source) or f"{layout_name}-{counts[0]}-{counts[1]}"
            what = f"ImageNet 64x64 in {self.folder} ({source.layout})"
            problems = [
                f"{counts[0]:,} train and {counts[1]:,} valid images, official {official[0]:,} and {official[1]:,}"
            ]
            self._refuse_partial(what, problems, variant)
            self._found(variant)
            n_val = self.val_count(counts[0], source.layout)
            how = (
                f"{counts[0] - n_val} training and {n_val} validation images of the train ones, {counts[1]} test images"
            )
            self._warn_partial(what, problems, variant, how)
        self._source = source
        return source

    @staticmethod
    def _known_part(source: Source) -> str | None:
        if source.layout != "png":
            return None
        digest = hashlib.sha256()
        for files in (source.train, source.valid):
            for path in files:
                digest.update(f"{path.parent.name}/{path.name}\t{path.stat().st_size}\n".encode())
        return KNOWN_PARTS.get(digest.hexdigest())

    def prepare_data(self) -> None:
        self._convert()

    def _convert(self) -> dict[str, Path]:
        """Decode the source once into cached token arrays {"train": path, "valid": path}."""
        if self._arrays is not None:
            return self._arrays
        source = self._inspect()
        cache = resolve_cache_dir(self.cache_dir, self.data_dir)
        key = listing_key(source.train + source.valid, extra=_CACHE_FORMAT)[:16]
        arrays = {split: cache / f"imagenet64-{source.layout}-{key}-{split}.npy" for split in ("train", "valid")}
        todo = [split for split, path in arrays.items() if not path.is_file()]
        if todo:
            files = {"train": source.train, "valid": source.valid}
            counts = {"train": source.train_count, "valid": source.valid_count}
            if source.layout == "png":
                # Every header before any decoding: a wrong file fails in seconds, not after the heavy work.
                for split in todo:
                    for path in tqdm(files[split], desc=f"check imagenet64 {split} PNGs", unit="file"):
                        check_png(path)
            for split in todo:
                self._write(arrays[split], source.layout, files[split], counts[split], split)
        self._arrays = arrays
        return arrays

    def _write(self, final: Path, layout: str, files: list[Path], count: int, split: str) -> None:
        with atomic_path(final) as tmp:
            rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, IMAGE_TOKENS))
            if layout == "png":
                bar = tqdm(total=count, desc=f"decode imagenet64 {split}", unit="img")
                if self.num_workers > 0:
                    with ProcessPoolExecutor(self.num_workers) as pool:
                        for index, tokens in enumerate(pool.map(decode_png, files, chunksize=256)):
                            rows[index] = tokens
                            bar.update()
                else:
                    for index, path in enumerate(files):
                        rows[index] = decode_png(path)
                        bar.update()
                bar.close()
            else:
                start = 0
                for path in tqdm(files, desc=f"convert imagenet64 {split} npz", unit="batch"):
                    tokens = read_npz(path)
                    if start + len(tokens) > count:
                        raise DataError(f"{path}: more images than its header said")
                    rows[start : start + len(tokens)] = tokens
                    start += len(tokens)
                if start != count:
                    raise DataError(f"{files[0].parent}: {start} images in the {split} batches, headers said {count}")
            rows.flush()
            del rows

    def val_count(self, found: int, layout: str) -> int:
        """Validation images held out of `found` training images in `layout` (see the module docstring)."""
        if self.val_size is None:
            n_val = round(found / 25)
        elif self.variant in ("official", "npz-full"):
            n_val = self.val_size
        else:
            official = OFFICIAL_PNG_COUNTS[0] if layout == "png" else OFFICIAL_NPZ_COUNTS[0]
            n_val = round(self.val_size * found / official)
        n_val = max(1, n_val)
        if n_val >= found:
            raise DataError(
                f"ImageNet 64x64 ({self.variant}): {found} training images cannot give {n_val} validation images "
                "and a training set"
            )
        return n_val

    def setup(self, stage: str | None = None) -> None:
        if self.is_set_up:
            return
        arrays = self._convert()
        found = self._source.train_count
        n_val = self.val_count(found, self._source.layout)
        order = np.random.default_rng(self.split_seed).permutation(found)
        self.val_set = ImageRows(arrays["train"], np.sort(order[:n_val]))
        self.train_set = ImageRows(arrays["train"], np.sort(order[n_val:]))
        self.test_set = ImageRows(arrays["valid"])
