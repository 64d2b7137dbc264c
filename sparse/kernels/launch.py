"""Thin launchers: run a pattern's segments through the forward or backward kernels, in order.

Shapes: q, k, v, do [B, H, n, D] with any strides whose last one is 1 (others are copied to contiguous);
o and the gradients are returned contiguous [B, H, n, D] in q's dtype; lse2 is float32 [B * H, n], the
base-2 log-sum-exp of each row (-inf for a row with no allowed key).

With `packed` (the eager autograd path, op.py) out and lse2 are views of one allocation, and so are dq, dk, dv and the
backward's D (`_with_row_stats`); the registered ops (torch.compile's path) return separate allocations.

Segments accumulate in place: each later segment's program reads back the rows it owns from the output (or
gradient) buffer, merges, and writes them again, so the memory is that of dense flash attention (no
float32 intermediates; in bf16/fp16 a partial result is rounded once more to the output dtype).
"""

from __future__ import annotations

import functools
import math
import os

import torch
from triton.tools.tensor_descriptor import TensorDescriptor

from sparse.kernels import call_graphs
from sparse.kernels.backward import (
    _band_bwd_kernel,
    _delta_kernel,
    _dq_dkdv_kernel,
    _group_bwd_kernel,
    _sparse_dkdv_kernel,
    _sparse_dq_kernel,
)
from sparse.kernels.fast_launch import launch_site as _launch_at
from sparse.kernels.forward import _sparse_fwd_kernel
from sparse.kernels.geometry import (
    DOT_IEEE_FP32,
    DOT_NATIVE,
    DOT_UPCAST,
    PDL_EARLY,
    PDL_FIRST,
    PDL_HANDOFF,
    PDL_OFF,
    PDL_TAIL,
    TILES_BY_HEAD,
    TMA_GROUP_ROWS,
    TMA_OFF,
    TMA_ROWS,
    TMA_SUMMARY_KEYS,
)
from sparse.kernels.plan import HOPPER_ARCH, Plan, SegmentLaunch, build_plan, interpreting
from sparse.patterns import Pattern, Segment, SummarySegment

LOG2_E = 1.4426950408889634

# Allocation goes through these two names so that tests can poison every buffer (fill it with NaN) and
# catch any element a kernel forgot to write.
_empty = torch.empty
_zeros = torch.zeros


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


@functools.lru_cache(maxsize=512)
def _geometry(launch: SegmentLaunch) -> dict:
    """Geometry of a segment: runtime numbers and constexpr mask shape (the unused family gets dummies)."""
    seg = launch.segment
    if isinstance(seg, SummarySegment):
        return dict(
            step=1, group_stride=0, window=0, l_block=seg.block, c_sum=seg.summary,
            IS_SUMMARY=True, HAS_WINDOW=False, EXCLUDE_SELF=0, DISTINCT=seg.distinct_heads, SAME_BLOCK=seg.same_block,
        )  # fmt: skip
    return dict(
        step=seg.step, group_stride=seg.group_stride, window=seg.window, l_block=1, c_sum=1,
        IS_SUMMARY=False, HAS_WINDOW=seg.window > 0, EXCLUDE_SELF=int(seg.exclude_self), DISTINCT=False,
        SAME_BLOCK=False,
    )  # fmt: skip


def _band_geometry(geometry: dict) -> dict:
    """The band numbers and mask shape alone: what the kernels that only run band segments take."""
    return {key: geometry[key] for key in ("step", "group_stride", "window", "HAS_WINDOW", "EXCLUDE_SELF")}


def _dot_mode(dtype: torch.dtype) -> int:
    if dtype == torch.float32:
        return DOT_IEEE_FP32
    return DOT_UPCAST if dtype == torch.bfloat16 and interpreting() else DOT_NATIVE


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride()[:3]  # one call, not three: this runs on every call (benchmarks/host_overhead.py)


def _descriptor(base: torch.Tensor, shape: list, strides: list, block_shape: list) -> TensorDescriptor:
    """TensorDescriptor(base, shape, strides, block_shape) without its __post_init__ checks (a few microseconds of host
    time each, 18 descriptors per strided forward + backward): `_descriptors_usable` checked the base and strides once
    per call, and the blocks are tile sizes and head dims, powers of two (tests run the checked constructor beside)."""
    descriptor = object.__new__(TensorDescriptor)
    descriptor.base, descriptor.shape, descriptor.strides = base, shape, strides
    descriptor.block_shape, descriptor.padding = block_shape, "zero"
    return descriptor


def _row_tiles(layout: int, segment: Segment, rows: tuple, tensors: tuple, addressable: bool) -> tuple:
    """What the kernels' descriptor parameters get for `tensors` (some of q, k, v, dO), and their TMA constexpr: for a
    segment that loads by TMA (`layout`: its launch's tma or group_bwd_tma) and tensors a descriptor can address
    (`addressable`), a descriptor of each tensor with blocks of `rows` rows (the matching entry; None: the tensor
    itself, for an operand that kernel gathers by pointer), and the layout; else
    the tensors themselves (unused) and TMA_OFF. Layouts (geometry.py): TMA_ROWS, [B, H, n, D] with blocks [1, 1, rows,
    D]; TMA_GROUP_ROWS, the same memory as [B, H, l, n / l, D] (row t * l + g at [g, t]: strides need not grow with
    the dimension) with blocks [1, 1, 1, rows, D], so that a tile's rows and head dim are the box's last two
    dimensions, as for TMA_ROWS; TMA_SUMMARY_KEYS, the same memory as [B, H, n / l, l, D] with blocks [1, 1, rows / c,
    c, D] (or [1, 1, 1, rows, D] for rows < c): a tile of compact summary keys."""
    if not (layout and addressable):
        return tensors, TMA_OFF
    descriptors = []
    for x, r in zip(tensors, rows):
        if r is None:
            descriptors.append(x)
            continue
        batch, heads, n, head_dim = x.shape
        sz, sh, sn, sd = x.stride()
        if layout == TMA_ROWS:
            descriptors.append(_descriptor(x, [batch, heads, n, head_dim], [sz, sh, sn, sd], [1, 1, r, head_dim]))
        elif layout == TMA_SUMMARY_KEYS:
            l_block, c = segment.block, segment.summary
            shape, strides = [batch, heads, n // l_block, l_block, head_dim], [sz, sh, l_block * sn, sn, sd]
            descriptors.append(_descriptor(x, shape, strides, [1, 1, max(1, r // c), min(r, c), head_dim]))
        else:
            step = segment.step
            shape, strides = [batch, heads, step, n // step, head_dim], [sz, sh, sn, step * sn, sd]
            descriptors.append(_descriptor(x, shape, strides, [1, 1, 1, r, head_dim]))
    return tuple(descriptors), layout


def _split_descriptors(launch: SegmentLaunch, kernel: str, tensors: tuple, addressable: bool) -> tuple:
    """`_row_tiles` of (q, k, v, dO) for the split dq or dk/dv kernel (`kernel`: "dq" or "dkdv") of this segment. A
    summary segment's owned tiles are not by descriptor (dq's queries, dk/dv's gathered keys: None, the tensor passes
    through and is loaded by pointer)."""
    t = launch.dq if kernel == "dq" else launch.dkdv
    summary = isinstance(launch.segment, SummarySegment)
    if kernel == "dq":
        owned = None if summary else t.block_m
        rows = (owned, t.block_n, t.block_n, owned)
    else:
        owned = None if summary else t.block_n
        rows = (t.block_m, owned, owned, t.block_m)
    return _row_tiles(launch.tma_of(kernel), launch.segment, rows, tensors, addressable)


def _row_stats(launch: SegmentLaunch, kv_tma: int, lse2: torch.Tensor, delta: torch.Tensor) -> tuple:
    """What the dk/dv kernels' LSE_DESC and DELTA_DESC get, and their STATS_TMA constexpr: [B * H, n] descriptors of
    lse2 and D with blocks of one row of the dk/dv query tile (plan.TMA_ROW_STATS), where the plan says so
    (`row_stats_tma`: TMA_ROWS query tiles, n a multiple of 4), the query tiles do come by descriptor (`kv_tma`: the
    tensors were addressable) and lse2, the caller's, is 16-byte aligned (D is ours); else the tensors themselves
    (unused) and False. The launch sites' keys determine each condition: the plan's token, `addressable`, and lse2's
    alignment among `aligned`."""
    if not (launch.row_stats_tma and kv_tma == TMA_ROWS and lse2.data_ptr() % 16 == 0):
        return (lse2, delta), False
    rows, n = lse2.shape
    block = [1, launch.dkdv.block_m]
    return (_descriptor(lse2, [rows, n], [n, 1], block), _descriptor(delta, [rows, n], [n, 1], block)), True


def _reduce_descriptors(launch: SegmentLaunch, has_prev: bool, grads: tuple) -> tuple:
    """What the dq and dk/dv kernels' DQ_DESC, DK_DESC, DV_DESC get, and their REDUCE constexpr: where a later segment
    adds its share by TMA reduction (plan.REDUCE_READ_BACK), [B, H, n, D] descriptors of dq (blocks of dq's query tile)
    and dk, dv (blocks of dk/dv's key tile): the gradient buffers are the backward's own, contiguous and aligned; else
    the buffers themselves (unused) and False."""
    if not (has_prev and launch.reduce_read_back):
        return grads, False
    batch, heads, n, head_dim = grads[0].shape
    strides = list(grads[0].stride())
    blocks = (launch.dq.block_m, launch.dkdv.block_n, launch.dkdv.block_n)
    return tuple(
        _descriptor(g, [batch, heads, n, head_dim], strides, [1, 1, r, head_dim]) for g, r in zip(grads, blocks)
    ), True


def _store_descriptors(plan: Plan, launch: SegmentLaunch, layout: int, may: bool, outputs: tuple, rows: tuple):
    """What a kernel's output descriptor parameters get, and its STORE_TMA constexpr: where the plan stores outputs by
    descriptor (plan.TMA_STORES), the kernel may (`may`: it need not add to what is there), its tiles come by descriptor
    (`layout`: the loads' TMA constexpr, so the tensors were addressable) and no tile of it runs past its group's end
    into rows before n (one group, the stride part's [l, n / l] view, or groups a whole number of tiles long),
    descriptors of `outputs` (ours: contiguous and 16-byte aligned) in the loads' layout with blocks of `rows` rows;
    else the outputs themselves (unused) and False."""
    if not (plan.tma_stores and may and layout in (TMA_ROWS, TMA_GROUP_ROWS)):  # band segments alone
        return outputs, False
    seg = launch.segment
    whole_tiles = layout == TMA_GROUP_ROWS or seg.num_groups == 1 or all(launch.group_len % r == 0 for r in rows)
    if not (whole_tiles and all(t.data_ptr() % 16 == 0 for t in outputs)):
        return outputs, False
    return _row_tiles(layout, seg, rows, outputs, True)[0], True


def _grid(launch: SegmentLaunch, kernel: str, tiles: int, batch_heads: int) -> tuple[int, int]:
    """The grid of `kernel` of this segment: (tiles, B * H), or (B * H, tiles) where its programs start longest first
    across heads (SegmentLaunch.order_of; geometry.TILES_BY_HEAD)."""
    return (tiles, batch_heads) if launch.order_of(kernel) == TILES_BY_HEAD else (batch_heads, tiles)


def _descriptors_usable(plan: Plan, *tensors: torch.Tensor) -> bool:
    """Whether the plan loads any tile by descriptor and every tensor allows it (16-byte aligned base and strides);
    checked once per call."""
    return any(launch.tma or launch.group_bwd_tma or launch.summary_keys_tma for launch in plan.launches) and all(
        t.data_ptr() % 16 == 0 and all(s * t.element_size() % 16 == 0 for s in t.stride()[:-1]) for t in tensors
    )


def _pdl(plan: Plan, first: bool) -> dict:
    """The PDL constexpr and launch option of a PDL-aware launch: the first of a forward or backward is launched
    normally and lets the next start early; every later one starts early (launch_pdl) and waits in the kernel before it
    reads anything but the op's inputs (geometry.PDL_EARLY). Kernels that do not wait are never launched early."""
    if not plan.pdl:
        return dict(PDL=PDL_OFF)
    return dict(PDL=PDL_FIRST) if first else dict(PDL=PDL_EARLY, launch_pdl=True)


def _handoff_pdl(plan: Plan, first: bool) -> tuple[dict, dict]:
    """The PDL constexprs and launch options of a pair launched dk/dv first (plan.SUMMARY_DKDV_FIRST): the first hands
    off (geometry.PDL_HANDOFF; launched normally where it is the op's first, so nothing is left to wait for), the second
    runs as its tail (PDL_TAIL)."""
    if not plan.pdl:
        return dict(PDL=PDL_OFF), dict(PDL=PDL_OFF)
    head = dict(PDL=PDL_FIRST) if first else dict(PDL=PDL_HANDOFF, launch_pdl=True)
    return head, dict(PDL=PDL_TAIL, launch_pdl=True)


def plan_for(q: torch.Tensor, pattern: Pattern) -> Plan:
    """The plan for q's shape on q's GPU (plan.HOPPER_ARCH: Hopper's features only where it has them)."""
    if not q.is_cuda:  # the interpreter's tensors, or the meta tensors of benchmarks/kernel_resources.py
        return build_plan(pattern, q.shape[2], q.shape[3])
    return build_plan(pattern, q.shape[2], q.shape[3], **gpu_target(q.device.index))


@functools.lru_cache(maxsize=64)
def _device_target(index: int | None) -> tuple[int, int]:
    """(compute capability x 10, shared memory per block) of CUDA device `index`: 90 for H100 and H200, 80 for A100."""
    major, minor = torch.cuda.get_device_capability(index)
    return major * 10 + minor, torch.cuda.get_device_properties(index).shared_memory_per_block_optin


def hopper_features_wanted() -> bool:
    """False where the environment's SPARSE_HOPPER_FEATURES=0 asks for the older GPUs' plan on every GPU."""
    return os.environ.get("SPARSE_HOPPER_FEATURES", "1") != "0"


def gpu_target(index: int | None = None, hopper_features: bool | None = None) -> dict[str, int]:
    """build_plan's `arch` and `shared_bytes` for CUDA device `index`; with `hopper_features` False (by default the
    environment's SPARSE_HOPPER_FEATURES=0) a Hopper GPU is described as the last arch before it, so that its plan
    takes the older GPUs' path (plan.HOPPER_ARCH)."""
    arch, shared_bytes = _device_target(index)
    if hopper_features is None:
        hopper_features = hopper_features_wanted()
    if not hopper_features:
        arch = min(arch, HOPPER_ARCH - 1)
    return dict(arch=arch, shared_bytes=shared_bytes)


def _options(*parts: dict, **named) -> dict:
    """A launch's constexprs and launch options, merged only when fast_launch.launch_site needs them (a call site's
    first launch, or Triton's own path)."""
    for part in parts:
        named.update(part)
    return named


def _aligned(*tensors: torch.Tensor) -> tuple[bool, ...]:
    return tuple(t.data_ptr() % 16 == 0 for t in tensors)


def _with_row_stats(tensors: int, shape: tuple, dtype: torch.dtype, device, zero_from: int | None = None) -> tuple:
    """`tensors` tensors of `shape` [B, H, n, D] in `dtype` and a float32 [B * H, n] after them, as views of one
    allocation: one allocator call instead of several, and the row statistics at a fixed offset from the large
    tensors, so that a call's addresses repeat when theirs do (call_graphs: on their own, tensors below 1 MB come from
    the caching allocator's small pool, whose addresses moved between a training loop's steps and kept most calls of
    CIFAR-10's small model from replaying). Every offset is a multiple of 64 bytes (D >= 32): each view is 16-byte
    aligned.
    `zero_from`: the tensors from this index on start at zero."""
    batch, heads, n, head_dim = shape
    numel = batch * heads * n * head_dim
    row_elements = batch * heads * n * 4 // dtype.itemsize
    buffer = _empty(tensors * numel + row_elements, dtype=dtype, device=device)
    if zero_from is not None:
        buffer[zero_from * numel : tensors * numel].zero_()
    # Few tensor ops: each costs host time on every call (benchmarks/host_overhead.py).
    *parts, rows = buffer.split_with_sizes((*(numel,) * tensors, row_elements))
    return *(part.view(shape) for part in parts), rows.view(torch.float32).view(batch * heads, n)


def sparse_forward(q, k, v, pattern: Pattern, scale: float, packed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`packed`: out and lse2 as views of one allocation (_with_row_stats; the eager autograd path, op.py), else two."""
    q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
    batch, heads, n, head_dim = q.shape
    plan = plan_for(q, pattern)
    if packed:
        out, lse2 = _with_row_stats(1, (batch, heads, n, head_dim), q.dtype, q.device)
        # Not a view, for autograd: a custom Function's output that is a view may not be modified in place (PyTorch
        # raises "Output 0 of _SparseAttentionBackward is a view and is being modified inplace"); detach() shares
        # the memory without the view's record.
        out = out.detach()
    else:
        out = _empty((batch, heads, n, head_dim), dtype=q.dtype, device=q.device)
        lse2 = _empty((batch * heads, n), dtype=torch.float32, device=q.device)
    strides = (*_strides(q), *_strides(k), *_strides(v))
    # Everything the launches depend on (call_graphs.run; addresses are unique across a process's devices): on a
    # repeat of this key they are replayed from a CUDA graph, and none of _forward_launches' Python runs.
    key = ("fwd", plan.token, q.shape, q.dtype, k.dtype, v.dtype, strides, scale,
           q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse2.data_ptr())  # fmt: skip
    call_graphs.run(key, functools.partial(_forward_launches, q, k, v, out, lse2, plan, scale, strides), q)
    return out, lse2


def _forward_launches(q, k, v, out, lse2, plan: Plan, scale: float, strides: tuple) -> None:
    batch, heads, n, head_dim = q.shape
    # float32 inputs, and GPUs with less shared memory than sm_90, pipeline less deep (Tiles.options_for)
    fit = q.element_size(), plan.shared_bytes
    addressable = _descriptors_usable(plan, q, k, v)
    # What a call site's kernel depends on beyond the plan (fast_launch.launch_site): the inputs' dtypes, strides and
    # alignment, the head count (an int Triton specializes on) and whether descriptors serve. The buffers sparse_forward
    # allocates are 16-byte aligned (the caching allocator aligns to 512 bytes) in q's dtype or float32.
    call = (plan.token, q.dtype, k.dtype, v.dtype, strides, heads, _aligned(q, k, v), addressable)
    for index, launch in enumerate(plan.launches):
        if launch.fwd_joined:  # run by the summary segment's programs (plan.FUSED_LOCAL_FORWARD)
            continue
        t = launch.fwd
        # A summary segment's queries are loaded by pointer (None: the tensor passes through unused).
        q_rows = None if isinstance(launch.segment, SummarySegment) else t.block_m
        rows = (q_rows, t.block_n, t.block_n)
        descriptors, tma = _row_tiles(launch.tma_of("fwd"), launch.segment, rows, (q, k, v), addressable)
        # A later segment reads its rows of o back by the same descriptor it stores them with.
        (out_desc,), store = _store_descriptors(plan, launch, tma, True, (out,), (t.block_m,))
        _launch_at(
            ("fwd", index, call), _sparse_fwd_kernel, _grid(launch, "fwd", launch.fwd_programs, batch * heads),
            (q, k, v, out, lse2, out, lse2, *descriptors, out_desc, *strides, n, heads, launch.group_len,
             math.ceil(launch.group_len / t.block_m), scale * LOG2_E),
            functools.partial(
                _options, t.options_for(*fit), _geometry(launch), _pdl(plan, first=index == 0),
                HEAD_DIM=head_dim, BLOCK_M=t.block_m, BLOCK_N=t.block_n, HAS_PREV=index > 0,
                DOT_MODE=_dot_mode(q.dtype), TMA=tma, ORDER=launch.order_of("fwd"), LOCAL_BLOCK=launch.fwd_local,
                HEADS_REVERSED=plan.alternate_heads and index % 2 == 1,  # only a last segment is ever joined
                LEAN=plan.lean_masks, STORE_TMA=store,
            ),
        )  # fmt: skip


def sparse_backward(do, q, k, v, out, lse2, pattern: Pattern, scale: float, packed: bool = False):
    """`packed`: dq, dk, dv and the scratch D as views of one allocation (_with_row_stats; the eager autograd path),
    else four."""
    q, k, v, do = (_last_dim_contiguous(t) for t in (q, k, v, do))
    batch, heads, n, head_dim = q.shape
    plan = plan_for(q, pattern)
    out = out.contiguous()  # the forward's own output, contiguous: a no-op, and the kernels index it so
    strides = (*_strides(q), *_strides(k), *_strides(v), *_strides(do))
    # D_i = rowsum(dO_i * O_i) of the merged output: the softmax-normalisation term every segment shares. The
    # first segment's programs compute it when they own every row once (plan.delta_source); else its own launch.
    shape, device = (batch, heads, n, head_dim), q.device
    # A summary segment first in the backward writes only its summary keys: every other key's dk, dv start at zero.
    summary_first = isinstance(plan.backward_launches[0].segment, SummarySegment)
    if packed:
        dq, dk, dv, delta = _with_row_stats(3, shape, q.dtype, device, zero_from=1 if summary_first else None)
    else:
        delta = _empty((batch * heads, n), dtype=torch.float32, device=device)
        alloc = _zeros if summary_first else _empty
        dq = _empty(shape, dtype=q.dtype, device=device)
        dk, dv = alloc(shape, dtype=q.dtype, device=device), alloc(shape, dtype=q.dtype, device=device)
    # As in sparse_forward: on a repeat of this key the launches are replayed from a CUDA graph.
    key = ("bwd", plan.token, q.shape, q.dtype, k.dtype, v.dtype, do.dtype, out.dtype, strides, scale,
           *(t.data_ptr() for t in (do, q, k, v, out, lse2, delta, dq, dk, dv)))  # fmt: skip
    launches = functools.partial(_backward_launches, do, q, k, v, out, lse2, delta, dq, dk, dv, plan, scale, strides)
    call_graphs.run(key, launches, q)
    return dq, dk, dv


def _backward_launches(do, q, k, v, out, lse2, delta, dq, dk, dv, plan: Plan, scale: float, strides: tuple) -> None:
    batch, heads, n, head_dim = q.shape
    # float32 inputs, and GPUs with less shared memory than sm_90, pipeline less deep (Tiles.options_for)
    fit = q.element_size(), plan.shared_bytes
    addressable = _descriptors_usable(plan, q, k, v, do)
    # As in sparse_forward; out and lse2 come from the caller (the forward's own buffers, unless the op is called
    # directly), so their alignment is part of the key too.
    aligned = _aligned(q, k, v, do, out, lse2)
    call = (plan.token, q.dtype, k.dtype, v.dtype, do.dtype, out.dtype, strides, heads, aligned, addressable)
    first = True  # no launch of this backward yet (the delta kernel and the fused band kernel do not take part in PDL)
    if plan.delta_source == "own_launch":
        block = 16 if interpreting() else 64
        _launch_at(
            ("delta", call), _delta_kernel, (math.ceil(n / block), batch * heads),
            (out, do, delta, *_strides(do), n, heads), functools.partial(_options, HEAD_DIM=head_dim, BLOCK=block),
        )  # fmt: skip
    dot_mode = _dot_mode(q.dtype)
    launched = 0  # launches of segments so far (plan.ALTERNATE_HEAD_ORDER reverses every other)

    def reversed_heads() -> bool:
        nonlocal launched
        launched += 1
        return plan.alternate_heads and launched % 2 == 0

    for index, launch in enumerate(plan.backward_launches):  # index: position in the backward's order
        geometry = _geometry(launch)
        scalars = (n, heads, launch.group_len, scale * LOG2_E, scale)
        if launch.group_bwd is not None or launch.bwd is not None:
            band = dict(HEAD_DIM=head_dim, HAS_PREV=index > 0, DOT_MODE=dot_mode, **_band_geometry(geometry))
            if launch.group_bwd is not None:
                t = launch.group_bwd
                rows = (t.block_n, t.block_n)
                descriptors, tma = _row_tiles(launch.group_bwd_tma, launch.segment, rows, (k, v), addressable)
                # The first segment's dq, dk, dv are stored, not added to: by descriptor where the plan says.
                grads, store = _store_descriptors(
                    plan, launch, tma, index == 0, (dq, dk, dv), (t.block_m, t.block_n, t.block_n)
                )
                pdl = _pdl(plan, first)
                _launch_at(
                    ("group", index, call, first), _group_bwd_kernel, (launch.segment.num_groups, batch * heads),
                    (q, k, v, do, out, lse2, delta, dq, dk, dv, *descriptors, *grads, *strides, *scalars),
                    functools.partial(
                        _options, band, t.options_for(*fit), pdl, BLOCK=t.block_m, BLOCK_N=t.block_n,
                        COMPUTE_DELTA=index == 0 and plan.delta_source == "first_dq", TMA=tma,
                        HEADS_REVERSED=reversed_heads(), STORE_TMA=store,
                    ),
                )  # fmt: skip
                first = False
            else:
                t = launch.bwd
                _launch_at(
                    ("fused", index, call), _band_bwd_kernel, (launch.bwd_programs, batch * heads),
                    (q, k, v, do, out, lse2, delta, dq, dk, dv, *strides, *scalars),
                    functools.partial(
                        _options, band, t.options_for(*fit), BLOCK=t.block_m, CHUNK=t.block_n,
                        DELTA_ON_THE_FLY=index == 0 and plan.delta_source == "on_the_fly",
                    ),
                )  # fmt: skip
            continue
        tensors = (q, k, v, do)
        (dq_desc, dk_desc, dv_desc), reduce = _reduce_descriptors(launch, index > 0, (dq, dk, dv))
        if launch.one_grid:
            tq, tkv = launch.dq, launch.dkdv
            dq_descriptors, dq_tma = _split_descriptors(launch, "dq", tensors, addressable)
            kv_descriptors, kv_tma = _split_descriptors(launch, "dkdv", tensors, addressable)
            stats, stats_tma = _row_stats(launch, kv_tma, lse2, delta)
            order = launch.order_of("dkdv")  # TILES_BY_HEAD, or LONGEST_FIRST: dk/dv from the first, dq from the last
            _launch_at(
                ("dq+dkdv", index, call, first), _dq_dkdv_kernel,
                _grid(launch, "dkdv", launch.dkdv_programs + launch.dq_programs, batch * heads),
                (q, k, v, do, out, lse2, delta, dq, dk, dv, *dq_descriptors, *kv_descriptors, *stats, dq_desc, dk_desc,
                 dv_desc, *strides, *scalars, launch.dkdv_programs),
                functools.partial(
                    _options, tkv.options_for(*fit), geometry, _pdl(plan, first), HEAD_DIM=head_dim,
                    DQ_BLOCK_M=tq.block_m, DQ_BLOCK_N=tq.block_n, KV_BLOCK_M=tkv.block_m, KV_BLOCK_N=tkv.block_n,
                    HAS_PREV=index > 0, DOT_MODE=dot_mode, DQ_TMA=dq_tma, KV_TMA=kv_tma, STATS_TMA=stats_tma,
                    ORDER=order, KV_QUERY_ROWS=launch.dkdv_query_rows, HEADS_REVERSED=reversed_heads(),
                    LEAN=plan.lean_masks, REDUCE=reduce,
                ),
            )  # fmt: skip
            first = False
            continue
        # dq then dk/dv, each waiting for the launch before it; or dk/dv first, handing off to a dq that fills its
        # last wave (plan.SUMMARY_DKDV_FIRST, geometry.PDL_HANDOFF).
        if launch.dkdv_first:
            dkdv_pdl, dq_pdl = _handoff_pdl(plan, first)
        else:
            dq_pdl, dkdv_pdl = _pdl(plan, first), _pdl(plan, first=False)
        for kernel in ("dkdv", "dq") if launch.dkdv_first else ("dq", "dkdv"):
            t = launch.dq if kernel == "dq" else launch.dkdv
            descriptors, tma = _split_descriptors(launch, kernel, tensors, addressable)
            if kernel == "dq":
                _launch_at(
                    ("dq", index, call, first), _sparse_dq_kernel,
                    _grid(launch, "dq", launch.dq_programs, batch * heads),
                    (q, k, v, do, out, lse2, delta, dq, *descriptors, dq_desc, *strides, *scalars),
                    functools.partial(
                        _options, t.options_for(*fit), geometry, dq_pdl, HEAD_DIM=head_dim, BLOCK_M=t.block_m,
                        BLOCK_N=t.block_n, HAS_PREV=index > 0, DOT_MODE=dot_mode, TMA=tma, ORDER=launch.order_of("dq"),
                        COMPUTE_DELTA=index == 0 and plan.delta_source == "first_dq",
                        HEADS_REVERSED=reversed_heads(), LEAN=plan.lean_masks, REDUCE=reduce,
                    ),
                )  # fmt: skip
            else:
                stats, stats_tma = _row_stats(launch, tma, lse2, delta)
                _launch_at(
                    ("dkdv", index, call, first), _sparse_dkdv_kernel,
                    _grid(launch, "dkdv", launch.dkdv_programs, batch * heads),
                    (q, k, v, do, out, lse2, delta, dk, dv, *descriptors, *stats, dk_desc, dv_desc, *strides, *scalars),
                    functools.partial(
                        _options, t.options_for(*fit), geometry, dkdv_pdl, HEAD_DIM=head_dim, BLOCK_M=t.block_m,
                        BLOCK_N=t.block_n, HAS_PREV=index > 0, DOT_MODE=dot_mode, TMA=tma, STATS_TMA=stats_tma,
                        ORDER=launch.order_of("dkdv"), QUERY_ROWS=launch.dkdv_query_rows,
                        HEADS_REVERSED=reversed_heads(), LEAN=plan.lean_masks, REDUCE=reduce,
                    ),
                )  # fmt: skip
        first = False
