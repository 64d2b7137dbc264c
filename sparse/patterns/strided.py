"""attn_mode "strided" (paper section 4.2, Figure 3b) and "local".

With l = local_attn_ctx, query i attends key j <= i when
  A1 ("local"):  i - j < l            (the l previous positions, i included, as openai/sparse_attention's
                                       `local` mode; the paper's text says l + 1)
  A2 ("stride"): (i - j) % l == 0     (every l-th position back, i included)
`part` selects A1, A2 or their union ("merged", one softmax over both). attn_mode "local" is A1 alone.

Segments: A1 is one band of width l. A2 is l groups with step l: position t * l + r is index t of group r,
so the stride part becomes causal attention inside groups of ceil(n / l), the paper's section 5.5
transpose. In the merged head the stride part leaves out j = i, which A1 already has.
"""

from __future__ import annotations

import math

import torch

from sparse.patterns.base import BandSegment, Pattern, check_positive_int

STRIDED_PARTS = ("merged", "local", "stride")


class StridedPattern(Pattern):
    attn_mode = "strided"

    def __init__(self, local_attn_ctx: int, part: str = "merged") -> None:
        self.local_attn_ctx = check_positive_int("local_attn_ctx", local_attn_ctx)
        if part not in STRIDED_PARTS:
            raise ValueError(f"part must be one of {STRIDED_PARTS} for attn_mode 'strided', got {part!r}")
        self.part = part

    def _mask_2d(self, i: torch.Tensor, j: torch.Tensor, head: int) -> torch.Tensor:
        l = self.local_attn_ctx
        local = (i - j) < l
        stride = torch.remainder(i - j, l) == 0
        return {"merged": local | stride, "local": local, "stride": stride}[self.part]

    def segments(self, n: int) -> tuple[BandSegment, ...]:
        l = self.local_attn_ctx
        local = BandSegment(num_groups=1, group_len=n, step=1, group_stride=0, window=l, exclude_self=False)
        stride = BandSegment(
            num_groups=min(l, n),
            group_len=math.ceil(n / l),
            step=l,
            group_stride=1,
            window=0,
            exclude_self=self.part == "merged",
        )
        if self.part == "local":
            return (local,)
        if self.part == "stride":
            return (stride,)
        return (stride, local)


class LocalPattern(StridedPattern):
    """attn_mode "local": the strided pattern's A1 alone, i - j < local_attn_ctx."""

    attn_mode = "local"

    def __init__(self, local_attn_ctx: int, part: str = "merged") -> None:
        if part not in ("merged", "local"):
            raise ValueError(f"attn_mode 'local' has a single part; part must be 'merged', got {part!r}")
        super().__init__(local_attn_ctx, part="local")
