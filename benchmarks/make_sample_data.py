"""Rebuild the embedded sample (benchmarks/sample_data/) from the shared real data.

    python -m benchmarks.make_sample_data [--source ../shared/data] [--out benchmarks/sample_data]

What it writes (at most 3 MB in all; benchmarks/sample_data/README.md gives provenance and licences):
- cifar10/cifar-10-batches-py/: the first 200 CIFAR-10 test images in the official python-pickle batch
  format: images 0-159 as `data_batch_1`, images 160-199 as `test_batch`, plus `batches.meta`. The
  datamodule needs both a training batch and a test batch, hence the split.
- enwik8/enwik8: the first 1,000,000 bytes of enwik8 (raw bytes).
- audio/brahms_hungarian_dance_5_30s.wav: the first 30 s of the Brahms excerpt, mixed to mono, resampled to
  12 kHz and stored as 8-bit G.711 mu-law WAV (360,000 bytes of samples).
- SAMPLE: a marker whose presence says "this data root is the embedded sample" (see README.md).
No ImageNet photographs: their terms forbid redistribution.

The output is deterministic (same source, same bytes), so rebuilding shows as no change in git.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "sample_data"

CIFAR_IMAGES = 200
CIFAR_TRAIN = 160  # the rest (40) become test_batch
ENWIK8_BYTES = 1_000_000
AUDIO_FILE = "brahms_hungarian_dance_5.ogg"
AUDIO_OUT = "brahms_hungarian_dance_5_30s.wav"
AUDIO_SECONDS = 30
AUDIO_RATE = 12_000
MAX_TOTAL_BYTES = 3_000_000

# The rule for the sample's variant names (README.md): "sample-" + the variant the datamodule finds.
SAMPLE_MARKER = "SAMPLE"


def _pickle_batch(path: Path, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=4)  # python 3 pickle: raw bytes, not latin-1 text


def make_cifar(source: Path, out: Path) -> None:
    src = source / "cifar10" / "cifar-10-batches-py"
    with open(src / "test_batch", "rb") as f:
        test = pickle.load(f, encoding="latin1")
    data, labels, names = test["data"][:CIFAR_IMAGES], list(test["labels"][:CIFAR_IMAGES]), test["filenames"]
    if len(data) < CIFAR_IMAGES:
        raise SystemExit(f"{src / 'test_batch'} holds {len(data)} images, need {CIFAR_IMAGES}")
    dst = out / "cifar10" / "cifar-10-batches-py"
    dst.mkdir(parents=True, exist_ok=True)
    parts = {"data_batch_1": slice(0, CIFAR_TRAIN), "test_batch": slice(CIFAR_TRAIN, CIFAR_IMAGES)}
    for name, part in parts.items():
        label = f"sample: CIFAR-10 test images {part.start}-{part.stop - 1} (of the official test_batch)"
        entry = {
            "batch_label": label,
            "labels": labels[part],
            "data": np.ascontiguousarray(data[part]),
            "filenames": list(names[part]),
        }
        _pickle_batch(dst / name, entry)
    with open(src / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    _pickle_batch(dst / "batches.meta", meta)


def make_enwik8(source: Path, out: Path) -> None:
    content = (source / "enwik8" / "enwik8").read_bytes()[:ENWIK8_BYTES]
    if len(content) < ENWIK8_BYTES:
        raise SystemExit(f"{source / 'enwik8' / 'enwik8'} holds {len(content)} bytes, need {ENWIK8_BYTES}")
    (out / "enwik8").mkdir(parents=True, exist_ok=True)
    (out / "enwik8" / "enwik8").write_bytes(content)


def make_audio(source: Path, out: Path) -> None:
    import soundfile
    import torch
    import torchaudio.functional as AF

    wave, rate = soundfile.read(source / "audio" / AUDIO_FILE, dtype="float32", always_2d=True)
    wave = wave[: AUDIO_SECONDS * rate].mean(axis=1)
    resampled = AF.resample(torch.from_numpy(wave), orig_freq=rate, new_freq=AUDIO_RATE).clamp(-1.0, 1.0)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    soundfile.write(out / "audio" / AUDIO_OUT, resampled.numpy(), AUDIO_RATE, subtype="ULAW", format="WAV")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild the embedded sample from the shared real data.")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the shared data root (../shared/data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (benchmarks/sample_data)")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"--source {args.source} is not a folder; it should hold cifar10/, enwik8/ and audio/")
    args.out.mkdir(parents=True, exist_ok=True)
    make_cifar(args.source, args.out)
    make_enwik8(args.source, args.out)
    make_audio(args.source, args.out)
    (args.out / SAMPLE_MARKER).write_text(
        "This data root is the embedded sample of the suite (see README.md): every result obtained on it is\n"
        "recorded with the variant 'sample-' + the variant the datamodule finds (e.g. sample-subset-160-40).\n"
    )
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total:,} bytes)")
    if total > MAX_TOTAL_BYTES:
        print(f"the sample exceeds {MAX_TOTAL_BYTES:,} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
