"""CIFAR-10 as sequences of 3,072 bytes (the paper's section 7.1).

Files: `<data_dir>/cifar10/cifar-10-batches-py/` holding `data_batch_1` .. `data_batch_5` and `test_batch`, the
official python batches (a pickled dict: `data` uint8 [N, 3072] as R, G, B planes of 32x32, `labels` [N]).
`download=True` fetches the official tarball through torchvision (its MD5 checked) when the files there are
missing or not the official ones. The batches are unpickled, as torchvision does: point data_dir only at data
you trust.

Splits (the paper's): a permutation of the training images drawn with `split_seed` gives `val_size`
validation and `train_size` training images (48,000 / 2,000 by default); `test_batch` is the test set.

Variant: "official" when every batch matches torchvision's MD5s. Otherwise (missing batches, other checksums,
shorter files) the data is refused unless `allow_partial=True`; then the variant is
f"subset-{train images found}-{test images found}" (the shared part gives "subset-4000-1000") and train_size and
val_size are scaled by (training images found) / 50,000, e.g. 3,840 / 160 of 4,000.

Tokens: raster order with R, G, B interleaved per pixel, token 3 * (32 * row + column) + channel (the NHWC
flattening of openai/distribution_augmentation); token_axes (32, 32, 3).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import download_and_extract_archive

from datamodules.base import TokenDataModule
from datamodules.sequences import ImageRows
from datamodules.storage import DataError, DataNotFoundError, md5_of_file

log = logging.getLogger(__name__)

OFFICIAL_TRAIN_IMAGES = 50_000
OFFICIAL_TEST_IMAGES = 10_000
IMAGE_TOKENS = 32 * 32 * 3


def read_batch(path: Path) -> np.ndarray:
    """The images of one python batch as tokens, uint8 [N, 3072] in raster order with R, G, B interleaved."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as err:
        raise DataError(
            f"{path}: not a readable CIFAR-10 python batch ({type(err).__name__}: {err}); expected a pickled dict "
            "with 'data' uint8 [N, 3072] and 'labels' (is the file truncated?)"
        ) from err
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_TOKENS:
        found = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {found}, expected uint8 [N, {IMAGE_TOKENS}] (R, G, B planes of 32x32)")
    labels = entry.get("labels")
    if labels is None or len(labels) != len(data):
        raise DataError(f"{path}: 'labels' missing or not one per image ({len(data)} images)")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(-1, IMAGE_TOKENS))


class CIFAR10DataModule(TokenDataModule):
    """CIFAR-10, n = 3,072: see the module docstring for files, splits, variants and token order."""

    benchmark = "cifar10"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 2,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = False,
        allow_partial: bool = False,
        train_size: int = 48_000,
        val_size: int = 2_000,
        split_seed: int = 0,
    ) -> None:
        """
        Args:
            data_dir: the data root; the batches are read from <data_dir>/cifar10/cifar-10-batches-py.
            batch_size: images per batch.
            num_workers: DataLoader worker processes.
            seed: seed of the training order (same seed, same batches).
            download: fetch the official tarball (MD5-checked, through torchvision) when the batches are missing
                or not the official ones.
            allow_partial: accept batches that are not the official ones (variant "subset-<train>-<test>").
            train_size: training images taken from the training batches (the paper: 48,000).
            val_size: validation images taken from the training batches (the paper: 2,000).
            split_seed: seed of the train/validation permutation, apart from `seed` so that runs with different
                seeds are validated on the same images.
        """
        super().__init__(
            data_dir=data_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            download=download,
            allow_partial=allow_partial,
            seq_len=IMAGE_TOKENS,
            token_axes=(32, 32, 3),
        )
        if train_size < 1 or val_size < 1 or train_size + val_size > OFFICIAL_TRAIN_IMAGES:
            raise ValueError(
                f"need train_size >= 1, val_size >= 1 and train_size + val_size <= {OFFICIAL_TRAIN_IMAGES}, "
                f"got {train_size} and {val_size}"
            )
        self.train_size = train_size
        self.val_size = val_size
        self.split_seed = split_seed
        self._images: tuple[np.ndarray, np.ndarray] | None = None
        self.save_hyperparameters()

    @property
    def batches_dir(self) -> Path:
        return self.data_dir / "cifar10" / CIFAR10.base_folder

    def _problems(self) -> list[str]:
        """What differs from the official batches: missing files and MD5 mismatches."""
        problems = []
        for name, official_md5 in CIFAR10.train_list + CIFAR10.test_list:
            path = self.batches_dir / name
            if not path.is_file():
                problems.append(f"{name} missing")
            elif (md5 := md5_of_file(path)) != official_md5:
                problems.append(f"{name} has MD5 {md5} ({path.stat().st_size:,} bytes), official {official_md5}")
        return problems

    def prepare_data(self) -> None:
        if self.download and self._problems():
            root = self.batches_dir.parent
            try:
                download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
            except Exception as err:
                (root / CIFAR10.filename).unlink(missing_ok=True)  # a corrupt or partial tarball is not kept
                raise DataError(
                    f"downloading CIFAR-10 from {CIFAR10.url} into {root} failed ({type(err).__name__}: {err}); "
                    f"expected a tarball with MD5 {CIFAR10.tgz_md5}"
                ) from err
        self._load()

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        if self._images is not None:
            return self._images
        folder = self.batches_dir
        train_paths = [folder / name for name, _ in CIFAR10.train_list if (folder / name).is_file()]
        test_path = folder / CIFAR10.test_list[0][0]
        if not train_paths or not test_path.is_file():
            missing = "the training batches data_batch_1 .. data_batch_5" if not train_paths else "test_batch"
            raise DataNotFoundError(
                f"CIFAR-10 not found: {missing} missing in {folder}. Expected the official python batches "
                f"(data_batch_1 .. data_batch_5, test_batch); pass download=True to fetch {CIFAR10.url} "
                "(MD5-checked), or extract that tarball into "
                f"{folder.parent}"
            )
        problems = self._problems()
        if problems:
            self._refuse_partial(
                f"CIFAR-10 in {folder}",
                problems,
                "subset-<train images>-<test images>",
                "; or download=True to fetch the official batches" if not self.download else "",
            )
        train = np.concatenate([read_batch(path) for path in train_paths])
        test = read_batch(test_path)
        if problems:
            self._found(f"subset-{len(train)}-{len(test)}")
            n_train, n_val = self.split_sizes(len(train))
            self._warn_partial(
                f"CIFAR-10 in {folder}",
                problems,
                self.variant,
                f"{n_train} training and {n_val} validation images of {len(train)} (scaled from "
                f"{self.train_size}:{self.val_size}), {len(test)} test images",
            )
        else:
            self._found("official")
        self._images = train, test
        return self._images

    def split_sizes(self, found: int) -> tuple[int, int]:
        """(train, val) image counts for `found` training images: as configured for the official data, scaled
        by found / 50,000 otherwise."""
        if self.variant == "official":
            n_train, n_val = self.train_size, self.val_size
        else:
            n_val = max(1, round(self.val_size * found / OFFICIAL_TRAIN_IMAGES))
            n_train = min(found - n_val, round(self.train_size * found / OFFICIAL_TRAIN_IMAGES))
        if n_train < 1 or n_train + n_val > found:
            raise DataError(
                f"CIFAR-10 in {self.batches_dir}: {found} training images cannot give {n_train} training and "
                f"{n_val} validation images"
            )
        return n_train, n_val

    def setup(self, stage: str | None = None) -> None:
        if self.is_set_up:
            return
        train, test = self._load()
        n_train, n_val = self.split_sizes(len(train))
        order = np.random.default_rng(self.split_seed).permutation(len(train))
        self.val_set = ImageRows(train, np.sort(order[:n_val]))
        self.train_set = ImageRows(train, np.sort(order[n_val : n_val + n_train]))
        self.test_set = ImageRows(test)
