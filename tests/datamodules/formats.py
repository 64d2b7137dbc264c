"""Tiny files in each benchmark's real format, for tests: pickled CIFAR-10 batches, enwik8 raw and zip, PNG folders,
downsampled-ImageNet npz batches, audio through soundfile. Pixel values follow known formulas, so that token order
can be checked exactly."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def image_pixels(index: int, side: int) -> np.ndarray:
    """A distinct, known image: uint8 [side, side, 3], pixel (r, c) channel k = (index * 31 + 3 * (side * r + c)
    * (k + 1) + k) mod 256."""
    position = np.arange(side * side).reshape(side, side, 1)
    channel = np.arange(3).reshape(1, 1, 3)
    return ((index * 31 + 3 * position * (channel + 1) + channel) % 256).astype(np.uint8)


def planes(pixels: np.ndarray) -> np.ndarray:
    """[N, side, side, 3] images as rows of R, G, B planes: the CIFAR and npz 'data' layout."""
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2).reshape(len(pixels), -1))


def write_cifar_batch(path: Path, first: int, count: int) -> np.ndarray:
    """A python batch of `count` images numbered from `first`; returns the images [count, 32, 32, 3]."""
    pixels = np.stack([image_pixels(first + i, 32) for i in range(count)])
    entry = {
        "batch_label": path.name,
        "labels": [(first + i) % 10 for i in range(count)],
        "data": planes(pixels),
        "filenames": [f"img_{first + i}.png" for i in range(count)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(entry, f)
    return pixels


def make_cifar(root: Path, per_batch: int = 10, batches: int = 5, test: int = 10) -> Path:
    """<root>/cifar10/cifar-10-batches-py with `batches` training batches and a test batch; returns the folder."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    for b in range(batches):
        write_cifar_batch(folder / f"data_batch_{b + 1}", b * per_batch, per_batch)
    write_cifar_batch(folder / "test_batch", 10_000, test)
    return folder


def text_bytes(length: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=length, dtype=np.uint8).tobytes()


def write_zip(path: Path, member: str, content: bytes, compression: int = zipfile.ZIP_STORED) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr(member, content)


def write_png(path: Path, pixels: np.ndarray, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, format="PNG")


def make_png_folders(root: Path, n_train: int, n_valid: int) -> tuple[np.ndarray, np.ndarray]:
    """<root>/imagenet64/{train,valid}_64x64 of known images; returns them [N, 64, 64, 3] in file-name order."""
    images = {}
    for split, count, first in (("train", n_train, 0), ("valid", n_valid, 5_000)):
        pixels = np.stack([image_pixels(first + i, 64) for i in range(count)])
        for i in range(count):
            write_png(root / "imagenet64" / f"{split}_64x64" / f"{i:05d}.png", pixels[i])
        images[split] = pixels
    return images["train"], images["valid"]


def write_npz_batch(path: Path, pixels: np.ndarray) -> None:
    """A downsampled-ImageNet npz batch: 'data' uint8 [N, 12288] as planes, 'labels' 1-based."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, data=planes(pixels), labels=np.arange(1, len(pixels) + 1))


def make_npz_batches(root: Path, per_batch: int, batches: int, n_valid: int) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "imagenet64" / "Imagenet64_train_npz"
    train = np.stack([image_pixels(i, 64) for i in range(per_batch * batches)])
    for b in range(batches):
        write_npz_batch(folder / f"train_data_batch_{b + 1}.npz", train[b * per_batch : (b + 1) * per_batch])
    valid = np.stack([image_pixels(5_000 + i, 64) for i in range(n_valid)])
    write_npz_batch(root / "imagenet64" / "Imagenet64_val_npz" / "val_data.npz", valid)
    return train, valid


def tone(seconds: float, rate: int, channels: int = 1, frequency: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1)


def write_audio(path: Path, samples: np.ndarray, rate: int, subtype: str | None = None) -> None:
    """Write through soundfile; the format follows the suffix (.wav PCM_16, .flac, .ogg Vorbis)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    formats = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
    kind, default_subtype = formats[path.suffix.lower()]
    subtype = subtype or default_subtype
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=kind, subtype=subtype)
    path.write_bytes(buffer.getvalue())
