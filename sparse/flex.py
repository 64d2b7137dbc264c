"""FlexAttention with the pattern's exact element mask: the general-purpose peer of the Triton kernels.

The mask is given to FlexAttention as a `mask_mod` (elementwise), from which it builds a block mask of
128 x 128 tiles; block masks are cached per (pattern, n, heads, device). On a GPU flex_attention is
compiled (eager FlexAttention materialises scores and is only a correctness path); on the CPU it runs the
forward only: its backward needs a GPU.
"""

from __future__ import annotations

import functools

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from sparse.patterns import DensePattern, FixedPattern, Pattern, StridedPattern


def mask_mod_for(pattern: Pattern):
    """The pattern's element predicate written with tensor ops, as FlexAttention needs it."""
    if isinstance(pattern, DensePattern):
        return lambda b, h, q_idx, kv_idx: kv_idx <= q_idx
    if isinstance(pattern, StridedPattern):
        l, part = pattern.local_attn_ctx, pattern.part

        def strided(b, h, q_idx, kv_idx):
            causal = kv_idx <= q_idx
            local = (q_idx - kv_idx) < l
            stride = ((q_idx - kv_idx) % l) == 0
            chosen = {"merged": local | stride, "local": local, "stride": stride}[part]
            return causal & chosen

        return strided
    if isinstance(pattern, FixedPattern):
        l, c, part = pattern.local_attn_ctx, pattern.summary_ctx, pattern.part
        num_verts = l // c

        def fixed(b, h, q_idx, kv_idx):
            causal = kv_idx <= q_idx
            local = (q_idx // l) == (kv_idx // l)
            if pattern.distinct_heads:
                start = ((num_verts - 1 - h) % num_verts) * c
            else:
                start = l - c
            col = kv_idx % l
            summary = (col >= start) & (col < start + c)
            chosen = {"merged": local | summary, "local": local, "summary": summary}[part]
            return causal & chosen

        return fixed
    raise TypeError(f"no FlexAttention mask for {pattern!r}")


@functools.lru_cache(maxsize=64)
def block_mask_for(pattern: Pattern, n: int, num_heads: int, device: str) -> BlockMask:
    heads = num_heads if pattern.distinct_heads else None
    return create_block_mask(mask_mod_for(pattern), B=None, H=heads, Q_LEN=n, KV_LEN=n, device=device)


# torch.compile specialises flex_attention per shape and, after `recompile_limit` (8) shapes, silently runs
# the eager fallback that materialises n^2 scores. A sweep over n, head dim, batch and patterns needs more:
# the first kernel sweep (2026-11-27) measured that fallback for flex at most lengths (198 ms instead of
# 4.8 ms at n = 12,288). Raise the limit so every shape gets its fused kernel.
RECOMPILE_LIMIT = 256


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(flex_attention, dynamic=False)


def flex_sparse_attention(q, k, v, pattern: Pattern, scale: float) -> torch.Tensor:
    n, num_heads = q.shape[-2], q.shape[1]
    block_mask = block_mask_for(pattern, n, num_heads, str(q.device))
    if q.is_cuda:
        return _compiled_flex()(q, k, v, block_mask=block_mask, scale=scale)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise NotImplementedError(
            "backend 'flex' has no backward on the CPU in torch 2.11 (its backward needs a GPU); "
            "use backend 'triton' or 'reference'"
        )
    return flex_attention(q, k, v, block_mask=block_mask, scale=scale)
