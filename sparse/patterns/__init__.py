"""The paper's attention patterns, one small file each, and `pattern()`, the one way to make them.

    sparse.pattern("all")                                        dense causal
    sparse.pattern("local", local_attn_ctx=l)                    i - j < l
    sparse.pattern("strided", local_attn_ctx=l, part=...)        part: "merged" (A1 | A2), "local", "stride"
    sparse.pattern("fixed", local_attn_ctx=l, summary_ctx=c,
                   part=..., distinct_heads=False)               part: "merged", "local", "summary"

The names follow openai/sparse_attention (attn_mode, local_attn_ctx) and the paper (l, c, A1, A2). Parts
let a model interleave factors layer by layer (paper Eq. 6) or give heads different factors (Eq. 8);
"merged" is one head over the union (Eq. 7). `python -m sparse.patterns` draws every pattern as PNG.
"""

from __future__ import annotations

from sparse.patterns.base import BandSegment, Pattern, Segment, SummarySegment, segment_mask
from sparse.patterns.dense import DensePattern
from sparse.patterns.fixed import FIXED_PARTS, FixedPattern
from sparse.patterns.strided import STRIDED_PARTS, LocalPattern, StridedPattern

ATTN_MODES = ("all", "local", "strided", "fixed")


def pattern(
    attn_mode: str,
    local_attn_ctx: int | None = None,
    summary_ctx: int | None = None,
    part: str = "merged",
    distinct_heads: bool = False,
) -> Pattern:
    """Make a pattern by name; raises ValueError/TypeError naming the bad parameter."""
    if attn_mode not in ATTN_MODES:
        raise ValueError(f"attn_mode must be one of {ATTN_MODES}, got {attn_mode!r}")
    if attn_mode == "all":
        if part != "merged":
            raise ValueError(f"attn_mode 'all' has a single part; part must be 'merged', got {part!r}")
        return DensePattern()
    if local_attn_ctx is None:
        raise ValueError(f"attn_mode {attn_mode!r} needs local_attn_ctx (the paper's l)")
    if attn_mode == "local":
        return LocalPattern(local_attn_ctx, part)
    if attn_mode == "strided":
        return StridedPattern(local_attn_ctx, part)
    if summary_ctx is None:
        raise ValueError("attn_mode 'fixed' needs summary_ctx (the paper's c)")
    return FixedPattern(local_attn_ctx, summary_ctx, part, distinct_heads)


__all__ = [
    "ATTN_MODES",
    "FIXED_PARTS",
    "STRIDED_PARTS",
    "BandSegment",
    "DensePattern",
    "FixedPattern",
    "LocalPattern",
    "Pattern",
    "Segment",
    "StridedPattern",
    "SummarySegment",
    "pattern",
    "segment_mask",
]
