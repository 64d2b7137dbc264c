"""attn_mode "all": dense causal attention, j <= i. The baseline every sparse pattern is compared with."""

from __future__ import annotations

import torch

from sparse.patterns.base import BandSegment, Pattern


class DensePattern(Pattern):
    attn_mode = "all"

    def __init__(self) -> None:
        self.part = "merged"

    def _mask_2d(self, i: torch.Tensor, j: torch.Tensor, head: int) -> torch.Tensor:
        return j <= i

    def segments(self, n: int) -> tuple[BandSegment, ...]:
        return (BandSegment(num_groups=1, group_len=n, step=1, group_stride=0, window=0, exclude_self=False),)
