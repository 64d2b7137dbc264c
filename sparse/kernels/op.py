"""The autograd layer: `triton_sparse_attention(q, k, v, pattern, scale)`, registered with torch.library.

The forward and backward are custom ops (`sparse::attention_forward`, `sparse::attention_backward`) with
fake implementations, so torch.compile traces through them without a graph break, and the autograd
formula is registered on the forward op, so torch.utils.checkpoint and plain autograd both work.
A pattern is passed to the ops as plain fields (ops take only tensors and scalars).

Deterministic: the backward uses no atomics (see backward.py), so two backward passes on the same inputs
give bitwise-equal gradients.
"""

from __future__ import annotations

import torch

from sparse.kernels.launch import sparse_backward, sparse_forward
from sparse.patterns import Pattern, pattern


def _pattern_fields(p: Pattern) -> tuple[str, int, int, str, bool]:
    return (
        p.attn_mode,
        getattr(p, "local_attn_ctx", 0),
        getattr(p, "summary_ctx", 0),
        p.part,
        p.distinct_heads,
    )


def _pattern_from_fields(attn_mode: str, local_attn_ctx: int, summary_ctx: int, part: str, distinct: bool):
    return pattern(
        attn_mode,
        local_attn_ctx=local_attn_ctx or None,
        summary_ctx=summary_ctx or None,
        part=part,
        distinct_heads=distinct,
    )


@torch.library.custom_op("sparse::attention_forward", mutates_args=())
def attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mode: str,
    local_attn_ctx: int,
    summary_ctx: int,
    part: str,
    distinct_heads: bool,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    p = _pattern_from_fields(attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads)
    return sparse_forward(q, k, v, p, scale)


@attention_forward.register_fake
def _(q, k, v, attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads, scale):
    batch, heads, n, head_dim = q.shape
    return q.new_empty((batch, heads, n, head_dim)), q.new_empty((batch * heads, n), dtype=torch.float32)


@torch.library.custom_op("sparse::attention_backward", mutates_args=())
def attention_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse2: torch.Tensor,
    attn_mode: str,
    local_attn_ctx: int,
    summary_ctx: int,
    part: str,
    distinct_heads: bool,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p = _pattern_from_fields(attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads)
    return sparse_backward(grad_out, q, k, v, out, lse2, p, scale)


@attention_backward.register_fake
def _(grad_out, q, k, v, out, lse2, attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads, scale):
    shape = q.shape
    return q.new_empty(shape), q.new_empty(shape), q.new_empty(shape)


def _setup_context(ctx, inputs, output):
    q, k, v, *fields = inputs
    out, lse2 = output
    ctx.save_for_backward(q, k, v, out, lse2)
    ctx.fields = fields


def _backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse2 = ctx.saved_tensors
    dq, dk, dv = attention_backward(grad_out, q, k, v, out, lse2, *ctx.fields)
    return dq, dk, dv, None, None, None, None, None, None


attention_forward.register_autograd(_backward, setup_context=_setup_context)


def triton_sparse_attention(q, k, v, p: Pattern, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v over the pattern's allowed keys; [B, H, n, D] -> [B, H, n, D] in q's dtype.

    Inputs are validated by sparse.attention; call that unless you have checked them yourself."""
    out, _ = attention_forward(q, k, v, *_pattern_fields(p), float(scale))
    return out
