"""The GPU half of benchmarks/gluon_band_forward.py: strided n = 12,288 (B = 1, H = 16, D = 64, bf16, l = 128), the
Gluon band forward against the Triton band launch of the same call, in one process on one card.

1. Correctness: the stride part's launch fills (out, lse2); the Triton band launch continues one copy, the Gluon
   kernel (both forms) another; the max abs differences of out and lse2 are recorded (a failure is a row too).
2. The band launch alone, each variant replayed from a CUDA graph (do_bench_cudagraph medians, three interleaved
   rounds).
3. The whole forward + backward through sparse.attention, with the band launch swapped for the Gluon kernel or not
   (CUDA graphs, three interleaved rounds). The swapped launch is not a programmatic dependent launch (the Triton band
   launch is: it may start beside the stride part's last wave), so this slightly favours Triton.
Rows go to --out (CSV, appended, with provenance) and are printed.
"""

from __future__ import annotations

import contextlib

import torch
import triton

import sparse
from benchmarks.gluon_band_forward import VARIANTS as GLUON_VARIANTS
from benchmarks.gluon_band_forward import band_forward
from benchmarks.provenance import provenance
from benchmarks.recorder import append_rows
from sparse.kernels import call_graphs
from sparse.kernels import launch as launch_module
from sparse.kernels.forward import _sparse_fwd_kernel

COLUMNS = ["case", "variant", "measure", "value", "unit", "rounds", "gpu", "torch", "triton", "commit", "date"]
CASE = "strided n=12288 l=128 B=1 H=16 D=64 bf16"
VARIANTS = ("triton", *GLUON_VARIANTS)


def _is_band_launch(kernel, options) -> bool:
    named = options()
    return kernel is _sparse_fwd_kernel and named.get("HAS_PREV") and named.get("HAS_WINDOW")


@contextlib.contextmanager
def band_launch_swapped(variant: str, scale: float):
    """sparse.attention's band forward launch made by the Gluon kernel (variant gluon_*), others untouched."""
    original = launch_module._launch_at

    def launch_at(site, kernel, grid, args, options):
        if variant != "triton" and _is_band_launch(kernel, options):
            q, k, v, out, lse2 = args[:5]
            band_forward(q, k, v, out, lse2, scale, **GLUON_VARIANTS[variant])
            return
        original(site, kernel, grid, args, options)

    launch_module._launch_at = launch_at
    try:
        yield
    finally:
        launch_module._launch_at = original


def run_ab(out_csv: str | None, rounds: int = 3) -> list[dict]:
    call_graphs.ENABLED = False  # every launch made by the launchers, so the swap applies to each call
    torch.manual_seed(0)
    q, k, v, do = (torch.randn(1, 16, 12288, 64, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    pattern = sparse.pattern("strided", local_attn_ctx=128)
    scale = 64**-0.5
    meta = provenance()
    rows: list[dict] = []

    def row(variant, measure, value, unit):
        rows.append(dict(case=CASE, variant=variant, measure=measure, value=value, unit=unit, rounds=rounds,
                         **{key: meta[key] for key in ("gpu", "torch", "triton", "commit", "date")}))  # fmt: skip
        print(f"{variant:14s} {measure:32s} {value:.6g} {unit}", flush=True)

    # 1. The forward's launches, recorded with real buffers, then made one at a time.
    records = []
    original = launch_module._launch_at
    launch_module._launch_at = lambda site, kernel, grid, args, options: records.append((kernel, grid, args, options()))
    try:
        launch_module.sparse_forward(q, k, v, pattern, scale)
    finally:
        launch_module._launch_at = original
    (stride_kernel, stride_grid, stride_args, stride_opts), band = records
    band_kernel, band_grid, band_args, band_opts = band
    assert band_kernel is _sparse_fwd_kernel and band_opts["HAS_PREV"] and band_opts["HAS_WINDOW"], band_opts
    out, lse2 = band_args[3], band_args[4]
    stride_kernel[stride_grid](*stride_args, **stride_opts)
    stride_out, stride_lse2 = out.clone(), lse2.clone()

    def triton_band():
        band_kernel[band_grid](*band_args, **band_opts)

    triton_band()
    reference_out, reference_lse2 = out.clone(), lse2.clone()
    gluon_out, gluon_lse2 = stride_out.clone(), stride_lse2.clone()

    def gluon_band(form):
        return lambda: band_forward(q, k, v, gluon_out, gluon_lse2, scale, **form)

    calls = {"triton": triton_band, **{name: gluon_band(form) for name, form in GLUON_VARIANTS.items()}}
    for variant in VARIANTS[1:]:
        gluon_out.copy_(stride_out)
        gluon_lse2.copy_(stride_lse2)
        calls[variant]()
        torch.cuda.synchronize()
        finite = bool(torch.isfinite(gluon_out.float()).all())
        row(variant, "max_abs_diff_out_vs_triton", (gluon_out.float() - reference_out.float()).abs().max().item(), "")
        row(variant, "max_abs_diff_lse2_vs_triton", (gluon_lse2 - reference_lse2).abs().max().item(), "")
        row(variant, "out_finite", float(finite), "bool")

    # 2. The band launch alone (in place: each replay continues the last one's rows, the same work every time).
    for round_index in range(rounds):
        for variant in VARIANTS:
            ms = triton.testing.do_bench_cudagraph(calls[variant], rep=100, return_mode="median")
            row(variant, f"band_launch_graph_us_round{round_index}", ms * 1000, "us")

    # 3. The whole forward + backward, the band launch swapped or not.
    q, k, v = (t.requires_grad_() for t in (q, k, v))

    def fwd_bwd():
        o = sparse.attention(q, k, v, pattern)
        torch.autograd.backward(o, do)
        q.grad = k.grad = v.grad = None

    grads = {}
    for variant in VARIANTS:
        with band_launch_swapped(variant, scale):
            o = sparse.attention(q, k, v, pattern)
            torch.autograd.backward(o, do)
            grads[variant] = (o.detach().clone(), q.grad.clone(), k.grad.clone(), v.grad.clone())
            q.grad = k.grad = v.grad = None
            # The autograd graph kept alive by `o` would put the captured backward's gradient accumulation on
            # another stream (CUDA graph capture then fails: the first run of this script).
            del o
    for variant in VARIANTS[1:]:
        for name, ours, theirs in zip(("out", "dq", "dk", "dv"), grads[variant], grads["triton"]):
            row(variant, f"call_max_abs_diff_{name}_vs_triton", (ours.float() - theirs.float()).abs().max().item(), "")
    for round_index in range(rounds):
        for variant in VARIANTS:
            with band_launch_swapped(variant, scale):
                ms = triton.testing.do_bench_cudagraph(fwd_bwd, rep=100, return_mode="median")
            row(variant, f"fwd_bwd_graph_ms_round{round_index}", ms, "ms")

    if out_csv:
        append_rows(out_csv, rows, COLUMNS)
    return rows
