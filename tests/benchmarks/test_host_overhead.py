"""host_overhead replaces every kernel launch with a no-op, so it runs on a machine without a GPU or interpreter."""

from benchmarks import host_overhead
from sparse.kernels import launch


def test_every_kernel_of_the_launchers_is_replaced():
    launched = {name for name in vars(launch) if name.endswith("_kernel") and callable(getattr(launch, name))}
    assert launched and launched <= set(host_overhead.KERNELS)
    assert {"_group_bwd_kernel", "_sparse_fwd_kernel"} <= set(host_overhead.KERNELS)


def test_it_runs_without_a_gpu(capsys, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the compiled path's launchers, as on a GPU host
    assert host_overhead.main(["--n", "64", "--calls", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "strided: forward" in out and "fixed: forward" in out
