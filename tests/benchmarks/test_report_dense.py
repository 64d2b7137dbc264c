"""Our kernel against each of SDPA's dense kernels: rows of forced kernels stay out of every other table and plot,
and their own table pairs them with ours only inside one process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.recorder import KERNEL_COLUMNS, append_rows
from benchmarks.report import README_TABLES, TABLES, report
from benchmarks.report_data import load

PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"
D1, D2 = "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"


@pytest.fixture
def results(tmp_path):
    shutil.copytree(PAPER_DIR, tmp_path / "paper")
    return tmp_path


def _cell(backend, pattern, ms, date, graph="", kernel="", status="ok", reason=""):
    return {"pattern": pattern, "local_attn_ctx": 128 if pattern == "strided" else "", "summary_ctx": "",
            "backend": backend, "n": 12288, "batch": 1, "heads": 16, "head_dim": 64, "dtype": "bfloat16",
            "pass": "fwd+bwd", "median_ms": ms if status == "ok" else "", "useful_tflops": 40.0, "peak_gib": 0.2,
            "status": status, "reason": reason, "gpu": "NVIDIA H200", "commit": date[:10], "date": date,
            "autograd_thread": "caller", "graph_ms": graph, "sdpa_kernel": kernel}  # fmt: skip


def _rows(results):
    append_rows(results / "kernels.csv", [
        _cell("triton", "strided", 0.25, D1, graph=0.24), _cell("sdpa", "all", 2.5, D1, graph=2.4, kernel="cudnn"),
        _cell("sdpa-flash", "all", 3.0, D1, graph=3.12, kernel="flash"),
        _cell("sdpa-math", "all", 50.0, D1, kernel="math"),
        _cell("sdpa-efficient", "all", "", D1, status="skipped",
              reason="no SDPA kernel: sdpa-efficient cannot take this call here (Memory efficient kernel not used)"),
        _cell("triton", "strided", 0.2, D2), _cell("sdpa", "all", 2.6, D2, kernel="cudnn"),  # no forced kernel in D2
    ], KERNEL_COLUMNS)  # fmt: skip


def test_forced_kernels_are_kept_apart_from_every_other_table(results):
    _rows(results)
    loaded = load(results)
    assert set(loaded.kernels["backend"]) == {"triton", "sdpa"}
    assert set(loaded.forced_sdpa["backend"]) == {"sdpa-flash", "sdpa-math", "sdpa-efficient"}
    assert "dense_kernels" in TABLES and "dense_kernels" not in README_TABLES  # linked from the target status
    assert list(TABLES).index("dense_kernels") == list(TABLES).index("kernel_targets") + 1


def test_each_dense_kernel_is_compared_inside_its_process(results):
    _rows(results)
    report(results, patterns=False)
    table = (results / "tables" / "dense_kernels.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| s")]
    assert len(rows) == 1  # D2's process forced no kernel
    row = rows[0]
    assert row[:8] == ["strided l=128", "12,288", "1", "16", "64", "bfloat16", "fwd+bwd", "0.250"]
    assert row[8] == "cudnn: 2.500 ms, 10.00x (graphs 10.00x)"  # torch's choice, named
    assert row[9] == ""  # cudnn not forced in that process
    assert row[10] == "3.000 ms, 12.00x (graphs 13.00x)"
    assert row[11] == "not offered: Memory efficient kernel not used"
    assert row[12] == "50.000 ms, 200.00x"  # no graph time recorded: eager only
    assert row[13:] == ["H200", "2025-01-01", D1]


def test_the_target_status_names_the_kernel_sdpa_ran(results):
    _rows(results)
    report(results, patterns=False)
    table = (results / "tables" / "kernel_target_status.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| strided l=128 | 12,288"))
    assert "| 2.600 (cudnn) |" in row  # the newest pair, D2's


def test_a_later_process_of_the_same_case_and_card_replaces_the_earlier_row(results):
    _rows(results)
    d3 = "2025-01-03T00:00:00Z"
    append_rows(results / "kernels.csv", [
        _cell("triton", "strided", 0.3, d3), _cell("sdpa", "all", 2.4, d3, kernel="cudnn"),
        _cell("sdpa-flash", "all", 3.6, d3, kernel="flash"),
    ], KERNEL_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table = (results / "tables" / "dense_kernels.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| s")]
    assert len(rows) == 1 and rows[0][7] == "0.300" and rows[0][10] == "3.600 ms, 12.00x" and rows[0][-1] == d3
