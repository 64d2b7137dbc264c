"""`sparse-repro bench-kernels` in a tiny configuration on the CPU (kernels under the interpreter), so that the
command behind results/kernels.csv never rots; and the case sets it measures on a GPU."""

import pytest

from benchmarks.bench_kernels import main, model_cases, target_cases
from benchmarks.recorder import read_rows
from benchmarks.report import report

ISSUE7_COLUMNS = ["pattern", "local_attn_ctx", "summary_ctx", "backend", "n", "batch", "heads", "head_dim", "dtype",
                  "pass", "median_ms", "useful_tflops", "peak_gib", "tiles", "gpu", "torch", "triton", "commit",
                  "date"]  # fmt: skip


def test_a_tiny_sweep_writes_rows_the_report_reads(tmp_path, capsys):
    out = tmp_path / "kernels.csv"
    args = ["--cases", "sweep", "--n", "32", "--head-dims", "32", "--heads", "2",
            "--backends", "triton,flex,sdpa,reference", "--out", str(out),
            "--ceilings-out", str(tmp_path / "ceilings.csv")]  # fmt: skip
    assert main(args) == 0
    rows = read_rows(out)
    assert set(ISSUE7_COLUMNS) <= set(rows[0])
    by_cell = {(r["pattern"], r["backend"], r["pass"]): r for r in rows}
    # sdpa only at attn_mode "all"; every pattern with every other backend, forward and forward + backward
    assert len(rows) == 3 * 3 * 2 + 2
    for pattern in ("all", "strided", "fixed"):
        for backend in ("triton", "reference"):
            for pass_ in ("fwd", "fwd+bwd"):
                row = by_cell[(pattern, backend, pass_)]
                assert row["status"] == "ok" and float(row["median_ms"]) > 0 and row["dtype"] == "bfloat16"
        assert by_cell[(pattern, "flex", "fwd")]["status"] == "ok"
        assert "needs a GPU" in by_cell[(pattern, "flex", "fwd+bwd")]["reason"]
    assert int(by_cell[("strided", "triton", "fwd")]["tiles"]) > 0
    assert by_cell[("all", "sdpa", "fwd")]["sdpa_kernel"] and not by_cell[("all", "triton", "fwd")]["sdpa_kernel"]
    assert "strided" in capsys.readouterr().out  # the printed summary
    results = tmp_path / "results"
    results.mkdir()
    out.rename(results / "kernels.csv")
    report(results, patterns=False)
    assert "| strided |" in (results / "tables" / "kernels.md").read_text()


@pytest.mark.parametrize(
    "args, text",
    [
        (["--backends", "cuda"], "unknown backend"),
        (["--backends", "sdpa-fast"], "unknown backend 'sdpa-fast'; valid: triton, flex, sdpa, reference, sdpa-math"),
        (["--head-dims", "48"], "unsupported"),
        (["--head-dims", "6x4"], "--head-dims takes comma-separated integers"),
        (["--passes", "bwd"], "--passes"),
        (["--passes", ","], "--passes"),
        (["--patterns", "strdied"], "unknown pattern 'strdied'"),
        (["--n", "12k"], "--n takes comma-separated integers"),
        (["--n", "0"], "integers >= 1"),
        (["--batch", "0"], "--batch and --heads must be >= 1"),
        (["--budget-s", "0"], "--budget-s must be > 0"),
        (["--cases", "targets", "--n", "1024"], "nothing to measure"),
        (["--cases", "sweep", "--patterns", "strided", "--backends", "sdpa"], "nothing to measure"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(args, text, tmp_path, monkeypatch, capsys):
    """Refused by name with nothing measured or written: not the ceilings (a GPU run measures them first), no row."""
    import benchmarks.bench_kernels as bench

    monkeypatch.setattr(bench, "measure_ceilings", lambda: pytest.fail("GPU work before the refusal"))
    monkeypatch.setattr(bench, "measure", lambda *a: pytest.fail("a cell measured before the refusal"))
    out = tmp_path / "kernels.csv"
    with pytest.raises(SystemExit):
        main([*args, "--out", str(out), "--ceilings-out", str(tmp_path / "ceilings.csv")])
    assert text in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "ceilings.csv").exists()


def test_each_sdpa_row_names_the_dense_kernel_that_ran_and_a_forced_one_missing_here_says_why(tmp_path):
    """On the CPU torch offers its flash and math paths, not cuDNN's or the memory-efficient kernel: those cells are
    skipped with the reason, the others record the kernel (torch's own choice for `sdpa`)."""
    out = tmp_path / "kernels.csv"
    args = ["--cases", "sweep", "--n", "32", "--head-dims", "32", "--heads", "2", "--patterns", "all",
            "--backends", "sdpa,sdpa-math,sdpa-flash,sdpa-cudnn,sdpa-efficient", "--out", str(out),
            "--ceilings-out", str(tmp_path / "ceilings.csv")]  # fmt: skip
    assert main(args) == 0
    rows = {(r["backend"], r["pass"]): r for r in read_rows(out)}
    assert len(rows) == 10
    for pass_ in ("fwd", "fwd+bwd"):
        assert rows[("sdpa", pass_)]["sdpa_kernel"] == "flash"  # the CPU's choice for these inputs
        for kernel in ("math", "flash"):
            row = rows[(f"sdpa-{kernel}", pass_)]
            assert row["status"] == "ok" and row["sdpa_kernel"] == kernel and float(row["median_ms"]) > 0
        for kernel in ("cudnn", "efficient"):
            row = rows[(f"sdpa-{kernel}", pass_)]
            assert row["status"] == "skipped" and row["median_ms"] == "" and row["sdpa_kernel"] == ""
            assert row["reason"].startswith(f"no SDPA kernel: sdpa-{kernel} cannot take this call here (")


def test_the_forced_kernel_is_the_one_timed(monkeypatch):
    """The forcing context holds over the whole cell (warm-up, timing, graph capture), and only for forced cells."""
    import torch

    import benchmarks.bench_kernels as bench

    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(torch.backends.cuda.math_sdp_enabled() and not torch.backends.cuda.flash_sdp_enabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    case = bench.Case("all", 32, 1, 2, 32)
    assert bench.measure(case, "sdpa-math", "fwd", torch.bfloat16, 60.0, "cpu")["status"] == "ok"
    assert seen and all(seen)
    seen.clear()
    assert bench.measure(case, "sdpa", "fwd", torch.bfloat16, 60.0, "cpu")["sdpa_kernel"] == "flash"
    assert seen and not any(seen)


def test_without_torchs_private_choice_function_the_row_says_the_kernel_is_unknown(monkeypatch):
    import torch

    import benchmarks.bench_kernels as bench

    monkeypatch.delattr(torch, "_fused_sdp_choice")
    case = bench.Case("all", 32, 1, 2, 32)
    row = bench.measure(case, "sdpa", "fwd", torch.bfloat16, 60.0, "cpu")
    assert row["status"] == "ok" and row["sdpa_kernel"] == "unknown: this torch has no _fused_sdp_choice"
    # A forced kernel the CPU lacks is then found by the call itself, and still skipped with torch's words.
    row = bench.measure(case, "sdpa-cudnn", "fwd", torch.bfloat16, 60.0, "cpu")
    assert row["status"] == "skipped" and row["reason"].startswith("no SDPA kernel: No viable backend")


def test_every_option_says_what_it_takes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for option in ("--n", "--patterns", "--backends", "--head-dims", "--passes", "--batch", "--heads", "--out"):
        line = next(line for line in help_text.splitlines() if line.strip().startswith(option))
        block = help_text[help_text.index(line) :].split("\n  -")[0]
        assert len(block.split()) > 2, f"{option} has no help text"


def test_case_sets():
    targets = target_cases()
    assert {(c.attn_mode, c.n, c.batch) for c in targets if c.attn_mode != "all"} == {
        ("strided", 12288, 1), ("fixed", 12288, 1), ("strided", 3072, 8), ("strided", 65536, 1),
        ("strided", 1048576, 1),
    }  # fmt: skip
    models = {(c.attn_mode, c.n): c for c in model_cases()}
    # CIFAR-10's small model: 2 heads, q and k of width 64 zero-padded to v's 128, batch 8
    cifar = models[("strided", 3072)]
    assert (cifar.batch, cifar.heads, cifar.head_dim, cifar.local_attn_ctx) == (8, 2, 128, 96)
    enwik8 = models[("fixed", 12288)]
    assert (enwik8.batch, enwik8.heads, enwik8.head_dim, enwik8.summary_ctx) == (2, 8, 64, 32)
    assert ("all", 65536) in models


def test_the_gpu_branch_writes_ceilings_and_the_backward_thread(tmp_path, monkeypatch):
    """What only a GPU run reaches (the ceilings row, the thread setting), with stand-ins for the measurements: a
    key the ceilings file lacks failed there once (autograd_thread), after the CPU tests had passed."""
    import torch

    import benchmarks.bench_kernels as bench
    from sparse.kernels import call_graphs

    seen, graphs_on = [], []

    def fake_measure(case, backend, pass_, dtype, budget_s, device, forward_ms=None):
        seen.append(torch._C._is_multithreading_enabled())
        graphs_on.append(call_graphs.ENABLED)
        return {"pattern": case.attn_mode, "backend": backend, "n": case.n, "batch": case.batch, "heads": 16,
                "head_dim": 64, "pass": pass_, "status": "ok", "median_ms": 1.0, "useful_tflops": 1.0,
                "peak_gib": 0.1}  # fmt: skip

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(bench, "check_gpu", lambda device, dtype: None)
    monkeypatch.setattr(bench, "measure_ceilings", lambda: {"copy_gbps": 3000.0, "matmul_tflops": 700.0})
    monkeypatch.setattr(bench, "measure", fake_measure)
    monkeypatch.setattr(bench, "provenance", lambda: dict(gpu="H100", torch="2", triton="3", commit="abc", date="d"))
    out, ceilings = tmp_path / "kernels.csv", tmp_path / "ceilings.csv"
    args = ["--cases", "targets", "--n", "3072", "--backends", "triton,sdpa", "--passes", "fwd+bwd",
            "--autograd-thread", "caller", "--call-graphs", "off", "--out", str(out),
            "--ceilings-out", str(ceilings)]  # fmt: skip
    assert main(args) == 0
    assert read_rows(ceilings) == [
        {"gpu": "H100", "copy_gbps": "3000", "matmul_tflops": "700", "torch": "2", "triton": "3", "commit": "abc",
         "date": "d"}
    ]  # fmt: skip
    rows = read_rows(out)
    assert {r["n"] for r in rows} == {"3072"} and {r["autograd_thread"] for r in rows} == {"caller"}
    assert seen and not any(seen)  # every backward of the run on the caller's thread
    assert torch._C._is_multithreading_enabled()  # and the setting restored afterwards
    assert graphs_on and not any(graphs_on) and call_graphs.ENABLED  # --call-graphs off for the run, then restored


@pytest.mark.parametrize("refusal", ["gpu", "older-gpus plan"])
def test_a_gpu_run_the_rows_could_not_describe_is_refused_before_any_gpu_work(refusal, monkeypatch, capsys):
    """A GPU the kernels cannot serve (sparse.attention.check_gpu), or SPARSE_HOPPER_FEATURES=0 (rows named by the card
    would time the older GPUs' plan): refused before the ceilings are measured."""
    import torch

    import benchmarks.bench_kernels as bench

    def check_gpu(device, dtype):
        if refusal == "gpu":
            raise ValueError("backend 'triton' needs a GPU of compute capability 8.0 or newer")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(bench, "check_gpu", check_gpu)
    monkeypatch.setattr(bench, "measure_ceilings", lambda: pytest.fail("GPU work before the refusal"))
    if refusal == "older-gpus plan":
        monkeypatch.setenv("SPARSE_HOPPER_FEATURES", "0")
    with pytest.raises(SystemExit):
        main(["--cases", "targets", "--n", "3072", "--backends", "triton"])
    err = capsys.readouterr().err
    assert ("compute capability 8.0" in err) if refusal == "gpu" else ("profile_kernels" in err)


def test_graph_time_is_measured_for_triton_and_sdpa_and_its_failure_is_recorded(monkeypatch):
    """graph_ms (the same call replayed from a CUDA graph) only runs on a GPU: its branches with stand-ins."""
    import torch
    import triton.testing

    import benchmarks.bench_kernels as bench

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(triton.testing, "do_bench_cudagraph", lambda fn, rep, return_mode: 0.25)
    assert bench._graph_ms(lambda: None, "triton", slow=False) == (0.25, "")
    assert bench._graph_ms(lambda: None, "sdpa", slow=False) == (0.25, "")
    assert bench._graph_ms(lambda: None, "flex", slow=False) == (None, "")
    assert bench._graph_ms(lambda: None, "triton", slow=True) == (None, "no graph time: a call over 1 s")

    def capture_fails(fn, rep, return_mode):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")

    monkeypatch.setattr(triton.testing, "do_bench_cudagraph", capture_fails)
    ms, why = bench._graph_ms(lambda: None, "triton", slow=False)
    assert ms is None and why == "no graph time: RuntimeError: operation not permitted when stream is capturing"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench._graph_ms(lambda: None, "triton", slow=False) == (None, "")


def _sleep_on_call(monkeypatch, which: int) -> list:
    """sparse.attention as bench-kernels calls it, 1.1 s slower on its `which`-th call; returns the list of calls."""
    import time

    import benchmarks.bench_kernels as bench

    real_attention, calls = bench.sparse.attention, []

    def attention(*args, **kwargs):
        calls.append(1)
        if len(calls) == which:
            time.sleep(1.1)
        return real_attention(*args, **kwargs)

    monkeypatch.setattr(bench.sparse, "attention", attention)
    return calls


def test_a_compiling_first_call_does_not_make_a_cell_slow(monkeypatch):
    """Slow cells are timed by one run and get no graph time; whether a cell is slow is judged on a warm call,
    not on the first, which compiles the kernels (judged on the first, every freshly compiled fwd+bwd cell
    was a single run on the GPU until 8dee3b8cb96b)."""
    import torch

    import benchmarks.bench_kernels as bench
    from benchmarks.bench_kernels import Case

    judged = []
    _sleep_on_call(monkeypatch, 1)  # the first call compiles
    monkeypatch.setattr(bench, "_timer", lambda fn: judged.append(fn) or 1.0)
    case = Case(attn_mode="strided", n=32, batch=1, heads=1, head_dim=32, local_attn_ctx=4)
    row = bench.measure(case, "reference", "fwd", torch.float32, budget_s=60.0, device="cpu")
    assert row["status"] == "ok" and len(judged) == 1 and row["median_ms"] == "1.0000"  # timed by many calls


def test_a_slow_cell_is_one_warm_up_and_one_timed_run(monkeypatch):
    """A cell whose warm call takes over a second is measured by that call: two runs in all (the issue's "one warm-up
    and one timed run"), where until 2026-12-01 a third, timed run followed (up to 40 s more a cell at 1,048,576)."""
    import torch

    import benchmarks.bench_kernels as bench
    from benchmarks.bench_kernels import Case

    calls = _sleep_on_call(monkeypatch, 2)  # the warm call is slow
    monkeypatch.setattr(bench, "_timer", lambda fn: pytest.fail("a slow cell timed again"))
    case = Case(attn_mode="strided", n=32, batch=1, heads=1, head_dim=32, local_attn_ctx=4)
    row = bench.measure(case, "reference", "fwd", torch.float32, budget_s=60.0, device="cpu")
    assert row["status"] == "ok" and len(calls) == 2 and 1100 <= float(row["median_ms"]) < 5000


@pytest.mark.parametrize(("forward_s", "runs"), [(None, False), (5.0, True), (11.0, False)])
def test_a_forward_and_backward_cell_is_predicted_from_its_forward_in_this_process(forward_s, runs, monkeypatch):
    """SDPA's head dim 128 forward + backward at n = 1,048,576: 63 s a run at the assumed rate (skipped until
    2026-12-01), while its forward took 8.8 s; predicted from a measured forward, it runs when two runs fit the
    budget."""
    import torch

    import benchmarks.bench_kernels as bench
    from benchmarks.bench_kernels import Case

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (140 * 2**30, 141 * 2**30))
    case = Case(attn_mode="all", n=1_048_576, batch=1, heads=16, head_dim=128)
    forward_ms = None if forward_s is None else forward_s * 1e3
    reason = bench.skip_reason(case, "sdpa", "fwd+bwd", 90.0, forward_ms)
    if runs:
        assert reason is None
    elif forward_s is None:
        assert reason == "predicted 63 s per run at 250 TFLOP/s exceeds the budget"
    else:
        assert reason == "predicted 50 s per run (4.5x this process's forward, 11.0 s) exceeds the budget"
    assert bench.skip_reason(case, "sdpa", "fwd", 90.0, 5_000.0) is None  # a forward is predicted by the rate


def test_every_forward_is_measured_before_its_forward_and_backward(tmp_path, monkeypatch):
    """Whatever --passes' order, a case's forward cells come first and their times reach its fwd+bwd cells."""
    import benchmarks.bench_kernels as bench

    seen = []

    def fake_measure(case, backend, pass_, dtype, budget_s, device, forward_ms=None):
        seen.append((case.n, backend, pass_, forward_ms))
        return {"pattern": case.attn_mode, "backend": backend, "n": case.n, "batch": 1, "heads": 1, "head_dim": 32,
                "pass": pass_, "status": "ok", "median_ms": f"{case.n + len(backend):.4f}"}  # fmt: skip

    monkeypatch.setattr(bench, "measure", fake_measure)
    args = ["--cases", "sweep", "--n", "64,128", "--backends", "reference,sdpa", "--patterns", "all",
            "--head-dims", "32", "--passes", "fwd+bwd,fwd", "--out", str(tmp_path / "k.csv")]  # fmt: skip
    assert main(args) == 0
    assert seen == [
        (64, "reference", "fwd", None), (64, "sdpa", "fwd", None),
        (64, "reference", "fwd+bwd", 73.0), (64, "sdpa", "fwd+bwd", 68.0),
        (128, "reference", "fwd", None), (128, "sdpa", "fwd", None),
        (128, "reference", "fwd+bwd", 137.0), (128, "sdpa", "fwd+bwd", 132.0),
    ]  # fmt: skip


def test_tune_tiles_refuses_bad_arguments_before_any_work(capsys):
    """The tile search runs only on a GPU; its arguments are checked first, and every head dim it searches has
    an entry per pass in the tile table it edits."""
    from benchmarks import tune_tiles
    from sparse.kernels.plan import TILE_TABLE

    for args, text in ((["--kinds", "fwd,bogus"], "unknown kind"), (["--head-dim", "32"], "invalid choice")):
        with pytest.raises(SystemExit):
            tune_tiles.main(args)
        assert text in capsys.readouterr().err
    assert all((kind, d) in TILE_TABLE for kind in tune_tiles.SPACE for d in tune_tiles.CASES)


def test_each_cell_starts_with_no_block_mask_of_an_earlier_cell():
    """A flex block mask is live memory (1 GiB per mask head at n = 1,048,576): a cell's peak memory must not count
    the masks earlier cells left in the cache (the flex rows of 8d61ca2f20c4 did)."""
    import torch

    import benchmarks.bench_kernels as bench
    from benchmarks.bench_kernels import Case
    from sparse.flex import block_mask_for

    for mode, l in (("strided", 4), ("all", None)):
        case = Case(attn_mode=mode, n=32, batch=1, heads=1, head_dim=32, local_attn_ctx=l)
        row = bench.measure(case, "flex", "fwd", torch.float32, budget_s=60.0, device="cpu")
        assert row["status"] == "ok"
        assert block_mask_for.cache_info().currsize == 1  # this cell's mask alone


def test_a_call_captured_then_replayed_counts_as_run_from_a_graph(monkeypatch):
    """A slow cell's timed call is the second of its key: captured, then replayed (sparse/kernels/call_graphs.run).
    Counting replays alone, the 1,048,576 rows of 510e5ddd0d94 said call_graphs "off" for those cells."""
    import benchmarks.bench_kernels as bench

    counts = {"direct": 1, "captured": 0, "replayed": 0, "disabled_reason": None}
    monkeypatch.setattr(bench.call_graphs, "state", lambda: dict(counts))
    before = bench._from_graphs()
    counts["captured"] += 1  # the warm call of a slow cell
    assert bench._from_graphs() > before
