"""Backward kernels for one segment; deterministic (each gradient element is written, or added to, once per launch).

Why a segment's backward can run on its own: with P = exp(S - L) where L is the log-sum-exp of the whole
merged row, and D = rowsum(dO * O) of the whole merged output, the gradient of the scores is
dS = P * (dP - D) element by element. So each disjoint segment computes its share of dq, dk, dv from the
global L and D, and the shares add up. Each output element is owned by exactly one program per launch,
and segments run one after another, each adding to the previous segment's result in place (HAS_PREV: a
program reads back exactly the rows it then writes, or with REDUCE adds them by one TMA reduction per tile without
reading them: plan.REDUCE_READ_BACK), in a fixed order: two runs give bitwise-equal gradients.

Two program bodies, as in Triton's fused-attention tutorial: `_dkdv_program` owns a key tile and streams the
query tiles that attend it; `_dq_program` owns a query tile and streams its key tiles. Three kernels use them:
- `_band_bwd_kernel` (band segments, when plan.FUSED_BAND_BACKWARD is on; off by default): one program runs both
  bodies on tile t of a group, the keys of tile t and then the queries of tile t (the tutorial's one-kernel
  backward). It reads q, k, v, dO from DRAM once per segment where two launches read them twice (7 or 10
  whole-tensor transfers instead of 11 or 14), but measured slower on an H200: half the programs, each a twice as
  long chain of dependent loads, and these kernels are bound by that latency (benchmarks/KERNEL_NOTES.md).
- `_group_bwd_kernel` (band segments whose groups fit one query tile, plan.GROUP_BACKWARD, on by default): one
  program owns a whole group as queries and as keys, streams its key tiles (one, for short groups) and computes each
  score once for dq, dk and dv; as the backward's first segment it stores them by descriptor where its key tiles come
  so (STORE_TMA, plan.TMA_STORES).
- `_sparse_dq_kernel`, `_sparse_dkdv_kernel` (every other segment; summary segments always, their query and
  key tiles do not pair up), or `_dq_dkdv_kernel`, both bodies' programs in one grid (a segment after the first in the
  backward's order, plan.ONE_GRID_BACKWARD).
D: the first segment's dq programs compute and store it when they own every row once (COMPUTE_DELTA), and the
dk/dv launch after them reads it; in the one-kernel backward the dk/dv programs of that same launch, which need D
of rows other programs own, compute it from O and dO per query tile instead (DELTA_FROM_O: only where each key
tile sees a few query tiles, plan.delta_source). Otherwise `_delta_kernel` runs first. Summary segments split
their loops into masked edges and an unmasked interior (MASKED=False where every pair of a tile is allowed).
Scores use the base-2 scale (the forward's lse2): P = exp2(q k^T * scale * log2 e - lse2). The split dq and dk/dv
kernels of band segments of step 1 load their q, k, v and dO tiles by tensor descriptor (TMA=True, as the forward);
a summary segment's dk/dv loads its streamed q and dO tiles so (plan.TMA_SUMMARY_QUERIES), its keys by pointer.
Where a split dk/dv kernel's query tiles come so (TMA_ROWS), each tile's lse2 and D rows may too (STATS_TMA, from
[B * H, n] descriptors: plan.TMA_ROW_STATS).
"""

import triton
import triton.language as tl

from sparse.kernels.geometry import (
    add_rows,
    band_interior,
    band_interior_queries,
    band_positions,
    key_tile,
    let_next_launch_start,
    mask_tile,
    mma,
    owned_queries,
    store_rows,
    summary_key_end,
    summary_offset,
    summary_positions,
    tile_allowed,
    tile_and_head,
    tma_rows,
    wait_before_read_back,
    wait_for_previous_launch,
)


@triton.jit
def _delta_kernel(O, DO, DELTA, stride_dz, stride_dh, stride_dn, n, H, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """D_i = rowsum(dO_i * O_i) in fp32, one pass over O and dO (instead of four elementwise torch kernels)."""
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    rows = pid * BLOCK + tl.arange(0, BLOCK)
    valid = rows < n
    dims = tl.arange(0, HEAD_DIM)
    o = tl.load(O + bh.to(tl.int64) * n * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :], mask=valid[:, None])
    do_base = DO + (bh // H).to(tl.int64) * stride_dz + (bh % H) * stride_dh
    do = tl.load(do_base + rows.to(tl.int64)[:, None] * stride_dn + dims[None, :], mask=valid[:, None])
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + bh.to(tl.int64) * n + rows, delta, mask=valid)


@triton.jit
def _probabilities(
    q, k, lse2_column, scale_log2, q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
    IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, SAME_BLOCK: tl.constexpr,
    DOT_MODE: tl.constexpr, MASKED: tl.constexpr, LEAN: tl.constexpr = False, edge=True,
):  # fmt: skip
    """The softmax probabilities of a [queries, keys] score tile, recomputed from the forward's base-2 LSE
    (`lse2_column`: [queries, 1]), zero where the segment does not allow the pair (MASKED; with LEAN only where `edge`,
    a runtime flag: not one of a band's interior tiles, geometry.band_interior)."""
    p = tl.math.exp2(mma(q, tl.trans(k), DOT_MODE) * scale_log2 - lse2_column)
    if MASKED:
        p = mask_tile(
            p, 0.0, q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
            IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, LEAN, edge,
        )  # fmt: skip
    return p


@triton.jit
def _dq_step(
    start, dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, q_index, q_pos, q_valid, group,
    offset, hi, n, group_len, step, group_stride, window, l_block, c_sum, scale_log2, k_desc, v_desc, batch32, head,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr,
    EXCLUDE_SELF: tl.constexpr, SAME_BLOCK: tl.constexpr, DOT_MODE: tl.constexpr, MASKED: tl.constexpr,
    TMA: tl.constexpr, LEAN: tl.constexpr = False, edge=True,
):  # fmt: skip
    """One key tile [start, start + BLOCK_N) into dq; MASKED=False where every pair is allowed (LEAN: see
    `_probabilities`)."""
    k_index = start + tl.arange(0, BLOCK_N)
    k, v, k_pos, k_block, k_valid = key_tile(
        k_base, v_base, stride_kn, stride_vn, start, k_index, offset, hi, n, group, group_len, step, group_stride,
        l_block, c_sum, k_desc, v_desc, batch32, head, HEAD_DIM, IS_SUMMARY, TMA,
    )  # fmt: skip
    p = _probabilities(
        q, k, lse2[:, None], scale_log2, q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
        IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, MASKED, LEAN, edge,
    )  # fmt: skip
    dp = mma(do, tl.trans(v), DOT_MODE)
    ds = p * (dp - delta[:, None])
    return dq + mma(ds.to(k.dtype), k, DOT_MODE)


@triton.jit
def _dkdv_step(
    start, dk, dv, k, v, q_base, do_base, O, LSE, DELTA, stride_qn, stride_dn, row_base, k_index, k_pos,
    k_block, k_valid, group, n, group_len, step, group_stride, window, l_block, scale_log2, q_desc, do_desc, batch32,
    head, bh, lse_desc, delta_desc, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, IS_SUMMARY: tl.constexpr,
    HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, SAME_BLOCK: tl.constexpr, DOT_MODE: tl.constexpr,
    DELTA_FROM_O: tl.constexpr, MASKED: tl.constexpr, TMA: tl.constexpr, STATS_TMA: tl.constexpr,
    QUERY_ROWS: tl.constexpr = False, LEAN: tl.constexpr = False, edge=True,
):  # fmt: skip
    """One query tile [start, start + BLOCK_M) into dk, dv; MASKED=False where every pair is allowed and every query
    exists (LEAN: the mask only where `edge`, see `_probabilities`). STATS_TMA: its lse2 and D rows from [B * H, n]
    descriptors (row bh), as its q and dO tiles (TMA_ROWS).
    QUERY_ROWS (plan.SUMMARY_DKDV_QUERY_ROWS): the scores as [queries, keys], whose per-query LSE and D take a few
    registers per thread (a row slice) where the transposed [keys, queries] tile's take a quarter of the query tile each
    (a column slice); p and ds then go through shared memory, transposed, into the dk and dv dots."""
    dims = tl.arange(0, HEAD_DIM)
    q_index = start + tl.arange(0, BLOCK_M)
    if IS_SUMMARY:
        q_pos = q_index
        q_valid = q_pos < n
    else:
        q_pos, q_valid = band_positions(group, q_index, n, group_len, step, group_stride)
    if TMA:
        q = tma_rows(q_desc, batch32, head, group, group_stride, start, TMA)
        do = tma_rows(do_desc, batch32, head, group, group_stride, start, TMA)
    else:
        q_off = q_pos.to(tl.int64)[:, None]
        q = tl.load(q_base + q_off * stride_qn + dims[None, :], mask=q_valid[:, None], other=0.0)
        do = tl.load(do_base + q_off * stride_dn + dims[None, :], mask=q_valid[:, None], other=0.0)
    # lse2 and D stay [1, BLOCK_M] rows, the descriptors' box: reshaped to [BLOCK_M] and broadcast back, strided's band
    # dq + dk/dv grid spilled 16 bytes instead of 8 (benchmarks/kernel_resources.py). The mask is computed in each
    # form's branch, after its exponentials: computed once before them, the machine code differs from what was measured.
    if STATS_TMA:
        # The tile's sequence rows, as tma_rows's (TMA_ROWS); columns past n read as zeros, as the pointer loads' other.
        first = group * group_stride + start
        lse2 = lse_desc.load([bh, first])
    else:
        lse2 = tl.load(LSE + row_base + q_pos, mask=q_valid, other=0.0)[None, :]
    if DELTA_FROM_O:
        # D of rows other programs of this launch own, and may not have stored yet: recomputed from O (an L2 read
        # where the tile is a neighbour's) rather than a launch of its own that reads O and dO from DRAM.
        o_ptrs = O + row_base * HEAD_DIM + q_pos.to(tl.int64)[:, None] * HEAD_DIM + dims[None, :]
        o = tl.load(o_ptrs, mask=q_valid[:, None], other=0.0)
        delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)[None, :]
    elif STATS_TMA:
        delta = delta_desc.load([bh, first])
    else:
        delta = tl.load(DELTA + row_base + q_pos, mask=q_valid, other=0.0)[None, :]
    if QUERY_ROWS:
        p = _probabilities(
            q, k, tl.trans(lse2), scale_log2, q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window,
            l_block, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, MASKED, LEAN, edge,
        )  # fmt: skip
        dv += mma(tl.trans(p.to(do.dtype)), do, DOT_MODE)
        ds = p * (mma(do, tl.trans(v), DOT_MODE) - tl.trans(delta))
        dk += mma(tl.trans(ds.to(q.dtype)), q, DOT_MODE)
    else:
        # Transposed scores [keys, queries], so that dv += p^T do and dk += ds^T q are plain dots.
        qk_t = mma(k, tl.trans(q), DOT_MODE) * scale_log2
        p_t = tl.math.exp2(qk_t - lse2)
        if MASKED:
            p_t = mask_tile(
                p_t, 0.0, q_index, q_pos, q_valid, k_index, k_pos, k_block, k_valid, window, l_block,
                IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, LEAN, edge, TRANSPOSED=True,
            )  # fmt: skip
        dv += mma(p_t.to(do.dtype), do, DOT_MODE)
        dp_t = mma(v, tl.trans(do), DOT_MODE)
        ds_t = p_t * (dp_t - delta)
        dk += mma(ds_t.to(q.dtype), q, DOT_MODE)
    return dk, dv


@triton.jit
def _dq_program(
    pid, bh, Q, K, V, DO, O, LSE, DELTA, DQ, Q_DESC, K_DESC, V_DESC, DO_DESC, DQ_DESC,
    stride_qz, stride_qh, stride_qn,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_dz, stride_dh, stride_dn,
    n, H, group_len, scale_log2, scale,
    step, group_stride, window, l_block, c_sum,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, DISTINCT: tl.constexpr,
    SAME_BLOCK: tl.constexpr, HAS_PREV: tl.constexpr, DOT_MODE: tl.constexpr, COMPUTE_DELTA: tl.constexpr,
    TMA: tl.constexpr, PDL: tl.constexpr, LEAN: tl.constexpr = False, REDUCE: tl.constexpr = False,
):  # fmt: skip
    """dq of the BLOCK_M queries program `pid` owns, streaming their key tiles BLOCK_N at a time (TMA: every tile by
    tensor descriptor, band segments of step 1 only). REDUCE (plan.REDUCE_READ_BACK, with HAS_PREV): added to the
    earlier segments' dq by TMA reduction through DQ_DESC instead of read back and stored."""
    tl.static_assert(not (COMPUTE_DELTA and HAS_PREV), "D is computed by the first segment's programs")
    batch = (bh // H).to(tl.int64)
    head = bh % H
    dims = tl.arange(0, HEAD_DIM)
    rows = tl.arange(0, BLOCK_M)

    q_index, q_pos, q_valid, lo, hi, offset, group, tile = owned_queries(
        pid, head, rows, n, group_len, step, group_stride, window, l_block, c_sum, tl.cdiv(group_len, BLOCK_M),
        BLOCK_M, BLOCK_N, IS_SUMMARY, HAS_WINDOW, SAME_BLOCK, DISTINCT,
    )  # fmt: skip

    batch32 = bh // H
    if TMA and not IS_SUMMARY:  # a summary segment's keys alone come by descriptor (TMA_SUMMARY_KEYS)
        q = tma_rows(Q_DESC, batch32, head, group, group_stride, tile * BLOCK_M, TMA)
        do = tma_rows(DO_DESC, batch32, head, group, group_stride, tile * BLOCK_M, TMA)
    else:
        q_off = q_pos.to(tl.int64)[:, None]
        q_ptrs = Q + batch * stride_qz + head * stride_qh + q_off * stride_qn + dims[None, :]
        do_ptrs = DO + batch * stride_dz + head * stride_dh + q_off * stride_dn + dims[None, :]
        q = tl.load(q_ptrs, mask=q_valid[:, None])
        do = tl.load(do_ptrs, mask=q_valid[:, None])
    row_base = bh.to(tl.int64) * n
    # q and dO are inputs; D and the earlier segments' dq are not (under PDL_TAIL, D is: see geometry.PDL_HANDOFF)
    wait_for_previous_launch(PDL)
    lse2 = tl.load(LSE + row_base + q_pos, mask=q_valid, other=0.0)
    if COMPUTE_DELTA:
        # These programs own every row once (plan.delta_source), and dO is in registers already: D = rowsum(dO * O)
        # here saves a launch and a second read of dO. Later launches read it back.
        o_ptrs = O + row_base * HEAD_DIM + q_pos.to(tl.int64)[:, None] * HEAD_DIM + dims[None, :]
        o = tl.load(o_ptrs, mask=q_valid[:, None], other=0.0)
        delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
        tl.store(DELTA + row_base + q_pos, delta, mask=q_valid)
    else:
        delta = tl.load(DELTA + row_base + q_pos, mask=q_valid, other=0.0)
    k_base = K + batch * stride_kz + head * stride_kh
    v_base = V + batch * stride_vz + head * stride_vh
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    if IS_SUMMARY:
        # Every query of the tile attends every summary key of the windows before its first query's: no mask there.
        mid = tl.minimum(summary_key_end(pid * BLOCK_M, l_block, c_sum, False) // BLOCK_N * BLOCK_N, hi)
        for start in range(lo, mid, BLOCK_N):
            dq = _dq_step(
                start, dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, q_index, q_pos, q_valid, group,
                offset, hi, n, group_len, step, group_stride, window, l_block, c_sum, scale_log2, K_DESC, V_DESC,
                batch32, head, HEAD_DIM, BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, False,
                TMA,
            )  # fmt: skip
        for start in range(mid, hi, BLOCK_N):
            dq = _dq_step(
                start, dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, q_index, q_pos, q_valid, group,
                offset, hi, n, group_len, step, group_stride, window, l_block, c_sum, scale_log2, K_DESC, V_DESC,
                batch32, head, HEAD_DIM, BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, True,
                TMA,
            )  # fmt: skip
    else:
        inner_lo, inner_hi = band_interior(tile * BLOCK_M, lo, hi, window, BLOCK_M, BLOCK_N, HAS_WINDOW)
        for start in range(lo, hi, BLOCK_N):
            dq = _dq_step(
                start, dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, q_index, q_pos, q_valid, group,
                offset, hi, n, group_len, step, group_stride, window, l_block, c_sum, scale_log2, K_DESC, V_DESC,
                batch32, head, HEAD_DIM, BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, True,
                TMA, LEAN, (start < inner_lo) | (start >= inner_hi),
            )  # fmt: skip

    dq *= scale
    wait_before_read_back(PDL)
    if HAS_PREV and REDUCE:
        add_rows(DQ_DESC, batch32, head, group * group_stride + tile * BLOCK_M, dq.to(DQ.dtype.element_ty))
    else:
        dq_ptrs = DQ + row_base * HEAD_DIM + q_pos.to(tl.int64)[:, None] * HEAD_DIM + dims[None, :]
        if HAS_PREV:
            dq += tl.load(dq_ptrs, mask=q_valid[:, None], other=0.0).to(tl.float32)
        tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty), mask=q_valid[:, None])


@triton.jit
def _dkdv_program(
    pid, bh, Q, K, V, DO, O, LSE, DELTA, DK, DV, Q_DESC, K_DESC, V_DESC, DO_DESC, LSE_DESC, DELTA_DESC, DK_DESC,
    DV_DESC,
    stride_qz, stride_qh, stride_qn,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_dz, stride_dh, stride_dn,
    n, H, group_len, scale_log2, scale,
    step, group_stride, window, l_block, c_sum,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, DISTINCT: tl.constexpr,
    SAME_BLOCK: tl.constexpr, HAS_PREV: tl.constexpr, DOT_MODE: tl.constexpr, DELTA_FROM_O: tl.constexpr,
    TMA: tl.constexpr, STATS_TMA: tl.constexpr, PDL: tl.constexpr, QUERY_ROWS: tl.constexpr = False,
    LEAN: tl.constexpr = False, REDUCE: tl.constexpr = False,
):  # fmt: skip
    """dk, dv of the BLOCK_N keys program `pid` owns, streaming the query tiles that attend them BLOCK_M at a time (TMA:
    every tile by tensor descriptor, band segments of step 1 only; STATS_TMA: the query tiles' lse2 and D rows too).
    REDUCE (with HAS_PREV): added to the earlier segments' dk, dv by TMA reduction (DK_DESC, DV_DESC), no read-back."""
    tl.static_assert(not STATS_TMA or (TMA == 1 and not DELTA_FROM_O), "row statistics by descriptor need TMA_ROWS")
    batch = (bh // H).to(tl.int64)
    head = bh % H
    dims = tl.arange(0, HEAD_DIM)
    cols = tl.arange(0, BLOCK_N)

    if IS_SUMMARY:
        k_index = pid * BLOCK_N + cols
        offset = summary_offset(head, l_block, c_sum, DISTINCT)
        k_pos, k_block, k_valid = summary_positions(k_index, offset, n, l_block, c_sum)
        k_valid &= k_index < group_len
        first_block = (pid * BLOCK_N) // c_sum
        if SAME_BLOCK:
            lo = (first_block * l_block + offset) // BLOCK_M * BLOCK_M
        else:
            lo = (first_block + 1) * l_block // BLOCK_M * BLOCK_M
        hi = n
        group = 0
    else:
        tiles_per_group = tl.cdiv(group_len, BLOCK_N)
        group = pid // tiles_per_group
        tile = pid % tiles_per_group
        k_index = tile * BLOCK_N + cols
        k_pos, k_valid = band_positions(group, k_index, n, group_len, step, group_stride)
        lo = (tile * BLOCK_N) // BLOCK_M * BLOCK_M
        if HAS_WINDOW:
            hi = tl.minimum(group_len, (tile + 1) * BLOCK_N - 1 + window)
        else:
            hi = group_len

    batch32 = bh // H
    if TMA and not IS_SUMMARY:  # a summary segment's keys are gathered; only its query tiles come by descriptor
        k = tma_rows(K_DESC, batch32, head, group, group_stride, tile * BLOCK_N, TMA)
        v = tma_rows(V_DESC, batch32, head, group, group_stride, tile * BLOCK_N, TMA)
    else:
        k_off = k_pos.to(tl.int64)[:, None]
        k_ptrs = K + batch * stride_kz + head * stride_kh + k_off * stride_kn + dims[None, :]
        v_ptrs = V + batch * stride_vz + head * stride_vh + k_off * stride_vn + dims[None, :]
        k = tl.load(k_ptrs, mask=k_valid[:, None])
        v = tl.load(v_ptrs, mask=k_valid[:, None])
    q_base = Q + batch * stride_qz + head * stride_qh
    do_base = DO + batch * stride_dz + head * stride_dh
    row_base = bh.to(tl.int64) * n
    wait_for_previous_launch(PDL)  # k and v are inputs; D (read in the loop) and the earlier dk, dv are not
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)

    if IS_SUMMARY:
        # Queries of windows after the tile's last summary block attend all of its keys (and, the tail tile apart,
        # all exist): that middle range needs no mask.
        last_block = (pid * BLOCK_N + BLOCK_N - 1) // c_sum
        if SAME_BLOCK:
            every_key_from = last_block * l_block + offset + c_sum
        else:
            every_key_from = (last_block + 1) * l_block
        mid = tl.minimum(tl.maximum(tl.cdiv(every_key_from, BLOCK_M) * BLOCK_M, lo), hi)
        end = tl.maximum(mid, n // BLOCK_M * BLOCK_M)
        for start in range(lo, mid, BLOCK_M):
            dk, dv = _dkdv_step(
                start, dk, dv, k, v, q_base, do_base, O, LSE, DELTA, stride_qn, stride_dn, row_base, k_index, k_pos,
                k_block, k_valid, group, n, group_len, step, group_stride, window, l_block, scale_log2, Q_DESC,
                DO_DESC, batch32, head, bh, LSE_DESC, DELTA_DESC, HEAD_DIM, BLOCK_M, IS_SUMMARY, HAS_WINDOW,
                EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, DELTA_FROM_O, True, TMA, STATS_TMA, QUERY_ROWS,
            )  # fmt: skip
        for start in range(mid, end, BLOCK_M):
            dk, dv = _dkdv_step(
                start, dk, dv, k, v, q_base, do_base, O, LSE, DELTA, stride_qn, stride_dn, row_base, k_index, k_pos,
                k_block, k_valid, group, n, group_len, step, group_stride, window, l_block, scale_log2, Q_DESC,
                DO_DESC, batch32, head, bh, LSE_DESC, DELTA_DESC, HEAD_DIM, BLOCK_M, IS_SUMMARY, HAS_WINDOW,
                EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, DELTA_FROM_O, False, TMA, STATS_TMA, QUERY_ROWS,
            )  # fmt: skip
        for start in range(end, hi, BLOCK_M):
            dk, dv = _dkdv_step(
                start, dk, dv, k, v, q_base, do_base, O, LSE, DELTA, stride_qn, stride_dn, row_base, k_index, k_pos,
                k_block, k_valid, group, n, group_len, step, group_stride, window, l_block, scale_log2, Q_DESC,
                DO_DESC, batch32, head, bh, LSE_DESC, DELTA_DESC, HEAD_DIM, BLOCK_M, IS_SUMMARY, HAS_WINDOW,
                EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, DELTA_FROM_O, True, TMA, STATS_TMA, QUERY_ROWS,
            )  # fmt: skip
    else:
        k_block = k_index  # unused by band segments
        inner_lo, inner_hi = band_interior_queries(
            tile * BLOCK_N, lo, hi, window, n, group, group_len, step, group_stride, BLOCK_M, BLOCK_N, HAS_WINDOW
        )
        for start in range(lo, hi, BLOCK_M):
            dk, dv = _dkdv_step(
                start, dk, dv, k, v, q_base, do_base, O, LSE, DELTA, stride_qn, stride_dn, row_base, k_index, k_pos,
                k_block, k_valid, group, n, group_len, step, group_stride, window, l_block, scale_log2, Q_DESC,
                DO_DESC, batch32, head, bh, LSE_DESC, DELTA_DESC, HEAD_DIM, BLOCK_M, IS_SUMMARY, HAS_WINDOW,
                EXCLUDE_SELF, SAME_BLOCK, DOT_MODE, DELTA_FROM_O, True, TMA, STATS_TMA, QUERY_ROWS, LEAN,
                (start < inner_lo) | (start >= inner_hi),
            )  # fmt: skip

    dk *= scale
    if HAS_PREV and REDUCE:
        add_rows(DK_DESC, batch32, head, group * group_stride + tile * BLOCK_N, dk.to(DK.dtype.element_ty))
        add_rows(DV_DESC, batch32, head, group * group_stride + tile * BLOCK_N, dv.to(DV.dtype.element_ty))
    else:
        kv_off = row_base * HEAD_DIM + k_pos.to(tl.int64)[:, None] * HEAD_DIM + dims[None, :]
        if HAS_PREV:
            dk += tl.load(DK + kv_off, mask=k_valid[:, None], other=0.0).to(tl.float32)
            dv += tl.load(DV + kv_off, mask=k_valid[:, None], other=0.0).to(tl.float32)
        tl.store(DK + kv_off, dk.to(DK.dtype.element_ty), mask=k_valid[:, None])
        tl.store(DV + kv_off, dv.to(DV.dtype.element_ty), mask=k_valid[:, None])


@triton.jit
def _sparse_dq_kernel(
    Q, K, V, DO, O, LSE, DELTA, DQ, Q_DESC, K_DESC, V_DESC, DO_DESC, DQ_DESC,
    stride_qz, stride_qh, stride_qn,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_dz, stride_dh, stride_dn,
    n, H, group_len, scale_log2, scale,
    step, group_stride, window, l_block, c_sum,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, DISTINCT: tl.constexpr,
    SAME_BLOCK: tl.constexpr, HAS_PREV: tl.constexpr, DOT_MODE: tl.constexpr, COMPUTE_DELTA: tl.constexpr,
    TMA: tl.constexpr, PDL: tl.constexpr, ORDER: tl.constexpr = 0, HEADS_REVERSED: tl.constexpr = False,
    LEAN: tl.constexpr = False, REDUCE: tl.constexpr = False,
):  # fmt: skip
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16, "tl.dot needs tiles of at least 16")
    tl.static_assert((TMA == 3) == (IS_SUMMARY and TMA > 0), "summary segments' descriptors are TMA_SUMMARY_KEYS")
    let_next_launch_start(PDL)
    pid, bh = tile_and_head(ORDER, HEADS_REVERSED)
    _dq_program(
        pid, bh, Q, K, V, DO, O, LSE, DELTA, DQ, Q_DESC, K_DESC, V_DESC, DO_DESC, DQ_DESC,
        stride_qz, stride_qh, stride_qn, stride_kz, stride_kh, stride_kn,
        stride_vz, stride_vh, stride_vn, stride_dz, stride_dh, stride_dn,
        n, H, group_len, scale_log2, scale, step, group_stride, window, l_block, c_sum,
        HEAD_DIM, BLOCK_M, BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, DISTINCT, SAME_BLOCK, HAS_PREV, DOT_MODE,
        COMPUTE_DELTA, TMA, PDL, LEAN, REDUCE,
    )  # fmt: skip


@triton.jit
def _sparse_dkdv_kernel(
    Q, K, V, DO, O, LSE, DELTA, DK, DV, Q_DESC, K_DESC, V_DESC, DO_DESC, LSE_DESC, DELTA_DESC, DK_DESC, DV_DESC,
    stride_qz, stride_qh, stride_qn,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_dz, stride_dh, stride_dn,
    n, H, group_len, scale_log2, scale,
    step, group_stride, window, l_block, c_sum,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, DISTINCT: tl.constexpr,
    SAME_BLOCK: tl.constexpr, HAS_PREV: tl.constexpr, DOT_MODE: tl.constexpr, TMA: tl.constexpr,
    STATS_TMA: tl.constexpr, PDL: tl.constexpr, ORDER: tl.constexpr = 0, QUERY_ROWS: tl.constexpr = False,
    HEADS_REVERSED: tl.constexpr = False, LEAN: tl.constexpr = False, REDUCE: tl.constexpr = False,
):  # fmt: skip
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16, "tl.dot needs tiles of at least 16")
    tl.static_assert(TMA == 1 or not IS_SUMMARY or TMA == 0, "a summary's query tiles are sequence rows (TMA_ROWS)")
    let_next_launch_start(PDL)
    pid, bh = tile_and_head(ORDER, HEADS_REVERSED)
    _dkdv_program(
        pid, bh, Q, K, V, DO, O, LSE, DELTA, DK, DV, Q_DESC, K_DESC, V_DESC, DO_DESC, LSE_DESC, DELTA_DESC, DK_DESC,
        DV_DESC, stride_qz, stride_qh, stride_qn, stride_kz, stride_kh, stride_kn,
        stride_vz, stride_vh, stride_vn, stride_dz, stride_dh, stride_dn,
        n, H, group_len, scale_log2, scale, step, group_stride, window, l_block, c_sum,
        HEAD_DIM, BLOCK_M, BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, DISTINCT, SAME_BLOCK, HAS_PREV, DOT_MODE,
        False, TMA, STATS_TMA, PDL, QUERY_ROWS, LEAN, REDUCE,
    )  # fmt: skip


@triton.jit
def _dq_dkdv_kernel(
    Q, K, V, DO, O, LSE, DELTA, DQ, DK, DV,
    Q_DESC_DQ, K_DESC_DQ, V_DESC_DQ, DO_DESC_DQ, Q_DESC_KV, K_DESC_KV, V_DESC_KV, DO_DESC_KV, LSE_DESC, DELTA_DESC,
    DQ_DESC, DK_DESC, DV_DESC,
    stride_qz, stride_qh, stride_qn,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_dz, stride_dh, stride_dn,
    n, H, group_len, scale_log2, scale, dkdv_programs,
    step, group_stride, window, l_block, c_sum,
    HEAD_DIM: tl.constexpr, DQ_BLOCK_M: tl.constexpr, DQ_BLOCK_N: tl.constexpr, KV_BLOCK_M: tl.constexpr,
    KV_BLOCK_N: tl.constexpr, IS_SUMMARY: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr,
    DISTINCT: tl.constexpr, SAME_BLOCK: tl.constexpr, HAS_PREV: tl.constexpr, DOT_MODE: tl.constexpr,
    DQ_TMA: tl.constexpr, KV_TMA: tl.constexpr, STATS_TMA: tl.constexpr, PDL: tl.constexpr,
    ORDER: tl.constexpr = 0, KV_QUERY_ROWS: tl.constexpr = False, HEADS_REVERSED: tl.constexpr = False,
    LEAN: tl.constexpr = False, REDUCE: tl.constexpr = False,
):  # fmt: skip
    """The dk/dv and dq programs of one segment in one grid (plan.ONE_GRID_BACKWARD): programs below `dkdv_programs` run
    `_dkdv_program` on key tile pid, the rest `_dq_program` on query tile pid - dkdv_programs, each at its own tile
    sizes and descriptors (*_DQ, *_KV, DQ_TMA, KV_TMA; STATS_TMA, LSE_DESC, DELTA_DESC: dk/dv's alone). Neither body
    reads what the other writes, so no program waits for another of this launch; D comes from an earlier launch (never
    computed here). dk/dv programs come first: they are the longer ones, and the scheduler starts programs in order.
    ORDER (geometry.TILES_BY_HEAD or LONGEST_FIRST): on a (B * H, programs) grid, dk/dv's key tiles from the first and
    dq's query tiles from the last (a summary segment's longest programs first)."""
    tl.static_assert(DQ_BLOCK_M >= 16 and DQ_BLOCK_N >= 16 and KV_BLOCK_M >= 16 and KV_BLOCK_N >= 16, "tl.dot tiles")
    tl.static_assert(ORDER == 0 or ORDER == 1, "dk/dv from the first tile, dq from the last")
    let_next_launch_start(PDL)
    pid, bh = tile_and_head(ORDER, HEADS_REVERSED)
    if ORDER == 1 and pid >= dkdv_programs:
        pid = tl.num_programs(1) - 1 - pid + dkdv_programs  # dq's tiles from the last
    if pid < dkdv_programs:
        _dkdv_program(
            pid, bh, Q, K, V, DO, O, LSE, DELTA, DK, DV, Q_DESC_KV, K_DESC_KV, V_DESC_KV, DO_DESC_KV, LSE_DESC,
            DELTA_DESC, DK_DESC, DV_DESC, stride_qz, stride_qh, stride_qn, stride_kz, stride_kh, stride_kn,
            stride_vz, stride_vh, stride_vn, stride_dz, stride_dh, stride_dn,
            n, H, group_len, scale_log2, scale, step, group_stride, window, l_block, c_sum,
            HEAD_DIM, KV_BLOCK_M, KV_BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, DISTINCT, SAME_BLOCK, HAS_PREV,
            DOT_MODE, False, KV_TMA, STATS_TMA, PDL, KV_QUERY_ROWS, LEAN, REDUCE,
        )  # fmt: skip
    else:
        _dq_program(
            pid - dkdv_programs, bh, Q, K, V, DO, O, LSE, DELTA, DQ, Q_DESC_DQ, K_DESC_DQ, V_DESC_DQ, DO_DESC_DQ,
            DQ_DESC, stride_qz, stride_qh, stride_qn, stride_kz, stride_kh, stride_kn,
            stride_vz, stride_vh, stride_vn, stride_dz, stride_dh, stride_dn,
            n, H, group_len, scale_log2, scale, step, group_stride, window, l_block, c_sum,
            HEAD_DIM, DQ_BLOCK_M, DQ_BLOCK_N, IS_SUMMARY, HAS_WINDOW, EXCLUDE_SELF, DISTINCT, SAME_BLOCK, HAS_PREV,
            DOT_MODE, False, DQ_TMA, PDL, LEAN, REDUCE,
        )  # fmt: skip


@triton.jit
def _band_bwd_kernel(
    Q, K, V, DO, O, LSE, DELTA, DQ, DK, DV,
    stride_qz, stride_qh, stride_qn,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_dz, stride_dh, stride_dn,
    n, H, group_len, scale_log2, scale,
    step, group_stride, window,
    HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, CHUNK: tl.constexpr,
    HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, HAS_PREV: tl.constexpr, DOT_MODE: tl.constexpr,
    DELTA_ON_THE_FLY: tl.constexpr,
):  # fmt: skip
    """Program t of a group (grid: groups x tiles per group, batch x head): dk, dv of keys [t * BLOCK, (t + 1) *
    BLOCK), streaming their queries CHUNK at a time, then dq of queries [t * BLOCK, (t + 1) * BLOCK), streaming
    their keys CHUNK at a time. The two bodies share no registers, so the program needs no more than the larger."""
    tl.static_assert(BLOCK >= 16 and CHUNK >= 16, "tl.dot needs tiles of at least 16")
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    _dkdv_program(
        pid, bh, Q, K, V, DO, O, LSE, DELTA, DK, DV, Q, K, V, DO, LSE, DELTA, DK, DV,
        stride_qz, stride_qh, stride_qn, stride_kz, stride_kh, stride_kn,
        stride_vz, stride_vh, stride_vn, stride_dz, stride_dh, stride_dn,
        n, H, group_len, scale_log2, scale, step, group_stride, window, 1, 1,
        HEAD_DIM, CHUNK, BLOCK, False, HAS_WINDOW, EXCLUDE_SELF, False, False, HAS_PREV, DOT_MODE, DELTA_ON_THE_FLY,
        False, False, 0,
    )  # fmt: skip
    _dq_program(
        pid, bh, Q, K, V, DO, O, LSE, DELTA, DQ, Q, K, V, DO, DQ,
        stride_qz, stride_qh, stride_qn, stride_kz, stride_kh, stride_kn,
        stride_vz, stride_vh, stride_vn, stride_dz, stride_dh, stride_dn,
        n, H, group_len, scale_log2, scale, step, group_stride, window, 1, 1,
        HEAD_DIM, BLOCK, CHUNK, False, HAS_WINDOW, EXCLUDE_SELF, False, False, HAS_PREV, DOT_MODE, DELTA_ON_THE_FLY,
        False, 0,
    )  # fmt: skip


@triton.jit
def _write_rows(
    acc, OUT, offsets, valid, desc, batch32, head, group, group_stride, first,
    HAS_PREV: tl.constexpr, STORE_TMA: tl.constexpr, TMA: tl.constexpr,
):  # fmt: skip
    """`acc` ([rows, D], float32) into in-group rows [first, first + rows) of OUT: by descriptor (STORE_TMA, a first
    segment's: nothing to add to), else by pointer at `offsets` where `valid`, added to what an earlier segment stored
    there (HAS_PREV)."""
    if STORE_TMA:
        store_rows(desc, batch32, head, group, group_stride, first, acc.to(OUT.dtype.element_ty), TMA)
    else:
        if HAS_PREV:
            acc += tl.load(OUT + offsets, mask=valid, other=0.0).to(tl.float32)
        tl.store(OUT + offsets, acc.to(OUT.dtype.element_ty), mask=valid)


@triton.jit
def _group_key_step(
    start, dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, DK, DV, row_base, index, pos, valid, n,
    group, group_len, step, group_stride, window, scale_log2, scale, k_desc, v_desc, dk_desc, dv_desc, batch32, head,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr,
    HAS_PREV: tl.constexpr, DOT_MODE: tl.constexpr, TMA: tl.constexpr, STORE_TMA: tl.constexpr,
):  # fmt: skip
    """Key tile [start, start + BLOCK_N) of a group whose every query the program holds: its dk and dv are complete
    and stored here; its share of dq is added to `dq`."""
    cols = tl.arange(0, HEAD_DIM)[None, :]
    k_index = start + tl.arange(0, BLOCK_N)
    k, v, k_pos, _, k_valid = key_tile(
        k_base, v_base, stride_kn, stride_vn, start, k_index, 0, group_len, n, group, group_len, step, group_stride, 1,
        1, k_desc, v_desc, batch32, head, HEAD_DIM, False, TMA,
    )  # fmt: skip
    allowed = tile_allowed(
        index, pos, valid, k_index, k_pos, k_index, k_valid, window, 1, False, HAS_WINDOW, EXCLUDE_SELF, False
    )  # fmt: skip
    p = tl.math.exp2(mma(q, tl.trans(k), DOT_MODE) * scale_log2 - lse2[:, None])
    p = tl.where(allowed, p, 0.0)
    # dv first, so that its accumulator is stored before dp and ds need registers.
    dv = mma(tl.trans(p.to(do.dtype)), do, DOT_MODE)
    kv_off = row_base * HEAD_DIM + k_pos.to(tl.int64)[:, None] * HEAD_DIM + cols
    kv_valid = k_valid[:, None]
    _write_rows(dv, DV, kv_off, kv_valid, dv_desc, batch32, head, group, group_stride, start, HAS_PREV, STORE_TMA, TMA)
    ds = p * (mma(do, tl.trans(v), DOT_MODE) - delta[:, None])
    ds = ds.to(q.dtype)
    dk = mma(tl.trans(ds), q, DOT_MODE) * scale
    _write_rows(dk, DK, kv_off, kv_valid, dk_desc, batch32, head, group, group_stride, start, HAS_PREV, STORE_TMA, TMA)
    return dq + mma(ds, k, DOT_MODE)


@triton.jit
def _group_bwd_kernel(
    Q, K, V, DO, O, LSE, DELTA, DQ, DK, DV, K_DESC, V_DESC, DQ_DESC, DK_DESC, DV_DESC,
    stride_qz, stride_qh, stride_qn,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_dz, stride_dh, stride_dn,
    n, H, group_len, scale_log2, scale,
    step, group_stride, window,
    HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr, HAS_PREV: tl.constexpr, DOT_MODE: tl.constexpr,
    COMPUTE_DELTA: tl.constexpr, TMA: tl.constexpr, PDL: tl.constexpr, HEADS_REVERSED: tl.constexpr = False,
    STORE_TMA: tl.constexpr = False,
):  # fmt: skip
    """Program g (grid: groups, batch x head) owns all of group g of a band segment, as queries and as keys, when the
    group fits one query tile (group_len <= BLOCK; plan.py's `group_bwd`): the stride part of strided attention
    (n / l rows per group) and the local blocks of fixed attention (l rows). It keeps the group's q and dO and
    streams its keys BLOCK_N at a time; since every query of a key tile is its own, each key tile's dk and dv are
    complete after one step and are stored there, and dq after the last step. BLOCK_N = BLOCK is one step.

    Why: the split kernels run such a group as two or three short programs per kernel, each a chain of one or two
    dependent loads, and read q, k, v, dO twice; here each score is computed once for dq, dk and dv, each input is
    read once (5 reads and 3 writes of [group, D] tiles instead of 9 reads and 3 writes over two launches), and
    there is one launch instead of two. The [BLOCK, BLOCK_N] scores live in registers: BLOCK_N < BLOCK keeps long
    groups from needing a whole SM's registers per program (TILE_TABLE's "group_bwd" entry)."""
    tl.static_assert(BLOCK >= 16 and BLOCK_N >= 16, "tl.dot needs tiles of at least 16")
    tl.static_assert(BLOCK % BLOCK_N == 0, "key tiles split the group's tile evenly")
    tl.static_assert(not (COMPUTE_DELTA and HAS_PREV), "D is computed by the first segment's programs")
    tl.static_assert(not STORE_TMA or (TMA > 0 and not HAS_PREV), "stores by descriptor: the first segment's, by TMA")
    let_next_launch_start(PDL)
    group, bh = tile_and_head(0, HEADS_REVERSED)
    batch = (bh // H).to(tl.int64)
    head = bh % H
    dims = tl.arange(0, HEAD_DIM)
    cols = dims[None, :]
    index = tl.arange(0, BLOCK)
    pos, valid = band_positions(group, index, n, group_len, step, group_stride)
    off = pos.to(tl.int64)[:, None]
    rows_valid = valid[:, None]
    batch32 = bh // H
    # q and dO by pointer even with TMA: by descriptor they cost registers here (sm_90, strided 3,072 x 8's 32-row
    # groups: 168 per thread with all four tiles by descriptor, 127 with k and v alone, 100 with none;
    # benchmarks/kernel_resources.py), and programs per SM are what hides these programs' load latency.
    q = tl.load(Q + batch * stride_qz + head * stride_qh + off * stride_qn + cols, mask=rows_valid, other=0.0)
    do = tl.load(DO + batch * stride_dz + head * stride_dh + off * stride_dn + cols, mask=rows_valid, other=0.0)
    row_base = bh.to(tl.int64) * n
    wait_for_previous_launch(PDL)  # q and dO are inputs; D and the earlier segments' sums are not
    lse2 = tl.load(LSE + row_base + pos, mask=valid, other=0.0)
    if COMPUTE_DELTA:
        # The first segment's programs own every row once (plan.delta_source "first_dq"): D = rowsum(dO * O) here,
        # with dO already loaded; later segments read it back.
        o = tl.load(O + row_base * HEAD_DIM + off * HEAD_DIM + cols, mask=rows_valid, other=0.0)
        delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
        tl.store(DELTA + row_base + pos, delta, mask=valid)
    else:
        delta = tl.load(DELTA + row_base + pos, mask=valid, other=0.0)
    k_base = K + batch * stride_kz + head * stride_kh
    v_base = V + batch * stride_vz + head * stride_vh
    dq = tl.zeros([BLOCK, HEAD_DIM], tl.float32)
    if BLOCK_N == BLOCK:
        # One key tile: straight-line code. As a one-trip loop the compiler keeps twice the registers (a 32-row
        # group: 196-248 per thread instead of 100, benchmarks/kernel_resources.py), halving programs per SM.
        dq = _group_key_step(
            0, dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, DK, DV, row_base, index, pos, valid, n,
            group, group_len, step, group_stride, window, scale_log2, scale, K_DESC, V_DESC, DK_DESC, DV_DESC, batch32,
            head, HEAD_DIM, BLOCK_N, HAS_WINDOW, EXCLUDE_SELF, HAS_PREV, DOT_MODE, TMA, STORE_TMA,
        )  # fmt: skip
    else:
        for start in range(0, group_len, BLOCK_N):
            dq = _group_key_step(
                start, dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, DK, DV, row_base, index, pos,
                valid, n, group, group_len, step, group_stride, window, scale_log2, scale, K_DESC, V_DESC, DK_DESC,
                DV_DESC, batch32, head, HEAD_DIM, BLOCK_N, HAS_WINDOW, EXCLUDE_SELF, HAS_PREV, DOT_MODE, TMA, STORE_TMA,
            )  # fmt: skip

    dq *= scale
    out_off = row_base * HEAD_DIM + off * HEAD_DIM + cols
    _write_rows(dq, DQ, out_off, rows_valid, DQ_DESC, batch32, head, group, group_stride, 0, HAS_PREV, STORE_TMA, TMA)
