"""Tile-size search for the Triton kernels: time each candidate of each pass on the issue-7 cases and print
the best. The winners go into sparse/kernels/plan.py's TILE_TABLE by hand, with the run recorded in
benchmarks/KERNEL_NOTES.md (the space searched is declared here, as data).

    python -m benchmarks.tune_tiles                    # on a GPU; about 3 minutes
    python -m benchmarks.tune_tiles --kinds dkdv_summary   # one pass only
    python -m benchmarks.tune_tiles --head-dim 128         # the CIFAR-10 models' shape (2 heads of 128)
    python -m benchmarks.tune_tiles --kinds fwd --cases strided:3072   # the cases of that mode and n only
    python -m benchmarks.tune_tiles --kinds group_bwd --candidates 128x32w4s2,128x64w8s2/128   # these tiles only
"""

from __future__ import annotations

import argparse
import re

import torch
import triton.testing

import sparse
from benchmarks.provenance import provenance_line
from sparse.kernels import plan as plan_module

# (BLOCK_M, BLOCK_N, num_warps, num_stages[, max registers per thread]) candidates per pass. A register cap trades
# spills for programs per SM (benchmarks/kernel_resources.py reads both from the compiled kernels).
# The 8-warp entries are head dim 128's starting points (the tutorial's); larger tiles that do not fit in shared
# memory at head dim 128 fail to compile and are reported as failed.
SPACE = {
    # The last two of fwd, dq and dk/dv: the table's tiles with deeper pipelines, which tiles loaded by tensor
    # descriptor (plan.TMA_BAND_LOADS) hold in shared memory rather than in registers.
    "fwd": [(64, 32, 4, 3, 76), (64, 32, 4, 3, 80), (64, 64, 4, 3, 168), (64, 64, 4, 3, 128), (64, 32, 4, 2, 168),
            (32, 64, 4, 2, 168), (128, 64, 4, 3), (64, 64, 4, 3), (128, 32, 4, 3), (64, 32, 4, 2), (128, 128, 8, 3),
            (64, 128, 4, 3), (128, 64, 8, 3), (64, 64, 8, 2), (64, 32, 4, 3), (64, 32, 4, 4)],
    "dq": [(64, 32, 4, 2, 168), (64, 32, 4, 2, 128), (32, 32, 4, 2, 128),
           (128, 32, 4, 3), (64, 32, 4, 2), (64, 64, 4, 3), (128, 64, 8, 3), (32, 64, 4, 2), (128, 32, 8, 2),
           (64, 64, 8, 2), (64, 32, 4, 3), (64, 32, 4, 4)],
    "dkdv": [(32, 64, 4, 2, 168), (32, 64, 4, 2, 128), (32, 32, 4, 2, 128),
             (32, 128, 4, 3), (64, 64, 4, 3), (32, 64, 4, 2), (64, 128, 8, 3), (16, 64, 4, 2), (32, 128, 8, 2),
             (64, 64, 8, 2), (32, 64, 4, 3, 128), (32, 64, 4, 4, 128)],
    # The band segments' one-kernel backward: (BLOCK owned keys = owned queries, CHUNK streamed, warps, stages).
    "bwd": [(64, 32, 4, 2), (64, 32, 4, 3), (128, 32, 4, 3), (128, 32, 8, 3), (64, 64, 4, 3), (128, 64, 8, 3),
            (32, 32, 4, 2), (64, 16, 4, 2)],
    # Band segments whose groups fit one tile (the stride part of strided, fixed's local blocks): the whole-group
    # backward's largest group and key tile (BLOCK, BLOCK_N, warps, stages[, register cap]; BLOCK = 64 sends groups
    # of 65-128 rows back to the split kernels: the comparison's baseline). Their forward had a kind of its own for
    # one search (a whole group per program at 128 x 128): the band's tiles won (KERNEL_NOTES.md, v8).
    # The last five: searched at 2a0ec0e9477e with the loop's wgmma unserialized (each step's dq share scaled before the
    # add); the serialized form with the table's tile was as fast (KERNEL_NOTES.md, session of 10:15).
    "group_bwd": [(64, 64, 4, 1), (128, 16, 8, 2), (128, 32, 8, 2), (128, 32, 8, 2, 128), (128, 32, 4, 2),
                  (128, 64, 8, 2, 128), (128, 128, 8, 1), (128, 64, 8, 3, 128), (128, 32, 8, 3), (128, 32, 8, 3, 120),
                  (128, 16, 8, 3), (128, 64, 8, 3)],
    # The summary part's forward and dq (fixed only): a dense-like loop over the compact summary keys, where
    # the larger tiles of dense flash attention may pay.
    "fwd_summary": [(128, 64, 8, 3, 128), (64, 64, 4, 3), (128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3),
                    (64, 128, 4, 3), (128, 32, 4, 3), (64, 32, 4, 2)],
    "dq_summary": [(128, 64, 8, 3, 128), (64, 32, 4, 2), (128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3),
                   (128, 32, 8, 2), (128, 64, 4, 3)],
    # Only patterns with a summary part (fixed) use it: longer query tiles shorten its serial loop.
    "dkdv_summary": [
        # Key tiles of 128 (the tutorial's dk/dv shape: 128 keys owned, short query tiles streamed), searched once the
        # query tiles came by descriptor (TMA_SUMMARY_QUERIES); registers from `kernel_resources` on the CPU.
        (32, 128, 4, 3),
        (16, 128, 4, 3),
        (32, 128, 8, 3),
        (32, 128, 8, 3, 128),
        (64, 128, 8, 3),
        (64, 128, 8, 3, 128),
        (32, 64, 4, 3),
        (64, 64, 4, 4),
        (128, 64, 4, 2),  # two programs per SM (one at three stages: shared memory)
        (64, 64, 4, 2),
        (128, 32, 4, 2),
        (128, 64, 8, 3, 128),
        (128, 64, 4, 3, 168),
        (32, 64, 4, 2),
        (64, 64, 4, 3),
        (128, 64, 8, 3),
        (128, 32, 8, 3),
        (64, 32, 4, 3),
        (128, 32, 4, 3),
        (64, 64, 8, 3),
        (128, 64, 4, 3),
    ],
    # The summary dk/dv with its scores as [queries, keys] (plan.SUMMARY_DKDV_QUERY_ROWS): fewer registers per query
    # row, so 8-warp tiles under a cap of 128 fit two programs per SM.
    "dkdv_summary_rows": [(128, 64, 8, 2, 128), (128, 64, 8, 2), (128, 64, 4, 2), (128, 32, 4, 2), (64, 64, 4, 3),
                          (128, 64, 8, 3, 128), (128, 128, 8, 2, 128), (64, 64, 8, 2, 128)],
}  # fmt: skip
# Per head dim, the cases searched: (pattern, n, batch, heads, l, c). Head dim 64: issue 7's target cases. Head dim
# 128: the CIFAR-10 models' attention call (d = 256 over 2 heads, batch 8; q and k are padded from 64 to 128).
CASES = {
    64: [("strided", 12288, 1, 16, 128, None), ("fixed", 12288, 1, 16, 128, 32), ("strided", 3072, 8, 16, 96, None)],
    128: [("strided", 3072, 8, 2, 96, None), ("fixed", 3072, 8, 2, 96, 24)],
}


TILE_LABEL = re.compile(r"(\d+)x(\d+)w(\d+)s(\d+)(?:/(\d+))?")


def parse_tiles(label: str) -> tuple[int, ...]:
    """Tiles from kernel_resources' label, BLOCK_M x BLOCK_N, warps, stages and an optional register cap: 128x64w8s2/128
    -> (128, 64, 8, 2, 128); ValueError for anything else."""
    match = TILE_LABEL.fullmatch(label.strip())
    if match is None:
        raise ValueError(f"tiles {label!r} are not BMxBNwWARPSsSTAGES[/MAXREG], e.g. 128x64w4s2 or 128x64w8s2/128")
    return tuple(int(x) for x in match.groups() if x is not None)


def time_case(mode, n, batch, heads, l, c, kind, head_dim):
    p = sparse.pattern(mode, local_attn_ctx=l, summary_ctx=c)
    q, k, v, do = (torch.randn(batch, heads, n, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))

    def fwd():
        return sparse.attention(q, k, v, p, backend="triton")

    def fwd_bwd():
        torch.autograd.backward(fwd(), do)
        q.grad = k.grad = v.grad = None

    fn = fwd if kind == "fwd" else fwd_bwd
    fn()
    return triton.testing.do_bench_cudagraph(fn, rep=50, return_mode="median")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(SPACE), help=f"passes to search, of {', '.join(SPACE)}")
    parser.add_argument(
        "--head-dim", type=int, default=64, choices=sorted(CASES), help="head dim whose tiles to search"
    )
    parser.add_argument("--cases", help="comma-separated mode:n of the head dim's cases to search (default: all)")
    parser.add_argument(
        "--candidates", help="comma-separated tiles to time instead of SPACE's, e.g. 128x64w4s2,128x64w8s2/128"
    )
    args = parser.parse_args(argv)
    try:
        chosen = [parse_tiles(label) for label in args.candidates.split(",")] if args.candidates else None
    except ValueError as err:
        parser.error(str(err))
    kinds = args.kinds.split(",")
    cases = CASES[args.head_dim]
    if args.cases:
        wanted = set(args.cases.split(","))
        known = {f"{mode}:{n}" for mode, n, *_ in cases}
        if wanted - known:
            parser.error(f"unknown case(s) {sorted(wanted - known)}; choose from {sorted(known)}")
        cases = [case for case in cases if f"{case[0]}:{case[1]}" in wanted]
    unknown = sorted(set(kinds) - set(SPACE))
    if unknown:
        parser.error(f"unknown kind(s) {unknown}; choose from {list(SPACE)}")
    default = dict(plan_module.TILE_TABLE)
    print(provenance_line(), flush=True)  # a saved printout carries its card and commit
    for mode, n, batch, heads, l, c in cases:
        for kind in kinds:
            if "_summary" in kind and c is None:  # patterns without a summary part never use them
                continue
            candidates = chosen or SPACE[kind]
            results = []
            for cand in candidates:
                plan_module.TILE_TABLE.clear()
                plan_module.TILE_TABLE.update(default)
                plan_module.TILE_TABLE[(kind, args.head_dim)] = cand
                plan_module.build_plan.cache_clear()
                try:
                    results.append((time_case(mode, n, batch, heads, l, c, kind, args.head_dim), cand))
                except Exception as err:  # a candidate that does not fit in shared memory
                    print(f"  {cand}: failed ({type(err).__name__}: {str(err)[:80]})")
            results.sort()
            line = ", ".join(f"{cand}={ms:.4f}" for ms, cand in results)
            print(f"{mode} n={n} B={batch} H={heads} D={args.head_dim} {kind}: {line}", flush=True)
    plan_module.TILE_TABLE.clear()
    plan_module.TILE_TABLE.update(default)


if __name__ == "__main__":
    main()
