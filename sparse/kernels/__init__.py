"""Triton kernels for the factorized patterns, in three layers (as flash-attention does):
kernels (forward.py, backward.py, geometry.py) with thin launchers (launch.py), the autograd/custom-op
layer (op.py, `triton_sparse_attention`), and the nn.Module in sparse.attention. plan.py holds tile
choices and the statistics benchmarks report. fast_launch.py issues a launch without Triton's per-call Python, and
call_graphs.py replays a repeated call's launches from a CUDA graph (the host's side of a call). interpreter_support.py
gives Triton's CPU interpreter the one operation the kernels use that it lacks.
"""

from sparse.kernels import interpreter_support
from sparse.kernels.op import triton_sparse_attention
from sparse.kernels.plan import Plan, build_plan

interpreter_support.install()

__all__ = ["Plan", "build_plan", "triton_sparse_attention"]
