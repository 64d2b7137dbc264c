"""profile_kernels' launch paths switch one setting each for a same-process comparison and restore every one."""

import pytest

from benchmarks import profile_kernels
from sparse.kernels import fast_launch, launch, plan


def settings():
    return (fast_launch.DIRECT, launch.plan_for, plan.FUSED_BAND_BACKWARD, plan.GROUP_BACKWARD,
            plan.SMALL_TILE_WARPS, plan.TMA_BAND_LOADS, fast_launch.KEEP_ENCODED, plan.TMA_STRIDE_LOADS,
            plan.TMA_GROUP_KEYS, plan.PROGRAMMATIC_LAUNCH, plan.TMA_ROW_STATS, plan.SUMMARY_DKDV_FIRST,
            plan.ALTERNATE_HEAD_ORDER)  # fmt: skip


def test_every_path_changes_at_most_its_setting_and_restores_all():
    before = settings()
    changed = {}
    for path in profile_kernels.PATHS:
        with profile_kernels.launch_path(path):
            changed[path] = [i for i, (a, b) in enumerate(zip(before, settings())) if a is not b and a != b]
        assert settings() == before, path
    assert changed["direct"] == []
    assert changed["triton"] == [0, 1] and changed["fused"] == [2] and changed["split-groups"] == [3]
    assert changed["table-warps"] == [4] and changed["tma"] == [5] and changed["encode-each-launch"] == [6]
    assert changed["tma-stride"] == [7] and changed["group-keys-tma"] == [8] and changed["no-pdl"] == [9]
    assert changed["row-stats-tma"] == [10] and changed["dkdv-first"] == [11] and changed["alternate-heads"] == [12]


@pytest.mark.parametrize(
    "argv, text",
    [
        (["strided:12"], "not mode:n:batch"),
        (["bogus:12:1"], "attn_mode must be one of"),
        (["--paths=direct,nope", "strided:12:1:4"], "unknown path"),
        (["strided:12:1:4", "strided:x:1:4"], "bad case 'strided:x:1:4': n, batch, local_attn_ctx and summary_ctx are"),
        (["strided:0:1:4"], "n and batch must be >= 1"),
        (["--heads=0", "strided:12:1:4"], "--heads must be at least 1"),
        (["--head-dim=48", "strided:12:1:4"], "invalid choice"),
        (["--head-chunks=1", "strided:12:1:4"], "--head-chunks counts must lie in 2..16"),
        (["--head-chunks=2,x", "strided:12:1:4"], "comma-separated integers"),
    ],
)
def test_bad_cases_and_paths_stop_before_any_gpu_work(argv, text, capsys):
    with pytest.raises(SystemExit):
        profile_kernels.main(argv)
    assert text in capsys.readouterr().err


def test_a_case_names_its_pattern_length_and_batch():
    p, n, batch = profile_kernels.parse_case("fixed:12288:2:128:32")
    assert (p.attn_mode, p.local_attn_ctx, p.summary_ctx, n, batch) == ("fixed", 128, 32, 12288, 2)


def test_head_chunk_calls_split_the_heads_into_slices_whose_outputs_make_the_one_call_s(monkeypatch):
    """The head-chunked calls do the one call's work: their outputs, joined over heads, are its output."""
    import torch

    import sparse

    reference = sparse.attention
    monkeypatch.setattr(sparse, "attention", lambda q, k, v, p, backend: reference(q, k, v, p, backend="reference"))
    p = sparse.pattern("strided", local_attn_ctx=4)
    q, k, v, do = (torch.randn(2, 5, 24, 16) for _ in range(4))  # two batches: the slices are strided views
    fwd, fwd_bwd = profile_kernels._head_chunk_calls(q, k, v, do, p, chunks=2)
    parts = fwd()
    assert [part.shape[1] for part in parts] == [2, 3]
    torch.testing.assert_close(torch.cat(parts, 1), reference(q, k, v, p, backend="reference"))
    fwd_bwd()  # runs the backward of each slice; leaves q, k, v untouched
    assert q.grad is None
