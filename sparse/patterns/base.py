"""What every attention pattern provides, and the two kinds of segment the kernels compute.

A pattern is a causal set of allowed (query i, key j) pairs, j <= i, 0-indexed. It has two views:
- `mask(n, num_heads)`: the elements, a torch.bool tensor [H, n, n] (or [1, n, n] when every head is the
  same), True = attend. This is the definition; tests check it against brute force.
- `segments(n)`: the same set cut into disjoint pieces that a kernel can compute at the cost of their
  element count rather than their tile count (DESIGN.md section 2). Two shapes cover every pattern:

  BandSegment: `num_groups` groups; position `t` of group `g` is `g * group_stride + t * step` (positions
    >= n are absent). Inside a group, query t attends key u when `t - window < u <= t - exclude_self`
    (`window = 0` means unbounded). Dense causal is one group with step 1; the strided pattern's stride
    part is l groups with step l (openai/sparse_attention's `strided_transpose`, done by address arithmetic
    instead of a copy); fixed's local part is ceil(n/l) groups of l.

  SummarySegment: the compact key set of fixed's summary columns: block b holds the c keys
    `b * l + offset_h + u`, u < c, where offset_h = l - c, or per head the distinct sub-block of paper 4.3.
    Query i attends block b when `b < i // l` (merged: earlier blocks only, the own block being in the
    local part) or, with `same_block=True`, every summary key at a position <= i.

The segments of a pattern are disjoint, so a merged head is their union under one softmax: the kernels
combine them through the log-sum-exp and count the overlap (j = i) once by excluding it from all but one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BandSegment:
    num_groups: int
    group_len: int
    step: int
    group_stride: int
    window: int  # 0 = unbounded (causal inside the group)
    exclude_self: bool

    def allowed_count(self, n: int) -> int:
        """Exact number of (query, key) pairs this segment allows at sequence length n."""
        total = 0
        for g in range(self.num_groups):
            first = g * self.group_stride
            if first >= n:
                break
            length = min(self.group_len, (n - 1 - first) // self.step + 1)
            total += _band_count(length, self.window, self.exclude_self)
        return total


def _band_count(length: int, window: int, exclude_self: bool) -> int:
    """sum over t < length of the number of u with t - window < u <= t (minus self when excluded)."""
    if window <= 0 or window >= length:
        count = length * (length + 1) // 2
    else:
        # t < window: t + 1 keys; t >= window: window keys.
        count = window * (window + 1) // 2 + (length - window) * window
    return count - (length if exclude_self else 0)


@dataclass(frozen=True)
class SummarySegment:
    block: int  # l
    summary: int  # c
    distinct_heads: bool
    same_block: bool

    def offset(self, head: int) -> int:
        """First column of the summary sub-block inside each length-l block, for this head."""
        if not self.distinct_heads:
            return self.block - self.summary
        num_verts = self.block // self.summary
        return ((num_verts - 1 - head) % num_verts) * self.summary

    def allowed_count(self, n: int, head: int = 0) -> int:
        blocks_before = torch.arange(n, dtype=torch.int64) // self.block
        count = int(blocks_before.sum()) * self.summary
        if self.same_block:
            # Summary keys of the query's own block at positions <= i: clamp(i % l - offset + 1, 0, c).
            within = torch.arange(n, dtype=torch.int64) % self.block - self.offset(head) + 1
            count += int(within.clamp(0, self.summary).sum())
        return count


Segment = BandSegment | SummarySegment


def segment_mask(segment: Segment, n: int, head: int = 0) -> torch.Tensor:
    """The [n, n] boolean mask of one segment, built from its own geometry (not from the pattern's
    definition), so that tests can check that the segments tile the pattern exactly."""
    i = torch.arange(n).view(n, 1)
    j = torch.arange(n).view(1, n)
    if isinstance(segment, SummarySegment):
        in_summary = (j % segment.block >= segment.offset(head)) & (
            j % segment.block < segment.offset(head) + segment.summary
        )
        if segment.same_block:
            return in_summary & (j <= i)
        return in_summary & (j // segment.block < i // segment.block)
    s = segment
    # Which group and which in-group index each position has (or -1 when it is in no group).
    pos = torch.arange(n)
    group = torch.full((n,), -1)
    index = torch.full((n,), -1)
    for g in range(s.num_groups):
        ts = torch.arange(s.group_len)
        p = g * s.group_stride + ts * s.step
        keep = p < n
        group[p[keep]] = g
        index[p[keep]] = ts[keep]
    del pos
    same = (group.view(n, 1) == group.view(1, n)) & (group.view(n, 1) >= 0)
    ti, tj = index.view(n, 1), index.view(1, n)
    allowed = same & (tj <= ti - int(s.exclude_self))
    if s.window > 0:
        allowed &= tj > ti - s.window
    return allowed


class Pattern:
    """Base class. Subclasses set `attn_mode` and `part` and implement `_mask_2d` and `segments`."""

    attn_mode: str = ""
    part: str = "merged"
    distinct_heads: bool = False

    def _mask_2d(self, i: torch.Tensor, j: torch.Tensor, head: int) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def segments(self, n: int) -> tuple[Segment, ...]:  # pragma: no cover
        raise NotImplementedError

    def mask(self, n: int, num_heads: int = 1, device: torch.device | str | None = None) -> torch.Tensor:
        """torch.bool [H, n, n] when heads differ, else [1, n, n]; True = attend; always causal."""
        _check_length(n)
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        i = torch.arange(n, device=device).view(n, 1)
        j = torch.arange(n, device=device).view(1, n)
        heads = range(num_heads) if self.distinct_heads else range(1)
        return torch.stack([self._mask_2d(i, j, h) & (j <= i) for h in heads])

    def allowed_keys(self, i: int, head: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
        """Positions j <= i that query i attends (int64, ascending): what a sampler's key-value cache must
        read at step i, O(i) to compute and O(allowed) long."""
        if i < 0:
            raise ValueError(f"i must be >= 0, got {i}")
        j = torch.arange(i + 1, device=device)
        row = self._mask_2d(torch.tensor(i, device=device), j, head)
        return j[row]

    def allowed_count(self, n: int, num_heads: int = 1) -> int:
        """Exact number of allowed (query, key) pairs at length n, summed over heads."""
        _check_length(n)
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        if not self.distinct_heads:
            return num_heads * _allowed_count(self, n, 0)
        return sum(_allowed_count(self, n, h) for h in range(num_heads))

    def flops(self, n: int, batch: int, num_heads: int, head_dim: int, backward: bool = False) -> int:
        """Useful FLOPs: 4 * D per allowed element and head (QK^T and PV, multiply-add = 2) for the
        forward; the backward costs 2.5x the forward (five matrix products instead of two)."""
        forward = 4 * batch * head_dim * self.allowed_count(n, num_heads)
        return int(forward * 2.5) if backward else forward

    def element_density(self, n: int, num_heads: int = 1) -> float:
        """Allowed elements over n^2 (dense causal is about 0.5)."""
        return self.allowed_count(n, num_heads) / (num_heads * n * n)

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        args = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


def _check_length(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")


def check_positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


@functools.lru_cache(maxsize=1024)
def _allowed_count(pattern: Pattern, n: int, head: int) -> int:
    """One head's count, cached: throughput monitors ask for every layer at every step, and a summary
    segment's count is a Python loop over its windows."""
    total = 0
    for seg in pattern.segments(n):
        total += seg.allowed_count(n, head) if isinstance(seg, SummarySegment) else seg.allowed_count(n)
    return total
