"""Several benchmarks.fit_config runs in one process, so that their step times compare side by side.

    python -m benchmarks.fit_series \\
        "fit benchmarks/configs/enwik8/dense-small.yaml trainer.max_steps=300" \\
        "fit benchmarks/configs/enwik8/fixed-small.yaml trainer.max_steps=300" \\
        "test benchmarks/configs/enwik8/fixed-small.yaml ckpt_path=runs/enwik8/fixed-small/checkpoints/last.ckpt"

Why: timings compare only inside one process on one card. The paper-size Enwik8 step of one config measured
133 ms per step in one process and 206 ms in another on the same kind of card (results/runs.csv, commits
e6add4697c49 and 3de35a115401): more than the dense-vs-sparse difference being measured. Runs of one series
share the process, the card and its host, so their ratios are what Table 2's `ours / dense` means.

Each argument is one run: fit_config's own arguments in one shell word, split as a shell would (quotes keep a
`recorder.note=...` with spaces together). Every argument is parsed before the first run starts, so a typo
fails at once. A run that raises is reported and the series goes on; the exit status is the number of runs
that failed (0: all ran). Between runs the model and data are dropped, dynamo's compiled code and recompile
counts reset and the CUDA cache emptied, so each run starts as in a fresh process (the recorder resets the peak
memory at each stage's start).
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import time
import traceback

from benchmarks.fit_config import STAGES


def parse_runs(runs: list[str]) -> list[list[str]]:
    """Each run string -> fit_config's argv; raises ValueError naming the first malformed one."""
    parsed = []
    for index, text in enumerate(runs, 1):
        try:
            argv = shlex.split(text)
        except ValueError as error:
            raise ValueError(f"run {index} ({text!r}): {error}") from None
        body = argv[1:] if argv and argv[0] in STAGES else argv
        if not body or not body[0].endswith((".yaml", ".yml")):
            raise ValueError(f"run {index} ({text!r}): expected [stage] CONFIG.yaml [key=value ...]")
        bad = [item for item in body[1:] if "=" not in item]
        if bad:
            raise ValueError(f"run {index} ({text!r}): override(s) {bad} are not key=value")
        parsed.append(argv)
    return parsed


def _release() -> None:
    """Leave the next run the state a fresh process would: no compiled code, no cached blocks.

    torch._dynamo.reset() matters: dynamo counts recompiles per code object, and every model of a series runs
    the same forward code, so without it the fifth compiled model of a series passed dynamo's recompile limit
    and ran eagerly (2026-11-28, results/runs.csv rows whose status says so)."""
    import torch

    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fit_series",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", help="one run per argument: '[stage] CONFIG.yaml key=value ...'")
    args = parser.parse_args(argv)
    try:
        series = parse_runs(args.runs)
    except ValueError as error:
        parser.error(str(error))
    from benchmarks.fit_config import main as fit_config

    failed = 0
    for index, run_argv in enumerate(series, 1):
        print(f"== run {index}/{len(series)}: {shlex.join(run_argv)}", flush=True)
        start = time.perf_counter()
        try:
            code = fit_config(list(run_argv))
        except (Exception, SystemExit) as error:  # noqa: BLE001 - report, then go on with the next run
            traceback.print_exc()
            code = getattr(error, "code", 1)
            code = code if isinstance(code, int) and code else 1
        failed += code != 0
        print(f"== run {index}/{len(series)} exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        _release()
    print(f"== series: {len(series) - failed} of {len(series)} runs ok", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
