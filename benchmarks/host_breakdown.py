"""Where the host time of one attention call goes, on a GPU machine, piece by piece.

    python -m benchmarks.host_breakdown [--n 256] [--calls 500]        # needs a CUDA GPU

On the H100 host one strided forward + backward costs ~1.0 ms of CPU time against SDPA's ~0.4 ms, whatever n
(benchmarks/KERNEL_NOTES.md, "Where the time goes"), and the direct launch path took only a few percent of it
off. This attributes the rest: each line is the mean host time of `calls` calls of one piece, issued without
waiting for the GPU (a short n keeps the GPU work far below the host's, so the queue never fills and what is
timed is the host), from a single allocation up to the whole call through autograd, beside SDPA and an
identity autograd.Function (the engine's own floor). Inputs are bf16 [1, 16, n, 64]. Each piece is timed twice, its
launches issued directly and replayed from call graphs (sparse/kernels/call_graphs.py; pieces that launch nothing of
ours take the same time both ways).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

import sparse
from sparse.kernels import call_graphs, fast_launch
from sparse.kernels.backward import _delta_kernel
from sparse.kernels.launch import sparse_backward, sparse_forward
from sparse.kernels.op import _pattern_fields


class _Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class _SavesFive(torch.autograd.Function):
    """The identity that saves five tensors, as the attention Function does (q, k, v, out, lse2)."""

    @staticmethod
    def forward(ctx, x, a, b, c, d):
        ctx.save_for_backward(x, a, b, c, d)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        _ = ctx.saved_tensors  # unpacking them is part of the cost
        return grad, None, None, None, None


class _LaunchersDirect(torch.autograd.Function):
    """The attention Function calling the launchers directly, without the torch.ops dispatcher hop."""

    @staticmethod
    def forward(ctx, q, k, v, p, scale):
        out, lse2 = sparse_forward(q, k, v, p, scale)
        ctx.save_for_backward(q, k, v, out, lse2)
        ctx.p, ctx.scale = p, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        start = time.perf_counter()
        q, k, v, out, lse2 = ctx.saved_tensors
        grads = sparse_backward(grad_out, q, k, v, out, lse2, ctx.p, ctx.scale)
        _BACKWARD_BODY.append(time.perf_counter() - start)
        return (*grads, None, None)


_BACKWARD_BODY: list[float] = []  # seconds inside _LaunchersDirect.backward, on whichever thread ran it


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def mean_us(fn, calls: int, warmup: int = 10) -> float:
    """Mean host microseconds per call of `calls` calls issued back to back, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    _synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    _synchronize()
    return elapsed / calls * 1e6


def pieces(n: int, device: str = "cuda", heads: int = 16) -> dict:
    """name -> a zero-argument callable; ordered from the smallest piece to the whole call. (device "cpu" with
    the Triton interpreter runs the same pieces, for the tests.)"""
    p = sparse.pattern("strided", local_attn_ctx=min(128, n))
    dim, scale = 64, 64**-0.5
    q, k, v, do = (torch.randn(1, heads, n, dim, device=device, dtype=torch.bfloat16) for _ in range(4))
    out, lse2 = sparse_forward(q, k, v, p, scale)
    delta = torch.empty(heads, n, device=device, dtype=torch.float32)
    delta_args = (out, do, delta, *do.stride()[:3], n, heads)
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    x = torch.randn(1, heads, n, dim, device=device, requires_grad=True)
    fields = _pattern_fields(p)

    def triton_path():
        _delta_kernel[(math.ceil(n / 64), heads)](*delta_args, HEAD_DIM=dim, BLOCK=64)

    def attention_fwd_bwd():
        sparse.attention(qg, kg, vg, p).backward(do)
        qg.grad = kg.grad = vg.grad = None

    def launchers_direct_fwd_bwd_one_thread():
        with torch.autograd.set_multithreading_enabled(False):
            launchers_direct_fwd_bwd()

    def attention_fwd_bwd_one_thread():
        # The engine runs the backward of CUDA tensors on a device thread of its own; this runs it on the caller's.
        with torch.autograd.set_multithreading_enabled(False):
            attention_fwd_bwd()

    def launchers_direct_fwd_bwd():
        _LaunchersDirect.apply(qg, kg, vg, p, scale).backward(do)
        qg.grad = kg.grad = vg.grad = None

    def saves_five_fwd_bwd():
        _SavesFive.apply(x, q, k, v, do).backward(x)
        x.grad = None

    def sdpa_fwd_bwd():
        F.scaled_dot_product_attention(qg, kg, vg, is_causal=True).backward(do)
        qg.grad = kg.grad = vg.grad = None

    return {
        "torch.empty [1, H, n, 64] bf16": lambda: torch.empty(1, heads, n, dim, device=device, dtype=torch.bfloat16),
        "one launch, Triton's path (kernel[grid])": triton_path,
        "one launch, direct (fast_launch.launch)": lambda: fast_launch.launch(
            _delta_kernel, (math.ceil(n / 64), heads), *delta_args, HEAD_DIM=dim, BLOCK=64
        ),
        "sparse_forward (launcher: 2 launches)": lambda: sparse_forward(q, k, v, p, scale),
        "sparse_backward (launcher: 4 launches)": lambda: sparse_backward(do, q, k, v, out, lse2, p, scale),
        "torch.ops.sparse.attention_forward": lambda: torch.ops.sparse.attention_forward(q, k, v, *fields, scale),
        "torch.ops.sparse.attention_backward": lambda: torch.ops.sparse.attention_backward(
            do, q, k, v, out, lse2, *fields, scale
        ),
        "sparse.attention forward, no grad": lambda: sparse.attention(q, k, v, p),
        "sparse.attention forward + backward": attention_fwd_bwd,
        "sparse.attention forward + backward, autograd on the caller's thread": attention_fwd_bwd_one_thread,
        "autograd.Function over the launchers (no torch.ops) forward + backward": launchers_direct_fwd_bwd,
        "the same, autograd on the caller's thread": launchers_direct_fwd_bwd_one_thread,
        "identity autograd.Function saving 5 tensors forward + backward": saves_five_fwd_bwd,
        "SDPA forward + backward": sdpa_fwd_bwd,
        "identity autograd.Function forward + backward": lambda: _Identity.apply(x).backward(x),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="sequence length (short: the host must dominate)")
    parser.add_argument("--calls", type=int, default=500, help="calls per piece")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over all pieces")
    args = parser.parse_args(argv)
    if args.n < 16 or args.calls < 1 or args.repeats < 1:
        parser.error("need --n >= 16, --calls >= 1 and --repeats >= 1")
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: it times the host side of real launches")
    print(f"host time per call, mean of {args.calls} calls, n = {args.n}, {torch.cuda.get_device_name(0)}")
    print("   direct  call graphs")
    saved = call_graphs.ENABLED
    try:
        for repeat in range(args.repeats):  # this host's timings move by tens of percent between rounds
            print(f"round {repeat + 1} of {args.repeats}")
            for name, fn in pieces(args.n).items():
                times, bodies = [], []
                for enabled in (False, True):
                    call_graphs.ENABLED = enabled
                    _BACKWARD_BODY.clear()
                    times.append(mean_us(fn, args.calls))
                    bodies.append(sum(_BACKWARD_BODY) / len(_BACKWARD_BODY) * 1e6 if _BACKWARD_BODY else None)
                print(f"{times[0]:9.1f} {times[1]:9.1f} us  {name}", flush=True)
                if bodies[0] is not None:
                    where = "of which inside its backward (sparse_backward on the engine's thread)"
                    print(f"{bodies[0]:9.1f} {bodies[1]:9.1f} us    {where}")
    finally:
        call_graphs.ENABLED = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
