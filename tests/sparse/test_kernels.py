"""The Triton kernels against a float64 dense masked softmax: outputs and dq, dk, dv, for every pattern and
part, odd lengths, several B, H, D and dtypes. On the CPU they run under TRITON_INTERPRET=1 (tests/conftest.py)
with 16 x 16 tiles; the `cuda` tests repeat them compiled at lengths up to 16,384."""

import contextlib
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from triton.tools.tensor_descriptor import TensorDescriptor

import sparse
from sparse.kernels import build_plan, launch
from sparse.kernels import plan as plan_module
from sparse.kernels.geometry import (
    LAST_TILE_FIRST,
    LONGEST_FIRST,
    TILES_BY_HEAD,
    TMA_GROUP_ROWS,
    TMA_OFF,
    TMA_ROWS,
    TMA_SUMMARY_KEYS,
)
from sparse.patterns import BandSegment, SummarySegment
from sparse.reference import reference_attention
from tests.process_lock import one_process_at_a_time

# Relative-norm tolerances: fp32 runs IEEE dots (about 1e-6 seen); bf16/fp16 round inputs and probabilities.
TOLERANCE = {torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}

PATTERNS = {
    "all": dict(attn_mode="all"),
    "local": dict(attn_mode="local", local_attn_ctx=7),
    "strided": dict(attn_mode="strided", local_attn_ctx=5),
    "strided-l1": dict(attn_mode="strided", local_attn_ctx=1),
    "strided-local": dict(attn_mode="strided", local_attn_ctx=9, part="local"),
    "strided-stride": dict(attn_mode="strided", local_attn_ctx=4, part="stride"),
    "fixed": dict(attn_mode="fixed", local_attn_ctx=8, summary_ctx=2),
    "fixed-c=l": dict(attn_mode="fixed", local_attn_ctx=6, summary_ctx=6),
    "fixed-local": dict(attn_mode="fixed", local_attn_ctx=8, summary_ctx=2, part="local"),
    "fixed-summary": dict(attn_mode="fixed", local_attn_ctx=8, summary_ctx=3, part="summary"),
    "fixed-distinct": dict(attn_mode="fixed", local_attn_ctx=8, summary_ctx=2, distinct_heads=True),
    "fixed-distinct-summary": dict(
        attn_mode="fixed", local_attn_ctx=8, summary_ctx=4, part="summary", distinct_heads=True
    ),
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, with a floor on ||b|| for gradients that are exactly zero (e.g. dq when n = 1)."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(0.05 * b.numel() ** 0.5))


def make_inputs(shape, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return [torch.randn(shape, generator=g).to(device=device, dtype=dtype) for _ in range(4)]


def reference_in_row_chunks(q, k, v, do, p, scale, rows):
    """The float64 masked softmax and its gradients, computed `rows` queries at a time, so that a [H, n, n]
    float64 graph never exists: at n = 16,384 with 4 heads the whole graph takes ~35 GB, and the GPU tests
    run several processes at once."""
    n, heads = q.shape[2], q.shape[1]
    mask = p.mask(n, heads, device=q.device)
    k64, v64 = (t.detach().double().requires_grad_() for t in (k, v))
    outs, dqs = [], []
    for start in range(0, n, rows):
        q64 = q[:, :, start : start + rows].detach().double().requires_grad_()
        allowed = mask[:, start : start + rows]
        scores = (q64 @ k64.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row with no allowed key gives 0
        out = probs @ v64
        out.backward(do[:, :, start : start + rows].double())
        outs.append(out.detach())
        dqs.append(q64.grad)
    return torch.cat(outs, 2), torch.cat(dqs, 2), k64.grad, v64.grad


def test_one_process_at_a_time_excludes_another_process(tmp_path):
    import subprocess
    import sys
    import time

    root, name = Path(__file__).resolve().parents[2], f"lock-test-{tmp_path.name}"
    script = (
        f"import sys, time; sys.path.insert(0, {str(root)!r})\n"
        "from tests.process_lock import one_process_at_a_time\n"
        f"with one_process_at_a_time({name!r}):\n"
        "    print('in', flush=True); time.sleep(1.0)\n"
    )
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "in"  # the other process holds the lock for a second
    asked = time.monotonic()
    with one_process_at_a_time(name):
        waited = time.monotonic() - asked
    first.wait()
    assert waited > 0.5, f"granted after {waited:.2f} s, while the other process held it"


def test_row_chunked_reference_matches_the_reference():
    p = sparse.pattern(**PATTERNS["fixed-distinct"])
    q, k, v, do = make_inputs((1, 3, 29, 16), torch.float64, "cpu", seed=3)
    ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = reference_attention(*ref_in, p, scale=0.25)
    want = (ref, *torch.autograd.grad(ref, ref_in, do))
    for got, expected in zip(reference_in_row_chunks(q, k, v, do, p, 0.25, rows=5), want):
        torch.testing.assert_close(got, expected.detach())


def check_against_reference(
    p, shape, dtype, device, seed=0, contiguous=True, backend="triton", tol=None, key_scale=None
):
    """Output and gradients of `backend` against the float64 reference, each within `tol` (TOLERANCE[dtype]).
    `key_scale` ([n]): each key row multiplied by it before rounding to `dtype` (scores that grow along a row)."""
    q, k, v, do = make_inputs(shape, torch.float64 if key_scale is not None else dtype, device, seed)
    if key_scale is not None:
        q, k, v, do = (t.to(dtype) for t in (q, k * key_scale.to(k)[:, None], v, do))
    if not contiguous:  # the same values laid out [B, n, H, D] and viewed as [B, H, n, D]
        q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
        assert not q.is_contiguous()
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = sparse.attention(q, k, v, p, backend=backend)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), do)
    if shape[1] * shape[2] ** 2 > 2**26:  # above ~0.5 GB per float64 [H, n, n] matrix
        # Still gigabytes at once (n = 16,384, 4 heads: the mask and a few [H, 2048, n] float64 chunks): one process
        # at a time computes it, and hands the memory back before the next starts.
        with one_process_at_a_time("big-gpu-reference") if q.is_cuda else contextlib.nullcontext():
            ref, rdq, rdk, rdv = reference_in_row_chunks(q, k, v, do, p, shape[-1] ** -0.5, rows=2048)
            if q.is_cuda:
                torch.cuda.empty_cache()
    else:
        ref_in = [t.detach().to(torch.float64).requires_grad_() for t in (q, k, v)]
        ref = reference_attention(*ref_in, p, scale=shape[-1] ** -0.5)
        rdq, rdk, rdv = torch.autograd.grad(ref, ref_in, do.to(torch.float64))
    tol = TOLERANCE[dtype] if tol is None else tol
    for name, got, want in (("out", out, ref), ("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)):
        assert got.dtype == dtype and got.shape == want.shape
        assert torch.isfinite(got).all(), f"{name} has non-finite values"
        assert rel_err(got, want) < tol, f"{name}: relative error {rel_err(got, want):.2e} >= {tol}"


@pytest.fixture(autouse=True)
def checked_descriptors(monkeypatch):
    """Every descriptor the launchers build without Triton's checks (launch._descriptor) also passes them: the
    checked constructor must accept the same fields."""
    unchecked = launch._descriptor

    def descriptor(base, shape, strides, block_shape):
        checked = TensorDescriptor(base, shape, strides, block_shape)
        made = unchecked(base, shape, strides, block_shape)
        assert made.base is checked.base and (made.shape, made.strides) == (checked.shape, checked.strides)
        assert (made.block_shape, made.padding) == (checked.block_shape, checked.padding)
        return made

    monkeypatch.setattr(launch, "_descriptor", descriptor)


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch):
    """Every buffer the launchers allocate starts as NaN, so an unwritten element cannot pass."""

    def nan_empty(*args, **kwargs):
        return torch.empty(*args, **kwargs).fill_(float("nan"))

    monkeypatch.setattr(launch, "_empty", nan_empty)


@pytest.mark.parametrize("name", list(PATTERNS))
@pytest.mark.parametrize("n", [1, 7, 37])
def test_every_pattern_fp32_matches_reference(name, n, device):
    check_against_reference(sparse.pattern(**PATTERNS[name]), (2, 3, n, 32), torch.float32, device, seed=n)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(summary_ctx=4),
        dict(summary_ctx=4, part="summary"),
        dict(summary_ctx=2, distinct_heads=True),
        dict(summary_ctx=3, part="summary", distinct_heads=False),
    ],
)
def test_summary_loops_unmasked_interior(kwargs, device):
    """Long enough (n = 150, l = 8) that the summary loops have tiles every query (key) of a tile fully attends,
    which run without a mask, between masked edges and a masked tail."""
    p = sparse.pattern("fixed", local_attn_ctx=8, **kwargs)
    check_against_reference(p, (1, 2, 150, 32), torch.float32, device, seed=150)


@pytest.mark.parametrize("name", ["strided", "strided-l1", "strided-local", "fixed", "all"])
@pytest.mark.parametrize("n", [7, 37])
def test_one_kernel_band_backward_matches_reference(name, n, device, monkeypatch):
    """The band segments' one-kernel backward, kept for same-process comparisons, stays correct."""
    monkeypatch.setattr(plan_module, "FUSED_BAND_BACKWARD", True)
    p = sparse.pattern(**PATTERNS[name])
    bands = [launch for launch in build_plan(p, n, 32).launches if isinstance(launch.segment, BandSegment)]
    assert bands and all(launch.bwd is not None for launch in bands)
    check_against_reference(p, (2, 3, n, 32), torch.float32, device, seed=n)


@pytest.mark.parametrize("whole_groups", [True, False])
@pytest.mark.parametrize(
    "name, n",
    [("strided", 37), ("strided-stride", 37), ("fixed", 37), ("fixed-distinct", 37), ("local", 7), ("all", 7)],
)
def test_whole_group_backward_on_and_off(name, n, whole_groups, device, monkeypatch):
    """Groups that fit one tile (under the interpreter: up to 32 rows) run the whole-group backward, or with
    GROUP_BACKWARD off the split dq and dk/dv kernels; both match the reference. The cases cover a first segment
    (computing D), a later one (adding to the earlier segment's gradients), a window and self-exclusion."""
    monkeypatch.setattr(plan_module, "GROUP_BACKWARD", whole_groups)
    p = sparse.pattern(**PATTERNS[name])
    bands = [launch for launch in build_plan(p, n, 32).launches if isinstance(launch.segment, BandSegment)]
    short = [launch for launch in bands if launch.group_len <= 32]
    assert short and all((launch.group_bwd is not None) == whole_groups for launch in short)
    check_against_reference(p, (2, 3, n, 32), torch.float32, device, seed=n)


def test_whole_group_backward_with_a_32_row_tile(device):
    """Stride groups of 31 rows: the interpreter's largest whole-group tile, 32 rows (one of them padding) streamed in
    two key tiles of 16."""
    p = sparse.pattern("strided", local_attn_ctx=2)
    stride = build_plan(p, 61, 32).launches[0]
    assert stride.group_bwd is not None and stride.group_len == 31
    assert (stride.group_bwd.block_m, stride.group_bwd.block_n) == (32, 16)  # two key tiles of 16
    check_against_reference(p, (1, 2, 61, 32), torch.float32, device, seed=61)


@pytest.mark.parametrize("name", ["strided", "fixed", "all", "local"])
def test_forward_rescale_with_scores_that_grow_along_the_row(name, device):
    """Keys whose norms grow tenfold along the sequence make a row's max grow by tens of base-2 units over its key
    tiles, so the forward's running max moves, and its accumulator is rescaled, at tiles after the first (random
    inputs' maxima settle after a tile or two). Output and gradients against the float64 reference."""
    n = 70
    ramp = 1 + 10 * torch.arange(n, dtype=torch.float64) / n
    for dtype in (torch.float32, torch.bfloat16):
        check_against_reference(sparse.pattern(**PATTERNS[name]), (1, 2, n, 32), dtype, device, seed=11, key_scale=ramp)


def record_launches(monkeypatch, pick, parameter: str | None = None) -> list:
    """`pick(kernel, args, options)` of every launch from here on of a kernel that has `parameter` (None: of every
    launch); the launches still run."""
    recorded = []
    real = launch._launch_at

    def record(site, kernel, grid, args, options):
        if parameter is None or parameter in kernel.arg_names:
            recorded.append(pick(kernel, args, options()))
        real(site, kernel, grid, args, options)

    monkeypatch.setattr(launch, "_launch_at", record)
    return recorded


@pytest.fixture
def tma_launches(monkeypatch):
    """The TMA setting of every launch from here on (None for kernels without descriptor loads)."""
    return record_launches(monkeypatch, lambda kernel, args, options: options.get("TMA"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "name, n", [("strided", 37), ("strided-local", 37), ("local", 7), ("fixed", 37), ("fixed-local", 37), ("all", 37)]
)
def test_tma_band_loads(name, n, dtype, device, monkeypatch, tma_launches):
    """With TMA_BAND_LOADS the band segments of step 1 load q, k, v, dO by tensor descriptor in the forward, dq and
    dk/dv kernels (rows past n come as zeros, rows past a group's end as real rows the masks drop): the same results.
    Odd n, so that the last tiles hang over the end of each head's rows."""
    monkeypatch.setattr(plan_module, "TMA_BAND_LOADS", True)
    check_against_reference(sparse.pattern(**PATTERNS[name]), (2, 3, n, 32), dtype, device, seed=n)
    assert TMA_ROWS in tma_launches


def test_tma_band_loads_on_a_transposed_layout(device, monkeypatch):
    """q, k, v laid out [B, n, H, D] and viewed as [B, H, n, D] (a fused projection's layout): the [B, H, n, D]
    descriptors take any 16-byte strides."""
    monkeypatch.setattr(plan_module, "TMA_BAND_LOADS", True)
    check_against_reference(sparse.pattern(**PATTERNS["strided"]), (2, 3, 37, 32), torch.float32, device, 7, False)


def test_tma_needs_addressable_tensors(device, monkeypatch, tma_launches):
    """A tensor a descriptor cannot address (168-byte rows) takes the pointer loads, with the same result."""
    monkeypatch.setattr(plan_module, "TMA_BAND_LOADS", True)
    p = sparse.pattern("strided", local_attn_ctx=5)
    q, k, v = (torch.randn(1, 2, 20, 42, device=device)[..., :32].requires_grad_() for _ in range(3))  # 168-byte rows
    check = sparse.attention(q, k, v, p, backend="triton")
    assert set(tma_launches) <= {TMA_OFF, None}
    monkeypatch.setattr(plan_module, "TMA_BAND_LOADS", False)
    torch.testing.assert_close(check, sparse.attention(q, k, v, p, backend="triton"), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "kw, n",
    [
        (dict(local_attn_ctx=6), 36),  # groups of 6 rows: the whole-group backward (k and v by descriptor)
        (dict(local_attn_ctx=2), 70),  # groups of 35 rows: the split dq and dk/dv kernels, tiles hang over n / l
        (dict(local_attn_ctx=4, part="stride"), 44),  # the stride part alone: first and only segment
    ],
    ids=["whole-groups", "split", "stride-alone"],
)
@pytest.mark.parametrize("group_keys", [True, False], ids=["group-keys-tma", "group-keys-pointer"])
def test_tma_stride_loads(kw, n, dtype, group_keys, device, monkeypatch, tma_launches):
    """With TMA_STRIDE_LOADS the stride part (n a multiple of l) loads its tiles from [B, H, l, n / l, D] descriptors
    in every kernel it runs (row t of group g is position t * l + g); rows past n / l come as zeros."""
    monkeypatch.setattr(plan_module, "TMA_STRIDE_LOADS", True)
    monkeypatch.setattr(plan_module, "TMA_GROUP_KEYS", group_keys)
    check_against_reference(sparse.pattern("strided", **kw), (2, 3, n, 32), dtype, device, seed=n)
    assert TMA_GROUP_ROWS in tma_launches


def test_tma_stride_loads_on_a_transposed_layout(device, monkeypatch, tma_launches):
    """[B, H, l, n / l, D] descriptors of a [B, n, H, D] layout viewed as [B, H, n, D]: the strides are the tensor's."""
    monkeypatch.setattr(plan_module, "TMA_STRIDE_LOADS", True)
    p = sparse.pattern("strided", local_attn_ctx=2)
    check_against_reference(p, (2, 3, 70, 32), torch.float32, device, 3, False)
    assert TMA_GROUP_ROWS in tma_launches


@pytest.fixture
def store_launches(monkeypatch):
    """(kernel name, STORE_TMA) of every launch from here on that has the constexpr."""
    return record_launches(monkeypatch, lambda kernel, _, options: (kernel.__name__, options["STORE_TMA"]), "STORE_TMA")


def _output_and_grads(p, q, k, v, do):
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = sparse.attention(q, k, v, p, backend="triton")
    return (out, *torch.autograd.grad(out, (q, k, v), do))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "kw, n, forward, group",
    [
        # the stride part's forward and whole-group backward ([B, H, l, n / l, D]), then the band's forward (rows)
        (dict(attn_mode="strided", local_attn_ctx=6), 36, [True, True], [True]),
        # n not a multiple of l: the stride part by pointer; the band's forward (one group) by descriptor
        (dict(attn_mode="strided", local_attn_ctx=6), 37, [False, True], [False]),
        (dict(attn_mode="strided", local_attn_ctx=4, part="stride"), 44, [True], [True]),
        # local blocks of 16 rows in 16-row tiles: by descriptor; of 12 rows in 16-row tiles (a tile would reach
        # into the next group's rows): by pointer
        (dict(attn_mode="fixed", local_attn_ctx=16, summary_ctx=4, part="local"), 40, [True], [True]),
        (dict(attn_mode="fixed", local_attn_ctx=12, summary_ctx=4, part="local"), 40, [False], [False]),
        (dict(attn_mode="local", local_attn_ctx=7), 37, [True], []),
    ],
    ids=["strided", "strided-n-not-multiple", "stride-alone", "local-blocks-whole", "local-blocks-partial", "local"],
)  # fmt: skip
def test_tma_stores(kw, n, forward, group, dtype, device, monkeypatch, store_launches):
    """With TMA_STORES the forward's o (read back by a later segment by the same descriptor) and the first segment's
    whole-group dq, dk, dv are stored by descriptor (geometry.store_rows) where the tiles come so and none reaches past
    its group into rows before n: bitwise the results of the pointer stores, and the reference's within tolerance.
    Rows past n / l or n are dropped by the copy engine (odd n; poisoned buffers would show an unwritten row)."""
    for flag in ("TMA_BAND_LOADS", "TMA_STRIDE_LOADS", "TMA_GROUP_KEYS"):
        monkeypatch.setattr(plan_module, flag, True)
    p = sparse.pattern(**kw)
    inputs = make_inputs((2, 3, n, 32), dtype, device, seed=n)
    monkeypatch.setattr(plan_module, "TMA_STORES", False)
    by_pointer = _output_and_grads(p, *inputs)
    assert not any(store for _, store in store_launches)
    store_launches.clear()
    monkeypatch.setattr(plan_module, "TMA_STORES", True)
    by_descriptor = _output_and_grads(p, *inputs)
    for name, got, want in zip(("out", "dq", "dk", "dv"), by_descriptor, by_pointer):
        assert torch.equal(got, want), f"{name} differs from the pointer stores'"
    assert [store for kernel, store in store_launches if kernel == "_sparse_fwd_kernel"] == forward
    assert [store for kernel, store in store_launches if kernel == "_group_bwd_kernel"] == group
    check_against_reference(p, (2, 3, n, 32), dtype, device, seed=n)


def test_which_segments_load_by_descriptor():
    """Band segments of step 1: TMA_ROWS; the stride part: TMA_GROUP_ROWS where n is a multiple of l, else pointers
    (the [n / l, l] view would end past the tensor); summary segments: TMA_ROWS for their dk/dv's query tiles alone
    (SegmentLaunch.tma_of). Each flag turns its own layout off."""

    def layouts(name, n, **kw):
        plan = build_plan(sparse.pattern(name, **kw), n, 64, False, tma_band_loads=True, tma_stride_loads=True)
        return [(launch.tma, launch.group_bwd_tma) for launch in plan.launches]

    assert layouts("strided", 3072, local_attn_ctx=96) == [(TMA_GROUP_ROWS, TMA_GROUP_ROWS), (TMA_ROWS, TMA_OFF)]
    assert layouts("strided", 3000, local_attn_ctx=96) == [(TMA_OFF, TMA_OFF), (TMA_ROWS, TMA_OFF)]
    assert layouts("strided", 65536, local_attn_ctx=256)[0] == (TMA_GROUP_ROWS, TMA_OFF)  # split kernels
    assert layouts("fixed", 12288, local_attn_ctx=128, summary_ctx=32) == [(TMA_ROWS, TMA_OFF), (TMA_ROWS, TMA_ROWS)]
    p = sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32)
    assert build_plan(p, 12288, 64, False, tma_summary_queries=False).launches[0].tma == TMA_OFF
    p = sparse.pattern("strided", local_attn_ctx=96)
    off = build_plan(p, 3072, 64, False, tma_band_loads=False, tma_stride_loads=False)
    assert [(launch.tma, launch.group_bwd_tma) for launch in off.launches] == [(TMA_OFF, TMA_OFF)] * 2
    keys_off = build_plan(p, 3072, 64, False, tma_group_keys=False)
    assert keys_off.launches[0].group_bwd_tma == TMA_OFF


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("summary_queries", [True, False], ids=["summary-queries-tma", "summary-queries-pointer"])
@pytest.mark.parametrize("name, n", [("fixed", 37), ("fixed-local", 37), ("fixed-summary", 41)])
def test_tma_summary_queries(name, n, dtype, summary_queries, device, monkeypatch, tma_launches):
    """A summary segment's dk/dv streams its query tiles (q, dO) by [B, H, n, D] descriptor and gathers its keys by
    pointer (TMA_SUMMARY_QUERIES): the same results either way; odd n, so that the last query tile hangs over n."""
    monkeypatch.setattr(plan_module, "TMA_SUMMARY_QUERIES", summary_queries)
    check_against_reference(sparse.pattern(**PATTERNS[name]), (2, 3, n, 32), dtype, device, seed=n)
    assert (TMA_ROWS in tma_launches) == (summary_queries or name != "fixed-summary")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "kw, n",
    [
        (dict(local_attn_ctx=8, summary_ctx=2), 40),  # key tiles of 16: boxes of 8 windows x 2 columns
        (dict(local_attn_ctx=8, summary_ctx=2, distinct_heads=True), 48),  # each head its own columns
        (dict(local_attn_ctx=8, summary_ctx=4, part="summary"), 40),  # the summary part alone: first and only
        (dict(local_attn_ctx=64, summary_ctx=32), 128),  # c > key tile (16): boxes of 16 rows inside one window
    ],
    ids=["merged", "distinct", "summary-alone", "c-above-tile"],
)
@pytest.mark.parametrize("summary_keys", [True, False], ids=["summary-keys-tma", "summary-keys-pointer"])
def test_tma_summary_keys(kw, n, dtype, summary_keys, device, monkeypatch, tma_launches):
    """With TMA_SUMMARY_KEY_LOADS a summary segment's forward and dq load their compact key tiles from a [B, H, n / l,
    l, D] descriptor (n a multiple of l, c a power of two): the same results as the gather by pointer."""
    monkeypatch.setattr(plan_module, "TMA_SUMMARY_KEY_LOADS", summary_keys)
    check_against_reference(sparse.pattern("fixed", **kw), (2, 3, n, 32), dtype, device, seed=n)
    assert (TMA_SUMMARY_KEYS in tma_launches) == summary_keys


def test_summary_keys_by_descriptor_only_where_the_view_exists():
    def layout(n, l, c):
        p = sparse.pattern("fixed", local_attn_ctx=l, summary_ctx=c)
        return build_plan(p, n, 64, False, tma_summary_keys=True).launches[0].summary_keys_tma

    assert layout(12288, 128, 32) == TMA_SUMMARY_KEYS
    assert layout(12290, 128, 32) == TMA_OFF  # n not a multiple of l
    assert layout(12288, 128, 24) == TMA_OFF  # c not a power of two
    summary = build_plan(sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32), 12288, 64, False).launches[0]
    assert [summary.tma_of(kernel) for kernel in ("fwd", "dq", "dkdv")] == [summary.summary_keys_tma] * 2 + [TMA_ROWS]


def test_which_dkdv_kernels_load_row_statistics_by_descriptor():
    """TMA_ROW_STATS: the split dk/dv kernels whose query tiles come by TMA_ROWS (fixed's summary, step-1 bands) where n
    is a multiple of 4 (16-byte rows of float32); never the whole-group or the one-kernel band backward, the stride
    part's TMA_GROUP_ROWS, or segments whose query tiles come by pointer."""

    def row_stats(name, n, **kw):
        return [launch.row_stats_tma for launch in build_plan(sparse.pattern(name, **kw), n, 64, False).launches]

    assert row_stats("fixed", 12288, local_attn_ctx=128, summary_ctx=32) == [True, False]  # local blocks: whole groups
    assert row_stats("strided", 12288, local_attn_ctx=128) == [False, True]  # the stride part: whole groups
    assert row_stats("strided", 65536, local_attn_ctx=256) == [False, True]  # the stride part split: TMA_GROUP_ROWS
    assert row_stats("strided", 3070, local_attn_ctx=96) == [False, False]  # n not a multiple of 4
    assert row_stats("fixed", 12290, local_attn_ctx=128, summary_ctx=32) == [False, False]
    fixed = sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32)
    assert not build_plan(fixed, 12288, 64, False, tma_row_stats=False).launches[0].row_stats_tma
    assert not build_plan(fixed, 12288, 64, False, tma_summary_queries=False).launches[0].row_stats_tma
    strided = sparse.pattern("strided", local_attn_ctx=128)
    assert not build_plan(strided, 12288, 64, False, tma_band_loads=False).launches[1].row_stats_tma
    assert not build_plan(strided, 12288, 64, False, fused_band_backward=True).launches[1].row_stats_tma
    assert build_plan(strided, 12288, 64, False, tma_row_stats=True) is build_plan(strided, 12288, 64, False)
    assert build_plan(strided, 12288, 64, False, tma_row_stats=False) is not build_plan(strided, 12288, 64, False)


@pytest.fixture
def row_stats_launches(monkeypatch):
    """(STATS_TMA, LSE_DESC is a descriptor, DELTA_DESC is one) of every dk/dv launch from here on."""

    def pick(kernel, args, options):
        lse, delta = (args[kernel.arg_names.index(name)] for name in ("LSE_DESC", "DELTA_DESC"))
        return options["STATS_TMA"], isinstance(lse, TensorDescriptor), isinstance(delta, TensorDescriptor)

    return record_launches(monkeypatch, pick, "LSE_DESC")


# Patterns of the row statistics tests: PATTERNS' and fixed attention with windows longer than the interpreter's whole
# groups (32 rows), whose local blocks run split dq and dk/dv kernels: several groups of step 1.
ROW_STATS_PATTERNS = {**PATTERNS, "fixed-l40": dict(attn_mode="fixed", local_attn_ctx=40, summary_ctx=8)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("row_stats", [True, False], ids=["row-stats-tma", "row-stats-pointer"])
@pytest.mark.parametrize(
    "name, n",
    [
        ("fixed", 40),  # the summary's dk/dv in one grid with its dq (after the local blocks)
        ("fixed-summary", 44),  # the summary alone: its own dk/dv launch, after the dq that computes D
        ("fixed-l40", 100),  # the local blocks' own dk/dv launch, groups of 40 rows (the last of 20), then the summary
        ("strided", 36),  # the band in one grid with its dq
        ("local", 36),  # one windowed band: split dq and dk/dv launches
        ("strided", 37),  # n not a multiple of 4: pointers
        ("fixed", 38),
    ],
)
def test_tma_row_stats(name, n, row_stats, dtype, device, monkeypatch, row_stats_launches):
    """With TMA_ROW_STATS the dk/dv kernels whose query tiles come by TMA_ROWS load each tile's lse2 and D rows from
    [B * H, n] descriptors where n is a multiple of 4 (columns past n read as zeros), else by pointer: the reference's
    gradients either way. The last query tiles hang over n (and over their group's end)."""
    monkeypatch.setattr(plan_module, "TMA_ROW_STATS", row_stats)
    p = sparse.pattern(**ROW_STATS_PATTERNS[name])
    check_against_reference(p, (2, 3, n, 32), dtype, device, seed=n)
    by_descriptor = row_stats and n % 4 == 0
    assert any(launch_.row_stats_tma for launch_ in build_plan(p, n, 32).launches) == by_descriptor
    assert row_stats_launches and all(len(set(setting)) == 1 for setting in row_stats_launches)
    assert any(setting[0] for setting in row_stats_launches) == by_descriptor


@pytest.mark.parametrize("name, n", [("fixed", 40), ("fixed-l40", 100), ("strided", 36), ("local", 36)])
def test_tma_row_stats_give_the_pointer_loads_gradients(name, n, device, monkeypatch):
    """The same gradients, bit for bit, with lse2 and D rows by descriptor and by pointer: the rows a descriptor reads
    past a group's end (real rows) or past n (zeros) are masked as the pointer loads' `other` was."""
    p = sparse.pattern(**ROW_STATS_PATTERNS[name])
    q, k, v, do = make_inputs((2, 3, n, 32), torch.float32, device, seed=n)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    grads = []
    for row_stats in (True, False):
        monkeypatch.setattr(plan_module, "TMA_ROW_STATS", row_stats)
        assert any(launch_.row_stats_tma for launch_ in build_plan(p, n, 32).launches) == row_stats
        out = sparse.attention(q, k, v, p, backend="triton")
        grads.append(torch.autograd.grad(out, (q, k, v), do))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("summary_last", [True, False], ids=["summary-last", "summary-first"])
@pytest.mark.parametrize("name, n", [("fixed", 37), ("fixed-distinct", 40), ("fixed-c=l", 37), ("fixed-summary", 41)])
def test_summary_backward_last(name, n, summary_last, device, monkeypatch):
    """The backward may run a leading summary segment after the band that owns every row (SUMMARY_BACKWARD_LAST): the
    same gradients, with dk and dv allocated without a zero-fill then (poisoned buffers would show a key not written).
    """
    monkeypatch.setattr(plan_module, "SUMMARY_BACKWARD_LAST", summary_last)
    p = sparse.pattern(**PATTERNS[name])
    plan = build_plan(p, n, 32)
    moved = summary_last and name != "fixed-summary"
    assert (plan.backward_order == (1, 0)) == moved and plan.delta_source == "first_dq"
    assert isinstance(plan.backward_launches[-1 if moved else 0].segment, SummarySegment)
    check_against_reference(p, (2, 3, n, 32), torch.float32, device, seed=n)


@pytest.mark.parametrize("longest_first", [True, False], ids=["longest-first", "tiles-by-head"])
@pytest.mark.parametrize("name, n", [("fixed", 37), ("fixed-distinct-summary", 44)])
def test_summary_programs_longest_first(name, n, longest_first, device, monkeypatch):
    """A summary segment's programs on a (B * H, tiles) grid, the forward's and dq's from the last query tile and
    dk/dv's from the first key tile (SUMMARY_LONGEST_FIRST), or head by head: each tile computed once either way."""
    monkeypatch.setattr(plan_module, "SUMMARY_LONGEST_FIRST", longest_first)
    summary = build_plan(sparse.pattern(**PATTERNS[name]), n, 32).launches[0]
    orders = [summary.order_of(kernel) for kernel in ("fwd", "dq", "dkdv")]
    assert orders == ([LAST_TILE_FIRST, LAST_TILE_FIRST, LONGEST_FIRST] if longest_first else [TILES_BY_HEAD] * 3)
    assert launch._grid(summary, "dkdv", 5, 6) == ((6, 5) if longest_first else (5, 6))
    check_against_reference(sparse.pattern(**PATTERNS[name]), (2, 3, n, 32), torch.float32, device, seed=n)


@pytest.mark.parametrize("fused", [True, False], ids=["one-launch", "two-launches"])
@pytest.mark.parametrize("name, n", [("fixed", 37), ("fixed", 64), ("fixed-distinct", 45), ("fixed-c=l", 40)])
def test_fused_local_forward(name, n, fused, device, monkeypatch):
    """Fixed attention's forward with the local blocks run by the summary programs (FUSED_LOCAL_FORWARD: one launch,
    one softmax) or in a launch of their own: the reference's output and gradients either way. The interpreter's query
    tiles (16 rows) lie in one window where l is a multiple of 16: "fixed" runs at l = 16 (fused when on), the others
    keep their l of 8 and 6 (two launches either way)."""
    monkeypatch.setattr(plan_module, "FUSED_LOCAL_FORWARD", fused)
    kw = dict(PATTERNS[name], local_attn_ctx=16) if name == "fixed" else PATTERNS[name]
    p = sparse.pattern(**kw)
    summary, local = build_plan(p, n, 32).launches
    joins = fused and kw["local_attn_ctx"] % summary.fwd.block_m == 0
    assert (summary.fwd_local, local.fwd_joined) == (joins, joins)
    check_against_reference(p, (2, 3, n, 32), torch.float32, device, seed=n)


def test_which_segments_run_dq_and_dkdv_in_one_grid(monkeypatch):
    """Split segments after the first in the backward's order, where dq's and dk/dv's warps and stages agree: strided's
    band, fixed's summary (run after the local blocks); never the backward's first segment (its dq programs may compute
    D, which dk/dv programs read), whole-group segments or the fused band backward."""

    def one_grid(name, n, head_dim=64, **kw):
        return [launch.one_grid for launch in build_plan(sparse.pattern(name, **kw), n, head_dim, False).launches]

    assert one_grid("strided", 12288, local_attn_ctx=128) == [False, True]  # the stride part: whole groups
    assert one_grid("strided", 65536, local_attn_ctx=256) == [False, True]  # the stride part: split, but first
    # fixed: the summary's dq and dk/dv tiles agree in warps and stages at head dim 64 (4, 3), not at 128 (stages 2, 3)
    assert one_grid("fixed", 12288, local_attn_ctx=128, summary_ctx=32) == [True, False]
    assert one_grid("fixed", 12288, 128, local_attn_ctx=128, summary_ctx=32) == [False, False]
    fixed = sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32)
    assert not build_plan(fixed, 12288, 64, False, summary_backward_last=False).launches[0].one_grid  # the first
    dkdv_kind = "dkdv_summary_rows" if plan_module.SUMMARY_DKDV_QUERY_ROWS else "dkdv_summary"
    block_m, block_n, warps, stages = plan_module.TILE_TABLE[(dkdv_kind, 64)][:4]
    other_stages = {**plan_module.TILE_TABLE, ("dq_summary", 64): (block_m, block_n, warps, stages + 1)}
    monkeypatch.setattr(plan_module, "TILE_TABLE", other_stages)
    build_plan.cache_clear()
    assert [launch.one_grid for launch in build_plan(fixed, 12288, 64, False).launches] == [False, False]
    monkeypatch.undo()
    build_plan.cache_clear()
    assert one_grid("local", 4096, local_attn_ctx=128) == [False]
    p = sparse.pattern("strided", local_attn_ctx=128)
    assert not build_plan(p, 12288, 64, False, one_grid_backward=False).launches[1].one_grid
    assert not build_plan(p, 12288, 64, False, fused_band_backward=True).launches[1].one_grid


@pytest.mark.parametrize("query_rows", [True, False], ids=["query-rows", "transposed"])
@pytest.mark.parametrize(
    "name, n", [("fixed", 37), ("fixed-c=l", 40), ("fixed-summary", 33), ("fixed-distinct-summary", 45)]
)
def test_summary_dkdv_query_rows(name, n, query_rows, device, monkeypatch):
    """A summary segment's dk/dv with its scores as [queries, keys] (plan.SUMMARY_DKDV_QUERY_ROWS) or transposed, at
    that form's tiles: the reference's gradients either way, including the masked first and last query tiles."""
    monkeypatch.setattr(plan_module, "SUMMARY_DKDV_QUERY_ROWS", query_rows)
    p = sparse.pattern(**PATTERNS[name])
    summary = build_plan(p, n, 32).launches[0]
    assert summary.dkdv_query_rows == query_rows
    check_against_reference(p, (2, 3, n, 32), torch.float32, device, seed=n)
    check_against_reference(p, (1, 2, n, 32), torch.bfloat16, device, seed=n + 1)


def test_summary_dkdv_query_rows_take_their_own_tiles():
    fixed = sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32)
    rows = build_plan(fixed, 12288, 64, False, summary_dkdv_query_rows=True).launches[0]
    transposed = build_plan(fixed, 12288, 64, False, summary_dkdv_query_rows=False).launches[0]
    assert rows.dkdv == plan_module.Tiles(*plan_module.TILE_TABLE[("dkdv_summary_rows", 64)])
    assert transposed.dkdv == plan_module.Tiles(*plan_module.TILE_TABLE[("dkdv_summary", 64)])
    assert not any(
        launch.dkdv_query_rows
        for launch in build_plan(sparse.pattern("strided", local_attn_ctx=128), 12288, 64, False).launches
    )


@pytest.mark.parametrize("one_grid", [True, False], ids=["one-grid", "two-launches"])
@pytest.mark.parametrize(
    "name, n, has_one",
    [
        ("strided", 37, True),
        ("strided-l1", 37, True),  # both segments split (stride groups of 37 rows), the band after
        ("fixed", 37, True),  # the summary, after the local blocks
        ("fixed-distinct", 40, True),
        ("local", 37, False),  # one segment: the first
    ],
)
def test_one_grid_backward(name, n, has_one, one_grid, device, monkeypatch):
    """dq and dk/dv of a segment after the backward's first in one grid (ONE_GRID_BACKWARD; a summary's on a (B * H,
    programs) grid, longest first) or two launches: the reference's gradients either way."""
    monkeypatch.setattr(plan_module, "ONE_GRID_BACKWARD", one_grid)
    p = sparse.pattern(**PATTERNS[name])
    assert any(launch.one_grid for launch in build_plan(p, n, 32).launches) == (one_grid and has_one)
    check_against_reference(p, (2, 3, n, 32), torch.float32, device, seed=n)


@pytest.mark.parametrize("name, n", [("strided", 37), ("strided-l1", 37), ("fixed", 37), ("fixed-distinct", 40)])
def test_alternate_head_order(name, n, device, monkeypatch):
    """Every other launch taking its (batch, head)s from the last (ALTERNATE_HEAD_ORDER): each (batch, head) is still
    computed once per launch, so the reference's output and gradients (two batches, three heads: reversed, the first
    batch's heads run last)."""
    monkeypatch.setattr(plan_module, "ALTERNATE_HEAD_ORDER", True)
    p = sparse.pattern(**PATTERNS[name])
    assert build_plan(p, n, 32).alternate_heads
    check_against_reference(p, (2, 3, n, 32), torch.float32, device, seed=n)


def test_float32_launches_pipeline_at_most_two_stages():
    """TILE_TABLE's stages are for 16-bit inputs; float32 tiles take twice the shared memory (Tiles.options_for)."""
    tiles = plan_module.Tiles(64, 64, 4, 3, 128)
    assert tiles.options_for(2) == tiles.launch_options == dict(num_warps=4, num_stages=3, maxnreg=128)
    assert tiles.options_for(4) == dict(num_warps=4, num_stages=plan_module.FLOAT32_MAX_STAGES, maxnreg=128)
    assert plan_module.Tiles(64, 64, 4, 1).options_for(4)["num_stages"] == 1


def test_which_segments_run_the_whole_group_backward():
    def plan(name, n=12288, fused=None, **kw):
        return build_plan(sparse.pattern(name, **kw), n, 64, False, fused_band_backward=fused)

    stride, local = plan("strided", n=3072, local_attn_ctx=96).launches  # groups of 32 rows: one warp per 16
    _, key_tile, warps, stages, *cap = plan_module.TILE_TABLE[("group_bwd", 64)]
    expected = plan_module.Tiles(32, 32, min(warps, 2), stages)  # short groups: one key tile, no register cap
    assert stride.group_bwd == expected and local.group_bwd is None  # a window over 3,072
    largest = plan_module.TILE_TABLE[("group_bwd", 64)][0]
    for name, kw in (("strided", dict(local_attn_ctx=128)), ("fixed", dict(local_attn_ctx=128, summary_ctx=32))):
        for segment in plan(name, **kw).launches:  # groups of 96 and 128 rows: whole only if the table allows
            assert (segment.group_bwd is not None) == (segment.group_len <= largest)
    assert plan("fixed", local_attn_ctx=64, summary_ctx=16).launches[1].group_bwd.block_m == 64  # local blocks
    streamed = plan("fixed", local_attn_ctx=128, summary_ctx=32).launches[1].group_bwd  # 128 rows in key tiles
    assert streamed == plan_module.Tiles(128, key_tile, min(warps, 8), stages, *cap)
    assert all(launch.group_bwd is None for launch in plan("strided", n=3072, fused=True, local_attn_ctx=96).launches)


def test_who_computes_delta_under_each_backward():
    def plan(name, fused, summary_last=None, **kw):
        p = sparse.pattern(name, **kw)
        return build_plan(p, 12288, 64, False, fused_band_backward=fused, summary_backward_last=summary_last)

    strided = plan("strided", True, local_attn_ctx=128)
    assert all(launch.bwd is not None for launch in strided.launches)
    assert strided.delta_source == "on_the_fly"  # stride groups of 96 rows, then a window of 128
    fixed = plan("fixed", True, False, local_attn_ctx=128, summary_ctx=32)
    assert fixed.launches[0].bwd is None and fixed.launches[1].bwd is not None
    assert fixed.delta_source == "first_dq"  # the summary part's dq programs own every row once
    # the summary part last (the default): the local blocks' one-kernel backward first, windows of 128 rows
    assert plan("fixed", True, local_attn_ctx=128, summary_ctx=32).delta_source == "on_the_fly"
    assert plan("all", True).delta_source == "own_launch"  # one group of 12,288: recomputing D per tile would not pay
    split = plan("strided", False, local_attn_ctx=128)
    assert all(launch.bwd is None for launch in split.launches) and split.delta_source == "first_dq"
    assert build_plan(sparse.pattern("strided", local_attn_ctx=128), 12288, 64, False) == split  # the default


@pytest.mark.parametrize("name", ["strided", "fixed", "fixed-distinct", "all"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_matches_reference(name, dtype, device):
    check_against_reference(sparse.pattern(**PATTERNS[name]), (1, 2, 45, 32), dtype, device)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_head_dims(head_dim, device):
    check_against_reference(sparse.pattern(**PATTERNS["strided"]), (1, 1, 33, head_dim), torch.float32, device)


@pytest.mark.slow
@pytest.mark.parametrize("n", [100, 257])
@pytest.mark.parametrize("name", ["strided", "fixed", "fixed-distinct"])
def test_longer_odd_lengths_not_multiple_of_l(name, n, device):
    p = sparse.pattern(**{**PATTERNS[name], "local_attn_ctx": 24} if name == "strided" else PATTERNS[name])
    check_against_reference(p, (1, 2, n, 32), torch.float32, device, seed=n)


def test_non_contiguous_inputs(device):
    check_against_reference(
        sparse.pattern(**PATTERNS["fixed"]), (2, 3, 29, 32), torch.float32, device, contiguous=False
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode=st.sampled_from(["strided", "fixed", "local"]),
    n=st.integers(1, 70),
    l=st.integers(1, 20),
    c_frac=st.floats(0.05, 1.0),
    batch=st.integers(1, 2),
    heads=st.integers(1, 3),
    part_index=st.integers(0, 2),
)
def test_random_shapes_and_parameters(mode, n, l, c_frac, batch, heads, part_index):
    c = max(1, min(l, round(l * c_frac)))
    parts = {"strided": sparse.patterns.STRIDED_PARTS, "fixed": sparse.patterns.FIXED_PARTS, "local": ("merged",)}
    part = parts[mode][part_index % len(parts[mode])]
    p = sparse.pattern(mode, local_attn_ctx=l, summary_ctx=c if mode == "fixed" else None, part=part)
    check_against_reference(p, (batch, heads, n, 32), torch.float32, "cuda" if torch.cuda.is_available() else "cpu")


def test_backward_is_bitwise_deterministic(device):
    p = sparse.pattern(**PATTERNS["fixed-distinct"])
    q, k, v, do = make_inputs((2, 4, 50, 32), torch.float32, device)
    grads = []
    for _ in range(2):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = sparse.attention(*leaves, p, backend="triton")
        grads.append(torch.autograd.grad(out, leaves, do))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_checkpointing_gives_equal_results(device):
    p = sparse.pattern(**PATTERNS["strided"])
    q, k, v, do = make_inputs((1, 2, 40, 32), torch.float32, device)

    def run(use_checkpoint):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        fn = lambda a, b, c: sparse.attention(a, b, c, p, backend="triton") * 2.0
        out = torch.utils.checkpoint.checkpoint(fn, *leaves, use_reentrant=False) if use_checkpoint else fn(*leaves)
        return (out, *torch.autograd.grad(out, leaves, do))

    for a, b in zip(run(False), run(True)):
        assert torch.equal(a, b)


def test_compiles_without_graph_break(device):
    p = sparse.pattern(**PATTERNS["fixed"])
    q, k, v, do = make_inputs((1, 2, 24, 32), torch.float32, device)

    def f(q, k, v):
        return sparse.attention(q * 1.0, k, v, p, backend="triton").sum(-1)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = compiled(*leaves)
    grads = torch.autograd.grad(out.sum(), leaves)
    eager_leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    eager = f(*eager_leaves)
    for a, b in zip((out, *grads), (eager, *torch.autograd.grad(eager.sum(), eager_leaves))):
        assert torch.allclose(a, b, atol=1e-5)


def test_plan_is_cached_and_reports_statistics():
    p = sparse.pattern("strided", local_attn_ctx=128)
    plan = build_plan(p, 12288, 64, interpret=False)
    assert build_plan(p, 12288, 64, interpret=False) is plan
    stats = plan.stats()
    assert stats["element_density"] == pytest.approx(p.element_density(12288))
    assert stats["element_density"] <= stats["tile_density"] < 0.05, "the plan must not compute dense tiles"
    fixed = build_plan(sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32), 12288, 64, interpret=False)
    assert fixed.tile_density < 0.2
    dense = build_plan(sparse.pattern("all"), 12288, 64, interpret=False)
    assert dense.tile_density == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    "make, error, text",
    [
        (lambda q: (q, q, q[..., :16], "triton"), ValueError, "same shape"),
        (lambda q: (q, q, q.double(), "triton"), TypeError, "one dtype"),
        (lambda q: (q.double(), q.double(), q.double(), "triton"), TypeError, "dtypes"),
        (lambda q: (q[0], q[0], q[0], "triton"), ValueError, "4-D"),
        (lambda q: (q[..., :20], q[..., :20], q[..., :20], "triton"), ValueError, "head dims"),
        (lambda q: (q, q, q, "cuda-magic"), ValueError, "backend"),
        (lambda q: (q, q, q.numpy(), "triton"), TypeError, "v must be a torch.Tensor"),
        (lambda q: (q, q, q, "sdpa"), ValueError, "sdpa"),
        (lambda q: (q[:, :1, :1].expand(1, 1, 1 << 28, 32),) * 3 + ("triton",), ValueError, "n below 2"),
    ],
)
def test_bad_input_raises_before_any_launch(make, error, text, monkeypatch):
    def no_launch(*args, **kwargs):  # pragma: no cover - reaching it is the failure
        raise AssertionError("a kernel was launched despite bad input")

    monkeypatch.setattr(launch, "sparse_forward", no_launch)
    q = torch.randn(1, 2, 8, 32)
    args = make(q)
    with pytest.raises(error, match=text):
        sparse.attention(*args[:3], sparse.pattern("strided", local_attn_ctx=4), backend=args[3])


def test_bad_pattern_and_scale():
    q = torch.randn(1, 1, 4, 32)
    with pytest.raises(TypeError, match="pattern"):
        sparse.attention(q, q, q, "strided")
    with pytest.raises(ValueError, match="scale"):
        sparse.attention(q, q, q, sparse.pattern("all"), scale=-1.0)


def test_mismatched_devices():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device to make a device mismatch")
    q = torch.randn(1, 1, 4, 32)
    with pytest.raises(ValueError, match="device"):
        sparse.attention(q, q.cuda(), q, sparse.pattern("all"))


# ----------------------------------------------------------------------------------------------------------
# On the GPU: the same comparisons at lengths up to 16,384, every pattern and dtype.

GPU_PATTERNS = {
    "all": dict(attn_mode="all"),
    "strided": dict(attn_mode="strided", local_attn_ctx=128),
    "strided-96": dict(attn_mode="strided", local_attn_ctx=96),
    "strided-stride": dict(attn_mode="strided", local_attn_ctx=128, part="stride"),
    "local": dict(attn_mode="local", local_attn_ctx=128),
    "fixed": dict(attn_mode="fixed", local_attn_ctx=128, summary_ctx=32),
    "fixed-summary": dict(attn_mode="fixed", local_attn_ctx=128, summary_ctx=32, part="summary"),
    "fixed-distinct": dict(attn_mode="fixed", local_attn_ctx=128, summary_ctx=32, distinct_heads=True),
}


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n", [1000, 16384])
@pytest.mark.parametrize("name", list(GPU_PATTERNS))
def test_gpu_long_sequences(name, n, dtype):
    head_dim = 64 if n > 4097 else 128
    heads = 4 if "distinct" in name else 1
    check_against_reference(sparse.pattern(**GPU_PATTERNS[name]), (1, heads, n, head_dim), dtype, "cuda", seed=n)


def test_tile_table_covers_supported_head_dims():
    from sparse.attention import KERNEL_HEAD_DIMS
    from sparse.kernels.plan import TILE_TABLE

    for kind in ("fwd", "dq", "dkdv", "fwd_summary", "dq_summary", "dkdv_summary", "bwd", "group_bwd"):
        for d in KERNEL_HEAD_DIMS:
            bm, bn, *_ = TILE_TABLE[(kind, d)]
            assert math.log2(bm).is_integer() and math.log2(bn).is_integer() and min(bm, bn) >= 16
            assert kind != "group_bwd" or bm % bn == 0  # key tiles split the group's query tile evenly


def test_the_registered_ops_pass_torch_opcheck(device):
    """Schema, fake (meta) implementations and AOT dispatch of sparse::attention_forward / _backward agree with
    the real kernels: what torch.compile relies on."""
    from sparse.kernels.op import _pattern_fields

    p = sparse.pattern(**PATTERNS["strided"])
    q, k, v, do = make_inputs((1, 2, 20, 32), torch.float32, device)
    fields = (*_pattern_fields(p), 32**-0.5)
    checks = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(torch.ops.sparse.attention_forward.default, (q, k, v, *fields), test_utils=checks)
    out, lse2 = torch.ops.sparse.attention_forward(q, k, v, *fields)
    args = (do, q, k, v, out, lse2, *fields)
    torch.library.opcheck(torch.ops.sparse.attention_backward.default, args, test_utils=checks)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    "case",
    [
        ("strided", dict(local_attn_ctx=96), 3072, 64, 32),  # issue 7's 3,072 case: groups of 32 rows
        ("strided", dict(local_attn_ctx=48), 3072, 64, 64),  # groups of 64: the largest whole group
        ("fixed", dict(local_attn_ctx=64, summary_ctx=16), 4096, 64, 64),  # local blocks after the summary part
        ("strided", dict(local_attn_ctx=96), 3072, 128, 32),  # the CIFAR-10 models' head dim
        ("strided", dict(local_attn_ctx=128), 12288, 64, 128),  # issue 7's 12,288 case: 96 rows in two key tiles
        ("fixed", dict(local_attn_ctx=128, summary_ctx=32), 4096, 64, 128),  # local blocks of 128 in two key tiles
    ],
    ids=["strided-32rows", "strided-64rows", "fixed-64rows", "strided-32rows-d128", "strided-96rows", "fixed-128rows"],
)
def test_gpu_whole_group_backward(case, dtype):
    """The whole-group backward compiled at the tile sizes it runs at on the GPU (32, 64 and 128 rows, the last in two
    key tiles; the long-sequence tests above reach only 16)."""
    mode, kw, n, head_dim, block = case
    p = sparse.pattern(mode, **kw)
    assert any(s.group_bwd is not None and s.group_bwd.block_m == block for s in build_plan(p, n, head_dim).launches)
    check_against_reference(p, (1, 2, n, head_dim), dtype, "cuda", seed=n)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    "kw, n, head_dim",
    [
        (dict(attn_mode="strided", local_attn_ctx=128), 12288, 64),  # issue 7's case: 96-row groups in 128-row tiles
        (dict(attn_mode="strided", local_attn_ctx=96), 3072, 128),  # 32-row groups, one key tile, head dim 128
        (dict(attn_mode="strided", local_attn_ctx=128), 4099, 64),  # n not a multiple of l: the band's o alone
        (dict(attn_mode="fixed", local_attn_ctx=128, summary_ctx=32), 4096, 64),  # local blocks of 128 rows
    ],
    ids=["strided-12288", "strided-3072-d128", "strided-4099", "fixed-4096"],
)
def test_gpu_tma_stores(kw, n, head_dim, dtype, monkeypatch, store_launches):
    """Compiled stores by descriptor (TMA_STORES) against the pointer stores, bitwise: the pointer path is the one the
    reference tests above check at these sizes."""
    p = sparse.pattern(**kw)
    inputs = [t.cuda() for t in make_inputs((2, 2, n, head_dim), dtype, "cpu", seed=n)]
    monkeypatch.setattr(plan_module, "TMA_STORES", False)
    by_pointer = _output_and_grads(p, *inputs)
    monkeypatch.setattr(plan_module, "TMA_STORES", True)
    by_descriptor = _output_and_grads(p, *inputs)
    for name, got, want in zip(("out", "dq", "dk", "dv"), by_descriptor, by_pointer):
        assert torch.equal(got, want), f"{name} differs from the pointer stores'"
    assert any(store for _, store in store_launches)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    "name, kw, n, head_dim",
    [
        ("strided", dict(local_attn_ctx=96), 3072, 64),  # issue 7's 3,072 case, batch 2
        ("strided", dict(local_attn_ctx=128), 4099, 64),  # tiles hang over n
        ("fixed", dict(local_attn_ctx=128, summary_ctx=32), 4099, 64),  # the local blocks' forward
        ("local", dict(local_attn_ctx=100), 1000, 128),  # head dim 128: 256-byte rows
        ("strided", dict(local_attn_ctx=32), 4096, 64),  # stride groups of 128 rows: split dq and dk/dv kernels
        # summary keys by descriptor (n a multiple of l), distinct heads: each head's own columns
        ("fixed", dict(local_attn_ctx=128, summary_ctx=32, distinct_heads=True), 4096, 64),
    ],
    ids=["strided-3072", "strided-4099", "fixed-4099", "local-d128", "strided-4096-l32", "fixed-4096-distinct"],
)
def test_gpu_tma_band_loads(name, kw, n, head_dim, dtype, monkeypatch, tma_launches):
    """The kernels with tiles loaded by tensor descriptor (every TMA setting on), compiled for the GPU, against the
    reference; n = 3,072 and 4,096 have the stride part (strided) or the summary keys (fixed) by descriptor too."""
    for flag in (
        "TMA_BAND_LOADS",
        "TMA_STRIDE_LOADS",
        "TMA_GROUP_KEYS",
        "TMA_SUMMARY_QUERIES",
        "TMA_SUMMARY_KEY_LOADS",
    ):
        monkeypatch.setattr(plan_module, flag, True)
    check_against_reference(sparse.pattern(name, **kw), (2, 2, n, head_dim), dtype, "cuda", seed=n)
    stride_by_descriptor = name == "strided" and n % kw["local_attn_ctx"] == 0
    assert TMA_ROWS in tma_launches and (TMA_GROUP_ROWS in tma_launches) == stride_by_descriptor
    summary_keys = name == "fixed" and n % kw["local_attn_ctx"] == 0
    assert (TMA_SUMMARY_KEYS in tma_launches) == summary_keys
