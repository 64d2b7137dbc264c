"""LightningDataModules for the paper's four benchmarks, read in their real formats and checked.

    CIFAR10DataModule      CIFAR-10 python batches, n = 3,072, token_axes (32, 32, 3)
    Enwik8DataModule       enwik8 or enwik8.zip, n = seq_len (12,288), token_axes (seq_len // row_width, row_width)
    ImageNet64DataModule   64x64 PNG folders or npz batches, n = 12,288, token_axes (64, 64, 3)
    AudioDataModule        WAV / FLAC / Ogg files as 12 kHz mu-law, n = seq_len (65,536), rows of row_width

Every module takes data_dir, batch_size, num_workers, seed, download and allow_partial; every batch is
`(tokens int64 [B, seq_len] in 0..255, score_from int64 [B])`; `variant` names the data found after
prepare_data() or setup(). See datamodules.base for the shared contract and each module for its files, splits,
variants and token order. `DATAMODULES` maps the benchmark names to the classes.
"""

from datamodules.audio import AudioDataModule
from datamodules.base import TokenDataModule
from datamodules.cifar10 import CIFAR10DataModule
from datamodules.enwik8 import Enwik8DataModule
from datamodules.imagenet64 import ImageNet64DataModule
from datamodules.storage import DataError, DataNotFoundError, PartialDataError

DATAMODULES: dict[str, type[TokenDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "enwik8": Enwik8DataModule,
    "imagenet64": ImageNet64DataModule,
    "audio": AudioDataModule,
}

__all__ = [
    "DATAMODULES",
    "AudioDataModule",
    "CIFAR10DataModule",
    "DataError",
    "DataNotFoundError",
    "Enwik8DataModule",
    "ImageNet64DataModule",
    "PartialDataError",
    "TokenDataModule",
]
