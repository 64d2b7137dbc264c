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
BLOCK = 64  # query and key tile rows; the window (l = 128) is two key tiles, so a query tile meets three
WINDOW = 2 * BLOCK
# The A/B's Gluon forms: (OVERLAP, max_registers).
VARIANTS = {"gluon_overlap": (True, None), "gluon_overlap_r168": (True, 168), "gluon_serial": (False, None)}


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
def band_forward_kernel(
    q_desc, k_desc, v_desc, O, LSE, n, scale_log2,
    BLOCK: gl.constexpr, HEAD_DIM: gl.constexpr, OVERLAP: gl.constexpr, HEADS_REVERSED: gl.constexpr,
):  # fmt: skip
    """Program (tile, bh): queries [tile * BLOCK, tile * BLOCK + BLOCK) of head bh attend keys i - 2 * BLOCK < j <= i,
    i.e. key tiles tile - 2 (strictly above the diagonal), tile - 1 (all) and tile (on and below it). OVERLAP: q k^T
    of the next key tile is in flight during this tile's softmax, and p v during the next softmax; else each product
    is waited for at once (the order Triton's code has)."""
    gl.static_assert(BLOCK == 64 and HEAD_DIM == 64, "one warpgroup, 64 x 64 tiles")
    tile = gl.program_id(0)
    bh = gl.program_id(1)
    if HEADS_REVERSED:
        bh = gl.num_programs(1) - 1 - bh
    row0 = bh * n + tile * BLOCK
    dtype: gl.constexpr = q_desc.dtype
    smem: gl.constexpr = q_desc.layout
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK, 16])
    p_operand: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    row_layout: gl.constexpr = gl.SliceLayout(1, mma)
    col_layout: gl.constexpr = gl.SliceLayout(0, mma)

    # Every tile this program reads is requested now: q, then the three key tiles' k and v, one barrier each, so the
    # loads of all four are in flight at once and the first product waits only for q and the first k.
    q_s = gl.allocate_shared_memory(dtype, [BLOCK, HEAD_DIM], smem)
    k_s = gl.allocate_shared_memory(dtype, [3, BLOCK, HEAD_DIM], smem)
    v_s = gl.allocate_shared_memory(dtype, [3, BLOCK, HEAD_DIM], smem)
    bars = gl.allocate_shared_memory(gl.int64, [4, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(4):
        mbarrier.init(bars.index(i), count=1)
    fence_async_shared()
    tile_bytes: gl.constexpr = BLOCK * HEAD_DIM * 2
    mbarrier.expect(bars.index(0), tile_bytes)
    tma.async_copy_global_to_shared(q_desc, [row0, 0], bars.index(0), q_s)
    for j in gl.static_range(3):
        # Tiles before the sequence's first (query tiles 0 and 1) load tile 0 again and are masked out entirely.
        key_row = bh * n + gl.maximum(tile - 2 + j, 0) * BLOCK
        mbarrier.expect(bars.index(1 + j), 2 * tile_bytes)
        tma.async_copy_global_to_shared(k_desc, [key_row, 0], bars.index(1 + j), k_s.index(j))
        tma.async_copy_global_to_shared(v_desc, [key_row, 0], bars.index(1 + j), v_s.index(j))

    # The stride part's result for these rows: a normalised output is (m = lse2, l = 1, acc = o).
    rows = gl.arange(0, BLOCK, layout=row_layout)
    cols = gl.arange(0, BLOCK, layout=col_layout)
    row_index = (row0 + rows).to(gl.int64)
    offsets = row_index[:, None] * HEAD_DIM + cols[None, :]
    m_i = gl.load(LSE + row_index)
    l_i = gl.where(m_i == float("-inf"), 0.0, 1.0)
    acc = gl.load(O + offsets).to(gl.float32)
    zero = gl.zeros([BLOCK, BLOCK], gl.float32, mma)
    above = cols[None, :] > rows[:, None]  # tile - 2: key inside the window (i - j < 2 * BLOCK)
    on_or_below = cols[None, :] <= rows[:, None]  # tile: causal

    mbarrier.wait(bars.index(0), 0)
    mbarrier.wait(bars.index(1), 0)
    s0 = warpgroup_mma(q_s, k_s.index(0).permute((1, 0)), zero, use_acc=False, is_async=True)
    if OVERLAP:
        mbarrier.wait(bars.index(2), 0)
        s1 = warpgroup_mma(q_s, k_s.index(1).permute((1, 0)), zero, use_acc=False, is_async=True)
        s0 = warpgroup_mma_wait(1, deps=[s0])
    else:
        s0 = warpgroup_mma_wait(0, deps=[s0])
    s0 = gl.where(above & (tile >= 2), s0, float("-inf"))
    m_i, l_i, p, alpha = _online_softmax(s0, m_i, l_i, scale_log2)
    acc = acc * alpha[:, None]
    p = gl.convert_layout(p.to(dtype), p_operand)
    acc_t = warpgroup_mma(p, v_s.index(0), acc, is_async=True)
    if OVERLAP:
        mbarrier.wait(bars.index(3), 0)
        s2 = warpgroup_mma(q_s, k_s.index(2).permute((1, 0)), zero, use_acc=False, is_async=True)
        s1 = warpgroup_mma_wait(2, deps=[s1])
    else:
        acc = warpgroup_mma_wait(0, deps=[acc_t])
        mbarrier.wait(bars.index(2), 0)
        s1 = warpgroup_mma(q_s, k_s.index(1).permute((1, 0)), zero, use_acc=False, is_async=True)
        s1 = warpgroup_mma_wait(0, deps=[s1])
    s1 = gl.where(tile >= 1, s1, float("-inf"))
    m_i, l_i, p, alpha = _online_softmax(s1, m_i, l_i, scale_log2)
    if OVERLAP:
        acc = warpgroup_mma_wait(1, deps=[acc_t])  # p v of tile - 2 done; q k^T of tile still in flight
    acc = acc * alpha[:, None]
    p = gl.convert_layout(p.to(dtype), p_operand)
    acc_t = warpgroup_mma(p, v_s.index(1), acc, is_async=True)
    if OVERLAP:
        s2 = warpgroup_mma_wait(1, deps=[s2])
    else:
        acc = warpgroup_mma_wait(0, deps=[acc_t])
        mbarrier.wait(bars.index(3), 0)
        s2 = warpgroup_mma(q_s, k_s.index(2).permute((1, 0)), zero, use_acc=False, is_async=True)
        s2 = warpgroup_mma_wait(0, deps=[s2])
    s2 = gl.where(on_or_below, s2, float("-inf"))
    m_i, l_i, p, alpha = _online_softmax(s2, m_i, l_i, scale_log2)
    if OVERLAP:
        acc = warpgroup_mma_wait(0, deps=[acc_t])
    acc = acc * alpha[:, None]
    p = gl.convert_layout(p.to(dtype), p_operand)
    acc = warpgroup_mma(p, v_s.index(2), acc)
    for i in gl.static_range(4):
        mbarrier.invalidate(bars.index(i))

    empty = l_i == 0.0
    l_safe = gl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
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
    if q.shape[2] % BLOCK:
        raise ValueError(f"n must be a multiple of {BLOCK}, got {q.shape[2]}")
    if not all(t.is_contiguous() for t in (q, k, v, out, lse2)):
        raise ValueError("q, k, v, out and lse2 must be contiguous")
    if lse2.dtype != torch.float32 or lse2.numel() != q.shape[0] * q.shape[1] * q.shape[2]:
        raise ValueError("lse2 must hold B * H * n float32 values")


def descriptors(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[TensorDescriptor]:
    rows = q.shape[0] * q.shape[1] * q.shape[2]
    layout = gl.NVMMASharedLayout.get_default_for([BLOCK, 64], gl.bfloat16 if q.dtype == torch.bfloat16 else gl.float16)
    return [TensorDescriptor.from_tensor(t.view(rows, 64), [BLOCK, 64], layout) for t in (q, k, v)]


def band_forward(
    q,
    k,
    v,
    out,
    lse2,
    scale: float,
    overlap: bool = True,
    max_registers: int | None = None,
    heads_reversed: bool = True,
) -> None:
    """Continue the stride part's (out, lse2) with the band of window 128, in place. max_registers: ptxas's cap per
    thread (OVERLAP takes 201 uncapped, two programs per SM; 168 gives three, with 24 bytes spilled)."""
    check_inputs(q, k, v, out, lse2)
    batch, heads, n, head_dim = q.shape
    cap = {} if max_registers is None else {"maxnreg": max_registers}
    band_forward_kernel[(n // BLOCK, batch * heads)](
        *descriptors(q, k, v), out, lse2, n, scale * LOG2_E,
        BLOCK=BLOCK, HEAD_DIM=head_dim, OVERLAP=overlap, HEADS_REVERSED=heads_reversed, num_warps=4, **cap,
    )  # fmt: skip


def compile_for_sm90(overlap: bool = True, max_registers: int | None = None, n: int = 12288, heads: int = 16):
    """Compile the kernel for sm_90 without a GPU (tensors on the meta device stand in for the arguments' types)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    kernel = band_forward_kernel
    q = torch.empty(1, heads, n, 64, dtype=torch.bfloat16, device="meta")
    layout = gl.NVMMASharedLayout.get_default_for([BLOCK, 64], gl.bfloat16)

    # Meta tensors (data_ptr 0) stand in for the arguments: aligned, as the binder's specialization needs.
    descs = [TensorDescriptor(q, [heads * n, 64], [64, 1], [BLOCK, 64], layout) for _ in range(3)]
    lse2 = torch.empty(heads * n, dtype=torch.float32, device="meta")
    options = dict(BLOCK=BLOCK, HEAD_DIM=64, OVERLAP=overlap, HEADS_REVERSED=True, num_warps=4)
    if max_registers is not None:
        options["maxnreg"] = max_registers
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound_args, specialization, _ = binder(*descs, q, lse2, n, 0.18, **options)
    parsed, signature, constexprs, attrs = kernel._pack_args(backend, options, bound_args, specialization, None)
    return triton.compile(GluonASTSource(kernel, signature, constexprs, attrs), target=target, options=parsed.__dict__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile-only", action="store_true", help="compile for sm_90 and print its resources")
    parser.add_argument("--out", help="CSV to append the A/B rows to (GPU runs)")
    args = parser.parse_args(argv)
    if args.compile_only:
        from benchmarks.kernel_resources import resource_usage

        for overlap, cap in VARIANTS.values():
            compiled = compile_for_sm90(overlap, cap)
            print(f"OVERLAP={overlap} max_registers={cap}: {resource_usage(compiled)}")
        return
    from benchmarks.gluon_band_ab import run_ab

    run_ab(args.out)


if __name__ == "__main__":
    main()
