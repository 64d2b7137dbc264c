"""`attention(q, k, v, pattern, backend)`: one functional entry point over four backends.

Contract: q, k, v are [B, H, n, D] tensors of one dtype on one device (any strides); the result is
[B, H, n, D] in that dtype. Every backend computes the same function: softmax(q k^T * scale) v over the
pattern's allowed keys, with scale = 1/sqrt(D) by default; a row with no allowed key gives zeros.

Backends:
- "triton":    ours (sparse/kernels); forward and backward; bf16, fp16, fp32; D in {32, 64, 128}; n below 2^28.
               CUDA tensors, or CPU tensors under Triton's interpreter (TRITON_INTERPRET=1 before the first import
               of sparse; slow, for tests). On a GPU: compute capability 8.0 or newer, and float32 only with 160 KB
               of shared memory per block (A100, H100, H200). Tuned on Hopper (sm_90); older GPUs take plain loads
               and launches (sparse/kernels/plan.py's HOPPER_ARCH).
- "flex":      FlexAttention with the exact element mask (compiled on a GPU; forward-only on a CPU).
- "sdpa":      torch's dense causal scaled_dot_product_attention; only for attn_mode "all".
- "reference": the materialised dense masked softmax; any dtype including float64; for tests.

Every argument is checked before any kernel launch: a bad one raises ValueError or TypeError naming it.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from sparse.patterns import DensePattern, Pattern

BACKENDS = ("triton", "flex", "sdpa", "reference")
KERNEL_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
KERNEL_HEAD_DIMS = (32, 64, 128)
KERNEL_MAX_N = 1 << 28


def check_gpu(device: torch.device, dtype: torch.dtype) -> None:
    """Raise ValueError unless the Triton kernels run on this CUDA device for inputs of this dtype (sparse/kernels/
    plan.py's MIN_ARCH, SMALL_SHARED_BYTES)."""
    from sparse.kernels.launch import gpu_target
    from sparse.kernels.plan import MIN_ARCH, SMALL_SHARED_BYTES

    target = gpu_target(device.index, hopper_features=True)
    arch, shared = target["arch"], target["shared_bytes"]
    if arch < MIN_ARCH:
        raise ValueError(
            f"backend 'triton' needs a GPU of compute capability {MIN_ARCH / 10:.1f} or newer (what its kernels are "
            f"compiled and checked for); {torch.cuda.get_device_name(device)} is {arch / 10:.1f}: use backend 'flex' "
            f"or 'reference'"
        )
    if dtype.itemsize >= 4 and shared < SMALL_SHARED_BYTES:
        raise ValueError(
            f"backend 'triton' runs float32 inputs only on GPUs with at least {SMALL_SHARED_BYTES // 1024} KB of "
            f"shared memory per block (A100, H100, H200); {torch.cuda.get_device_name(device)} has {shared // 1024} "
            f"KB: use bf16 or fp16 inputs, or backend 'flex' or 'reference'"
        )


def check_off_gpu(device: torch.device) -> None:
    """Raise ValueError unless the Triton kernels run on tensors off the GPU: only under Triton's CPU interpreter, which
    Triton picks when it defines the kernels (TRITON_INTERPRET=1 when sparse.kernels is first imported), not per call.
    Without it Triton would fail inside its launcher with "0 active drivers"."""
    from triton.runtime.interpreter import InterpretedFunction

    from sparse.kernels.forward import _sparse_fwd_kernel

    if isinstance(_sparse_fwd_kernel, InterpretedFunction):
        return
    late = (
        " TRITON_INTERPRET=1 is set, but only after sparse.kernels was imported: Triton reads it when it defines the "
        "kernels, so set it before the first import."
        if os.environ.get("TRITON_INTERPRET") == "1"
        else ""
    )
    raise ValueError(
        f"backend 'triton' runs its kernels on CUDA tensors, got tensors on {device}.{late} On a CPU, use backend "
        f"'reference' (exact, forward and backward) or 'flex' (forward only), or Triton's interpreter, which runs the "
        f"same kernels slowly (TRITON_INTERPRET=1 in the environment before sparse is imported; what the tests do)"
    )


def check_inputs(q, k, v, pattern, backend: str, scale) -> float:
    """Validate everything up front; returns the scale to use."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(pattern, Pattern):
        raise TypeError(f"pattern must be a sparse.Pattern (from sparse.pattern(...)), got {type(pattern).__name__}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D [B, H, n, D], got shape {tuple(t.shape)}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(
            f"q, k and v must have the same shape [B, H, n, D], got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    if q.shape[2] < 1:
        raise ValueError("n (q.shape[2]) must be >= 1")
    if q.shape[0] < 1 or q.shape[1] < 1:
        raise ValueError(f"batch and heads must be >= 1, got shape {tuple(q.shape)}")
    head_dim = q.shape[-1]
    if backend == "reference":
        if not q.dtype.is_floating_point:
            raise TypeError(f"q must be a floating-point tensor, got {q.dtype}")
    elif q.dtype not in KERNEL_DTYPES:
        raise TypeError(f"backend {backend!r} supports dtypes {KERNEL_DTYPES}, got {q.dtype}")
    if backend == "triton" and head_dim not in KERNEL_HEAD_DIMS:
        raise ValueError(f"backend 'triton' supports head dims {KERNEL_HEAD_DIMS}, got D={head_dim}")
    if backend == "triton" and q.shape[2] >= KERNEL_MAX_N:
        # geometry.tile_allowed moves missing rows to +-2^29 and compares distances below 2^28.
        raise ValueError(f"backend 'triton' supports n below 2^28 ({KERNEL_MAX_N:,}), got n={q.shape[2]:,}")
    if backend == "triton" and q.is_cuda:
        check_gpu(q.device, q.dtype)
    elif backend == "triton":
        check_off_gpu(q.device)
    if backend == "sdpa" and not isinstance(pattern, DensePattern):
        raise ValueError(
            f"backend 'sdpa' is dense causal attention and is valid only for attn_mode 'all', "
            f"got attn_mode {pattern.attn_mode!r}; use backend 'triton' or 'flex'"
        )
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    return float(scale)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pattern: Pattern,
    backend: str = "triton",
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of q over k, v restricted to `pattern`; see the module docstring for the contract."""
    scale = check_inputs(q, k, v, pattern, backend, scale)
    if backend == "triton":
        from sparse.kernels import triton_sparse_attention

        return triton_sparse_attention(q, k, v, pattern, scale)
    if backend == "flex":
        from sparse.flex import flex_sparse_attention

        return flex_sparse_attention(q, k, v, pattern, scale)
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    from sparse.reference import reference_attention

    return reference_attention(q, k, v, pattern, scale)


class SparseAttention(torch.nn.Module):
    """The nn.Module layer over `attention`: holds the pattern and the backend, no parameters."""

    def __init__(self, pattern: Pattern, backend: str = "triton", scale: float | None = None) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "sdpa" and not isinstance(pattern, DensePattern):
            raise ValueError("backend 'sdpa' is valid only for attn_mode 'all'")
        self.pattern = pattern
        self.backend = backend
        self.scale = scale

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return attention(q, k, v, self.pattern, self.backend, self.scale)

    def extra_repr(self) -> str:
        return f"pattern={self.pattern!r}, backend={self.backend!r}"
