"""FlexAttention with the pattern's exact element mask: the general-purpose peer of the Triton kernels.

The mask reaches FlexAttention twice: as a `mask_mod` (elementwise, evaluated inside partial blocks) and as
a BlockMask, the classification of every 128 x 128 tile (query block a, key block b) into
- "full": all its elements are allowed (a tile that reaches past n is padded with masked elements, so it is
  never full), computed without evaluating the mask;
- "partial": some but not all are allowed, computed with `mask_mod`;
- neither: skipped.

`block_classes(pattern, n, num_heads)` returns that classification as two bool tensors [1, H', nb, nb]
(nb = ceil(n / 128), H' = num_heads for patterns whose heads differ, else 1), exactly what torch's
`create_block_mask` computes. It does not evaluate the n x n element mask, which costs minutes and over
100 GB at n = 262,144: every pattern here is an interval question per tile (strided, local and dense depend
on i - j only, fixed on window indices and a count of summary columns), answered with a few integer ops per
tile, O(nb^2) in all, on the tensors' device, a bounded chunk of query-block rows at a time (about 0.3 GB
of temporaries at most). A Pattern type not handled here falls back to evaluating the elements, as
`create_block_mask` does (exact, but O(n^2)); today every type that has a `mask_mod` is handled.

`block_mask_for` turns the classification into a BlockMask (cached per pattern, n, heads, device) with the
same tensors as `create_block_mask`'s. The BlockMask holds four int32 index tensors of [1, H', nb, nb],
1 GiB per mask head at n = 1,048,576: there it builds in 0.02 s on an H200 (0.3 GiB of temporaries above
that; 0.4 s for 16 distinct heads) and in about 6 s on two CPU cores. `reference_block_mask` is the
`create_block_mask` path, kept for tests and comparisons.

On a GPU flex_attention is compiled (eager FlexAttention materialises scores and is only a correctness
path); on the CPU it runs the forward only: its backward needs a GPU.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, create_mask, flex_attention

from sparse.patterns import DensePattern, FixedPattern, Pattern, StridedPattern

BLOCK = 128  # FlexAttention's default sparse block, used for every BlockMask built here
# Tiles classified per chunk: the classification keeps about a dozen int32 temporaries of this many
# elements alive, so 2^22 bounds them near 0.25 GB whatever n is (the orderings' int64 argsort near 0.1 GB).
CHUNK_TILES = 1 << 22


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


def block_classes(
    pattern: Pattern, n: int, num_heads: int, block_size: int = BLOCK, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(partial, full): bool [1, H', nb, nb] with nb = ceil(n / block_size), H' = num_heads when the pattern's
    heads differ, else 1; equal to the partial and full block masks of `create_block_mask(mask_mod_for(pattern),
    B=None, H=H' or None, Q_LEN=n, KV_LEN=n, BLOCK_SIZE=block_size)`."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be an int >= 1, got {num_heads!r}")
    heads = num_heads if pattern.distinct_heads else 1
    # int32 positions: three times faster than int64 on the CPU (memory-bound ops), and exact while n <= 2^30.
    index_dtype = torch.int32 if n <= 2**30 else torch.int64
    if isinstance(pattern, (DensePattern, StridedPattern)):
        classify = _diagonal_classifier(pattern, n, device, index_dtype)
        classifiers = [classify] * heads
    elif isinstance(pattern, FixedPattern):
        classifiers = [_fixed_classifier(pattern, pattern.summary_offset(h)) for h in range(heads)]
    else:
        return _classes_from_elements(mask_mod_for(pattern), n, heads, block_size, device)

    nb = math.ceil(n / block_size)
    partial = torch.empty(1, heads, nb, nb, dtype=torch.bool, device=device)
    full = torch.empty_like(partial)
    first = torch.arange(nb, dtype=index_dtype, device=device) * block_size
    last = (first + block_size).clamp(max=n) - 1
    j0, j1 = first.view(1, nb), last.view(1, nb)
    rows = max(1, CHUNK_TILES // nb)
    for h, classify in enumerate(classifiers):
        for a0 in range(0, nb, rows):
            i0, i1 = first[a0 : a0 + rows].view(-1, 1), last[a0 : a0 + rows].view(-1, 1)
            any_, all_ = classify(i0, i1, j0, j1)
            # create_block_mask pads the last block row and column with False: such a tile is never full.
            all_ = all_ & (j1 <= i0) & (i1 - i0 + 1 == block_size) & (j1 - j0 + 1 == block_size)
            full[0, h, a0 : a0 + rows] = all_
            partial[0, h, a0 : a0 + rows] = any_ & ~all_
    return partial, full


def _diagonal_classifier(pattern: Pattern, n: int, device, index_dtype: torch.dtype):
    """Patterns whose rule depends on d = i - j only. A tile's elements take every integer d in
    [i0 - j1, i1 - j0] (the difference of two integer intervals), so it has an allowed element when that
    range holds an allowed d >= 0, and has only allowed ones when every d in it is allowed (and >= 0):
    both read from a prefix count of allowed(d) over d in [0, n)."""
    d = torch.arange(n, device=device)
    if isinstance(pattern, DensePattern):
        allowed = torch.ones_like(d, dtype=torch.bool)
    else:
        l = pattern.local_attn_ctx
        local, stride = d < l, d % l == 0
        allowed = {"merged": local | stride, "local": local, "stride": stride}[pattern.part]
    prefix = torch.zeros(n + 1, dtype=index_dtype, device=device)
    prefix[1:] = allowed.cumsum(0)

    def classify(i0, i1, j0, j1):
        lo, hi = i0 - j1, i1 - j0  # hi <= n - 1; lo > hi never, but hi < 0 (above the diagonal) happens
        lo_causal = lo.clamp(min=0)
        count = (prefix[(hi + 1).clamp(min=0)] - prefix[lo_causal]).clamp(min=0)
        return count > 0, (lo >= 0) & (count == hi - lo + 1)

    return classify


def _fixed_classifier(pattern: FixedPattern, offset: int):
    """attn_mode "fixed" for one head, whose summary columns are s <= j % l < s + c (s = offset).

    With F(x) the number of summary columns in [0, x), a tile (i in [i0, i1], j in [j0, j1]) has
    - a local element (j <= i, same window) iff the first window meeting both ranges, w = max(i0 // l, j0 // l),
      does: w <= min(i1 // l, j1 // l) and max(j0, w l) <= min(i1, w l + l - 1). (If a later window w' works,
      then j0 < w' l <= i1 and w < w', and w's ranges reach its end, so w works too.)
    - a summary element (j <= i, j summary) iff [j0, min(j1, i1)] holds a summary column.
    - only allowed elements (given j1 <= i0, checked by the caller) when, for local, all of i and j lie in one
      window; for summary, every j is a summary column; for merged, every j is a summary column or the
      queries lie in one window w and so do all non-summary keys (a non-summary key must share its window
      with every query)."""
    l, c, part = pattern.local_attn_ctx, pattern.summary_ctx, pattern.part

    def summaries_before(x):
        return (x // l) * c + (x % l - offset).clamp(0, c)

    def others_in(lo, hi):  # non-summary columns in [lo, hi], 0 when empty
        lo_count = lo - summaries_before(lo)
        return (hi + 1 - summaries_before(hi + 1) - lo_count).clamp(min=0)

    def classify(i0, i1, j0, j1):
        w = torch.maximum(i0 // l, j0 // l)
        start = w * l
        local_any = (w <= torch.minimum(i1 // l, j1 // l)) & (
            torch.maximum(j0, start) <= torch.minimum(i1, start + l - 1)
        )
        summary_any = summaries_before(torch.minimum(j1, i1) + 1) - summaries_before(j0) > 0
        all_summary = summaries_before(j1 + 1) - summaries_before(j0) == j1 - j0 + 1
        one_window = i0 // l == i1 // l
        if part == "local":
            return local_any, one_window & (j0 // l == i0 // l) & (j1 // l == i0 // l)
        if part == "summary":
            return summary_any, all_summary
        own = i0 // l * l  # the queries' window when one_window
        others_outside = others_in(j0, j1) - others_in(torch.maximum(j0, own), torch.minimum(j1, own + l - 1))
        return local_any | summary_any, all_summary | (one_window & (others_outside == 0))

    return classify


def _classes_from_elements(mask_mod, n: int, heads: int, block_size: int, device):
    """create_block_mask's own classification: the [heads, n, n] element mask, padded, summed per tile."""
    mask = create_mask(mask_mod, None, heads, n, n, device=device)
    nb = math.ceil(n / block_size)
    pad = nb * block_size - n
    mask = torch.nn.functional.pad(mask, (0, pad, 0, pad))
    counts = mask.view(1, heads, nb, block_size, nb, block_size).sum(dim=(3, 5))
    full = counts == block_size * block_size
    return (counts > 0) & ~full, full


def _ordered(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the number of True blocks and all column indices, True ones first, each group ascending: the
    order of torch's `_dense_to_ordered` (whose argsort over the whole [H, nb, nb] we do per row chunk)."""
    *lead, nb = blocks.shape
    num = torch.empty(*lead, dtype=torch.int32, device=blocks.device)
    indices = torch.empty(*lead, nb, dtype=torch.int32, device=blocks.device)
    rows = max(1, CHUNK_TILES // nb)
    for a0 in range(0, lead[-1], rows):
        chunk = blocks[..., a0 : a0 + rows, :].to(torch.int8)
        num[..., a0 : a0 + rows] = chunk.sum(dim=-1)
        indices[..., a0 : a0 + rows, :] = torch.argsort(chunk, dim=-1, descending=True, stable=True)
    return num, indices


@functools.lru_cache(maxsize=64)
def block_mask_for(pattern: Pattern, n: int, num_heads: int, device: str) -> BlockMask:
    """The BlockMask of the pattern at length n, built from `block_classes` (O(nb^2), no element mask); its
    tensors equal those of `reference_block_mask`."""
    mask_mod = mask_mod_for(pattern)
    partial, full = block_classes(pattern, n, num_heads, BLOCK, device)
    kv_num_blocks, kv_indices = _ordered(partial)
    full_kv_num_blocks, full_kv_indices = _ordered(full)
    # The query-side (transposed) lists, which the backward reads, are ordered here too, by the same rule, rather
    # than by BlockMask.from_kv_blocks: its _transpose_ordered rebuilds the dense int32 mask from the lists and
    # argsorts the whole [H', nb, nb] at once, about 1.5 GB of temporaries per head and 6.5 s per call on two
    # CPU cores at n = 1,048,576 (13 of the 19 s this function then took); in row chunks it stays bounded.
    q_num_blocks, q_indices = _ordered(partial.transpose(-2, -1).contiguous())
    full_q_num_blocks, full_q_indices = _ordered(full.transpose(-2, -1).contiguous())
    return BlockMask(
        seq_lengths=(n, n),
        kv_num_blocks=kv_num_blocks,
        kv_indices=kv_indices,
        full_kv_num_blocks=full_kv_num_blocks,
        full_kv_indices=full_kv_indices,
        q_num_blocks=q_num_blocks,
        q_indices=q_indices,
        full_q_num_blocks=full_q_num_blocks,
        full_q_indices=full_q_indices,
        BLOCK_SIZE=(BLOCK, BLOCK),
        mask_mod=mask_mod,
    )


def reference_block_mask(pattern: Pattern, n: int, num_heads: int, device: str, block_size: int = BLOCK) -> BlockMask:
    """torch's `create_block_mask` over the n x n element mask: O(n^2) time and memory; for tests."""
    heads = num_heads if pattern.distinct_heads else None
    return create_block_mask(
        mask_mod_for(pattern), B=None, H=heads, Q_LEN=n, KV_LEN=n, device=device, BLOCK_SIZE=block_size
    )


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
