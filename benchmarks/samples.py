"""Writers for samples people look at or listen to: PNG image grids, text, and WAV audio.

Input everywhere: samples, an integer tensor or array [N, n] (or [n] for one) of byte tokens 0..255, as
sparse.sampling.generate returns (any device). Each writer checks its input before writing, creates the
parent folder, and returns what it wrote.

- write_image_grid: each sample is an image in raster order with the channels interleaved per pixel, i.e.
  reshaped to image_shape = (height, width, channels) (the (32, 32, 3) token_axes of CIFAR-10); the images
  are tiled in a grid with `padding` pixels of `pad_value` between them, saved as an 8-bit PNG.
- write_text: each sample's bytes decoded as UTF-8 (invalid bytes replaced by U+FFFD, since a sampled
  byte string need not be valid UTF-8), samples separated by a header line; written as UTF-8.
- write_wav: each sample is 8-bit mu-law audio (256 levels, as the audio datamodule encodes it with
  torchaudio.functional.mu_law_encoding), decoded with torchaudio.functional.mu_law_decoding to [-1, 1]
  and written as mono 16-bit PCM at `sample_rate` (12 kHz, the paper's): one file per sample,
  `<stem>.wav` for a single sample, `<stem>_000.wav`, `<stem>_001.wav`, ... for several.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

CIFAR_IMAGE_SHAPE = (32, 32, 3)
AUDIO_SAMPLE_RATE = 12_000


def _as_tokens(samples) -> torch.Tensor:
    """Any [N, n] or [n] integer tensor/array of bytes -> int64 CPU tensor [N, n]; checked."""
    if isinstance(samples, np.ndarray):
        samples = torch.from_numpy(samples)
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor or numpy array, got {type(samples).__name__}")
    if samples.dtype.is_floating_point or samples.dtype.is_complex or samples.dtype == torch.bool:
        raise TypeError(f"samples must hold integer byte tokens, got {samples.dtype}")
    if samples.dim() == 1:
        samples = samples.unsqueeze(0)
    if samples.dim() != 2 or samples.numel() == 0:
        raise ValueError(f"samples must be a non-empty [N, n] or [n] tensor, got shape {tuple(samples.shape)}")
    samples = samples.detach().cpu().long()
    if int(samples.min()) < 0 or int(samples.max()) > 255:
        raise ValueError(f"sample values must be bytes 0..255, got {int(samples.min())}..{int(samples.max())}")
    return samples


def _prepare(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_image_grid(
    samples,
    path,
    image_shape: tuple[int, int, int] = CIFAR_IMAGE_SHAPE,
    columns: int | None = None,
    padding: int = 1,
    pad_value: int = 255,
) -> Path:
    """Tile N images into one PNG (columns default ceil(sqrt(N))); returns the path."""
    from PIL import Image

    tokens = _as_tokens(samples)
    if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
        raise ValueError(f"image_shape must be (height, width, channels), got {image_shape}")
    height, width, channels = (int(s) for s in image_shape)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if tokens.shape[1] != height * width * channels:
        raise ValueError(
            f"a sample has {tokens.shape[1]} tokens but image_shape {image_shape} needs {height * width * channels}"
        )
    count = tokens.shape[0]
    columns = math.ceil(math.sqrt(count)) if columns is None else columns
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be an int >= 1, got {columns!r}")
    if not 0 <= padding or not 0 <= pad_value <= 255:
        raise ValueError(f"padding must be >= 0 and pad_value in 0..255, got {padding}, {pad_value}")
    rows = math.ceil(count / columns)
    grid = np.full(
        (rows * height + (rows + 1) * padding, columns * width + (columns + 1) * padding, channels),
        pad_value,
        dtype=np.uint8,
    )
    images = tokens.view(count, height, width, channels).numpy().astype(np.uint8)
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    path = _prepare(path)
    Image.fromarray(grid[..., 0] if channels == 1 else grid).save(path)  # uint8 [H, W] -> L, [H, W, 3] -> RGB
    return path


def write_text(samples, path) -> Path:
    """All samples as UTF-8 text, each under a '===== sample i =====' header; returns the path."""
    tokens = _as_tokens(samples)
    parts = []
    for index, row in enumerate(tokens):
        text = bytes(row.to(torch.uint8).tolist()).decode("utf-8", errors="replace")
        parts.append(f"===== sample {index} ({row.numel()} bytes) =====\n{text}\n")
    path = _prepare(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def write_wav(samples, path, sample_rate: int = AUDIO_SAMPLE_RATE) -> list[Path]:
    """Each sample as a mono 16-bit WAV of its mu-law decoded signal; returns the paths written."""
    import soundfile
    import torchaudio.functional as AF

    tokens = _as_tokens(samples)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise ValueError(f"path must end in .wav, got {str(path)!r}")
    signal = AF.mu_law_decoding(tokens, quantization_channels=256).clamp(-1.0, 1.0).numpy()
    if tokens.shape[0] == 1:
        targets = [path]
    else:
        targets = [path.with_name(f"{path.stem}_{i:03d}.wav") for i in range(tokens.shape[0])]
    for target, wave in zip(targets, signal):
        soundfile.write(_prepare(target), wave.astype(np.float32), sample_rate, subtype="PCM_16")
    return targets
