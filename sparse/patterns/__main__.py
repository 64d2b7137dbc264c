"""`python -m sparse.patterns --out DIR`: draw every pattern's mask as PNG, like the paper's Figure 3.

Writes DIR/pattern-<name>.png for all, local, strided, fixed and fixed with distinct heads (one picture
per head), and DIR/patterns.png with all of them side by side.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparse.patterns", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/plots/patterns", help="output folder (created if missing)")
    parser.add_argument("--n", type=int, default=64, help="sequence length drawn (<= 1024; default 64)")
    parser.add_argument("--l", type=int, default=8, help="local_attn_ctx, the paper's l (default 8)")
    parser.add_argument("--c", type=int, default=2, help="summary_ctx, the paper's c (default 2)")
    args = parser.parse_args(argv)
    if args.n % args.l:
        parser.error(f"--l must divide --n (positions are drawn in rows of l), got n={args.n}, l={args.l}")
    if args.l % args.c:
        parser.error(f"--c must divide --l (distinct heads use l/c sub-blocks), got l={args.l}, c={args.c}")

    from sparse.patterns.draw import write_pictures

    for path in write_pictures(args.out, n=args.n, l=args.l, c=args.c):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
