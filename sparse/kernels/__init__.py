"""Triton kernels for the factorized patterns, in three layers (as flash-attention does):
kernels (forward.py, backward.py, geometry.py) with thin launchers (launch.py), the autograd/custom-op
layer (op.py, `triton_sparse_attention`), and the nn.Module in sparse.attention. plan.py holds tile
choices and the statistics benchmarks report.
"""

from sparse.kernels.op import triton_sparse_attention
from sparse.kernels.plan import Plan, build_plan

__all__ = ["Plan", "build_plan", "triton_sparse_attention"]
