"""Where the time of one attention call goes: kernel-by-kernel GPU times (torch.profiler) next to the
wall time with and without CPU launch overhead (do_bench vs do_bench_cudagraph). For tuning notes only.

    python -m benchmarks.profile_kernels strided:12288:1:128 fixed:12288:1:128:32 strided:3072:8:96
"""

from __future__ import annotations

import sys

import torch
import triton.testing

import sparse


def profile_case(spec: str, heads: int = 16, head_dim: int = 64) -> None:
    mode, n, batch, *ctx = spec.split(":")
    n, batch = int(n), int(batch)
    l = int(ctx[0]) if ctx else None
    c = int(ctx[1]) if len(ctx) > 1 else None
    p = sparse.pattern(mode, local_attn_ctx=l, summary_ctx=c)
    backend = "sdpa" if mode == "all" else "triton"
    q, k, v, do = (torch.randn(batch, heads, n, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))

    def fwd():
        return sparse.attention(q, k, v, p, backend=backend)

    def fwd_bwd():
        out = fwd()
        torch.autograd.backward(out, do)
        q.grad = k.grad = v.grad = None

    for fn in (fwd, fwd_bwd):
        fn()
        eager = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
        graph = triton.testing.do_bench_cudagraph(fn, rep=100, return_mode="median")
        print(f"{spec} {fn.__name__}: eager {eager:.4f} ms, cuda graph {graph:.4f} ms")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fwd_bwd()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))


if __name__ == "__main__":
    for spec in sys.argv[1:]:
        profile_case(spec)
