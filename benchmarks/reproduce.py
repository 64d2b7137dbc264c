"""`sparse-repro reproduce`: the main job behind ./reproduce.sh.

    sparse-repro reproduce                                   smoke on a CPU, small on a GPU; every benchmark
    sparse-repro reproduce --preset small --only cifar10,enwik8
    sparse-repro reproduce --data-dir /datasets --patterns strided

For every benchmark (--only) and pattern (--patterns) it trains benchmarks/configs/<benchmark>/<pattern>-
<preset>.yaml (fit, then test on the final weights), appending rows to <results>/runs.csv and curves.csv,
draws --samples samples from each benchmark's paper pattern into <results>/samples, and finally regenerates
the report (<results>/tables, <results>/plots, <results>/REPORT.md, and the results block of README.md when
<results> is the repository's results/). A summary table ends the output.

Data, per benchmark, the first folder that holds it: --data-dir (default ./data), then ../shared/data (beside
the repository), then, for the smoke preset only, the embedded sample benchmarks/sample_data (no ImageNet:
its photographs may not be redistributed). A benchmark with no data is reported as skipped with the reason;
a run that fails is reported as failed and the others go on. Exit status: 0 when no run failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.provenance import REPO_ROOT

BENCHMARKS = ("cifar10", "enwik8", "imagenet64", "audio")
PATTERNS = ("dense", "strided", "fixed")
PRESETS = ("smoke", "small", "paper")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
SHARED_DIR = REPO_ROOT.parent / "shared" / "data"
PAPER_PATTERN = {"cifar10": "strided", "enwik8": "fixed", "imagenet64": "strided", "audio": "strided"}
CACHED_BENCHMARKS = ("imagenet64", "audio")  # their datamodules take cache_dir
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def parse_names(text: str | None, valid: tuple[str, ...], what: str) -> list[str]:
    """A comma-separated list of names, each checked against `valid` (ValueError listing them)."""
    if text is None:
        return list(valid)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown)) or '(none given)'}; valid: {', '.join(valid)}")
    return names


def config_path(benchmark: str, pattern: str, preset: str) -> Path:
    """benchmarks/configs/<benchmark>/<pattern>-<preset>.yaml; ValueError naming the valid values."""
    checks = (("benchmark", benchmark, BENCHMARKS), ("pattern", pattern, PATTERNS), ("preset", preset, PRESETS))
    for name, value, valid in checks:
        if value not in valid:
            raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    return CONFIG_DIR / benchmark / f"{pattern}-{preset}.yaml"


def data_missing(benchmark: str, root: Path) -> str | None:
    """None when `root` holds files of `benchmark` (presence only; the datamodule reads and checks them),
    else what is missing."""
    if benchmark == "cifar10":
        folder = root / "cifar10" / "cifar-10-batches-py"
        if (folder / "test_batch").is_file() and any(folder.glob("data_batch_*")):
            return None
        return f"no {folder}/data_batch_* and test_batch"
    if benchmark == "enwik8":
        folder = root / "enwik8"
        return None if (folder / "enwik8").is_file() or (folder / "enwik8.zip").is_file() else f"no {folder}/enwik8"
    if benchmark == "imagenet64":
        folder = root / "imagenet64"
        if folder.is_dir() and ((folder / "train_64x64").is_dir() or any(folder.rglob("*.npz"))):
            return None
        return f"no {folder}/train_64x64 (or npz batches)"
    folder = root / "audio"
    if folder.is_dir() and any(p.suffix.lower() in AUDIO_SUFFIXES for p in folder.iterdir()):
        return None
    return f"no audio files in {folder}"


def find_data(benchmark: str, data_dir: Path, preset: str) -> tuple[Path | None, str]:
    """(the data root to use, or None; the reason when None)."""
    candidates = list(dict.fromkeys([data_dir, SHARED_DIR] + ([SAMPLE_DIR] if preset == "smoke" else [])))
    missing = []
    for root in candidates:
        what = data_missing(benchmark, root)
        if what is None:
            return root, ""
        missing.append(what)
    reason = f"no {benchmark} data in {', '.join(str(root) for root in candidates)} ({'; '.join(missing)})"
    if benchmark == "imagenet64" and preset == "smoke":
        reason += "; the embedded sample holds no ImageNet photographs (their terms forbid redistribution)"
    elif preset != "smoke":
        reason += f"; the embedded sample is used by the smoke preset only (it is too small for {preset})"
    return None, reason


@dataclass
class RunSummary:
    benchmark: str
    pattern: str
    preset: str
    status: str = "not run"
    variant: str = ""
    val_bpd: float | None = None
    test_bpd: float | None = None
    wall_s: float = 0.0
    data_dir: str = ""
    samples: list[str] = field(default_factory=list)


def _cache_dir() -> str:
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparse-repro")


def run_one(
    summary: RunSummary,
    data_root: Path,
    results_dir: Path,
    runs_dir: Path,
    extra_args: list[str],
    sample_count: int,
) -> None:
    """Fit and test one config in this process, filling `summary` (never raises for a failed run)."""
    from benchmarks.faults import NonFiniteLossError
    from benchmarks.lightning_cli import build_cli
    from benchmarks.recorder import ResultsRecorder
    from datamodules.storage import DataNotFoundError

    config = config_path(summary.benchmark, summary.pattern, summary.preset)
    args = [
        "fit",
        "--config", str(config),
        "--data.init_args.data_dir", str(data_root),
        "--data.init_args.allow_partial", "true",
        "--trainer.default_root_dir", str(runs_dir / summary.benchmark / f"{summary.pattern}-{summary.preset}"),
        "--recorder.runs_path", str(results_dir / "runs.csv"),
        "--recorder.curves_path", str(results_dir / "curves.csv"),
    ]  # fmt: skip
    if summary.benchmark in CACHED_BENCHMARKS and data_root == SAMPLE_DIR:
        args += ["--data.init_args.cache_dir", _cache_dir()]  # never write a cache into the repository
    args += extra_args
    started = time.perf_counter()
    cli = None
    try:
        cli = build_cli(args)
        recorder = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ResultsRecorder))
        fit_row = recorder.last_row or {}
        summary.variant = fit_row.get("variant", "")
        summary.val_bpd = fit_row.get("val_bpd")
        cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
        summary.test_bpd = (recorder.last_row or {}).get("test_bpd")
        summary.status = "ok"
        if sample_count:
            from benchmarks.sample_cli import write_samples

            stem = f"{summary.benchmark}-{summary.pattern}-{summary.preset}"
            written = write_samples(cli.model.model, summary.benchmark, stem, results_dir / "samples", sample_count)
            summary.samples = [str(p) for p in written]
    except DataNotFoundError as err:
        summary.status = f"skipped: {err}"
    except NonFiniteLossError as err:
        summary.status = f"stopped: {err}"
    except Exception as err:  # a failed run must not stop the others; its message is in the summary
        summary.status = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    except SystemExit as err:  # the argument parser exits on a bad config
        summary.status = f"failed: bad configuration (exit {err.code}); run `sparse-repro fit --config {config}`"
    finally:
        summary.wall_s = time.perf_counter() - started
        del cli
        gc.collect()


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}"


def summary_table(summaries: list[RunSummary]) -> str:
    """The closing summary: one Markdown row per benchmark x pattern."""
    headers = ["benchmark", "pattern", "preset", "variant", "status", "val bpd", "test bpd", "wall s"]
    rows = []
    for s in summaries:
        status = s.status if len(s.status) <= 90 else s.status[:87] + "..."
        rows.append(
            [s.benchmark, s.pattern, s.preset, s.variant, status, _fmt(s.val_bpd), _fmt(s.test_bpd), f"{s.wall_s:.0f}"]
        )
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def reproduce(
    preset: str,
    benchmarks: list[str],
    patterns: list[str],
    data_dir: Path,
    results_dir: Path,
    runs_dir: Path,
    extra_args: list[str] | None = None,
    samples: int = 0,
    report: bool = True,
    readme: Path | None = None,
) -> list[RunSummary]:
    """Run every benchmark x pattern of `preset`, then the report; returns one summary per run."""
    summaries = []
    plan = []
    for benchmark in benchmarks:
        root, reason = find_data(benchmark, data_dir, preset)
        for pattern in patterns:
            summary = RunSummary(benchmark, pattern, preset)
            if root is None:
                summary.status = f"skipped: {reason}"
            else:
                summary.data_dir = str(root)
            summaries.append(summary)
            plan.append((summary, root))
    todo = [s for s, root in plan if root is not None]
    print(
        f"[reproduce] preset {preset}: {len(todo)} runs; results in {results_dir}; checkpoints in {runs_dir}",
        flush=True,
    )
    for s in summaries:
        if s.status.startswith("skipped"):
            print(f"[reproduce] {s.benchmark} {s.pattern}: {s.status}", flush=True)
    for index, (summary, root) in enumerate([(s, r) for s, r in plan if r is not None], start=1):
        print(
            f"\n[reproduce] ({index}/{len(todo)}) {summary.benchmark} {summary.pattern} ({preset}), data: {root}",
            flush=True,
        )
        count = samples if summary.pattern == PAPER_PATTERN[summary.benchmark] else 0
        run_one(summary, root, results_dir, runs_dir, extra_args or [], count)
        print(f"[reproduce] ({index}/{len(todo)}) {summary.benchmark} {summary.pattern}: {summary.status} "
              f"in {summary.wall_s:.0f} s", flush=True)  # fmt: skip
    if report:
        from benchmarks.report import report as write_report

        print("\n[reproduce] regenerating the report", flush=True)
        try:
            written = write_report(results_dir, readme=readme)
            print(f"[reproduce] report: {len(written)} files; see {results_dir / 'REPORT.md'}", flush=True)
        except Exception as err:  # the runs' rows are safe on disk; say so rather than lose the summary
            summaries.append(RunSummary("report", "-", preset, f"failed: {type(err).__name__}: {err}"))
            print(f"[reproduce] the report failed ({err}); rerun `sparse-repro report` after fixing it", flush=True)
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparse-repro reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Anything after `--` is passed to every run, e.g. `-- --trainer.max_steps 4`.",
    )
    parser.add_argument("--preset", choices=PRESETS, default=None, help="default: smoke on a CPU, small on a GPU")
    parser.add_argument(
        "--only", default=None, help=f"comma-separated benchmarks (default all: {','.join(BENCHMARKS)})"
    )
    parser.add_argument(
        "--patterns", default=None, help=f"comma-separated patterns (default all: {','.join(PATTERNS)})"
    )
    parser.add_argument("--data-dir", default="data", help="where the data sets are (default ./data)")
    parser.add_argument("--results", default="results", help="the results folder (default ./results)")
    parser.add_argument("--runs-dir", default=None, help="checkpoints and logs (default runs/reproduce-<time>)")
    parser.add_argument(
        "--samples", type=int, default=4, help="samples drawn after the run of each benchmark's paper pattern "
        "(default 4; a few seconds on a CPU; 0 for none). A smoke model's samples are noise, but they show the path",
    )  # fmt: skip
    parser.add_argument("--no-report", action="store_true", help="skip regenerating the report")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)

    import torch

    has_gpu = torch.cuda.is_available()
    preset = args.preset or ("small" if has_gpu else "smoke")
    if preset != "smoke" and not has_gpu:
        parser.error(
            f"the {preset} preset needs a CUDA GPU (its sparse attention runs Triton kernels); use --preset smoke"
        )
    try:
        benchmarks = parse_names(args.only, BENCHMARKS, "benchmark")
        patterns = parse_names(args.patterns, PATTERNS, "pattern")
    except ValueError as err:
        parser.error(str(err))
    if args.samples < 0:
        parser.error(f"--samples must be >= 0, got {args.samples}")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_dir = Path(args.runs_dir or Path("runs") / f"reproduce-{stamp}")
    results_dir = Path(args.results)
    readme = REPO_ROOT / "README.md" if results_dir.resolve() == (REPO_ROOT / "results").resolve() else None
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    started = time.perf_counter()
    summaries = reproduce(
        preset,
        benchmarks,
        patterns,
        Path(args.data_dir),
        results_dir,
        runs_dir,
        extra,
        args.samples,
        not args.no_report,
        readme,
    )
    print(f"\n[reproduce] summary ({time.perf_counter() - started:.0f} s in all)\n")
    print(summary_table(summaries))
    return 1 if any(s.status.startswith("failed") for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
