"""The `sparse-repro` console script.

    sparse-repro env                 the environment report (the same fields every result row records)
    sparse-repro fit --config C      train one benchmark x pattern x preset (LightningCLI; --help for all keys)
    sparse-repro validate|test ...   evaluate, e.g. `sparse-repro test --config C --ckpt_path last`
    sparse-repro sample --ckpt_path P   draw samples from a trained checkpoint into results/samples/
    sparse-repro report              regenerate results/tables/ and results/plots/ from the CSV files
    sparse-repro reproduce           the main job behind ./reproduce.sh: every benchmark, then the report
    sparse-repro bench-kernels       the attention-kernel micro-benchmark (results/kernels.csv)

Configs: benchmarks/configs/<benchmark>/<pattern>-<preset>.yaml. `sparse-repro <command> --help` for details.
"""

from __future__ import annotations

import importlib
import sys


def _env(argv: list[str]) -> int:
    """Print the environment report."""
    from benchmarks.provenance import environment_report

    print(environment_report())
    return 0


def _lightning(subcommand: str):
    def run(argv: list[str]) -> int:
        from benchmarks.faults import NonFiniteLossError
        from benchmarks.lightning_cli import build_cli

        try:
            build_cli([subcommand, *argv])
        except NonFiniteLossError as err:
            print(f"sparse-repro {subcommand}: stopped: {err}", file=sys.stderr)
            return 3
        return 0

    return run


def _module_main(module: str):
    """A command whose implementation is `main(argv) -> int` of `module`, imported only when used."""

    def run(argv: list[str]) -> int:
        return importlib.import_module(module).main(argv)

    return run


COMMANDS = {
    "env": _env,
    "fit": _lightning("fit"),
    "validate": _lightning("validate"),
    "test": _lightning("test"),
    "sample": _module_main("benchmarks.sample_cli"),
    "report": _module_main("benchmarks.report"),
    "reproduce": _module_main("benchmarks.reproduce"),
    # The kernel micro-benchmark (issue 7), owned by the kernels work: benchmarks/bench_kernels.py main(argv).
    "bench-kernels": _module_main("benchmarks.bench_kernels"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"sparse-repro: unknown command {name!r}; valid: {', '.join(sorted(COMMANDS))}", file=sys.stderr)
        return 2
    return COMMANDS[name](rest)


if __name__ == "__main__":
    sys.exit(main())
