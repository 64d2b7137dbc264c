"""Band backward with each score computed once: dk and dv of owned keys, dq summed across programs in a fixed order.

The split backward (backward.py) computes every score of a band twice, once in the dq programs (query tiles, keys
streamed) and once in the dk/dv programs (key tiles, queries streamed): dq of a query tile needs the key tiles that
other programs own. Here program (j, bh) owns key tile j, streams the query tiles that see it and, with the scores in
hand, adds each query tile's share of dq as well. The query tile's share from several programs must be summed, and in
the same order at every run (bitwise-reproducible gradients, as everywhere in this package): contributor r of query
tile i (r = j - the first key tile it sees) waits until flag [bh, i] says r contributors are done, adds the fp32 sum
they left in DQ_ACC, and stores the new sum and raises the flag; the last contributor (the key tile of the query tile's
own rows) finishes dq instead: scaled, added to the earlier segments' dq, stored in the output's dtype, and the flag
set back to 0, so the flags are zero again after every call and need no clearing.

Why it cannot deadlock: a program waits only for programs of lower key tiles of its own head, which CUDA started
before it (a grid's programs start in order of index, x fastest), and each program visits its query tiles last first,
so that its first visits are of tiles it is the first contributor to. The wait chains are then as long as a query
tile's contributors (a few), not as long as the sequence (visited first to last, each program's first step would wait
for the whole chain of programs before it).

Limits (plan.ORDERED_DQ picks the segments): a band segment of step 1 in one group with a window (strided attention's
local band), after the backward's first segment (it reads D and adds to the earlier segments' dq). Inputs by pointer.
"""

import triton
import triton.language as tl

from sparse.kernels.geometry import let_next_launch_start, mma, tile_allowed, wait_for_previous_launch


@triton.jit
def _contributors(query_tile, window, n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The first and last key tiles whose keys some query of `query_tile` sees (keys t - window < s <= t)."""
    first = tl.maximum(query_tile * BLOCK_M - window + 1, 0) // BLOCK_N
    last = tl.minimum(query_tile * BLOCK_M + BLOCK_M - 1, n - 1) // BLOCK_N
    return first, last


@triton.jit
def _band_ordered_bwd_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, DK, DV, DQ_ACC, FLAGS,
    stride_qz, stride_qh, stride_qn,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_dz, stride_dh, stride_dn,
    n, H, window, scale_log2, scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, EXCLUDE_SELF: tl.constexpr,
    DOT_MODE: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    """Program (j, bh): keys [j * BLOCK_N, (j + 1) * BLOCK_N) of batch x head bh. DQ, DK, DV hold the earlier
    segments' sums, added to here; DQ_ACC: fp32 [B * H, n, HEAD_DIM] scratch; FLAGS: int32 [B * H, cdiv(n, BLOCK_M)],
    zero on entry and on exit."""
    tl.static_assert(BLOCK_M >= 16 and BLOCK_N >= 16, "tl.dot needs tiles of at least 16")
    let_next_launch_start(PDL)
    j = tl.program_id(0)
    bh = tl.program_id(1)
    batch = (bh // H).to(tl.int64)
    head = bh % H
    dims = tl.arange(0, HEAD_DIM)[None, :]
    k_index = j * BLOCK_N + tl.arange(0, BLOCK_N)
    k_valid = k_index < n
    k_off = k_index.to(tl.int64)[:, None]
    k = tl.load(K + batch * stride_kz + head * stride_kh + k_off * stride_kn + dims, mask=k_valid[:, None], other=0.0)
    v = tl.load(V + batch * stride_vz + head * stride_vh + k_off * stride_vn + dims, mask=k_valid[:, None], other=0.0)
    q_base = Q + batch * stride_qz + head * stride_qh
    do_base = DO + batch * stride_dz + head * stride_dh
    row_base = bh.to(tl.int64) * n
    flags = FLAGS + bh * tl.cdiv(n, BLOCK_M)
    wait_for_previous_launch(PDL)  # D and the earlier segments' sums come from the launches before

    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    # Query tiles that see this key tile: from the one holding its first key to the one holding its last key's last
    # query (window - 1 rows on), visited last first (see the module's docstring).
    first_tile = j * BLOCK_N // BLOCK_M
    last_tile = tl.minimum(j * BLOCK_N + BLOCK_N - 1 + window - 1, n - 1) // BLOCK_M
    for step in range(0, last_tile - first_tile + 1):
        i = last_tile - step
        q_index = i * BLOCK_M + tl.arange(0, BLOCK_M)
        q_valid = q_index < n
        q_off = q_index.to(tl.int64)[:, None]
        q = tl.load(q_base + q_off * stride_qn + dims, mask=q_valid[:, None], other=0.0)
        do = tl.load(do_base + q_off * stride_dn + dims, mask=q_valid[:, None], other=0.0)
        lse2 = tl.load(LSE + row_base + q_index, mask=q_valid, other=0.0)
        delta = tl.load(DELTA + row_base + q_index, mask=q_valid, other=0.0)
        allowed = tile_allowed(
            q_index, q_index, q_valid, k_index, k_index, k_index, k_valid, window, 1, False, True, EXCLUDE_SELF, False
        )  # fmt: skip
        p = tl.math.exp2(mma(q, tl.trans(k), DOT_MODE) * scale_log2 - lse2[:, None])
        p = tl.where(allowed, p, 0.0)
        dv += mma(tl.trans(p.to(do.dtype)), do, DOT_MODE)
        ds = (p * (mma(do, tl.trans(v), DOT_MODE) - delta[:, None])).to(q.dtype)
        dk += mma(tl.trans(ds), q, DOT_MODE)
        dq = mma(ds, k, DOT_MODE)

        first, last = _contributors(i, window, n, BLOCK_M, BLOCK_N)
        rank = j - first
        acc_ptrs = DQ_ACC + (row_base + q_off) * HEAD_DIM + dims
        if rank > 0:
            # Acquire: the sum below is the one the contributor before left, whole.
            while tl.atomic_add(flags + i, 0, sem="acquire") < rank:
                pass
            tl.debug_barrier()
            dq += tl.load(acc_ptrs, mask=q_valid[:, None], other=0.0, cache_modifier=".cg")
        if j == last:
            out_ptrs = DQ + (row_base + q_off) * HEAD_DIM + dims
            dq = dq * scale + tl.load(out_ptrs, mask=q_valid[:, None], other=0.0).to(tl.float32)
            tl.store(out_ptrs, dq.to(DQ.dtype.element_ty), mask=q_valid[:, None])
            tl.atomic_xchg(flags + i, 0)  # every contributor of this tile is done: zero again for the next call
        else:
            tl.store(acc_ptrs, dq, mask=q_valid[:, None], cache_modifier=".cg")
            tl.debug_barrier()  # every thread's share stored before the flag says so (release: then visible)
            tl.atomic_xchg(flags + i, rank + 1, sem="release")

    kv_off = (row_base + k_off) * HEAD_DIM + dims
    dk = dk * scale + tl.load(DK + kv_off, mask=k_valid[:, None], other=0.0).to(tl.float32)
    dv += tl.load(DV + kv_off, mask=k_valid[:, None], other=0.0).to(tl.float32)
    tl.store(DK + kv_off, dk.to(DK.dtype.element_ty), mask=k_valid[:, None])
    tl.store(DV + kv_off, dv.to(DV.dtype.element_ty), mask=k_valid[:, None])
