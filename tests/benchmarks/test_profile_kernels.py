"""profile_kernels' launch paths switch one setting each for a same-process comparison and restore every one."""

from benchmarks import profile_kernels
from sparse.kernels import fast_launch, launch, plan


def settings():
    return (fast_launch.DIRECT, launch.plan_for, plan.FUSED_BAND_BACKWARD, plan.GROUP_BACKWARD,
            plan.SMALL_TILE_WARPS, plan.TMA_BAND_LOADS)  # fmt: skip


def test_every_path_changes_at_most_its_setting_and_restores_all():
    before = settings()
    changed = {}
    for path in profile_kernels.PATHS:
        with profile_kernels.launch_path(path):
            changed[path] = [i for i, (a, b) in enumerate(zip(before, settings())) if a is not b and a != b]
        assert settings() == before, path
    assert changed["direct"] == []
    assert changed["triton"] == [0, 1] and changed["fused"] == [2] and changed["split-groups"] == [3]
    assert changed["table-warps"] == [4] and changed["tma"] == [5]
