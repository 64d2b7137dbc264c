"""benchmarks/trace_stalls.py on a hand-made chrome trace whose answer is known."""

from __future__ import annotations

import gzip
import json

import pytest

from benchmarks.trace_stalls import main, summarize


def _trace(path):
    # One thread: aten::addmm from 0 to 1,000 us holding a 900 us cudaLaunchKernel whose kernel starts at 1,500 us
    # (500 us after the launch returned) and runs 500 us; a second kernel at 3,000 us after a GPU idle gap of 1 ms.
    events = [
        {"ph": "X", "cat": "cpu_op", "name": "aten::linear", "pid": 1, "tid": 7, "ts": 0, "dur": 1000},
        {"ph": "X", "cat": "cpu_op", "name": "aten::addmm", "pid": 1, "tid": 7, "ts": 10, "dur": 980},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mul", "pid": 1, "tid": 7, "ts": 1100, "dur": 2000},
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "pid": 1,
            "tid": 7,
            "ts": 50,
            "dur": 900,
            "args": {"correlation": 11},
        },
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "pid": 1,
            "tid": 7,
            "ts": 2900,
            "dur": 5,
            "args": {"correlation": 12},
        },
        {
            "ph": "X",
            "cat": "kernel",
            "name": "gemm",
            "pid": 0,
            "tid": 7,
            "ts": 1500,
            "dur": 500,
            "args": {"correlation": 11},
        },
        {
            "ph": "X",
            "cat": "kernel",
            "name": "mul",
            "pid": 0,
            "tid": 7,
            "ts": 3000,
            "dur": 100,
            "args": {"correlation": 12},
        },
        {"ph": "i", "name": "marker", "pid": 1, "tid": 7, "ts": 5},
    ]
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)


def test_summary_names_the_stall_and_the_gpu_gap(tmp_path):
    path = tmp_path / "t.trace.json.gz"
    _trace(path)
    text = summarize(path)
    assert "window 3.1 ms" in text
    assert "GPU busy 0.6 ms = 19% of the window" in text
    assert "GPU idle gaps >= 200 us: 1, 1.0 ms in all" in text and "aten::mul / aten::mul" in text
    # the 900 us launch sits inside linear / addmm, and its kernel started 550 us after the launch returned
    assert "900.0 cudaLaunchKernel" in text and "aten::linear / aten::addmm  550 us" in text
    assert "median 550 us" in text


def test_cli_refuses_a_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "absent.json.gz")])
    assert "no such trace file" in capsys.readouterr().err


def test_every_kernel_of_sparse_kernels_counts_as_ours():
    # A kernel missing from OUR_KERNELS counts as the model's time in results/tables/step_gpu.md, as the backward
    # kernels did until 2026-12-01: the list must name exactly the kernels the modules define.
    import importlib
    import pkgutil

    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    import sparse.kernels
    from benchmarks.trace_stalls import OUR_KERNELS, attention_kind

    defined = set()
    for info in pkgutil.iter_modules(sparse.kernels.__path__):
        module = importlib.import_module(f"sparse.kernels.{info.name}")
        for name, value in vars(module).items():
            if name.endswith("_kernel") and isinstance(value, (JITFunction, InterpretedFunction)):
                defined.add(name)
    assert defined == set(OUR_KERNELS)
    assert all(attention_kind(name) == "ours" for name in defined)
    assert attention_kind("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26...") == "vendor"
    assert attention_kind("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT") is None


_RULE = "-" * 70 + "  " + "  ".join(["-" * 12] * 10)


def _row(name, self_cpu, self_cuda, calls):
    cells = [
        name.rjust(70),
        "0.00%",
        self_cpu,
        "0.00%",
        self_cpu,
        self_cpu,
        self_cuda,
        "1.00%",
        self_cuda,
        "1us",
        calls,
    ]
    return "  ".join(cell.rjust(12) if i else cell for i, cell in enumerate(cells))


def _profile(step_gpu_line: str, rows: list[str]) -> str:
    header = "  ".join(
        ["Name".rjust(70), "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "Self CUDA"]
        + ["Self CUDA %", "CUDA total", "CUDA time avg", "# of Calls"]
    )
    table = "\n".join([_RULE, header, _RULE, *rows, _RULE, "Self CPU time total: 1.000ms", "Self CUDA time total: 9ms"])
    return (
        "# steps 100..101 of x.yaml on NVIDIA H200, sorted by self_cuda_time_total\n"
        f"{table}\n\n# the same, sorted by self_cpu_time_total\n{table}\n"
        f"# trace t: window 100.0 ms\n{step_gpu_line}\nGPU idle gaps >= 200 us: 0\n"
    )


def test_restate_counts_every_kernel_of_ours_once_and_keeps_the_traces_line(tmp_path, capsys):
    from benchmarks.trace_stalls import restate_step_gpu

    old = "# step-gpu: steps=2 window_ms=50.00 busy_ms=20.00 attention_ms=0.50 other_ms=19.60 attention_kernels=ours"
    rows = [
        _row("aten::mm", "4.066ms", "5.628ms", "102"),
        _row("_SparseAttentionBackward", "2.619ms", "2.600ms", "12"),  # an operator: its kernels are rows of their own
        _row("_dq_dkdv_kernel", "0.000us", "1.400ms", "12"),
        _row("_group_bwd_kernel", "0.000us", "1.200ms", "12"),
        _row("_sparse_fwd_kernel", "0.000us", "1.000ms", "24"),
        _row("void at::native::(anonymous namespace)::vectorized...", "0.000us", "800.000us", "24"),
    ]
    text = restate_step_gpu(_profile(old, rows), when="2026-12-01T00:00Z")
    lines = text.splitlines()
    index = lines.index(next(ln for ln in lines if ln.startswith("# step-gpu: ")))
    # (1.4 + 1.2 + 1.0) / 2 steps; the 1.3 ms gained leaves the other kernels' sum
    expected = "steps=2 window_ms=50.00 busy_ms=20.00 attention_ms=1.80 other_ms=18.30 attention_kernels=ours"
    assert lines[index] == f"# step-gpu: {expected}"
    assert "restated 2026-12-01T00:00Z" in lines[index + 1] and old[2:] in lines[index + 1]
    assert text.count("# step-gpu: ") == 1
    assert restate_step_gpu(text, when="later") == text  # a confirmed line is left as it is

    path = tmp_path / "step.txt"
    path.write_text(_profile(old, rows))
    assert main(["--restate", str(path)]) == 0
    assert expected in path.read_text() and expected in capsys.readouterr().out


def test_restate_refuses_a_table_that_lacks_kernels_the_trace_counted(tmp_path):
    from benchmarks.trace_stalls import restate_step_gpu

    old = "# step-gpu: steps=2 window_ms=50.00 busy_ms=20.00 attention_ms=3.00 other_ms=17.00 attention_kernels=ours"
    text = _profile(old, [_row("_sparse_fwd_kernel", "0.000us", "1.000ms", "24")])
    with pytest.raises(ValueError, match="do not hold every attention kernel"):
        restate_step_gpu(text, when="now")
    path = tmp_path / "step.txt"
    path.write_text(text)
    with pytest.raises(ValueError):
        main(["--restate", str(path)])
    assert path.read_text() == text  # nothing written
    with pytest.raises(SystemExit):
        main(["--restate", str(tmp_path / "absent.txt")])
