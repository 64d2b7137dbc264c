"""One attention call for Nsight Compute: what bounds each kernel, read from the hardware counters.

    ncu --clock-control none --profile-from-start off --set full -o out/strided \
        python3 -m benchmarks.hw_counters strided:12288:1:128          # then: ncu --import out/strided.ncu-rep
    bash benchmarks/gpu_session.sh counters                           # the same for the target cases, as text

Why: timing variants (profile_kernels, tune_tiles) says which arrangement is faster, not which resource a kernel
waits on. DRAM throughput, L2 throughput, occupancy and the warps' stall reasons per kernel tell a latency-bound
kernel from a bandwidth-bound one, and an L2-bound one from a DRAM-bound one, which timing cannot.

A case is mode:n:batch[:local_attn_ctx[:summary_ctx]] at H = 16, D = 64 (--heads, --head-dim), bf16, random inputs.
The script compiles and warms the kernels with --warmup calls, then opens the profiler (cudaProfilerStart) for one
forward + backward (--pass fwd for the forward alone) and closes it: under `ncu --profile-from-start off` only that
call's kernels are profiled, every launch of it in order. Without ncu it runs the same calls and profiles nothing.
Mode "all" runs SDPA (cuDNN's or flash's kernels), any other mode our Triton kernels. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse

import torch

import sparse
from benchmarks.kernel_resources import parse_case


def run_case(spec: str, heads: int, head_dim: int, passes: str, warmup: int) -> None:
    p, n, batch = parse_case(spec)
    backend = "sdpa" if p.attn_mode == "all" else "triton"
    q, k, v, do = (torch.randn(batch, heads, n, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))

    def call():
        if passes == "fwd":
            with torch.no_grad():
                sparse.attention(q, k, v, p, backend=backend)
            return
        out = sparse.attention(q, k, v, p, backend=backend)
        torch.autograd.backward(out, do)
        q.grad = k.grad = v.grad = None

    for _ in range(warmup):  # compiles, then leaves the launch path on its kept kernels
        call()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    call()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", help="mode:n:batch[:l[:c]], e.g. strided:12288:1:128")
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=64, choices=[32, 64, 128])
    parser.add_argument("--pass", dest="passes", default="fwd+bwd", choices=["fwd", "fwd+bwd"])
    parser.add_argument("--warmup", type=int, default=3, help="calls before the profiled one (the first compiles)")
    args = parser.parse_args(argv)
    try:  # the case is checked before any GPU work
        parse_case(args.case)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    if args.heads < 1 or args.warmup < 1:
        parser.error("--heads and --warmup must be at least 1")
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU (the counters are the GPU's)")
    run_case(args.case, args.heads, args.head_dim, args.passes, args.warmup)


if __name__ == "__main__":
    main()
