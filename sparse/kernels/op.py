"""The autograd layer: `triton_sparse_attention(q, k, v, pattern, scale)`, registered with torch.library.

The forward and backward are operators of the `sparse` library (`sparse::attention_forward`,
`sparse::attention_backward`) with fake implementations, so torch.compile traces through them without a graph
break; a torch.autograd.Function joins them, so plain autograd, torch.utils.checkpoint and compile's
AOTAutograd all see one differentiable op. A pattern is passed to the ops as plain fields (operators take only
tensors and scalars). In eager mode the Function calls the launchers without the dispatcher (see below).

Why torch.library.Library and an autograd.Function rather than torch.library.custom_op: the call costs less
on the host. custom_op routes every call through Python wrappers (argument defaults, a dynamo-disable frame,
an autograd redispatch); here the dispatcher calls the Python kernel directly. At short sequences the host's
time per call is a visible part of a step (benchmarks/KERNEL_NOTES.md).

Deterministic: the backward uses no atomics (see backward.py), so two backward passes on the same inputs
give bitwise-equal gradients.
"""

from __future__ import annotations

import functools

import torch

from sparse.kernels.launch import sparse_backward, sparse_forward
from sparse.patterns import Pattern, pattern

# FRAGMENT: ATen already defines a "sparse" namespace (ao_sparse); ours adds to it. Kept alive for the process.
_LIB = torch.library.Library("sparse", "FRAGMENT")
_FIELDS = "str attn_mode, int local_attn_ctx, int summary_ctx, str part, bool distinct_heads, float scale"
_LIB.define(f"attention_forward(Tensor q, Tensor k, Tensor v, {_FIELDS}) -> (Tensor, Tensor)")
_LIB.define(
    f"attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse2, {_FIELDS})"
    " -> (Tensor, Tensor, Tensor)"
)


def _pattern_fields(p: Pattern) -> tuple[str, int, int, str, bool]:
    return (
        p.attn_mode,
        getattr(p, "local_attn_ctx", 0),
        getattr(p, "summary_ctx", 0),
        p.part,
        p.distinct_heads,
    )


@functools.lru_cache(maxsize=256)
def _pattern_from_fields(attn_mode: str, local_attn_ctx: int, summary_ctx: int, part: str, distinct: bool):
    return pattern(
        attn_mode,
        local_attn_ctx=local_attn_ctx or None,
        summary_ctx=summary_ctx or None,
        part=part,
        distinct_heads=distinct,
    )


def attention_forward(q, k, v, attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads, scale):
    """-> out [B, H, n, D] in q's dtype, lse2 float32 [B * H, n] (base-2 log-sum-exp of each row)."""
    p = _pattern_from_fields(attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads)
    return sparse_forward(q, k, v, p, scale)


def attention_backward(
    grad_out, q, k, v, out, lse2, attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads, scale
):
    """-> dq, dk, dv, each [B, H, n, D] in q's dtype."""
    p = _pattern_from_fields(attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads)
    return sparse_backward(grad_out, q, k, v, out, lse2, p, scale)


# One Python kernel for every device: the launchers run compiled kernels on a GPU and the Triton interpreter
# on a CPU (tests); they refuse nothing the dispatcher could route elsewhere.
_LIB.impl("attention_forward", attention_forward, "CompositeExplicitAutograd")
_LIB.impl("attention_backward", attention_backward, "CompositeExplicitAutograd")


@torch.library.register_fake("sparse::attention_forward")
def _(q, k, v, attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads, scale):
    batch, heads, n, head_dim = q.shape
    return q.new_empty((batch, heads, n, head_dim)), q.new_empty((batch * heads, n), dtype=torch.float32)


@torch.library.register_fake("sparse::attention_backward")
def _(grad_out, q, k, v, out, lse2, attn_mode, local_attn_ctx, summary_ctx, part, distinct_heads, scale):
    shape = q.shape
    return q.new_empty(shape), q.new_empty(shape), q.new_empty(shape)


class _SparseAttention(torch.autograd.Function):
    # Eager calls go to the launchers directly; only torch.compile's tracing needs the registered ops (their
    # fake implementations give it shapes). The dispatcher's hop into a Python kernel cost ~0.2 ms of host
    # time per forward + backward on the H100 host, about as much as SDPA's whole call there
    # (results/profiles/host_breakdown-7801a21a7813.txt). Eager outputs are packed (launch._with_row_stats: out with
    # lse2, the gradients with D), views of one allocation each; the ops return separate tensors, as their schemas
    # promise.
    @staticmethod
    def forward(ctx, q, k, v, fields, scale):
        if torch.compiler.is_compiling():
            out, lse2 = torch.ops.sparse.attention_forward(q, k, v, *fields, scale)
        else:
            out, lse2 = sparse_forward(q, k, v, _pattern_from_fields(*fields), scale, packed=True)
        ctx.save_for_backward(q, k, v, out, lse2)
        ctx.fields, ctx.scale = fields, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse2 = ctx.saved_tensors
        if torch.compiler.is_compiling():
            dq, dk, dv = torch.ops.sparse.attention_backward(grad_out, q, k, v, out, lse2, *ctx.fields, ctx.scale)
        else:
            dq, dk, dv = sparse_backward(
                grad_out, q, k, v, out, lse2, _pattern_from_fields(*ctx.fields), ctx.scale, packed=True
            )
        return dq, dk, dv, None, None


def triton_sparse_attention(q, k, v, p: Pattern, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v over the pattern's allowed keys; [B, H, n, D] -> [B, H, n, D] in q's dtype.

    Inputs are validated by sparse.attention; call that unless you have checked them yourself."""
    return _SparseAttention.apply(q, k, v, _pattern_fields(p), float(scale))
