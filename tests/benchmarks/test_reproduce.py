"""The main job: names checked, data found or skipped with a reason, rows appended, report, summary."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import benchmarks.reproduce as reproduce_module
from benchmarks.recorder import RUN_COLUMNS, append_rows, read_rows
from benchmarks.reproduce import (
    BENCHMARKS,
    PATTERNS,
    RunSummary,
    config_path,
    find_data,
    main,
    parse_names,
    reproduce,
    summary_table,
)
from tests.benchmarks.tiny_runs import needs_harness, write_enwik8

PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "cifar10,mnist"], "unknown benchmark 'mnist'; valid: cifar10, enwik8, imagenet64, audio"),
        (["--patterns", "diagonal"], "unknown pattern 'diagonal'; valid: dense, strided, fixed"),
        (["--preset", "huge"], "invalid choice: 'huge'"),
    ],
)
def test_unknown_names_are_errors_listing_the_valid_ones(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_presets_beyond_smoke_need_a_gpu(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        main(["--preset", "small"])
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_names_and_config_paths():
    assert parse_names(None, BENCHMARKS, "benchmark") == list(BENCHMARKS)
    assert parse_names("enwik8, audio", BENCHMARKS, "benchmark") == ["enwik8", "audio"]
    with pytest.raises(ValueError, match="valid: dense, strided, fixed"):
        config_path("cifar10", "sparse", "smoke")
    assert config_path("enwik8", "fixed", "paper").name == "fixed-paper.yaml"


def test_data_is_found_in_order_and_the_sample_only_for_smoke(tmp_path, monkeypatch):
    shared, sample = tmp_path / "shared", tmp_path / "sample"
    monkeypatch.setattr(reproduce_module, "SHARED_DIR", shared)
    monkeypatch.setattr(reproduce_module, "SAMPLE_DIR", sample)
    write_enwik8(sample)
    assert find_data("enwik8", tmp_path / "data", "smoke") == (sample, "")
    root, reason = find_data("enwik8", tmp_path / "data", "small")
    assert root is None and "smoke preset only" in reason
    write_enwik8(shared)
    assert find_data("enwik8", tmp_path / "data", "smoke")[0] == shared
    write_enwik8(tmp_path / "data")
    assert find_data("enwik8", tmp_path / "data", "smoke")[0] == tmp_path / "data"
    root, reason = find_data("imagenet64", tmp_path / "data", "smoke")
    assert root is None and "no ImageNet photographs" in reason


def test_the_embedded_sample_is_small_and_documented():
    sample = reproduce_module.SAMPLE_DIR
    files = [p for p in sample.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 3_000_000
    assert (sample / "SAMPLE").is_file() and (sample / "README.md").is_file()
    assert not list(sample.rglob("imagenet*")), "no ImageNet photographs may be shipped"
    for benchmark in ("cifar10", "enwik8", "audio"):
        assert find_data(benchmark, sample, "smoke")[0] == sample


def test_summary_table_has_one_row_per_run():
    table = summary_table([RunSummary("cifar10", "dense", "smoke", "ok", "sample-subset-160-40", 7.9, 7.95, 3.0)])
    assert "| cifar10 | dense | smoke | sample-subset-160-40 | ok | 7.900 | 7.950 | 3 |" in table


@needs_harness
def test_a_tiny_reproduce_appends_rows_skips_missing_data_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce_module, "SHARED_DIR", tmp_path / "no-shared")
    monkeypatch.setattr(reproduce_module, "SAMPLE_DIR", tmp_path / "no-sample")
    data = tmp_path / "data"
    write_enwik8(data)
    results = tmp_path / "results"
    shutil.copytree(PAPER_DIR, results / "paper")
    committed = {"run_id": "gpu1", "stage": "fit", "benchmark": "enwik8", "pattern": "dense", "preset": "small",
                 "variant": "prefix-4154399", "n": 12288, "steps": 2000, "max_steps": 2000, "val_bpd": 1.9,
                 "ms_per_iter": 120.0, "gpu": "NVIDIA H100 80GB HBM3", "date": "2025-01-01T00:00:00Z"}  # fmt: skip
    append_rows(results / "runs.csv", [committed], RUN_COLUMNS)
    before = (results / "runs.csv").read_bytes()

    quick = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false"]
    summaries = reproduce(
        "smoke", ["cifar10", "enwik8"], ["dense"], data, results, tmp_path / "runs", quick, samples=1, report=True
    )
    cifar, enwik8 = summaries
    assert cifar.status.startswith("skipped: no cifar10 data in") and "cifar-10-batches-py" in cifar.status
    assert enwik8.status == "ok" and enwik8.variant == "prefix-48000" and enwik8.val_bpd and enwik8.test_bpd
    assert (results / "runs.csv").read_bytes().startswith(before), "rows are appended, never rewritten"
    rows = read_rows(results / "runs.csv")
    assert [(r["run_id"] == "gpu1", r["stage"], r["preset"]) for r in rows] == [
        (True, "fit", "small"),
        (False, "fit", "smoke"),
        (False, "test", "smoke"),
    ]
    table2 = (results / "tables" / "table2.md").read_text()
    dense = next(line for line in table2.splitlines() if "Enwik8" in line and "| dense |" in line)
    assert "1.900 (val)" in dense and "| small |" in dense, "the smoke run must not hide the committed GPU row"
    assert not (results / "samples").exists(), "samples are drawn from the paper's pattern only (fixed on Enwik8)"
    assert (results / "REPORT.md").is_file()


def test_patterns_constant_matches_the_configs():
    assert PATTERNS == ("dense", "strided", "fixed")
