"""attn_mode "fixed" (paper section 4.2, Figure 3c).

With l = local_attn_ctx and c = summary_ctx, query i attends key j <= i when
  A1 ("local"):   j // l == i // l          (the own length-l window)
  A2 ("summary"): j % l >= l - c            (the last c columns of every window: the summary positions)
`part` selects A1, A2 or their union ("merged").

`distinct_heads=True` (paper section 4.3, openai/sparse_attention's num_verts): head h uses the summary
sub-block s_h = (l/c - 1 - h) mod (l/c), i.e. columns [s_h * c, (s_h + 1) * c) of each window, so that
different heads summarise different positions; head 0 keeps the last c columns. Needs l % c == 0.

Segments: A1 is ceil(n / l) causal groups of l. A2 gathers the summary keys into a compact set of
n/l * c keys (by address arithmetic, no copy); in the merged head only earlier windows' summary keys are
in it, since the own window's are in A1.
"""

from __future__ import annotations

import math

import torch

from sparse.patterns.base import BandSegment, Pattern, SummarySegment, check_positive_int

FIXED_PARTS = ("merged", "local", "summary")


class FixedPattern(Pattern):
    attn_mode = "fixed"

    def __init__(
        self, local_attn_ctx: int, summary_ctx: int, part: str = "merged", distinct_heads: bool = False
    ) -> None:
        self.local_attn_ctx = check_positive_int("local_attn_ctx", local_attn_ctx)
        self.summary_ctx = check_positive_int("summary_ctx", summary_ctx)
        if summary_ctx > local_attn_ctx:
            raise ValueError(f"summary_ctx (c={summary_ctx}) must be <= local_attn_ctx (l={local_attn_ctx})")
        if part not in FIXED_PARTS:
            raise ValueError(f"part must be one of {FIXED_PARTS} for attn_mode 'fixed', got {part!r}")
        if not isinstance(distinct_heads, bool):
            raise TypeError(f"distinct_heads must be a bool, got {type(distinct_heads).__name__}")
        if distinct_heads and local_attn_ctx % summary_ctx:
            raise ValueError(
                f"distinct_heads needs local_attn_ctx % summary_ctx == 0, got l={local_attn_ctx}, c={summary_ctx}"
            )
        self.part = part
        self.distinct_heads = distinct_heads

    def summary_offset(self, head: int) -> int:
        return self._summary_segment(same_block=False).offset(head)

    def _summary_segment(self, same_block: bool) -> SummarySegment:
        return SummarySegment(
            block=self.local_attn_ctx,
            summary=self.summary_ctx,
            distinct_heads=self.distinct_heads,
            same_block=same_block,
        )

    def _mask_2d(self, i: torch.Tensor, j: torch.Tensor, head: int) -> torch.Tensor:
        l, c = self.local_attn_ctx, self.summary_ctx
        local = (j // l) == (i // l)
        start = self.summary_offset(head)
        summary = (j % l >= start) & (j % l < start + c)
        return {"merged": local | summary, "local": local, "summary": summary}[self.part]

    def segments(self, n: int) -> tuple[BandSegment | SummarySegment, ...]:
        l = self.local_attn_ctx
        local = BandSegment(
            num_groups=math.ceil(n / l), group_len=l, step=1, group_stride=l, window=0, exclude_self=False
        )
        if self.part == "local":
            return (local,)
        if self.part == "summary":
            return (self._summary_segment(same_block=True),)
        return (self._summary_segment(same_block=False), local)
