"""Experiment: strided attention's band forward (the window segment, after the stride part) written in Gluon, to
measure whether explicit asynchronous matrix products beat Triton's code for the same work on Hopper.

Why: every kernel of strided n = 12,288 runs 1.6-2x above its DRAM time, latency-bound, with ptxas serializing the
forward's wgmma chain at the register cap that gives six programs per SM (KERNEL_NOTES, session of 16:12). Triton
3.6 decides the order of the products itself ("the next tile's q k^T before this tile's softmax" measured no
faster: Triton waits right after the issue). Gluon, Triton's lower-level dialect, lets a kernel issue q k^T of the
next key tile before the softmax of this one and keep both in flight (FlashAttention-3's intra-warpgroup overlap),
and issue every TMA load of the program at its start. If that is worth nothing on this segment's three-tile loop,
the Gluon route (the notes' last untried one) is unlikely to close strided 12,288's gap either.

Scope, checked on the host before any launch: the band of the strided pattern with window 2 * 64 = 128 (l = 128),
head dim 64, bf16 or fp16, contiguous [B, H, n, 64] inputs, n a multiple of 64; `out` and `lse2` hold the stride
part's normalised output and base-2 log-sum-exp and are continued in place, exactly as `_sparse_fwd_kernel` does
with HAS_PREV (forward.py's module docstring). Not wired into sparse/: an A/B on the GPU,

    python -m benchmarks.gluon_band_forward --out $OUT/gluon_band_forward.csv

checks it against the Triton band launch of the same call (max abs difference of out and lse2), then times both
alone and inside the whole forward + backward (CUDA graphs, interleaved rounds, one process) and appends rows with
provenance. Gluon kernels do not run under TRITON_INTERPRET; `--compile-only` compiles it for sm_90 on any
machine (registers, spills, shared memory), which is what the CPU tests do.
"""

from __future__ import annotations

import argparse

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

LOG2_E = 1.4426950408889634
BLOCK_M = 64  # query tile rows
WINDOW = gl.constexpr(128)  # the band's window, l = 128: a query tile meets the keys of three 64-row tiles
# The A/B's Gluon forms: key tile rows, ring stages, overlapped products, ptxas's register cap (None: its choice).
VARIANTS = {
    "gluon_n64_s3_overlap": dict(block_n=64, stages=3, overlap=True),  # 184 registers: 2 programs per SM
    "gluon_n64_s3_serial": dict(block_n=64, stages=3, overlap=False),  # 143: 3 per SM
    "gluon_n32_s3_overlap": dict(block_n=32, stages=3, overlap=True),  # 142: 3 per SM
    "gluon_n32_s3_overlap_r128": dict(block_n=32, stages=3, overlap=True, max_registers=128),  # no spill: 4 per SM
    "gluon_n32_s3_serial": dict(block_n=32, stages=3, overlap=False),  # 124: 4 per SM
    "gluon_n32_s3_serial_r96": dict(block_n=32, stages=3, overlap=False, max_registers=96),  # 56 bytes spilled: 5
    "gluon_n32_s6_overlap": dict(block_n=32, stages=6, overlap=True),  # 128, but 57 KB of shared memory: 3 per SM
}


@gluon.jit
def _online_softmax(s, m_i, l_i, scale_log2):
    # Base-2 scores, the scale inside the exponent as in forward.py; a row with nothing allowed yet keeps m = -inf
    # and subtracts 0 so that exp2 gives 0, not NaN.
    m_new = gl.maximum(m_i, gl.max(s, 1) * scale_log2)
    m_safe = gl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = gl.exp2(m_i - m_safe)
    p = gl.exp2(s * scale_log2 - m_safe[:, None])
    l_i = l_i * alpha + gl.sum(p, 1)
    return m_new, l_i, p, alpha


@gluon.jit
def _load_key_tile(k_desc, v_desc, k_s, v_s, bars, bh, n, first_key, j: gl.constexpr, BLOCK_N: gl.constexpr,
                   STAGES: gl.constexpr):  # fmt: skip
    # Key tiles before the sequence's first (query tiles 0 and 1) load rows 0.. again and are masked out entirely.
    stage: gl.constexpr = j % STAGES
    key_row = bh * n + gl.maximum(first_key + j * BLOCK_N, 0)
    mbarrier.expect(bars.index(stage), 2 * k_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(k_desc, [key_row, 0], bars.index(stage), k_s.index(stage))
    tma.async_copy_global_to_shared(v_desc, [key_row, 0], bars.index(stage), v_s.index(stage))


@gluon.jit
def _mask_tile(s, rows, cols, first_key, j: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    # Keys first_key + j * BLOCK_N + c against queries first_key + WINDOW + a: the span's first BLOCK_M keys are at
    # the window's edge (allowed where j * BLOCK_N + c > a), its last BLOCK_M on the diagonal (allowed where
    # j * BLOCK_N + c - WINDOW <= a), those between are all allowed; a tile before the sequence's start is not.
    if j * BLOCK_N < BLOCK_M:
        allowed = (j * BLOCK_N + cols[None, :] > rows[:, None]) & (first_key + j * BLOCK_N >= 0)
        s = gl.where(allowed, s, float("-inf"))
    elif j * BLOCK_N < WINDOW:
        s = gl.where(first_key + j * BLOCK_N >= 0, s, float("-inf"))
    else:
        s = gl.where(j * BLOCK_N - WINDOW + cols[None, :] <= rows[:, None], s, float("-inf"))
    return s


@gluon.jit
def band_forward_kernel(
    q_desc, k_desc, v_desc, O, LSE, n, scale_log2,
    BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr, STAGES: gl.constexpr,
    OVERLAP: gl.constexpr, HEADS_REVERSED: gl.constexpr,
):  # fmt: skip
    """Program (tile, bh): queries [tile * BLOCK_M, tile * BLOCK_M + BLOCK_M) of head bh attend keys
    i - WINDOW < j <= i: the WINDOW + BLOCK_M keys from (tile - 2) * BLOCK_M on, in TILES key tiles of BLOCK_N, through
    a ring of STAGES shared-memory stages (STAGES = TILES: every load issued at the program's start). OVERLAP: q k^T of
    the next key tile is issued before this tile's softmax and runs beside it, as does p v of the tile before
    (FlashAttention-3's intra-warpgroup overlap); else each product is waited for at once (Triton's order)."""
    gl.static_assert(BLOCK_M == 64 and HEAD_DIM == 64, "one warpgroup, 64-row query tiles, head dim 64")
    gl.static_assert(BLOCK_N == 32 or BLOCK_N == 64, "key tiles of 32 or 64")
    TILES: gl.constexpr = (WINDOW + BLOCK_M) // BLOCK_N
    gl.static_assert(STAGES >= 2 and STAGES <= TILES, "a ring of 2 to TILES stages")
    tile = gl.program_id(0)
    bh = gl.program_id(1)
    if HEADS_REVERSED:
        bh = gl.num_programs(1) - 1 - bh
    row0 = bh * n + tile * BLOCK_M
    first_key = tile * BLOCK_M - WINDOW
    dtype: gl.constexpr = q_desc.dtype
    mma_s: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16])
    mma_o: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HEAD_DIM, 16]
    )
    p_operand: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma_o, k_width=2)
    rows_s: gl.constexpr = gl.SliceLayout(1, mma_s)
    rows_o: gl.constexpr = gl.SliceLayout(1, mma_o)

    q_s = gl.allocate_shared_memory(dtype, [BLOCK_M, HEAD_DIM], q_desc.layout)
    k_s = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_s = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
    bars = gl.allocate_shared_memory(gl.int64, [STAGES + 1, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES + 1):
        mbarrier.init(bars.index(i), count=1)
    fence_async_shared()
    mbarrier.expect(bars.index(STAGES), q_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(q_desc, [row0, 0], bars.index(STAGES), q_s)
    for j in gl.static_range(STAGES):
        _load_key_tile(k_desc, v_desc, k_s, v_s, bars, bh, n, first_key, j, BLOCK_N, STAGES)

    # The stride part's result for these rows: a normalised output is (m = lse2, l = 1, acc = o).
    rows = gl.arange(0, BLOCK_M, layout=rows_s)
    cols = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma_s))
    row_index = (row0 + rows).to(gl.int64)
    row_index_o = (row0 + gl.arange(0, BLOCK_M, layout=rows_o)).to(gl.int64)
    offsets = row_index_o[:, None] * HEAD_DIM + gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, mma_o))[None, :]
    m_i = gl.load(LSE + row_index)
    l_i = gl.where(m_i == float("-inf"), 0.0, 1.0)
    acc = gl.load(O + offsets).to(gl.float32)
    zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_s)

    mbarrier.wait(bars.index(STAGES), 0)
    mbarrier.wait(bars.index(0), 0)
    s_token = warpgroup_mma(q_s, k_s.index(0).permute((1, 0)), zero, use_acc=False, is_async=True)
    for j in gl.static_range(TILES):
        stage = j % STAGES
        if OVERLAP:
            # In flight, in issue order: q k^T of this tile, p v of the one before, then q k^T of the next (issued
            # now); waiting until one is left completes the first two.
            if j + 1 < TILES:
                mbarrier.wait(bars.index((j + 1) % STAGES), ((j + 1) // STAGES) % 2)
                s_next = warpgroup_mma(
                    q_s, k_s.index((j + 1) % STAGES).permute((1, 0)), zero, use_acc=False, is_async=True
                )
                if j == 0:
                    s = warpgroup_mma_wait(1, deps=[s_token])
                else:
                    s, acc = warpgroup_mma_wait(1, deps=[s_token, acc_token])  # noqa: F821 (tile j - 1's p v)
            else:
                s, acc = warpgroup_mma_wait(0, deps=[s_token, acc_token])  # noqa: F821
            if j >= 1 and j - 1 + STAGES < TILES:  # the stage of tile j - 1 is free: both its products are done
                _load_key_tile(k_desc, v_desc, k_s, v_s, bars, bh, n, first_key, j - 1 + STAGES, BLOCK_N, STAGES)
        else:
            if j > 0:
                mbarrier.wait(bars.index(stage), (j // STAGES) % 2)
                s_token = warpgroup_mma(q_s, k_s.index(stage).permute((1, 0)), zero, use_acc=False, is_async=True)
            s = warpgroup_mma_wait(0, deps=[s_token])
        s = _mask_tile(s, rows, cols, first_key, j, BLOCK_M, BLOCK_N)
        m_i, l_i, p, alpha = _online_softmax(s, m_i, l_i, scale_log2)
        acc = acc * gl.convert_layout(alpha, rows_o)[:, None]
        p = gl.convert_layout(p.to(dtype), p_operand)
        acc_token = warpgroup_mma(p, v_s.index(stage), acc, is_async=True)
        if OVERLAP:
            if j + 1 < TILES:
                s_token = s_next
        else:
            acc = warpgroup_mma_wait(0, deps=[acc_token])
            if j + STAGES < TILES:
                _load_key_tile(k_desc, v_desc, k_s, v_s, bars, bh, n, first_key, j + STAGES, BLOCK_N, STAGES)
    if OVERLAP:
        acc = warpgroup_mma_wait(0, deps=[acc_token])
    for i in gl.static_range(STAGES + 1):
        mbarrier.invalidate(bars.index(i))

    empty = l_i == 0.0
    l_safe = gl.where(empty, 1.0, l_i)
    out = acc / gl.convert_layout(l_safe, rows_o)[:, None]
    gl.store(LSE + row_index, gl.where(empty, float("-inf"), m_i + gl.log2(l_safe)))
    gl.store(O + offsets, out.to(dtype))


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse2: torch.Tensor) -> None:
    """The kernel's scope (module docstring); raises ValueError naming what is outside it."""
    if q.dim() != 4 or q.shape[-1] != 64:
        raise ValueError(f"q must be [B, H, n, 64], got {tuple(q.shape)}")
    if any(t.shape != q.shape for t in (k, v, out)):
        raise ValueError("q, k, v and out must have one shape")
    if q.dtype not in (torch.bfloat16, torch.float16) or any(t.dtype != q.dtype for t in (k, v, out)):
        raise ValueError(f"q, k, v and out must share a dtype of bf16 or fp16, got {q.dtype}")
    if q.shape[2] % BLOCK_M:
        raise ValueError(f"n must be a multiple of {BLOCK_M}, got {q.shape[2]}")
    if not all(t.is_contiguous() for t in (q, k, v, out, lse2)):
        raise ValueError("q, k, v, out and lse2 must be contiguous")
    if lse2.dtype != torch.float32 or lse2.numel() != q.shape[0] * q.shape[1] * q.shape[2]:
        raise ValueError("lse2 must hold B * H * n float32 values")


def _descriptors(q, k, v, block_n: int) -> list[TensorDescriptor]:
    """[B * H * n, 64] views: q in BLOCK_M-row boxes, k and v in block_n-row boxes."""
    rows = q.shape[0] * q.shape[1] * q.shape[2]
    element = gl.bfloat16 if q.dtype == torch.bfloat16 else gl.float16
    boxes = (BLOCK_M, block_n, block_n)
    return [
        TensorDescriptor(t, [rows, 64], [64, 1], [box, 64], gl.NVMMASharedLayout.get_default_for([box, 64], element))
        for t, box in zip((q, k, v), boxes)
    ]


def _options(block_n: int, stages: int, overlap: bool, max_registers: int | None, heads_reversed: bool) -> dict:
    options = dict(BLOCK_M=BLOCK_M, BLOCK_N=block_n, HEAD_DIM=64, STAGES=stages, OVERLAP=overlap, num_warps=4)
    options["HEADS_REVERSED"] = heads_reversed
    if max_registers is not None:
        options["maxnreg"] = max_registers
    return options


def band_forward(
    q, k, v, out, lse2, scale: float, block_n=64, stages=3, overlap=True, max_registers=None, heads_reversed=True
) -> None:
    """Continue the stride part's (out, lse2) with the band of window 128, in place, in the form VARIANTS names."""
    check_inputs(q, k, v, out, lse2)
    batch, heads, n, _ = q.shape
    band_forward_kernel[(n // BLOCK_M, batch * heads)](
        *_descriptors(q, k, v, block_n), out, lse2, n, scale * LOG2_E,
        **_options(block_n, stages, overlap, max_registers, heads_reversed),
    )  # fmt: skip


def compile_for_sm90(block_n=64, stages=3, overlap=True, max_registers=None, n: int = 12288, heads: int = 16):
    """Compile the kernel for sm_90 without a GPU: tensors on the meta device (data_ptr 0, so aligned, as the binder's
    specialization needs) stand in for the arguments."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    kernel = band_forward_kernel
    q = torch.empty(1, heads, n, 64, dtype=torch.bfloat16, device="meta")
    lse2 = torch.empty(heads * n, dtype=torch.float32, device="meta")
    options = _options(block_n, stages, overlap, max_registers, heads_reversed=True)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound_args, specialization, _ = binder(*_descriptors(q, q, q, block_n), q, lse2, n, 0.18, **options)
    parsed, signature, constexprs, attrs = kernel._pack_args(backend, options, bound_args, specialization, None)
    return triton.compile(GluonASTSource(kernel, signature, constexprs, attrs), target=target, options=parsed.__dict__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile-only", action="store_true", help="compile for sm_90 and print its resources")
    parser.add_argument("--out", help="CSV to append the A/B rows to (GPU runs)")
    args = parser.parse_args(argv)
    if args.compile_only:
        from benchmarks.kernel_resources import resource_usage

        for name, form in VARIANTS.items():
            print(f"{name}: {resource_usage(compile_for_sm90(**form))}")
        return
    from benchmarks.gluon_band_ab import run_ab

    run_ab(args.out)


if __name__ == "__main__":
    main()
