"""Which GPUs the Triton kernels run on, and how (sparse/kernels/plan.py's HOPPER_ARCH, SMALL_SHARED_BYTES).

The settings were measured on Hopper (sm_90), and several are Hopper's own (tensor descriptors, programmatic dependent
launch): a plan for an older GPU (compute capability 8.x) must use none of them, and pipeline less deep where shared
memory is smaller. On the CPU the older GPUs' plan runs under the interpreter against the reference; on a GPU
(`cuda`) SPARSE_HOPPER_FEATURES=0 runs it compiled, and benchmarks/kernel_resources.py compiles it for sm_80 here."""

import pytest
import torch

import sparse
from sparse.attention import check_gpu
from sparse.kernels import build_plan, launch
from sparse.kernels import plan as plan_module
from sparse.kernels.geometry import PDL_OFF, TMA_OFF
from tests.sparse.test_kernels import GPU_PATTERNS, PATTERNS, check_against_reference

H100 = (90, 232448)
A100 = (80, 166912)
RTX_4090 = (89, 101376)
T4 = (75, 65536)
LARGE_CASES = [  # every kind of segment and descriptor the Hopper plan has at these sizes
    (sparse.pattern("strided", local_attn_ctx=128), 12288),
    (sparse.pattern("strided", local_attn_ctx=96), 3072),
    (sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32), 12288),
    (sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32, distinct_heads=True), 4096),
    (sparse.pattern("all"), 4096),
]


def _uses_hopper_features(plan) -> bool:
    return plan.pdl or any(
        launch.tma != TMA_OFF
        or launch.group_bwd_tma != TMA_OFF
        or launch.summary_keys_tma != TMA_OFF
        or launch.row_stats_tma
        or launch.reduce_read_back
        for launch in plan.launches
    )


@pytest.mark.parametrize("case", range(len(LARGE_CASES)))
def test_older_gpus_get_a_plan_without_hopper_features(case):
    p, n = LARGE_CASES[case]
    hopper = build_plan(p, n, 64, interpret=False, arch=90)
    older = build_plan(p, n, 64, interpret=False, arch=80)
    assert _uses_hopper_features(hopper) and not _uses_hopper_features(older)
    assert (older.arch, hopper.arch) == (80, 90)
    # The rest of the plan (tiles, grids, the order of segments) is the tuned one.
    assert [(s.fwd, s.dq, s.dkdv, s.group_bwd) for s in older.launches] == [
        (s.fwd, s.dq, s.dkdv, s.group_bwd) for s in hopper.launches
    ]


def test_smaller_shared_memories_pipeline_less_deep():
    tiles = plan_module.Tiles(64, 64, 4, 3, 128)
    assert tiles.options_for(2) == tiles.options_for(2, A100[1]) == dict(num_warps=4, num_stages=3, maxnreg=128)
    assert tiles.options_for(2, RTX_4090[1])["num_stages"] == plan_module.SMALL_SHARED_MAX_STAGES == 2
    assert tiles.options_for(4, A100[1])["num_stages"] == plan_module.FLOAT32_MAX_STAGES
    assert plan_module.Tiles(64, 64, 4, 1).options_for(2, RTX_4090[1])["num_stages"] == 1


@pytest.fixture
def fake_gpu(monkeypatch):
    """Describe CUDA device 0 as (arch, shared bytes per block) without a GPU."""

    def describe(target):
        monkeypatch.setattr(launch, "_device_target", lambda index: target)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: f"a GPU of sm_{target[0]}")

    return describe


def test_the_plan_target_follows_the_device_and_the_environment(fake_gpu, monkeypatch):
    fake_gpu(H100)
    monkeypatch.delenv("SPARSE_HOPPER_FEATURES", raising=False)
    assert launch.gpu_target(0) == dict(arch=90, shared_bytes=H100[1])
    monkeypatch.setenv("SPARSE_HOPPER_FEATURES", "0")
    assert launch.gpu_target(0) == dict(arch=89, shared_bytes=H100[1])
    assert launch.gpu_target(0, hopper_features=True)["arch"] == 90
    fake_gpu(RTX_4090)
    monkeypatch.delenv("SPARSE_HOPPER_FEATURES")
    assert launch.gpu_target(0) == dict(arch=89, shared_bytes=RTX_4090[1])


@pytest.mark.parametrize(
    "target, dtype, refused",
    [
        (T4, torch.bfloat16, "compute capability 8.0 or newer"),
        (T4, torch.float16, "compute capability 8.0 or newer"),
        (RTX_4090, torch.float32, "float32 inputs only on GPUs with at least 160 KB"),
        (RTX_4090, torch.bfloat16, None),
        (A100, torch.float32, None),
        (H100, torch.float32, None),
    ],
)
def test_gpus_the_kernels_cannot_serve_are_refused_by_name(fake_gpu, target, dtype, refused):
    fake_gpu(target)
    if refused is None:
        check_gpu(torch.device("cuda", 0), dtype)
        return
    with pytest.raises(ValueError, match=refused) as error:
        check_gpu(torch.device("cuda", 0), dtype)
    assert f"sm_{target[0]}" in str(error.value) and "backend 'flex' or 'reference'" in str(error.value)


def record_launch_options(monkeypatch) -> list[dict]:
    """The constexprs and launch options of every launch from here on."""
    options = []
    real_launch = launch._launch_at
    monkeypatch.setattr(
        launch,
        "_launch_at",
        lambda site, kernel, grid, args, make: (options.append(make()), real_launch(site, kernel, grid, args, make))[1],
    )
    return options


@pytest.fixture
def older_gpu_plans(monkeypatch):
    """Every call plans for an A100 (under the interpreter on the CPU, compiled on a GPU) and records its launches'
    options."""
    monkeypatch.setattr(
        launch, "plan_for", lambda q, p: build_plan(p, q.shape[2], q.shape[3], arch=A100[0], shared_bytes=A100[1])
    )
    return record_launch_options(monkeypatch)


def _no_hopper_options(options: list[dict]) -> bool:
    tma_names = ("TMA", "DQ_TMA", "KV_TMA", "STATS_TMA", "REDUCE", "STORE_TMA")
    return bool(options) and all(
        not o.get("launch_pdl") and o.get("PDL", PDL_OFF) == PDL_OFF and not any(o.get(name) for name in tma_names)
        for o in options
    )


@pytest.mark.parametrize("name", ["all", "strided", "strided-stride", "fixed", "fixed-distinct"])
def test_the_older_gpus_plan_matches_the_reference(name, device, older_gpu_plans):
    check_against_reference(sparse.pattern(**PATTERNS[name]), (2, 2, 37, 32), torch.float32, device, seed=5)
    assert _no_hopper_options(older_gpu_plans)


@pytest.mark.cuda
def test_gpu_plans_follow_the_device(monkeypatch):
    q = torch.empty(1, 2, 4096, 64, device="cuda", dtype=torch.bfloat16)
    p = sparse.pattern("strided", local_attn_ctx=128)
    major, minor = torch.cuda.get_device_capability()
    monkeypatch.delenv("SPARSE_HOPPER_FEATURES", raising=False)
    plan = launch.plan_for(q, p)
    assert plan.arch == major * 10 + minor
    assert _uses_hopper_features(plan) == (plan.arch >= plan_module.HOPPER_ARCH)
    monkeypatch.setenv("SPARSE_HOPPER_FEATURES", "0")
    assert not _uses_hopper_features(launch.plan_for(q, p))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n", [1000, 16384])
@pytest.mark.parametrize("name", ["all", "strided", "strided-96", "fixed", "fixed-distinct"])
def test_gpu_older_gpus_path(name, n, dtype, monkeypatch):
    """The older GPUs' plan (no descriptors, no programmatic launch) compiled on the GPU at hand, against the
    reference: SPARSE_HOPPER_FEATURES=0 on a Hopper GPU, the plan it would get anyway on an older one."""
    monkeypatch.setenv("SPARSE_HOPPER_FEATURES", "0")
    options = record_launch_options(monkeypatch)
    head_dim = 64 if n > 4097 else 128
    heads = 4 if "distinct" in name else 1
    check_against_reference(sparse.pattern(**GPU_PATTERNS[name]), (1, heads, n, head_dim), dtype, "cuda", seed=n)
    assert _no_hopper_options(options)


@pytest.mark.parametrize(
    "precision, dtype", [("32-true", torch.float32), ("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)]
)
def test_training_checks_the_gpu_before_the_first_batch(precision, dtype, monkeypatch):
    """The LightningModule asks check_gpu at fit start for the dtype attention sees under the Trainer's precision."""
    from types import SimpleNamespace

    from benchmarks import module as module_file

    asked = []
    monkeypatch.setattr(module_file, "check_gpu", lambda device, dtype: asked.append((device, dtype)))
    model = module_file.SparseTransformerModule(seq_len=24, token_axes=(4, 6), d_model=64, local_attn_ctx=4)
    monkeypatch.setattr(model, "_device", torch.device("cuda", 0))
    monkeypatch.setattr(type(model), "trainer", SimpleNamespace(precision=precision))
    model.on_fit_start()
    assert asked == [(torch.device("cuda", 0), dtype)]
