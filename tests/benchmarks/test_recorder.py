"""The recorder: atomic appends (concurrent writers, a writer killed mid-run), schema, and the rows of a run."""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmarks.recorder import (
    CURVE_COLUMNS,
    KERNEL_COLUMNS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    append_rows,
    read_rows,
    recorded_variant,
)
from tests.benchmarks.tiny_runs import needs_harness, tiny_config, write_enwik8

COLUMNS = ["schema_version", "writer", "index", "payload"]


def test_run_columns_hold_the_issue_columns():
    issue8 = (
        "benchmark, pattern, preset, variant, n, layers, d_model, heads, params, steps, precision, devices, gpu, "
        "val_bpd, test_bpd, ms_per_iter, tokens_per_s, peak_gib, wall_s, seed, commit, date"
    ).split(", ")
    assert set(issue8) <= set(RUN_COLUMNS)
    issue7 = (
        "pattern, local_attn_ctx, summary_ctx, backend, n, batch, heads, head_dim, dtype, pass, median_ms, "
        "useful_tflops, peak_gib, tiles, gpu, torch, triton, commit, date"
    ).split(", ")
    assert set(issue7) <= set(KERNEL_COLUMNS)
    for columns in (RUN_COLUMNS, KERNEL_COLUMNS, CURVE_COLUMNS):
        assert columns[0] == "schema_version" and len(set(columns)) == len(columns)


def test_header_once_missing_columns_empty_and_schema_version(tmp_path):
    path = tmp_path / "sub" / "rows.csv"
    append_rows(path, [{"writer": "a", "index": 1}], COLUMNS)
    append_rows(path, [{"writer": "b", "payload": 'with, comma and "quotes"'}], COLUMNS)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and sum(line.startswith("schema_version") for line in lines) == 1
    rows = read_rows(path)
    assert rows[0] == {"schema_version": str(SCHEMA_VERSION), "writer": "a", "index": "1", "payload": ""}
    assert rows[1]["payload"] == 'with, comma and "quotes"'


def test_unknown_key_is_an_error_and_writes_nothing(tmp_path):
    path = tmp_path / "rows.csv"
    with pytest.raises(ValueError, match="unknown column.*bogus"):
        append_rows(path, [{"writer": "a"}, {"bogus": 1}], COLUMNS)
    assert not path.exists() or path.read_text() == ""


def test_other_header_is_refused_not_rewritten(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other columns"):
        append_rows(path, [{"writer": "x"}], COLUMNS)
    assert path.read_text() == "a,b\n1,2\n"


def test_read_rows_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "rows.csv"
    append_rows(path, [{"writer": "a", "index": i} for i in range(3)], COLUMNS)
    with open(path, "ab") as f:
        f.write(b"1,torn,9")  # no newline: a write that never finished
    assert [row["index"] for row in read_rows(path)] == ["0", "1", "2"]
    append_rows(path, [{"writer": "after"}], COLUMNS)  # never glued onto the torn line
    assert read_rows(path)[-1]["writer"] == "after"


def _writer(path: str, name: str, count: int) -> None:
    for i in range(count):
        append_rows(path, [{"writer": name, "index": i, "payload": "x" * (i % 300)}], COLUMNS)


def test_two_processes_appending_at_once_lose_and_duplicate_nothing(tmp_path):
    path = tmp_path / "rows.csv"
    count = 300
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(path), name, count)) for name in ("p", "q")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    rows = read_rows(path)
    assert len(rows) == 2 * count
    for name in ("p", "q"):
        assert sorted(int(r["index"]) for r in rows if r["writer"] == name) == list(range(count))
    assert path.read_text().count("schema_version") == 1


KILLED_WRITER = """
import sys
from benchmarks.recorder import append_rows
path = sys.argv[1]
COLUMNS = sys.argv[2].split(",")
i = 0
while True:
    append_rows(path, [{"writer": "k", "index": i, "payload": "y" * (i % 5000)} for _ in range(3)], COLUMNS)
    i += 1
"""


def test_a_writer_killed_mid_run_leaves_whole_rows(tmp_path):
    path = tmp_path / "rows.csv"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), ",".join(COLUMNS)], cwd=os.getcwd())
    deadline = time.time() + 60
    while (not path.exists() or path.stat().st_size < 200_000) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    text = path.read_text()
    assert text.endswith("\n"), "a killed writer left a partial line"
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == COLUMNS and len(rows) > 10
    assert all(len(row) == len(COLUMNS) for row in rows[1:])
    counts: dict[str, int] = {}
    for row in rows[1:]:
        counts[row[2]] = counts.get(row[2], 0) + 1
    assert set(counts.values()) == {3}, "rows of one append must land together"


def test_recorded_variant_marks_the_embedded_sample(tmp_path):
    class Data:
        variant = "prefix-1000000"
        data_dir = tmp_path

    assert recorded_variant(Data()) == "prefix-1000000"
    (tmp_path / "SAMPLE").write_text("sample")
    assert recorded_variant(Data()) == "sample-prefix-1000000"


@needs_harness
def test_a_fit_and_a_test_write_rows_with_provenance_and_a_curve(tmp_path):
    from benchmarks.lightning_cli import build_cli

    write_enwik8(tmp_path / "data")
    config = tiny_config(tmp_path, tmp_path / "data", trainer={"max_steps": 4})
    cli = build_cli(["fit", "--config", str(config)])
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    fit, test = read_rows(tmp_path / "results" / "runs.csv")
    assert fit["stage"] == "fit" and test["stage"] == "test" and fit["run_id"] == test["run_id"]
    assert (fit["benchmark"], fit["pattern"], fit["preset"], fit["variant"]) == (
        "enwik8",
        "strided",
        "smoke",
        "prefix-48000",
    )
    assert (fit["n"], fit["layers"], fit["d_model"], fit["heads"], fit["steps"]) == ("64", "1", "16", "2", "4")
    for key in ("params", "val_bpd", "ms_per_iter", "tokens_per_s", "wall_s", "commit", "date", "torch", "gpu"):
        assert fit[key], key
    assert fit["test_bpd"] == "" and float(test["test_bpd"]) > 0 and fit["peak_gib"] == ""  # no CUDA here
    assert fit["config"].endswith("tiny.yaml") and fit["schema_version"] == str(SCHEMA_VERSION)
    curve = read_rows(tmp_path / "results" / "curves.csv")
    assert [r["step"] for r in curve if r["train_bpd"]] == ["1", "2", "3", "4"]
    assert [r["step"] for r in curve if r["val_bpd"]] == ["2", "4"]
    assert all(r["run_id"] == fit["run_id"] for r in curve)


def test_peak_memory_is_the_max_over_steps_and_survives_the_move_to_cpu(monkeypatch):
    import types

    import torch

    from benchmarks.recorder import ResultsRecorder

    readings = iter([3 * 2**30, 1 * 2**30, 2 * 2**30])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: next(readings))
    recorder = ResultsRecorder()
    recorder._start_stage(types.SimpleNamespace(device=torch.device("cuda", 0)))
    recorder._update_peak()  # step 1: 3 GiB
    recorder._update_peak()  # step 2: 1 GiB (the module resets the peak at each batch start)
    recorder._update_peak()  # at on_fit_end, after Lightning moved the module to the CPU: 2 GiB
    assert recorder._peak_bytes == 3 * 2**30


def test_the_committed_result_files_take_rows_of_todays_columns():
    """A schema bump must convert the committed files: rows from a GPU run are appended to them with `tail -n +2`
    (benchmarks/gpu_session.sh's output has today's header), which would misalign them under an older header."""
    from pathlib import Path

    from benchmarks import kernel_resources, largest_model
    from benchmarks.bench_kernels import CEILING_COLUMNS

    results = Path(__file__).resolve().parents[2] / "results"
    for name, columns in (("kernels.csv", KERNEL_COLUMNS), ("runs.csv", RUN_COLUMNS), ("curves.csv", CURVE_COLUMNS),
                          ("device_ceilings.csv", CEILING_COLUMNS), ("largest_model.csv", largest_model.COLUMNS),
                          ("kernel_resources.csv", kernel_resources.COLUMNS)):  # fmt: skip
        lines = (results / name).read_text().splitlines()
        assert lines[0].split(",") == columns, f"results/{name}: header differs from the writer's columns"
        assert len(read_rows(results / name)) == len(lines) - 1, f"results/{name}: a row of another width"
