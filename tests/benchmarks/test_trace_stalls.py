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
