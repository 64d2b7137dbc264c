"""The host side of one sparse attention call: Python, dispatch and autograd, with the kernel launches replaced
by no-ops, so it runs on any machine (benchmarks/KERNEL_NOTES.md quotes it). Since 3f2bb5e0e1b7 it times the GPU's
path through sparse/kernels/fast_launch.py (the compiled kernels' plans, a kept kernel per call site, descriptors),
with only the final launcher call stubbed; before, the interpreter's path (every launch through kernel[grid]).

    python -m benchmarks.host_overhead [--n 256] [--calls 500] [--repeats 3]

Prints, per pattern and launch path, the best of `repeats` means over `calls` calls of the forward alone and of
forward + backward, in microseconds: `direct` (every launch issued by fast_launch) and `call graphs` (a repeated call
replayed from its graph, sparse/kernels/call_graphs.py, with a graph whose replay does nothing). Inputs are CPU
tensors [1, n, 2, 64] viewed as [1, 2, n, 64] (the model's strided q, k, v views); a short n keeps the autograd
engine's own tensor work (accumulating q.grad, ...) small.
Not a GPU timing: on a GPU the same host work overlaps kernels, and the launches themselves add to it.
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import torch

import sparse
from sparse.kernels import call_graphs, fast_launch, launch
from sparse.kernels.plan import build_plan

# Every kernel the launchers call: each name of sparse/kernels/launch.py that ends in "_kernel".
KERNELS = tuple(name for name in vars(launch) if name.startswith("_") and name.endswith("_kernel"))


class _Compiled:
    """A compiled kernel whose launcher does nothing."""

    function, packed_metadata = None, None

    def run(self, *args):
        pass


class _NoLaunch:
    """Stands in for a @triton.jit kernel: `kernel[grid](...)` "compiles" to a _Compiled (fast_launch keeps it)."""

    def __init__(self, kernel):
        self.arg_names = kernel.arg_names

    def __getitem__(self, grid):
        return lambda *args, **kwargs: _Compiled()


class _NoReplay:
    def replay(self):
        pass


def measure(p, n: int, calls: int, repeats: int, graphs: bool = False) -> tuple[float, float]:
    """(forward us, forward + backward us), the best of `repeats` means over `calls` calls; `graphs`: through
    call_graphs (captures stood in for, replays doing nothing), else every launch direct."""
    q, k, v = (torch.randn(1, n, 2, 64).transpose(1, 2).requires_grad_() for _ in range(3))
    grad = torch.randn(1, 2, n, 64)
    stand_ins = {name: _NoLaunch(getattr(launch, name)) for name in KERNELS}
    # The GPU's path through fast_launch (a kept kernel per call site, launched directly), on CPU tensors: the
    # direct path allowed, the compiled kernels' plans, no device or stream to ask for.
    with (
        mock.patch.multiple(launch, **stand_ins),
        mock.patch.object(fast_launch, "_direct_path", lambda first_arg: True),
        mock.patch.object(launch, "interpreting", lambda: False),
        mock.patch.object(launch, "plan_for", lambda q, p: build_plan(p, q.shape[2], q.shape[3], interpret=False)),
        mock.patch.object(torch.cuda, "current_device", lambda: 0),
        mock.patch.object(torch._C, "_cuda_getCurrentRawStream", lambda device: 0, create=True),
        mock.patch.object(call_graphs, "ENABLED", graphs),
        mock.patch.object(call_graphs, "_capture", lambda launches, like: _NoReplay()),
        mock.patch.object(torch.cuda, "is_current_stream_capturing", lambda: False),
    ):
        fast_launch.clear_cache()
        for _ in range(20):
            sparse.attention(q, k, v, p).backward(grad)
        best_fwd = best_both = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                sparse.attention(q, k, v, p)
            best_fwd = min(best_fwd, (time.perf_counter() - start) / calls)
            start = time.perf_counter()
            for _ in range(calls):
                sparse.attention(q, k, v, p).backward(grad)
            best_both = min(best_both, (time.perf_counter() - start) / calls)
    fast_launch.clear_cache()
    return best_fwd * 1e6, best_both * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for p in (
        sparse.pattern("strided", local_attn_ctx=128),
        sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32),
    ):
        for graphs in (False, True):
            fwd, both = measure(p, args.n, args.calls, args.repeats, graphs)
            path = "call graphs" if graphs else "direct"
            print(f"{p.attn_mode}: forward {fwd:.0f} us, forward + backward {both:.0f} us ({path}; host only, n = "
                  f"{args.n})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
