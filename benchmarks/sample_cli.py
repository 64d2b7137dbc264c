"""`sparse-repro sample`: draw samples from a trained checkpoint and write them where the report finds them.

    sparse-repro sample --ckpt_path runs/cifar10/strided-small/checkpoints/last.ckpt
    sparse-repro sample --ckpt_path last.ckpt --num_samples 16 --temperature 1.0 --out results/samples

Output: <out>/<benchmark>-<pattern>-<preset>.png (an image grid: CIFAR-10, ImageNet 64x64), .txt (Enwik8) or
.wav (audio, one file per sample: <stem>_000.wav, ...). The benchmark, pattern and preset are read from the
checkpoint (the recorder keeps them there); `--benchmark` overrides. A file name carries its preset, so samples
of a smoke run never replace those of a small or paper run. Each file gets a row in <out>/samples.csv: the run
(run_id, as in runs.csv) and checkpoint step it came from, the sampling settings, commit, card and date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

IMAGE_BENCHMARKS = ("cifar10", "imagenet64")
BENCHMARKS = ("cifar10", "enwik8", "imagenet64", "audio")


def write_samples(
    model,
    benchmark: str,
    stem: str,
    out_dir: str | Path = "results/samples",
    num_samples: int = 4,
    length: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Sample from `model` (a sparse.model.SparseTransformer) and write the files for `benchmark`."""
    from benchmarks.samples import write_image_grid, write_text, write_wav
    from sparse.sampling import generate

    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    config = model.config
    if benchmark in IMAGE_BENCHMARKS and length not in (None, config.seq_len):
        raise ValueError(f"images need the full length {config.seq_len}, got --length {length}")
    length = config.seq_len if length is None else length
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = generate(model, num_samples, length, temperature=temperature, progress=progress, generator=generator)
    out_dir = Path(out_dir)
    if benchmark in IMAGE_BENCHMARKS:
        return [write_image_grid(tokens, out_dir / f"{stem}.png", image_shape=tuple(config.token_axes))]
    if benchmark == "enwik8":
        return [write_text(tokens, out_dir / f"{stem}.txt")]
    return write_wav(tokens, out_dir / f"{stem}.wav")


def checkpoint_identity(checkpoint: dict) -> dict:
    """benchmark, pattern, preset, variant, run_id that the recorder stored in a Lightning checkpoint."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if "ResultsRecorder" in str(key) and isinstance(state, dict):
            return state
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparse-repro sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt_path", required=True, help="a Lightning checkpoint of SparseTransformerModule")
    parser.add_argument("--out", default="results/samples", help="output folder (default: results/samples)")
    parser.add_argument("--num_samples", type=int, default=4, help="how many samples (default 4)")
    parser.add_argument("--length", type=int, default=None, help="tokens per sample (default: the model's n)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (the paper: 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--benchmark", choices=BENCHMARKS, default=None, help="override the checkpoint's")
    args = parser.parse_args(argv)
    path = Path(args.ckpt_path)
    if not path.is_file():
        parser.error(f"--ckpt_path {path} is not a file")
    if args.num_samples < 1:
        parser.error(f"--num_samples must be >= 1, got {args.num_samples}")

    from benchmarks.module import SparseTransformerModule
    from benchmarks.recorder import PATTERN_NAMES

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    identity = checkpoint_identity(checkpoint)
    benchmark = args.benchmark or identity.get("benchmark")
    if benchmark not in BENCHMARKS:
        parser.error(f"the checkpoint does not name its benchmark; pass --benchmark (one of {', '.join(BENCHMARKS)})")
    module = SparseTransformerModule.load_from_checkpoint(path, map_location=device)
    pattern = identity.get("pattern") or PATTERN_NAMES.get(module.hparams.attn_mode, module.hparams.attn_mode)
    stem = "-".join([benchmark, pattern, identity.get("preset") or "custom"])
    paths = write_samples(
        module.model, benchmark, stem, args.out, args.num_samples, args.length, args.temperature, args.seed
    )
    record_samples(paths, args.out, identity, checkpoint.get("global_step"), args, device)
    for p in paths:
        print(p)
    return 0


SAMPLE_COLUMNS = [
    "file", "benchmark", "pattern", "preset", "variant", "run_id", "checkpoint_step", "num_samples", "length",
    "temperature", "seed", "device", "gpu", "commit", "torch", "triton", "date", "note",
]  # fmt: skip


def record_samples(paths, out_dir, identity: dict, step, args, device: str, note: str = "") -> None:
    """One row per written file in <out>/samples.csv: which run (run_id, as in runs.csv) and checkpoint step
    it came from, how it was drawn, and where (commit, card, versions, date)."""
    from benchmarks.provenance import provenance
    from benchmarks.recorder import append_rows

    prov = provenance()
    rows = [
        dict(
            file=Path(p).name,
            benchmark=identity.get("benchmark") or args.benchmark,
            pattern=identity.get("pattern", ""),
            preset=identity.get("preset", ""),
            variant=identity.get("variant", ""),
            run_id=identity.get("run_id", ""),
            checkpoint_step=step if step is not None else "",
            num_samples=args.num_samples,
            length=args.length or "",
            temperature=args.temperature,
            seed=args.seed,
            device=device,
            gpu=prov["gpu"] if device.startswith("cuda") else "cpu",
            commit=prov["commit"],
            torch=prov["torch"],
            triton=prov["triton"],
            date=prov["date"],
            note=note,
        )
        for p in paths
    ]
    append_rows(Path(out_dir) / "samples.csv", rows, SAMPLE_COLUMNS)


if __name__ == "__main__":
    sys.exit(main())
