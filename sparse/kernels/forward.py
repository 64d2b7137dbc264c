"""Forward kernel: one segment of a pattern, flash-attention style, optionally continuing another segment.

One program owns BLOCK_M queries of one (batch, head) and streams the key tiles its segment allows,
keeping the running max `m`, the running sum `l` and the unnormalised output in registers (nothing of
size n^2 ever exists). Scores are kept in base 2: q k^T * scale * log2(e), so each exponential is one
exp2 instruction; the log-sum-exp written out is in base 2 too (`lse2`) and is what the backward reads.

Merging segments: the first segment writes its normalised output and lse2 into the output buffers; the
next segment's program reads back its own rows, starts from them (m = lse2, l = 1, acc = o) instead of from
(-inf, 0, 0), and keeps going. The result is exactly one softmax over the union of the segments, i.e. the
paper's merged head, with no extra pass and no extra buffer (the partial output is rounded once to the
output dtype on the way). Segments are disjoint: the overlap j = i is kept in one of them only.

Rows with no allowed key (possible in a segment, e.g. the first row of a stride group, and in some parts
alone) carry m = -inf, l = 0; they are guarded so they never produce NaN, and the final output is 0.

Band segments of step 1 (rows contiguous in the sequence) load their q, k and v tiles by tensor descriptor (TMA=True,
plan.TMA_BAND_LOADS; geometry.tma_rows) where the launcher can build one, else by pointer; where they do (and the stride
part, TMA_GROUP_ROWS), o is stored, and a later segment's rows of it read back, by descriptor too (STORE_TMA,
plan.TMA_STORES; geometry.store_rows), unless a tile could reach past its group's end into rows before n.
"""

import triton
import triton.language as tl

from sparse.kernels.geometry import (
    band_interior,
    key_tile,
    let_next_launch_start,
    mask_tile,
    mma,
    owned_queries,
    store_rows,
    summary_key_end,
    tile_and_head,
    tma_rows,
    wait_for_previous_launch,
)


@triton.jit
def _fwd_step(
    start, m_i, l_i, acc,
    q, k_base, v_base, stride_kn, stride_vn, q_index, q_pos, q_valid, group, offset, hi, n, group_len, step,
    group_stride, window, l_block, c_sum, scale_log2, k_desc, v_desc, batch32, head,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr,
    EXCLUDE_SELF: tl.constexpr, SAME_BLOCK: tl.constexpr, DOT_MODE: tl.constexpr, MASKED: tl.constexpr,
    TMA: tl.constexpr, LEAN: tl.constexpr = False, edge=True,
):  # fmt: skip
    """One key tile [start, start + BLOCK_N) into the running (m, l, acc); MASKED=False where every pair is allowed
    (LEAN, edge: see geometry.mask_tile). The scale is applied inside the exponent's fused multiply-add: the max over
    raw scores times the positive scale is the max of the scaled ones, and each score costs one instruction less."""
    k_index = start + tl.arange(0, BLOCK_N)
    k, v, k_pos, k_block, k_valid = key_tile(
        k_base, v_base, stride_kn, stride_vn, start, k_index, offset, hi, n, group, group_len, step, group_stride,
        l_block, c_sum, k_desc, v_desc, batch32, head, HEAD_DIM, IS_SUMMARY, TMA,
    )  # fmt: skip
    qk = mma(q, tl.trans(k), DOT_MODE)
    if MASKED:
        qk = mask_tile(
            qk, float("-inf"), q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
            IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, LEAN, edge,
        )  # fmt: skip
    m_new = tl.maximum(m_i, tl.max(qk, 1) * scale_log2)
    # A row with nothing allowed so far keeps m = -inf; subtract 0 instead so exp2 gives 0, not NaN.
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.math.exp2(m_i - m_safe)
    p = tl.math.exp2(qk * scale_log2 - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + mma(p.to(v.dtype), v, DOT_MODE)
    return m_new, l_i, acc


@triton.jit
def _sparse_fwd_kernel(
    Q, K, V, O, LSE, O_PREV, LSE_PREV, Q_DESC, K_DESC, V_DESC, O_DESC,
    stride_qz, stride_qh, stride_qn,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    n, H, group_len, tiles_per_group, scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    step, group_stride, window, l_block, c_sum,
    IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, DISTINCT: tl.constexpr,
    SAME_BLOCK: tl.constexpr, HAS_PREV: tl.constexpr, DOT_MODE: tl.constexpr, TMA: tl.constexpr, PDL: tl.constexpr,
    ORDER: tl.constexpr = 0, LOCAL_BLOCK: tl.constexpr = False, HEADS_REVERSED: tl.constexpr = False,
    LEAN: tl.constexpr = False, STORE_TMA: tl.constexpr = False,
):  # fmt: skip
    """Program (pid, bh): the BLOCK_M queries of tile `pid` of batch x head `bh`, streaming the key tiles their segment
    allows. LOCAL_BLOCK (a summary segment of fixed attention, plan.FUSED_LOCAL_FORWARD): then also the keys of the
    tile's own window up to each query (the local blocks' segment, a band of step 1, groups of l = l_block rows), in the
    same softmax; the tile lies in one window (l_block a multiple of BLOCK_M). TMA: q, k and v come by tensor
    descriptor (band segments, geometry.tma_rows), or a summary segment's keys (TMA_SUMMARY_KEYS; its queries and its
    local blocks' keys by pointer)."""
    tl.static_assert((TMA == 3) == (IS_SUMMARY and TMA > 0), "summary segments' descriptors are TMA_SUMMARY_KEYS")
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16, "tl.dot needs tiles of at least 16")
    tl.static_assert(not LOCAL_BLOCK or (IS_SUMMARY and not SAME_BLOCK), "the local blocks join the merged summary")
    tl.static_assert(HEAD_DIM == 32 or HEAD_DIM == 64 or HEAD_DIM == 128, "head dim must be 32, 64 or 128")
    tl.static_assert(not STORE_TMA or (TMA == 1 or TMA == 2), "o by descriptor: band segments whose tiles come so")
    let_next_launch_start(PDL)
    pid, bh = tile_and_head(ORDER, HEADS_REVERSED)
    batch = (bh // H).to(tl.int64)
    head = bh % H
    dims = tl.arange(0, HEAD_DIM)
    rows = tl.arange(0, BLOCK_M)

    q_index, q_pos, q_valid, lo, hi, offset, group, tile = owned_queries(
        pid, head, rows, n, group_len, step, group_stride, window, l_block, c_sum, tiles_per_group, BLOCK_M, BLOCK_N,
        IS_SUMMARY, HAS_WINDOW, SAME_BLOCK, DISTINCT,
    )  # fmt: skip

    batch32 = bh // H
    if TMA and not IS_SUMMARY:
        q = tma_rows(Q_DESC, batch32, head, group, group_stride, tile * BLOCK_M, TMA)
    else:
        q_ptrs = Q + batch * stride_qz + head * stride_qh + q_pos.to(tl.int64)[:, None] * stride_qn + dims[None, :]
        q = tl.load(q_ptrs, mask=q_valid[:, None], other=0.0)
    k_base = K + batch * stride_kz + head * stride_kh
    v_base = V + batch * stride_vz + head * stride_vh
    row_base = bh.to(tl.int64) * n
    wait_for_previous_launch(PDL)  # q is an input; the previous segment's o and lse are not

    if HAS_PREV:
        # Continue the previous segment's softmax: a normalised output is (m = lse, l = 1, acc = o).
        m_i = tl.load(LSE_PREV + row_base + q_pos, mask=q_valid, other=float("-inf"))
        l_i = tl.where(m_i == float("-inf"), 0.0, 1.0)
        if STORE_TMA:  # O_PREV is O (plan: in place), and no tile reaches past its group into rows before n
            acc = tma_rows(O_DESC, batch32, head, group, group_stride, tile * BLOCK_M, TMA).to(tl.float32)
        else:
            prev_ptrs = O_PREV + row_base * HEAD_DIM + q_pos.to(tl.int64)[:, None] * HEAD_DIM + dims[None, :]
            acc = tl.load(prev_ptrs, mask=q_valid[:, None], other=0.0).to(tl.float32)
    else:
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    if IS_SUMMARY:
        # Every query of the tile attends every summary key of the windows before its first query's: those key
        # tiles need no mask (the tutorial's unmasked stage); only the tiles after them do.
        mid = tl.minimum(summary_key_end(pid * BLOCK_M, l_block, c_sum, False) // BLOCK_N * BLOCK_N, hi)
        for start in range(lo, mid, BLOCK_N):
            m_i, l_i, acc = _fwd_step(
                start, m_i, l_i, acc, q, k_base, v_base, stride_kn, stride_vn, q_index, q_pos, q_valid, group, offset,
                hi, n, group_len, step, group_stride, window, l_block, c_sum, scale_log2, K_DESC, V_DESC, batch32, head,
                HEAD_DIM, BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, False, TMA, LEAN,
            )  # fmt: skip
        for start in range(mid, hi, BLOCK_N):
            m_i, l_i, acc = _fwd_step(
                start, m_i, l_i, acc, q, k_base, v_base, stride_kn, stride_vn, q_index, q_pos, q_valid, group, offset,
                hi, n, group_len, step, group_stride, window, l_block, c_sum, scale_log2, K_DESC, V_DESC, batch32, head,
                HEAD_DIM, BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, True, TMA, LEAN,
            )  # fmt: skip
        if LOCAL_BLOCK:
            # The own window's keys, as the local segment's band (in-window indices, key <= query): one softmax over
            # both segments, so no second launch reads q and the partial o and lse back. Key tiles that end before the
            # tile's first query need no mask; by pointer (the summary keys' descriptor views other rows).
            window_index = (pid * BLOCK_M) // l_block
            first_local = pid * BLOCK_M - window_index * l_block
            local_index = first_local + rows
            unmasked = first_local // BLOCK_N * BLOCK_N
            for start in range(0, unmasked, BLOCK_N):
                m_i, l_i, acc = _fwd_step(
                    start, m_i, l_i, acc, q, k_base, v_base, stride_kn, stride_vn, local_index, q_pos, q_valid,
                    window_index, 0, 0, n, l_block, 1, l_block, 0, l_block, c_sum, scale_log2, K_DESC, V_DESC, batch32,
                    head, HEAD_DIM, BLOCK_N, False, False, False, False, DOT_MODE, False, 0, LEAN,
                )  # fmt: skip
            for start in range(unmasked, first_local + BLOCK_M, BLOCK_N):
                m_i, l_i, acc = _fwd_step(
                    start, m_i, l_i, acc, q, k_base, v_base, stride_kn, stride_vn, local_index, q_pos, q_valid,
                    window_index, 0, 0, n, l_block, 1, l_block, 0, l_block, c_sum, scale_log2, K_DESC, V_DESC, batch32,
                    head, HEAD_DIM, BLOCK_N, False, False, False, False, DOT_MODE, True, 0, LEAN,
                )  # fmt: skip
    else:
        # Key tiles [inner_lo, inner_hi) lie inside the band of every query of the tile (LEAN skips their mask).
        inner_lo, inner_hi = band_interior(tile * BLOCK_M, lo, hi, window, BLOCK_M, BLOCK_N, HAS_WINDOW)
        for start in range(lo, hi, BLOCK_N):
            m_i, l_i, acc = _fwd_step(
                start, m_i, l_i, acc, q, k_base, v_base, stride_kn, stride_vn, q_index, q_pos, q_valid, group, offset,
                hi, n, group_len, step, group_stride, window, l_block, c_sum, scale_log2, K_DESC, V_DESC, batch32, head,
                HEAD_DIM, BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, True, TMA, LEAN,
                (start < inner_lo) | (start >= inner_hi),
            )  # fmt: skip

    empty = l_i == 0.0
    out = acc / tl.where(empty, 1.0, l_i)[:, None]
    lse2 = tl.where(empty, float("-inf"), m_i + tl.math.log2(tl.where(empty, 1.0, l_i)))
    tl.store(LSE + row_base + q_pos, lse2, mask=q_valid)
    if STORE_TMA:
        store_rows(O_DESC, batch32, head, group, group_stride, tile * BLOCK_M, out.to(O.dtype.element_ty), TMA)
    else:
        o_ptrs = O + row_base * HEAD_DIM + q_pos.to(tl.int64)[:, None] * HEAD_DIM + dims[None, :]
        tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=q_valid[:, None])
