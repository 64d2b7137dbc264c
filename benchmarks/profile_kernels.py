"""Where the time of one attention call goes, for tuning notes (benchmarks/KERNEL_NOTES.md quotes it).

    python -m benchmarks.profile_kernels strided:12288:1:128 fixed:12288:1:128:32 strided:3072:8:96 all:12288:1
    python -m benchmarks.profile_kernels --paths=direct,split-groups strided:3072:8:96   # a subset of the paths

A case is mode:n:batch[:local_attn_ctx[:summary_ctx]] at H = 16, D = 64 (--heads, --head-dim), bf16 on the GPU; mode
"all" runs SDPA, any other our Triton kernels. For each case and for the forward and forward + backward it prints:
- eager: do_bench's median (CUDA events around the call: if the host is slower than the GPU, its time shows);
- graph: do_bench_cudagraph's median (the same calls replayed from a CUDA graph: GPU time alone);
- host: wall time per call of 200 calls issued without waiting for the GPU (the queue never fills at these
  sizes), i.e. what Python, dispatch, autograd and the launchers cost on this machine's CPU;
each for our kernels once per launch path, in the same process: `triton` (Triton's own launch path, D in a launch of its
own: the host path before sparse/kernels/fast_launch.py), `direct` (HEAD) and `fused` (direct launches with the band
segments' backward in one kernel, sparse/kernels/plan.py's FUSED_BAND_BACKWARD), `table-warps` (direct launches, tiles
shrunk to short groups keep the table's warps: plan.SMALL_TILE_WARPS off), `split-groups` (direct launches, groups that
fit one tile run the split dq and dk/dv kernels: plan.GROUP_BACKWARD off), `tma` (direct launches with
plan.TMA_BAND_LOADS switched: the band kernels' tiles by tensor descriptor where HEAD loads them by pointer, or the
reverse; the file's second line says which HEAD does), `tma-stride` and `group-keys-tma` (the same for the stride part's
tiles, plan.TMA_STRIDE_LOADS, and for the whole-group backward's key tiles, plan.TMA_GROUP_KEYS; the third line lists
HEAD's settings), `no-pdl` (plan.PROGRAMMATIC_LAUNCH switched: every launch waits for the one before, or the reverse),
`summary-tma`, `summary-keys-tma`, `one-grid`, `summary-order`, `longest-first`, `local-forward`, `summary-dkdv-rows`,
`row-stats-tma` and `dkdv-first` (plan.TMA_SUMMARY_QUERIES, plan.TMA_SUMMARY_KEY_LOADS, plan.ONE_GRID_BACKWARD,
plan.SUMMARY_BACKWARD_LAST, plan.SUMMARY_LONGEST_FIRST, plan.FUSED_LOCAL_FORWARD, plan.SUMMARY_DKDV_QUERY_ROWS,
plan.TMA_ROW_STATS, plan.SUMMARY_DKDV_FIRST switched), `alternate-heads` (plan.ALTERNATE_HEAD_ORDER switched),
`lean-masks`, `reduce-read-back` and `tma-stores` (plan.LEAN_MASKS, plan.REDUCE_READ_BACK, plan.TMA_STORES
switched) and `encode-each-launch` (direct launches with fast_launch.KEEP_ENCODED off: the host cost of re-encoding
descriptors at every launch) and
`older-gpus` (the plan an older GPU than Hopper gets, SPARSE_HOPPER_FEATURES=0: every tile by pointer, no
programmatic launch, sparse/kernels/plan.py's HOPPER_ARCH) and `no-call-graphs` (every launch issued directly, where
HEAD replays a repeated call's launches from a CUDA graph: sparse/kernels/call_graphs.py; `triton` issues them
directly too; before e0706c004277 every path did). With
--head-chunks K, each case of ours is also timed as K calls over slices of the heads (direct launches): the same
launches on 1 / K of the data each, so what one launch reads again of the launch before may still be in L2 (at the price
of K times the launches and their tails). Files made at d424e0272e52 and b286b07c6346 also have `persistent` (windowed
bands' forward in persistent programs) and `band-first` (the sequence-order band segment first), two experiments that
lost and were removed; files made at 9f5d441f6b66 have `late-read-back` and `early-dq-only` (a later segment's split dq
and dk/dv kernels reading back the earlier sums before their loop, both or dq alone, where `direct` did both), an
experiment that lost too; the file made at bd703d9bda52 has `merge-late` (a forward's later segment merging after its
loop, launched as a tail, off there; `direct` had it on), which gave nothing and was removed. The file made at
d7f16ccdcce9 has `paired-forward` (strided's two forward segments in one grid, head by head, plan.PAIRED_FORWARD), which
lost and was removed. Files made at 9c8a4c4b16df, where the one-kernel backward was the default, name its two-kernel
backward `split` instead; then cProfile's top host functions of the forward + backward (by own time) and
torch.profiler's GPU time per kernel. eager ~ max(host, graph): the larger of the two is what limits the
call.
"""

from __future__ import annotations

import contextlib
import cProfile
import dataclasses
import io
import os
import pstats
from unittest import mock

import torch
import triton.testing

import sparse
from benchmarks.host_breakdown import mean_us
from benchmarks.kernel_resources import parse_case
from sparse.kernels import call_graphs, fast_launch, launch, plan

_TOGGLE = object()  # a switch that flips a boolean setting to whichever value HEAD does not use
# Each path but "triton" and "direct": direct launches with one setting changed (module, name, value).
SWITCHES = {
    "fused": (plan, "FUSED_BAND_BACKWARD", True),
    "table-warps": (plan, "SMALL_TILE_WARPS", None),
    "split-groups": (plan, "GROUP_BACKWARD", False),
    "tma": (plan, "TMA_BAND_LOADS", _TOGGLE),
    "tma-stride": (plan, "TMA_STRIDE_LOADS", _TOGGLE),
    "group-keys-tma": (plan, "TMA_GROUP_KEYS", _TOGGLE),
    "encode-each-launch": (fast_launch, "KEEP_ENCODED", False),
    "no-pdl": (plan, "PROGRAMMATIC_LAUNCH", _TOGGLE),
    "summary-tma": (plan, "TMA_SUMMARY_QUERIES", _TOGGLE),
    "summary-keys-tma": (plan, "TMA_SUMMARY_KEY_LOADS", _TOGGLE),
    "one-grid": (plan, "ONE_GRID_BACKWARD", _TOGGLE),
    "summary-order": (plan, "SUMMARY_BACKWARD_LAST", _TOGGLE),
    "longest-first": (plan, "SUMMARY_LONGEST_FIRST", _TOGGLE),
    "local-forward": (plan, "FUSED_LOCAL_FORWARD", _TOGGLE),
    "summary-dkdv-rows": (plan, "SUMMARY_DKDV_QUERY_ROWS", _TOGGLE),
    "row-stats-tma": (plan, "TMA_ROW_STATS", _TOGGLE),
    "dkdv-first": (plan, "SUMMARY_DKDV_FIRST", _TOGGLE),
    "alternate-heads": (plan, "ALTERNATE_HEAD_ORDER", _TOGGLE),
    "lean-masks": (plan, "LEAN_MASKS", _TOGGLE),
    "reduce-read-back": (plan, "REDUCE_READ_BACK", _TOGGLE),
    "tma-stores": (plan, "TMA_STORES", _TOGGLE),
    "no-call-graphs": (call_graphs, "ENABLED", False),
}
PATHS = ("triton", "direct", "older-gpus", *SWITCHES)


@contextlib.contextmanager
def launch_path(name: str):
    """ "direct": HEAD's launch path; "triton": kernel[grid] for every launch and D in a launch of its own
    (the host path before fast_launch); any other: direct launches with the one setting SWITCHES names changed
    (a boolean setting flipped, whichever way HEAD has it), restored afterwards; for same-process comparisons."""
    if name == "direct":
        yield
        return
    if name == "older-gpus":
        with mock.patch.dict(os.environ, SPARSE_HOPPER_FEATURES="0"):
            yield
        return
    if name == "triton":
        original = launch.plan_for
        fast_launch.DIRECT = False
        launch.plan_for = lambda q, p: dataclasses.replace(original(q, p), delta_source="own_launch")
        try:
            yield
        finally:
            fast_launch.DIRECT, launch.plan_for = True, original
        return
    module, setting, value = SWITCHES[name]
    saved = getattr(module, setting)
    setattr(module, setting, (not saved) if value is _TOGGLE else value)
    try:
        yield
    finally:
        setattr(module, setting, saved)


def _time(label: str, fn) -> None:
    fn()
    eager = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    graph = triton.testing.do_bench_cudagraph(fn, rep=100, return_mode="median")
    host = mean_us(fn, calls=200) / 1e3
    print(f"{label} {fn.__name__}: eager {eager:.4f} ms, graph {graph:.4f} ms, host {host:.4f} ms")


def _head_chunk_calls(q, k, v, do, p, chunks: int):
    """fwd and fwd_bwd as `chunks` calls, each on a slice of the heads (its own leaf tensors, views of q, k, v):
    the same work launch for launch, but each launch touches 1 / chunks of the tensors, so what the launch after
    it reads again may still be in L2 (an experiment: does L2 reuse between launches matter at this size?)."""
    bounds = [round(i * q.shape[1] / chunks) for i in range(chunks + 1)]
    parts = [([t[:, a:b].detach().requires_grad_() for t in (q, k, v)], do[:, a:b]) for a, b in zip(bounds, bounds[1:])]

    def fwd():
        with torch.no_grad():
            return [sparse.attention(*qkv, p, backend="triton") for qkv, _ in parts]

    def fwd_bwd():
        for qkv, grad in parts:
            torch.autograd.backward(sparse.attention(*qkv, p, backend="triton"), grad)
            for t in qkv:
                t.grad = None

    return fwd, fwd_bwd


def profile_case(
    spec: str, paths: tuple[str, ...] = PATHS, heads: int = 16, head_dim: int = 64, head_chunks: tuple[int, ...] = ()
) -> None:
    p, n, batch = parse_case(spec)
    mode = p.attn_mode
    backend = "sdpa" if mode == "all" else "triton"
    q, k, v, do = (torch.randn(batch, heads, n, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))

    def fwd():
        with torch.no_grad():
            return sparse.attention(q, k, v, p, backend=backend)

    def fwd_bwd():
        out = sparse.attention(q, k, v, p, backend=backend)
        torch.autograd.backward(out, do)
        q.grad = k.grad = v.grad = None

    for path in paths if backend == "triton" else ("direct",):
        with launch_path(path):
            for fn in (fwd, fwd_bwd):
                _time(f"{spec} {backend} ({path} launches)", fn)
    if head_chunks and backend != "triton":
        print(f"# {spec}: --head-chunks times our kernels only; not run for SDPA")
    for chunks in head_chunks if backend == "triton" else ():
        for fn in _head_chunk_calls(q, k, v, do, p, chunks):
            _time(f"{spec} {backend} (direct launches, heads in {chunks} calls)", fn)

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(50):
        fwd_bwd()
    profiler.disable()
    torch.cuda.synchronize()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
    print(f"{spec} host functions of 50 forward + backward calls, by own time:")
    lines = [line for line in text.getvalue().splitlines() if line.strip()]
    print("\n".join(lines[-16:]))

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fwd_bwd()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=10, max_name_column_width=50))


def main(argv: list[str] | None = None) -> None:
    import argparse

    from benchmarks.provenance import provenance_line

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", help="mode:n:batch[:l[:c]], e.g. strided:12288:1:128")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated launch paths of {', '.join(PATHS)}")
    parser.add_argument("--heads", type=int, default=16, help="heads per call (the CIFAR-10 models' calls: 2)")
    parser.add_argument("--head-dim", type=int, default=64, choices=[32, 64, 128])
    parser.add_argument(
        "--head-chunks",
        default="",
        help="comma-separated counts K: also time our kernels' call as K calls over slices of the heads",
    )
    args = parser.parse_args(argv)
    if args.heads < 1:
        parser.error("--heads must be at least 1")
    try:
        head_chunks = tuple(int(k) for k in args.head_chunks.split(",") if k)
    except ValueError:
        parser.error(f"--head-chunks takes comma-separated integers, got {args.head_chunks!r}")
    if any(k < 2 or k > args.heads for k in head_chunks):
        parser.error(f"--head-chunks counts must lie in 2..{args.heads} (the heads)")
    paths = tuple(args.paths.split(","))
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown path(s) {unknown}; choose from {', '.join(PATHS)}")
    for spec in args.cases:  # every case is checked before any GPU work
        try:
            parse_case(spec)
        except (ValueError, TypeError) as err:
            parser.error(str(err))
    print(provenance_line())  # the report (results/tables/kernel_profiles.md) reads it
    print(f"# HEAD's plan.TMA_BAND_LOADS: {plan.TMA_BAND_LOADS} (the `tma` path runs the other setting)")
    toggled = ", ".join(f"{setting}={getattr(module, setting)}" for module, setting, value in SWITCHES.values())
    print(f"# HEAD's settings (each path but triton and direct changes one): {toggled}")
    if (args.heads, args.head_dim) != (16, 64):
        print(f"# heads {args.heads}, head dim {args.head_dim}")
    for spec in args.cases:
        profile_case(spec, paths, heads=args.heads, head_dim=args.head_dim, head_chunks=head_chunks)


if __name__ == "__main__":
    main()
