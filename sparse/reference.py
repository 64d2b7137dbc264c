"""The dense reference: materialise the mask, softmax in float32 or float64. For tests only.

Shapes: q, k, v [B, H, n, D] -> out [B, H, n, D] in q's dtype (computed in `compute_dtype`). Rows with no
allowed key (possible only for parts such as fixed's "summary" alone) give zeros, as the kernels do.
Memory is O(B * H * n^2): fine for n of a few thousand, not more.
"""

from __future__ import annotations

import functools

import torch

from sparse.patterns import Pattern


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pattern: Pattern,
    scale: float,
    compute_dtype: torch.dtype | None = None,
    return_lse: bool = False,
):
    # Under autocast the matmuls would run in bf16/fp16 and the -inf clamp below would overflow: the
    # reference always computes in its own dtype.
    with torch.autocast(q.device.type, enabled=False):
        return _reference(q, k, v, pattern, scale, compute_dtype, return_lse)


def _reference(q, k, v, pattern, scale, compute_dtype, return_lse):
    dtype = compute_dtype or (torch.float64 if q.dtype == torch.float64 else torch.float32)
    n = q.shape[-2]
    mask = _cached_mask(pattern, n, q.shape[1], q.device)  # [H or 1, n, n]
    scores = torch.matmul(q.to(dtype), k.to(dtype).transpose(-1, -2)) * scale
    scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse.unsqueeze(-1).clamp_min(torch.finfo(dtype).min))
    probs = torch.where(mask, probs, torch.zeros((), dtype=dtype, device=q.device))
    out = torch.matmul(probs, v.to(dtype)).to(q.dtype)
    return (out, lse) if return_lse else out


@functools.lru_cache(maxsize=4)
def _cached_mask(pattern: Pattern, n: int, num_heads: int, device: torch.device) -> torch.Tensor:
    """The mask is rebuilt from int64 n x n arithmetic otherwise: seconds per call at n = 12,288 on a CPU."""
    return pattern.mask(n, num_heads, device=device)
