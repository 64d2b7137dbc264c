"""The `sparse-repro` console script.

    sparse-repro env          the environment report (the same fields every result row records)

Later subcommands (fit, test, sample, report, bench-kernels, reproduce) are added as they land.
"""

from __future__ import annotations

import sys


def _env(argv: list[str]) -> int:
    from benchmarks.provenance import environment_report

    print(environment_report())
    return 0


def _reproduce(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print("sparse-repro reproduce: the main job. For now it prints the environment report.")
        return 0
    return _env(argv)


COMMANDS = {"env": _env, "reproduce": _reproduce}


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
