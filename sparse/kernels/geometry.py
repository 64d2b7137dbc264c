"""Address arithmetic shared by the forward and backward kernels: which positions a tile holds, and which
(query, key) pairs of a tile a segment allows. See sparse/patterns/base.py for the two segment shapes.

Why address arithmetic instead of copies: the strided pattern's transpose (position t * l + r is index t of
group r) and fixed's gather of summary columns are just row addresses; computing them per tile costs a few
integer ops per row and saves a permuted copy of q, k, v, o and every gradient (DESIGN.md section 2).
All functions are @triton.jit and inline into the kernels. Geometry numbers (l, c, step, window) are runtime
arguments, so a model with many strides compiles each kernel once; only the shape of the mask (summary or
band, windowed or not, self excluded or not) is constexpr.
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

# How tl.dot is issued (a constexpr of every kernel): natively (bf16/fp16 tensor cores, fp32 accumulation),
# in IEEE fp32 for fp32 inputs (Triton's default tf32 would miss the 1e-5 tolerance), or upcast to fp32 first:
# Triton 3.6's CPU interpreter computes bf16 dots wrongly, and since bf16 x bf16 products are exact in fp32,
# upcasting gives the GPU's result.
DOT_NATIVE, DOT_IEEE_FP32, DOT_UPCAST = 0, 1, 2


@triton.jit
def mma(a, b, DOT_MODE: tl.constexpr):
    if DOT_MODE == 1:
        return tl.dot(a, b, input_precision="ieee")
    elif DOT_MODE == 2:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def band_positions(group, index, n, group_len, step, group_stride):
    """Sequence positions of in-group indices `index` of group `group`, and whether they exist.

    Existence is one compare per index against the group's count of rows before n (a scalar per program), not the two
    compares (index < group_len, position < n) per index that the compiler otherwise repeats for every key column of
    every key tile (benchmarks/KERNEL_NOTES.md, session of 13:10). Triton's integer division rounds toward zero, so a
    group that starts at or past n is given no rows explicitly."""
    first = group * group_stride
    rows = tl.minimum(group_len, tl.where(first < n, (n - 1 - first) // step + 1, 0))
    return first + index * step, index < rows


@triton.jit
def band_interior(first, lo, hi, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_WINDOW: tl.constexpr):
    """Key tiles [inner_lo, inner_hi) (the loop's BLOCK_N steps from lo up to hi) every pair of which a band segment
    allows for query rows [first, first + BLOCK_M): keys below `first` (so at most each row's t - EXCLUDE_SELF, for
    EXCLUDE_SELF of 0 or 1) and, with a window, above the last row's t - window. Those keys exist wherever the tile's
    first row does (they precede it in its group); a tile whose first row does not exist has no row that is stored.
    Forward and dq programs (queries own the tile) skip the mask there (plan.LEAN_MASKS)."""
    inner_hi = first // BLOCK_N * BLOCK_N
    if HAS_WINDOW:  # kept non-negative: Triton's integer division truncates where the interpreter's floors
        inner_lo = tl.maximum(lo, tl.cdiv(tl.maximum(first + BLOCK_M - window, 0), BLOCK_N) * BLOCK_N)
    else:
        inner_lo = lo
    inner_lo = tl.minimum(inner_lo, hi)
    return inner_lo, tl.minimum(tl.maximum(inner_hi, inner_lo), hi)


@triton.jit
def band_interior_queries(
    first_key, lo, hi, window, n, group, group_len, step, group_stride,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_WINDOW: tl.constexpr,
):  # fmt: skip
    """Query tiles [inner_lo, inner_hi) (BLOCK_M steps from lo up to hi) every pair of which a band segment allows for
    the keys [first_key, first_key + BLOCK_N) and every query of which exists: queries from first_key + BLOCK_N on
    (above every key, EXCLUDE_SELF 0 or 1), with a window below first_key + window - BLOCK_M + 1, and the whole tile
    inside the group's existing rows (a query that does not exist would add to dk and dv). dk/dv programs (keys own
    the tile) skip the mask there (plan.LEAN_MASKS)."""
    inner_lo = tl.minimum(tl.maximum(lo, tl.cdiv(first_key + BLOCK_N, BLOCK_M) * BLOCK_M), hi)
    existing = tl.minimum(group_len, tl.cdiv(tl.maximum(n - group * group_stride, 0), step))
    inner_hi = existing // BLOCK_M * BLOCK_M
    if HAS_WINDOW:
        inner_hi = tl.minimum(inner_hi, (first_key + window) // BLOCK_M * BLOCK_M)
    return inner_lo, tl.minimum(tl.maximum(inner_hi, inner_lo), hi)


@triton.jit
def summary_offset(head, l_block, c_sum, DISTINCT: tl.constexpr):
    """First column of this head's summary sub-block in each window (paper 4.3's distinct sub-blocks)."""
    if DISTINCT:
        num_verts = l_block // c_sum
        return ((num_verts - 1 - head % num_verts) % num_verts) * c_sum
    else:
        return l_block - c_sum


@triton.jit
def summary_positions(compact, offset, n, l_block, c_sum):
    """Sequence positions of compact summary keys (block b, column u) -> b * l + offset + u."""
    block = compact // c_sum
    pos = block * l_block + offset + compact % c_sum
    return pos, block, pos < n


@triton.jit
def summary_allowed(q_pos, k_pos, k_block, l_block, SAME_BLOCK: tl.constexpr):
    """Merged head: summary keys of strictly earlier windows (the own window is the local part's);
    summary part alone: every summary key at a position <= the query's."""
    if SAME_BLOCK:
        return k_pos[None, :] <= q_pos[:, None]
    else:
        return k_block[None, :] < (q_pos // l_block)[:, None]


@triton.jit
def summary_key_end(last_query, l_block, c_sum, SAME_BLOCK: tl.constexpr):
    """One past the last compact key that any query up to `last_query` can attend."""
    if SAME_BLOCK:
        return (last_query // l_block + 1) * c_sum
    else:
        return (last_query // l_block) * c_sum


# How a segment's tiles are loaded (a constexpr of the kernels; plan.SegmentLaunch.tma): by pointer, or by one
# asynchronous TMA copy from a host tensor descriptor, which needs no per-row address registers or masks.
# TMA_ROWS: band segments of step 1, rows contiguous in the sequence; a [B, H, n, D] descriptor.
# TMA_GROUP_ROWS: the stride part (step l, group_stride 1, l groups, n a multiple of l): row t of group g is position
# t * l + g, i.e. element [g, t] of the sequence seen as [l, n / l] with strides (1, l) rows; a [B, H, l, n / l, D]
# descriptor. Rows and head dim are the box's last two dimensions, so a tile lands in shared memory as for TMA_ROWS
# (with the unit dimension between them, [.., n / l, l, D], the compiler copied tiles through registers: 20-70 more
# per thread in the resource report).
# TMA_SUMMARY_KEYS: a summary segment's compact keys (fixed attention; n a multiple of l, c a power of two): compact
# key b * c + u is position b * l + offset + u, i.e. element [b, offset + u] of the sequence seen as [n / l, l]; a
# [B, H, n / l, l, D] descriptor whose box [1, 1, BLOCK_N / c, c, D] (or [1, 1, 1, BLOCK_N, D] where BLOCK_N < c) is
# one key tile.
TMA_OFF, TMA_ROWS, TMA_GROUP_ROWS, TMA_SUMMARY_KEYS = 0, 1, 2, 3


# Programmatic dependent launch (Hopper; the kernels' PDL constexpr, plan.PROGRAMMATIC_LAUNCH): the launches of one op
# run back to back, each short, so the gap between two (the next grid's launch and the last wave's tail) is a few
# percent of each. PDL_FIRST: the op's first launch (or one after a kernel that is not ours), launched normally; it lets
# the next launch start as soon as every one of its programs has started. PDL_EARLY: launched early (launch_pdl), so it
# may run beside the previous launch; it loads only the op's inputs (q, k, v, dO: written before the op's first launch
# began) until `wait_for_previous_launch`, which returns once the previous launch has finished and its writes are
# visible (and that one waited for its own previous, so every earlier launch of the op has finished too).
# Two launches that are independent of each other but not of the launch before them (fixed attention's summary dk/dv
# and dq, plan.SUMMARY_DKDV_FIRST) pair up so that the second fills the first's last wave instead of waiting for it:
# PDL_HANDOFF: launched early and waits like PDL_EARLY, but lets the next launch start only after that wait, so by the
# time any program of the next launch runs, every launch before this one has finished and its writes are visible.
# PDL_TAIL: the launch after a PDL_HANDOFF one (launched early): it reads the op's inputs and what the launches before
# the handoff wrote (D) without waiting, and waits only before it reads back the earlier segments' sums and writes
# (`wait_before_read_back`), so it never finishes before the handoff launch and what comes after it in the stream
# still sees both finished.
PDL_OFF, PDL_FIRST, PDL_EARLY, PDL_HANDOFF, PDL_TAIL = 0, 1, 2, 3, 4


# Which program takes which tile (the forward's, dq's and dk/dv's ORDER constexpr; plan.SUMMARY_LONGEST_FIRST). CUDA
# starts a grid's programs in order of their index, x fastest. TILES_BY_HEAD: grid (tiles, B * H), each head's tiles in
# order. LONGEST_FIRST / LAST_TILE_FIRST: grid (B * H, tiles), so that tile t of every head starts before tile t + 1 of
# any, from the first tile (LONGEST_FIRST) or from the last (LAST_TILE_FIRST). A summary segment's programs differ in
# length (fixed attention's causal summary: dk/dv's first key tiles and the forward's and dq's last query tiles stream
# the most tiles), and starting the longest of every head first keeps the last wave from being the last heads' longest
# programs (the greedy longest-first schedule; by a simulation of fixed at n = 12,288 with 16 heads, the dk/dv launch
# ends ~20% sooner).
TILES_BY_HEAD, LONGEST_FIRST, LAST_TILE_FIRST = 0, 1, 2


# HEADS_REVERSED (the kernels' constexpr; plan.ALTERNATE_HEAD_ORDER): a launch takes the (batch, head)s from the last,
# so that its first programs read the rows the launch before it read or wrote last, which may still be in L2 (each
# tensor is 25 MB at n = 12,288, 16 heads, D = 64; the L2 holds 50).


@triton.jit
def owned_queries(
    pid, head, rows, n, group_len, step, group_stride, window, l_block, c_sum, tiles_per_group,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr,
    SAME_BLOCK: tl.constexpr, DISTINCT: tl.constexpr,
):  # fmt: skip
    """The queries a forward or dq program `pid` owns and the keys they can reach, as in-segment indices: returns
    (q_index, q_pos, q_valid, lo, hi, offset, group, tile). A summary segment's programs own sequence-order tiles and
    reach compact summary keys [0, hi) at `offset`; a band segment's own tile `tile` of group `group` and reach its
    keys [lo, hi), lo rounded down to a key tile."""
    if IS_SUMMARY:
        group = 0
        tile = pid
        q_index = pid * BLOCK_M + rows
        q_pos = q_index
        q_valid = q_pos < n
        last_query = tl.minimum((pid + 1) * BLOCK_M, n) - 1
        lo = 0
        hi = summary_key_end(last_query, l_block, c_sum, SAME_BLOCK)
        offset = summary_offset(head, l_block, c_sum, DISTINCT)
    else:
        group = pid // tiles_per_group
        tile = pid % tiles_per_group
        q_index = tile * BLOCK_M + rows
        q_pos, q_valid = band_positions(group, q_index, n, group_len, step, group_stride)
        hi = tl.minimum((tile + 1) * BLOCK_M, group_len)
        if HAS_WINDOW:
            lo = tl.maximum(0, tile * BLOCK_M - window + 1) // BLOCK_N * BLOCK_N
        else:
            lo = 0
        offset = 0
    return q_index, q_pos, q_valid, lo, hi, offset, group, tile


@triton.jit
def tile_and_head(ORDER: tl.constexpr, HEADS_REVERSED: tl.constexpr = False):
    """(tile, batch x head) of this program under ORDER (see TILES_BY_HEAD) and HEADS_REVERSED."""
    if ORDER == 0:
        pid, bh, heads = tl.program_id(0), tl.program_id(1), tl.num_programs(1)
    elif ORDER == 1:
        pid, bh, heads = tl.program_id(1), tl.program_id(0), tl.num_programs(0)
    else:
        pid, bh, heads = tl.num_programs(1) - 1 - tl.program_id(1), tl.program_id(0), tl.num_programs(0)
    if HEADS_REVERSED:
        bh = heads - 1 - bh
    return pid, bh


@triton.jit
def let_next_launch_start(PDL: tl.constexpr):
    if PDL == 1 or PDL == 2 or PDL == 4:  # PDL_FIRST, PDL_EARLY, PDL_TAIL (kernels read constexpr globals alone)
        gdc_launch_dependents()


@triton.jit
def wait_for_previous_launch(PDL: tl.constexpr):
    if PDL == 2 or PDL == 3:  # PDL_EARLY, PDL_HANDOFF
        gdc_wait()
    if PDL == 3:  # only now: the next launch (PDL_TAIL) reads what the launches before this one wrote, unwaited
        gdc_launch_dependents()


@triton.jit
def wait_before_read_back(PDL: tl.constexpr):
    if PDL == 4:  # PDL_TAIL: the handoff launch before it must finish before this one may
        gdc_wait()


@triton.jit
def tma_rows(desc, batch, head, group, group_stride, first, TMA: tl.constexpr):
    """In-group rows [first, first + BLOCK) of group `group` of one (batch, head), as [BLOCK, D], from the descriptor
    of layout TMA (see TMA_ROWS, TMA_GROUP_ROWS). Rows past n (TMA_ROWS) or past n / l (TMA_GROUP_ROWS) come as zeros;
    rows past a group's end but before n are real rows, which the callers' masks drop as they drop any other."""
    tl.static_assert(TMA == 1 or TMA == 2, "tma_rows serves the descriptor layouts alone")
    if TMA == 1:
        tile = desc.load([batch, head, group * group_stride + first, 0])
        return tile.reshape(tile.shape[2], tile.shape[3])
    else:
        tile = desc.load([batch, head, group, first, 0])
        return tile.reshape(tile.shape[3], tile.shape[4])


@triton.jit
def store_rows(desc, batch, head, group, group_stride, first, value, TMA: tl.constexpr):
    """Store `value` ([rows, D], the output's dtype) as in-group rows [first, first + rows) of group `group` of one
    (batch, head), by one TMA copy from shared memory (the layouts of `tma_rows`): no per-row addresses or masks, and
    no shared-memory round trip into a layout for coalesced stores. Rows past n (TMA_ROWS) or past n / l
    (TMA_GROUP_ROWS) are dropped by the copy engine; a caller whose tile could run past its group's end into rows
    before n must not store so (plan.TMA_STORES)."""
    tl.static_assert(TMA == 1 or TMA == 2, "store_rows serves the descriptor layouts alone")
    if TMA == 1:
        desc.store([batch, head, group * group_stride + first, 0], value.reshape(1, 1, value.shape[0], value.shape[1]))
    else:
        desc.store([batch, head, group, first, 0], value.reshape(1, 1, 1, value.shape[0], value.shape[1]))


@triton.jit
def add_rows(desc, batch, head, first, value):
    """Add `value` ([rows, D], the output's dtype) to rows [first, first + rows) of one (batch, head) of a [B, H, n, D]
    output by TMA reduction (cp.reduce.async.bulk.tensor .add): the L2 adds, the program does not wait for the rows to
    come back, and rows past n are dropped by the copy engine. Each row is added by one program of a launch, after the
    launch before it finished (PDL waits as for a read-back), so the sum, and its rounding, are the same at every run.
    Only where a tile's rows past its group's end are past n too (plan.REDUCE_READ_BACK)."""
    desc.atomic_add([batch, head, first, 0], value.reshape(1, 1, value.shape[0], value.shape[1]))


@triton.jit
def key_tile(
    k_base, v_base, stride_kn, stride_vn, start, k_index, offset, hi, n, group, group_len, step, group_stride, l_block,
    c_sum, k_desc, v_desc, batch, head, HEAD_DIM: tl.constexpr, IS_SUMMARY: tl.constexpr, TMA: tl.constexpr,
):  # fmt: skip
    """The k and v rows of in-segment keys `k_index` = start + arange (zeros where a key does not exist; with TMA, by
    descriptor: a band segment's rows, see `tma_rows`, or a summary segment's compact keys, TMA_SUMMARY_KEYS), with the
    keys' sequence positions, summary blocks (band segments: unused) and existence. Summary keys from `hi` on do not
    exist (by descriptor they may be real rows, which the callers' masks drop)."""
    dims = tl.arange(0, HEAD_DIM)
    if IS_SUMMARY:
        k_pos, k_block, k_valid = summary_positions(k_index, offset, n, l_block, c_sum)
        k_valid &= k_index < hi
    else:
        k_pos, k_valid = band_positions(group, k_index, n, group_len, step, group_stride)
        k_block = k_index
    if TMA == 3:  # TMA_SUMMARY_KEYS: blocks start // c on, columns offset + start % c on (keys past hi: masked)
        k = k_desc.load([batch, head, start // c_sum, offset + start % c_sum, 0]).reshape(k_index.shape[0], HEAD_DIM)
        v = v_desc.load([batch, head, start // c_sum, offset + start % c_sum, 0]).reshape(k_index.shape[0], HEAD_DIM)
    elif TMA:
        k = tma_rows(k_desc, batch, head, group, group_stride, start, TMA)
        v = tma_rows(v_desc, batch, head, group, group_stride, start, TMA)
    else:
        k_off = k_pos.to(tl.int64)[:, None]
        k = tl.load(k_base + k_off * stride_kn + dims[None, :], mask=k_valid[:, None], other=0.0)
        v = tl.load(v_base + k_off * stride_vn + dims[None, :], mask=k_valid[:, None], other=0.0)
    return k, v, k_pos, k_block, k_valid


@triton.jit
def mask_tile(
    x, fill, q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
    IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, SAME_BLOCK: tl.constexpr,
    LEAN: tl.constexpr, edge, TRANSPOSED: tl.constexpr = False,
):  # fmt: skip
    """`x` (a [queries, keys] tile, [keys, queries] if TRANSPOSED) with `fill` where the segment does not allow the
    pair. LEAN (plan.LEAN_MASKS): only where `edge`, a runtime flag that is false on a band's interior tiles
    (band_interior, band_interior_queries), every pair of which is allowed."""
    if LEAN:
        if edge:
            x = _fill_disallowed(
                x, fill, q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
                IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, TRANSPOSED,
            )  # fmt: skip
    else:
        x = _fill_disallowed(
            x, fill, q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
            IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, TRANSPOSED,
        )  # fmt: skip
    return x


@triton.jit
def _fill_disallowed(
    x, fill, q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
    IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, SAME_BLOCK: tl.constexpr,
    TRANSPOSED: tl.constexpr,
):  # fmt: skip
    allowed = tile_allowed(
        q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
        IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK,
    )  # fmt: skip
    return tl.where(tl.trans(allowed) if TRANSPOSED else allowed, x, fill)


@triton.jit
def tile_allowed(
    q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
    IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, SAME_BLOCK: tl.constexpr,
):  # fmt: skip
    """[queries, keys] mask of one tile: the segment's rule, where both the query and the key exist.

    A windowed band's mask is one unsigned compare per pair: t - u - EXCLUDE_SELF in [0, window - EXCLUDE_SELF), with
    a query that does not exist moved to index 2^29 and a key that does not exist to -2^29 (both then fall outside),
    so each pair costs a subtraction, a compare and the caller's select. Written as the four conditions joined, the
    compiler selected once per condition (four FSEL and two ISETP per score in the forward's and the band backward's
    masked tiles: Nsight Compute's SASS, counters-strided12288-2a0e2be6f48f.txt). A band without a window needs only
    u < t + 1 - EXCLUDE_SELF: one signed compare per pair against a per-query bound, with a query that does not exist
    bounded at -2^29 and a key that does not exist moved to 2^29 (no subtraction per pair: 318c72fc5a30). Needs
    n < 2^28."""
    if IS_SUMMARY:
        allowed = summary_allowed(q_pos, k_pos, k_block, l_block, SAME_BLOCK)
        allowed &= k_valid[None, :] & q_valid[:, None]
    else:
        far = 1 << 29
        if HAS_WINDOW:
            q_at = tl.where(q_valid, q_index, far)
            k_at = tl.where(k_valid, k_index, -far)
            gap = (q_at[:, None] - k_at[None, :] - EXCLUDE_SELF).to(tl.uint32, bitcast=True)
            allowed = gap < (window - EXCLUDE_SELF).to(tl.uint32)
        else:
            q_bound = tl.where(q_valid, q_index + 1 - EXCLUDE_SELF, -far)
            k_at = tl.where(k_valid, k_index, far)
            allowed = k_at[None, :] < q_bound[:, None]
    return allowed
