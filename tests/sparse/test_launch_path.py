"""The host side of a launch: the direct launcher (sparse/kernels/fast_launch.py) with a stand-in kernel, and
D = rowsum(dO * O) computed inside the first dq launch against its own launch (sparse/kernels/plan.py)."""

import dataclasses

import pytest
import torch

import sparse
from sparse.kernels import fast_launch, launch, plan
from tests.sparse.test_kernels import PATTERNS, make_inputs


class _Compiled:
    def __init__(self, log):
        self.log, self.function, self.packed_metadata = log, "function", "metadata"

    def run(self, *args):
        self.log.append(("direct", args))


class _Kernel:
    """Stands in for a @triton.jit function: kernel[grid](*args, **options) compiles once per call here."""

    arg_names = ["X", "n", "scale", "BLOCK", "FLAG"]
    __name__ = "_stand_in_kernel"

    def __init__(self):
        self.log = []

    def __getitem__(self, grid):
        def run(*args, **options):
            self.log.append(("triton", grid, args, options))
            return _Compiled(self.log)

        return run


class _GpuTensor(torch.Tensor):
    """A CPU tensor that says it is on the GPU, so the direct path is taken without one."""

    @property
    def is_cuda(self):
        return True


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(fast_launch, "interpreting", lambda: False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda device: 1234, raising=False)
    fast_launch.clear_cache()
    yield
    fast_launch.clear_cache()


def test_first_call_goes_through_triton_then_the_kept_kernel_is_called_directly(fake_gpu):
    kernel, x = _Kernel(), torch.zeros(64).as_subclass(_GpuTensor)
    fast_launch.launch(kernel, (3, 2), x, 100, 0.5, BLOCK=16, FLAG=True, num_warps=4)
    fast_launch.launch(kernel, (3, 2), x, 100, 0.5, BLOCK=16, FLAG=True, num_warps=4)
    assert [entry[0] for entry in kernel.log] == ["triton", "direct"]
    # The launcher's argument list: grid (padded to 3), stream, function, metadata, no hooks, then every
    # parameter in signature order, constexprs included (the launcher skips them), launch options not.
    assert kernel.log[1][1] == (3, 2, 1, 1234, "function", "metadata", None, None, None, x, 100, 0.5, 16, True)


@pytest.mark.parametrize(
    "change",
    [
        dict(n=101),  # another int value: divisibility by 16 may differ
        dict(offset=1),  # another alignment of the tensor's address
        dict(dtype=torch.float16),
        dict(BLOCK=32),  # another constexpr
        dict(num_warps=8),  # another launch option
    ],
)
def test_anything_triton_specializes_on_compiles_again(fake_gpu, change):
    kernel = _Kernel()
    base = torch.zeros(64)

    def call(n=100, offset=0, dtype=torch.float32, BLOCK=16, num_warps=4):
        x = base.to(dtype)[offset:].as_subclass(_GpuTensor)
        fast_launch.launch(kernel, (1,), x, n, 0.5, BLOCK=BLOCK, FLAG=False, num_warps=num_warps)

    call()
    call(**change)
    assert [entry[0] for entry in kernel.log] == ["triton", "triton"]
    call(**change)
    assert kernel.log[-1][0] == "direct"


def test_a_float_value_is_not_a_new_specialization(fake_gpu):
    kernel, x = _Kernel(), torch.zeros(64).as_subclass(_GpuTensor)
    fast_launch.launch(kernel, (1,), x, 100, 0.5, BLOCK=16, FLAG=False)
    fast_launch.launch(kernel, (1,), x, 100, 0.25, BLOCK=16, FLAG=False)
    assert [entry[0] for entry in kernel.log] == ["triton", "direct"]
    assert kernel.log[1][1][11] == 0.25


def test_launch_hooks_and_cpu_tensors_take_tritons_path(fake_gpu, monkeypatch):
    import triton

    kernel = _Kernel()
    for _ in range(2):
        fast_launch.launch(kernel, (1,), torch.zeros(64), 100, 0.5, BLOCK=16, FLAG=False)
    hooked = triton.knobs.runtime.launch_enter_hook
    hook = lambda metadata: None  # noqa: E731
    hooked.add(hook)
    try:
        x = torch.zeros(64).as_subclass(_GpuTensor)
        for _ in range(2):
            fast_launch.launch(kernel, (1,), x, 100, 0.5, BLOCK=16, FLAG=False)
    finally:
        hooked.remove(hook)
    assert [entry[0] for entry in kernel.log] == ["triton"] * 4


def test_a_descriptor_block_shape_or_dtype_is_a_new_specialization(fake_gpu):
    """Triton's signature holds a tensor descriptor's dtype and block shape (not its address, shape or strides)."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    kernel = _Kernel()
    x = torch.zeros(2, 3, 64, 32).as_subclass(_GpuTensor)

    def call(rows=16, dtype=torch.float32, offset=0):
        t = torch.zeros(2, 3, 64 + offset, 32, dtype=dtype)[:, :, offset:]
        desc = TensorDescriptor(t, list(t.shape), list(t.stride()), [1, 1, rows, 32])
        fast_launch.launch(kernel, (1,), x, desc, 5, 0.5, BLOCK=16, FLAG=False)

    call()
    call(offset=16)  # another address, shape and strides: the same kernel
    call(rows=32)
    call(dtype=torch.bfloat16)
    assert [entry[0] for entry in kernel.log] == ["triton", "direct", "triton", "triton"]


def test_encoded_descriptors_are_kept_per_address_and_kernel_metadata(monkeypatch):
    from triton.backends.nvidia import driver
    from triton.tools.tensor_descriptor import TensorDescriptor

    assert driver.make_tensordesc_arg.keeps_encoded  # installed at import
    monkeypatch.setattr(fast_launch, "_bind_context_to_this_thread", lambda: None)  # no CUDA here
    calls = []
    encode = fast_launch._keeping_encoded(lambda arg, metadata: calls.append(metadata) or ["map", *arg.shape])
    fast_launch.clear_cache()
    t = torch.zeros(2, 3, 64, 32)
    desc = TensorDescriptor(t, list(t.shape), list(t.stride()), [1, 1, 16, 32])
    meta, other_meta = {"swizzle": 128}, {"swizzle": 64}
    assert encode(desc, meta) == encode(desc, meta) == ["map", 2, 3, 64, 32] and calls == [meta]
    encode(desc, other_meta)
    encode(TensorDescriptor(t[:, :, 1:], [2, 3, 63, 32], list(t.stride()), [1, 1, 16, 32]), meta)  # another address
    assert calls == [meta, other_meta, meta]
    encode(desc, None), encode(desc, None)  # no metadata: Triton passes the tensor itself, which must not be kept
    assert calls[-2:] == [None, None] and all(m is not None for m, _ in fast_launch._encoded.values())
    monkeypatch.setattr(fast_launch, "KEEP_ENCODED", False)  # profile_kernels' `encode-each-launch`
    encode(desc, meta)
    assert calls[-1] is meta and len(calls) == 6
    fast_launch.clear_cache()


def test_each_thread_gets_a_cuda_context_once_before_it_encodes(monkeypatch):
    """Encoding needs a CUDA context on the calling thread (the autograd engine's device thread may have none): the
    encoding wrapper binds one with a stream query, once per thread, and only for encodings with kernel metadata."""
    import threading

    queries = []

    class _Stream:
        def query(self):
            queries.append(threading.get_ident())
            return True

    monkeypatch.setattr(fast_launch.torch.cuda, "current_stream", lambda: _Stream())
    monkeypatch.setattr(fast_launch, "_thread_state", threading.local())
    encode = fast_launch._keeping_encoded(lambda arg, metadata: ["map"])
    monkeypatch.setattr(fast_launch, "KEEP_ENCODED", False)
    encode(None, None)  # no metadata: Triton passes the tensor through, nothing is encoded
    assert queries == []
    encode(None, {}), encode(None, {})
    worker = threading.Thread(target=lambda: (encode(None, {}), encode(None, {})))
    worker.start()
    worker.join()
    assert len(queries) == 2 and queries[0] == threading.get_ident() and queries[1] != queries[0]


@pytest.mark.cuda
def test_gpu_host_breakdown_pieces_in_order():
    """The failure `_bind_context_to_this_thread` fixes, as first seen: benchmarks/host_breakdown.py's pieces in their
    order (the backward's kernels kept from the launchers' calls on this thread, then a backward through autograd on
    the engine's device thread) raised "Failed to create tensor map descriptor: invalid device context" at the first
    autograd backward without it (H200, 7243659 and again with the fix switched off)."""
    from benchmarks.host_breakdown import pieces

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    for piece in pieces(256).values():
        piece()
    torch.cuda.synchronize()


def test_a_call_site_launches_its_kept_kernel_without_building_options(fake_gpu):
    """fast_launch.launch_site: the site's first call goes through `launch` (Triton's path, then kept); later calls with
    the same site run the kept kernel with the constexprs of that first call, and never call `options`; another site
    keeps its own; clear_cache forgets them."""
    kernel, x = _Kernel(), torch.zeros(64).as_subclass(_GpuTensor)
    built = []

    def options(block=16):
        built.append(block)
        return dict(BLOCK=block, FLAG=True, num_warps=4)

    fast_launch.launch_site(("a",), kernel, (3,), (x, 100, 0.5), options)
    fast_launch.launch_site(("a",), kernel, (5,), (x, 100, 0.5), options)
    fast_launch.launch_site(("a",), kernel, (5,), (x, 100, 0.5), options)
    assert built == [16] and [entry[0] for entry in kernel.log] == ["triton", "direct", "direct"]
    assert kernel.log[1][1] == (5, 1, 1, 1234, "function", "metadata", None, None, None, x, 100, 0.5, 16, True)
    fast_launch.launch_site(("b",), kernel, (5,), (x, 100, 0.5), lambda: options(32))  # another site: its own kernel
    assert built == [16, 32] and kernel.log[-1][0] == "triton" and kernel.log[-1][3]["BLOCK"] == 32
    fast_launch.clear_cache()
    fast_launch.launch_site(("a",), kernel, (5,), (x, 100, 0.5), options)
    assert built == [16, 32, 16] and kernel.log[-1][0] == "triton"


def test_launch_sites_name_what_their_kernel_depends_on(monkeypatch):
    """The launchers' site keys (sparse/kernels/launch.py) hold the plan's token, the inputs' dtypes, strides and
    alignment, the head count and whether descriptors serve: each differs between calls that specialize differently."""
    sites = []
    monkeypatch.setattr(launch, "_launch_at", lambda site, kernel, grid, args, options: sites.append(site))
    monkeypatch.setattr(launch, "interpreting", lambda: False)
    monkeypatch.setattr(launch, "plan_for", lambda q, p: plan.build_plan(p, q.shape[2], q.shape[3], interpret=False))
    p = sparse.pattern("strided", local_attn_ctx=16)

    def forward_sites(batch=1, heads=2, n=64, dtype=torch.bfloat16, transposed=False, offset=0):
        sites.clear()
        if transposed:
            q = torch.zeros(batch, n, heads, 64 + offset, dtype=dtype)[..., offset:].transpose(1, 2)
        else:
            q = torch.zeros(batch, heads, n, 64 + offset, dtype=dtype)[..., offset:]
        launch.sparse_forward(q, q, q, p, 0.125)
        return list(sites)

    base = forward_sites()
    assert len(base) == 2 and len(set(base)) == 2  # one site per segment
    assert forward_sites() == base and forward_sites(batch=3) == base  # the batch is only the grid
    for change in (dict(heads=3), dict(n=80), dict(dtype=torch.float16), dict(transposed=True), dict(offset=4)):
        assert not set(forward_sites(**change)) & set(base), change


def test_a_missing_parameter_is_named(fake_gpu):
    kernel, x = _Kernel(), torch.zeros(64).as_subclass(_GpuTensor)
    fast_launch.launch(kernel, (1,), x, 100, 0.5, BLOCK=16)  # the stand-in does not check; Triton would
    with pytest.raises(TypeError, match="FLAG"):
        fast_launch.launch(kernel, (1,), x, 100, 0.5, BLOCK=16)


def _positions(seg, n):
    return [
        g * seg.group_stride + t * seg.step
        for g in range(seg.num_groups)
        for t in range(seg.group_len)
        if g * seg.group_stride + t * seg.step < n
    ]


@pytest.mark.parametrize("name", list(PATTERNS))
@pytest.mark.parametrize("n", [1, 3, 5, 8, 37, 64])
def test_first_dq_computes_delta_exactly_when_it_owns_every_row_once(name, n):
    p = sparse.pattern(**PATTERNS[name])
    first = p.segments(n)[0]
    if isinstance(first, plan.SummarySegment):
        owns_each_once = True  # its dq programs own sequence-order query tiles
    else:
        owns_each_once = sorted(_positions(first, n)) == list(range(n))
    assert plan.covers_every_row_once(first, n) == owns_each_once


def test_segments_that_miss_or_repeat_rows_are_told_apart():
    band = plan.BandSegment
    assert not plan.covers_every_row_once(band(2, 4, 1, 5, 0, False), 8)  # a gap at position 4
    assert not plan.covers_every_row_once(band(2, 4, 1, 3, 0, False), 7)  # position 3 twice
    assert not plan.covers_every_row_once(band(3, 3, 2, 1, 0, False), 6)  # residues 0 and 2 overlap
    assert not plan.covers_every_row_once(band(1, 4, 1, 0, 0, False), 5)  # too short
    assert plan.covers_every_row_once(band(3, 2, 3, 1, 0, False), 6)


@pytest.mark.parametrize("name", ["strided", "fixed", "all", "strided-stride"])
def test_delta_inside_dq_equals_its_own_launch(name, device, monkeypatch):
    p = sparse.pattern(**PATTERNS[name])
    q, k, v, do = make_inputs((2, 2, 37, 32), torch.float32, device)
    q, k, v = (t.requires_grad_() for t in (q, k, v))

    def grads():
        out = sparse.attention(q, k, v, p, backend="triton")
        return torch.autograd.grad(out, (q, k, v), do)

    assert plan.build_plan(p, 37, 32).delta_source != "own_launch"
    fused = grads()
    separate_plan = dataclasses.replace(plan.build_plan(p, 37, 32), delta_source="own_launch")
    monkeypatch.setattr(launch, "plan_for", lambda q, pattern: separate_plan)
    separate = grads()
    for got, want in zip(fused, separate):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_profile_kernels_fused_path_turns_the_one_kernel_backward_on_and_back_off():
    from benchmarks import profile_kernels

    p = sparse.pattern(**PATTERNS["strided"])
    q = torch.randn(1, 2, 37, 32)
    with profile_kernels.launch_path("fused"):
        assert all(launch_.bwd is not None for launch_ in launch.plan_for(q, p).launches)
        assert launch.plan_for(q, p).delta_source == "on_the_fly"
    assert all(launch_.bwd is None for launch_ in launch.plan_for(q, p).launches)
    with profile_kernels.launch_path("triton"):
        assert launch.plan_for(q, p).delta_source == "own_launch"
    assert launch.plan_for(q, p).delta_source == "first_dq"


def test_tiles_shrunk_to_short_groups_run_with_fewer_warps(monkeypatch):
    p = sparse.pattern("strided", local_attn_ctx=96)
    stride, band = plan.build_plan(p, 3072, 64, interpret=False).launches
    assert (stride.fwd.block_m, stride.fwd.block_n, stride.fwd.num_warps) == (32, 32, plan.SMALL_TILE_WARPS)
    assert band.fwd.num_warps == 4  # 64 x 32 tiles keep the table's warps
    monkeypatch.setattr(plan, "SMALL_TILE_WARPS", None)
    assert plan.build_plan(p, 3072, 64, interpret=False).launches[0].fwd.num_warps == 4


def test_profile_kernels_table_warps_path_restores_the_setting():
    from benchmarks import profile_kernels

    p = sparse.pattern("strided", local_attn_ctx=96)
    with profile_kernels.launch_path("table-warps"):
        assert plan.build_plan(p, 3072, 64, interpret=False).launches[0].fwd.num_warps == 4
    assert plan.build_plan(p, 3072, 64, interpret=False).launches[0].fwd.num_warps == 2


@pytest.mark.parametrize(
    "spec, head_dim",
    [("strided:3072:8:96", 64), ("strided:12288:1:128", 64), ("fixed:12288:1:128:32", 64), ("all:1024:1", 64),
     ("strided:3000:1:96", 64), ("fixed:12288:1:128:32", 128)],
)  # fmt: skip
def test_programmatic_launch_order(spec, head_dim, monkeypatch):
    """Every launch of a forward or backward after the first starts early (launch_pdl) and is a kernel that waits
    (PDL_EARLY); the first is launched normally and only lets the next start (PDL_FIRST); the delta kernel and the fused
    band kernel, which do not wait, are never launched early. Fixed attention's summary backward (the last) at head dim
    128, whose dq and dk/dv do not share a grid, launches dk/dv, handing off, then dq as its tail
    (plan.SUMMARY_DKDV_FIRST). Recorded, not run (kernel_resources' meta tensors)."""
    from benchmarks.kernel_resources import parse_case, record_call
    from sparse.kernels.geometry import PDL_EARLY, PDL_FIRST, PDL_HANDOFF, PDL_TAIL

    for fused in (False, True):
        monkeypatch.setattr(plan, "FUSED_BAND_BACKWARD", fused)
        records = record_call(spec, heads=2, head_dim=head_dim)
        forward = [r for r in records if r.kernel.__name__ == "_sparse_fwd_kernel"]
        backward = records[len(forward) :]
        for calls in (forward, backward):
            aware = [r for r in calls if "PDL" in r.options]
            assert [r.kernel.__name__ for r in calls if "PDL" not in r.options] == [
                r.kernel.__name__ for r in calls if r.kernel.__name__ in ("_delta_kernel", "_band_bwd_kernel")
            ]
            assert not any(r.options.get("launch_pdl") for r in calls if "PDL" not in r.options)
            later = len(aware) - 1
            expected = [PDL_FIRST, *[PDL_EARLY] * later][: len(aware)]
            pattern, n, _ = parse_case(spec)
            paired = any(launch_.dkdv_first for launch_ in plan.build_plan(pattern, n, head_dim, False).launches)
            # head dim 64 runs the summary's dq and dk/dv in one grid, unless the fused band backward (which turns
            # ONE_GRID_BACKWARD off) is on
            assert paired == (spec.startswith("fixed") and (head_dim == 128 or fused))
            if calls is backward and paired:
                assert [r.kernel.__name__ for r in aware[-2:]] == ["_sparse_dkdv_kernel", "_sparse_dq_kernel"]
                # dk/dv hands off, or is launched normally after the fused band kernel, which takes no part in PDL
                expected[-2:] = [PDL_FIRST if fused else PDL_HANDOFF, PDL_TAIL]
            assert [r.options["PDL"] for r in aware] == expected
            assert [bool(r.options.get("launch_pdl")) for r in aware] == [False, *[True] * later][: len(aware)]


@pytest.mark.parametrize("alternate", [True, False], ids=["alternate-heads", "heads-in-order"])
@pytest.mark.parametrize("spec", ["strided:12288:1:128", "strided:65536:1:256", "fixed:12288:1:128:32", "all:1024:1"])
def test_every_other_launch_takes_heads_from_the_last(spec, alternate, monkeypatch):
    """plan.ALTERNATE_HEAD_ORDER: the second, fourth, ... segment launch of a forward and of a backward (the delta
    kernel aside) run with HEADS_REVERSED, so each starts on the heads the one before it ended on; off, none does.
    Recorded, not run (kernel_resources' meta tensors)."""
    from benchmarks.kernel_resources import record_call

    monkeypatch.setattr(plan, "ALTERNATE_HEAD_ORDER", alternate)
    records = record_call(spec, heads=2, head_dim=64)
    forward = [r for r in records if r.kernel.__name__ == "_sparse_fwd_kernel"]
    backward = [r for r in records[len(forward) :] if r.kernel.__name__ != "_delta_kernel"]
    for calls in (forward, backward):
        assert [r.options["HEADS_REVERSED"] for r in calls] == [alternate and i % 2 == 1 for i in range(len(calls))]
    assert len(forward) + len(backward) > 2 or spec.startswith("all")


def test_summary_dkdv_first_only_where_it_is_safe_and_by_its_flag():
    """dk/dv before dq (plan.SUMMARY_DKDV_FIRST) needs D written by an earlier launch: only a split summary segment
    after the backward's first, never one in one grid. Both orders compute the same gradients (the interpreter runs
    them without programmatic launch: test_kernels' comparisons with the reference cover the new order)."""
    fixed = sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32)
    summary, local = plan.build_plan(fixed, 12288, 128, interpret=False).launches  # head dim 128: split
    assert summary.dkdv_first and not summary.one_grid and not local.dkdv_first
    off = plan.build_plan(fixed, 12288, 128, interpret=False, summary_dkdv_first=False)
    assert not any(launch_.dkdv_first for launch_ in off.launches)
    first = plan.build_plan(fixed, 12288, 128, interpret=False, summary_backward_last=False)  # the summary runs first
    assert not any(launch_.dkdv_first for launch_ in first.launches)
    grid = plan.build_plan(fixed, 12288, 64, interpret=False)  # head dim 64: dq and dk/dv in one grid
    assert grid.launches[0].one_grid and not any(launch_.dkdv_first for launch_ in grid.launches)
    strided = plan.build_plan(sparse.pattern("strided", local_attn_ctx=256), 65536, 64, interpret=False)
    assert not any(launch_.dkdv_first for launch_ in strided.launches)


def test_programmatic_launch_is_off_under_the_interpreter_and_by_its_flag():
    p = sparse.pattern("strided", local_attn_ctx=96)
    assert not plan.build_plan(p, 3072, 64, interpret=True, programmatic_launch=True).pdl
    assert plan.build_plan(p, 3072, 64, interpret=False, programmatic_launch=True).pdl
    assert not plan.build_plan(p, 3072, 64, interpret=False, programmatic_launch=False).pdl


@pytest.mark.parametrize("row_stats", [True, False], ids=["row-stats-tma", "row-stats-pointer"])
def test_dkdv_launches_get_row_statistics_descriptors_exactly_where_planned(row_stats, monkeypatch):
    """plan.TMA_ROW_STATS: the dk/dv launches whose query tiles come by TMA_ROWS (fixed's summary, strided's band) get
    [B * H, n] descriptors of lse2 and D with blocks of one row of their query tile, and STATS_TMA; n not a multiple of
    4, other dk/dv launches, or the switch off: the tensors themselves. Recorded, not run (kernel_resources' meta
    tensors)."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    from benchmarks.kernel_resources import parse_case, record_call

    monkeypatch.setattr(plan, "TMA_ROW_STATS", row_stats)
    expected = {  # case -> STATS_TMA of each dk/dv launch (split or in one grid with dq), in the backward's order
        "fixed:12288:1:128:32": [True],  # the local blocks: whole groups; the summary's split dk/dv
        "strided:12288:1:128": [True],  # the stride part: whole groups; the band in one grid
        "strided:3072:8:96": [True],
        "strided:65536:1:256": [False, True],  # the stride part split, by TMA_GROUP_ROWS: pointers
        "strided:3070:1:96": [False],  # n not a multiple of 4
        "fixed:12290:1:128:32": [False],
    }
    for spec, planned in expected.items():
        records = record_call(spec, heads=2, head_dim=64)
        dkdv = [r for r in records if "LSE_DESC" in r.kernel.arg_names]
        assert [r.options["STATS_TMA"] for r in dkdv] == [row_stats and by for by in planned], spec
        _, n, batch = parse_case(spec)
        for r in dkdv:
            names = r.kernel.arg_names
            lse2, delta, lse_desc, delta_desc = (
                r.args[names.index(name)] for name in ("LSE", "DELTA", "LSE_DESC", "DELTA_DESC")
            )
            if not r.options["STATS_TMA"]:
                assert lse_desc is lse2 and delta_desc is delta
                continue
            block_m = r.options.get("BLOCK_M", r.options.get("KV_BLOCK_M"))
            for desc, base in ((lse_desc, lse2), (delta_desc, delta)):
                assert isinstance(desc, TensorDescriptor) and desc.base is base and base.dtype == torch.float32
                assert (desc.shape, desc.strides, desc.block_shape) == ([batch * 2, n], [n, 1], [1, block_m])


def test_row_statistics_by_pointer_for_an_unaligned_lse2(monkeypatch):
    """lse2 is the caller's: one that is not 16-byte aligned gets pointer loads, and another launch site (its alignment
    is part of the site key), so a kept kernel never gets the other setting."""
    from benchmarks.kernel_resources import recorded_launches

    monkeypatch.setattr(plan, "TMA_ROW_STATS", True)
    p = sparse.pattern("strided", local_attn_ctx=16)  # the band: one group of 256 rows, split dq and dk/dv kernels
    q = torch.zeros(1, 2, 256, 64, dtype=torch.bfloat16)

    def backward(offset):
        records, sites = [], []
        lse2 = torch.zeros(2 * 256 + offset)[offset:].view(2, 256)
        with recorded_launches(records):
            record = launch._launch_at
            launch._launch_at = lambda site, *rest: (sites.append(site), record(site, *rest))
            launch.sparse_backward(q, q, q, q, q, lse2, p, 0.125)
        return [r.options["STATS_TMA"] for r in records if "STATS_TMA" in r.options], sites

    aligned, aligned_sites = backward(0)
    unaligned, unaligned_sites = backward(1)
    assert (aligned, unaligned) == ([True], [False])
    assert not set(aligned_sites) & set(unaligned_sites)


@pytest.mark.parametrize("name", ["strided", "fixed", "fixed-summary"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_outputs_are_views_of_one_allocation_and_equal_separate_ones(name, dtype, device, monkeypatch):
    """launch._with_row_stats: with `packed` (the eager autograd path) out and lse2 share one allocation, as do dq, dk,
    dv (and the backward's D), each view 16-byte aligned; every value equals the separate allocations' bitwise,
    including a backward whose summary segment comes first (its dk, dv start at zero). Every buffer starts as NaN."""
    p = sparse.pattern(**PATTERNS[name])
    q, k, v, do = make_inputs((2, 3, 37, 32), dtype, device, seed=3)
    for t in (q, k, v, do):  # finite inputs: a NaN in a result can only be an element left unwritten
        assert t.isfinite().all()
    monkeypatch.setattr(launch, "_empty", lambda *a, **kw: torch.empty(*a, **kw).fill_(float("nan")))

    def run(packed):
        out, lse2 = launch.sparse_forward(q, k, v, p, 0.2, packed=packed)
        return out, lse2, *launch.sparse_backward(do, q, k, v, out, lse2, p, 0.2, packed=packed)

    separate, packed = run(False), run(True)
    for a, b in zip(packed, separate):
        assert a.shape == b.shape and a.dtype == b.dtype and a.is_contiguous()
        assert torch.equal(a, b) or (a.isnan() == b.isnan()).all() and torch.equal(a.nan_to_num(), b.nan_to_num())
    out, lse2, dq, dk, dv = packed
    assert out.untyped_storage().data_ptr() == lse2.untyped_storage().data_ptr()
    assert len({t.untyped_storage().data_ptr() for t in (dq, dk, dv)}) == 1
    assert all(t.data_ptr() % 16 == 0 for t in packed)
    assert all(t.isfinite().all() for t in (out, dq, dk, dv))


def test_the_eager_output_is_not_a_view(device):
    """The packed output is a view of one allocation inside the op, but the attention's result must not look like one
    to autograd: a custom Function's output that is a view may not be modified in place at all, with an error that
    blames the view ("... is a view and is being modified inplace"). Returned detached, it behaves as before packing:
    modifying it in place trips autograd's version check (it is saved for the backward), as any saved output does."""
    p = sparse.pattern("strided", local_attn_ctx=4)
    q, k, v, _ = (t.requires_grad_() for t in make_inputs((1, 2, 16, 32), torch.float32, device))
    out = sparse.attention(q, k, v, p)
    assert not out._is_view()
    out.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
