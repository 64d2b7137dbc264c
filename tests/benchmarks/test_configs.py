"""Every config parses against the real signatures and follows the conventions; every smoke config trains two
steps on the CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from benchmarks.reproduce import BENCHMARKS, CONFIG_DIR, PAPER_PATTERN, PATTERNS, PRESETS, config_path, find_data
from tests.benchmarks.tiny_runs import HARNESS_IMPORT_ERROR, needs_harness

ALL_CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))
SMOKE = [(b, p) for b in BENCHMARKS for p in PATTERNS]
PAPER_CSV = Path(__file__).resolve().parents[2] / "results" / "paper" / "hyperparameters.csv"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_one_config_per_benchmark_pattern_preset():
    expected = {config_path(b, p, s) for b in BENCHMARKS for p in PATTERNS for s in PRESETS}
    assert set(ALL_CONFIGS) == expected


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_follows_the_conventions(path):
    benchmark, (pattern, preset) = path.parent.name, path.stem.split("-")
    text, config = path.read_text(), _load(path)
    model, trainer, data = config["model"], config["trainer"], config["data"]["init_args"]
    assert config["recorder"]["preset"] == preset
    assert model["attn_mode"] == ("all" if pattern == "dense" else pattern)
    assert "seq_len" not in model and "token_axes" not in model, "linked from the data section"
    assert model["d_model"] % model["n_head"] == 0
    assert config["seed_everything"] == data["seed"] == 0
    (choice,) = [line for line in text.splitlines() if line.startswith("# The paper's choice")]
    assert choice.endswith("this file.") == (pattern == PAPER_PATTERN[benchmark]), "the paper's choice is marked"
    if preset == "smoke":
        assert trainer["accelerator"] == "cpu"
        assert model["backend"] == ("sdpa" if pattern == "dense" else "reference")
        # an int 1 would be parsed as the float 1.0 (every batch)
        assert all(isinstance(trainer[k], int) and trainer[k] >= 2 for k in ("limit_val_batches", "limit_test_batches"))
    else:
        assert model["backend"] == ("sdpa" if pattern == "dense" else "triton")
    if preset != "paper":
        assert model["max_steps"] == trainer["max_steps"]
    if benchmark in ("enwik8", "audio"):
        assert data["row_width"] == model["local_attn_ctx"], "the paper's row width equals the stride"
    if preset == "paper":
        model_lines = text.split("\nmodel:\n")[1].split("\ndata:\n")[0].splitlines()
        assert all("#" in line for line in model_lines), "every paper value carries its source"


@pytest.mark.skipif(not PAPER_CSV.exists(), reason="results/paper/hyperparameters.csv is missing")
def test_paper_configs_match_the_papers_hyperparameters():
    with open(PAPER_CSV) as f:
        paper = {row["benchmark"]: row for row in csv.DictReader(f)}
    for benchmark in ("cifar10", "enwik8", "imagenet64"):
        row = paper[benchmark]
        config = _load(config_path(benchmark, row["pattern"], "paper"))
        model = config["model"]
        assert (model["n_layer"], model["d_model"], model["n_head"]) == (
            int(row["layers"]),
            int(row["d_model"]),
            int(row["heads"]),
        )
        assert model["ffn_multiple"] == float(row["ffn_multiple"]) and model["qk_ratio"] == float(row["qk_ratio"])
        assert model["dropout"] == pytest.approx(float(row["dropout"]))
        assert model["warmup_steps"] == 5000 and model["weight_decay"] == 0.01
        assert config["trainer"]["gradient_clip_val"] == 1.0
        if row["local_attn_ctx"]:
            assert model["local_attn_ctx"] == int(row["local_attn_ctx"])
        if row["lr"]:
            assert model["lr"] == pytest.approx(float(row["lr"]))


@needs_harness
@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_parses_against_the_signatures(path):
    from benchmarks.lightning_cli import SparseReproCLI, build_cli

    class ParseOnly(SparseReproCLI):
        def instantiate_classes(self) -> None:  # paper-size models are too big to build here
            pass

    import benchmarks.lightning_cli as lightning_cli

    original = lightning_cli.SparseReproCLI
    lightning_cli.SparseReproCLI = ParseOnly
    try:
        cli = build_cli(["--config", str(path)], run=False)
    finally:
        lightning_cli.SparseReproCLI = original
    assert cli.config["data"]["class_path"].startswith("datamodules.")


@needs_harness
@pytest.mark.parametrize(
    "override, text",
    [(["--model.n_head", "7"], "divisible by n_head (7)"), (["--trainer.accelerator", "mps"], "MPSAccelerator")],
)
def test_a_bad_value_is_one_line_before_any_data_or_device(override, text, tmp_path):
    """The model's or Trainer's own check, said in one line (SystemExit), not a page of jsonargparse frames."""
    from benchmarks.lightning_cli import build_cli

    args = ["fit", "--config", str(config_path("cifar10", "strided", "smoke")), *override,
            "--data.init_args.data_dir", str(tmp_path / "no-data-here"),
            "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        build_cli(args)
    message = str(stop.value.code)
    assert message.startswith("sparse-repro fit: bad configuration:") and text in message
    assert "\n" not in message and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """One decoding cache for the module (ImageNet's PNGs and the audio are decoded once, not per test)."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.skipif(bool(HARNESS_IMPORT_ERROR), reason=HARNESS_IMPORT_ERROR or "ok")
@pytest.mark.parametrize("benchmark, pattern", SMOKE, ids=[f"{b}/{p}" for b, p in SMOKE])
def test_smoke_config_trains_two_steps_on_the_cpu(tmp_path, monkeypatch, data_cache, benchmark, pattern):
    from benchmarks.lightning_cli import build_cli
    from benchmarks.recorder import read_rows
    from benchmarks.reproduce import SAMPLE_DIR

    root, reason = find_data(benchmark, tmp_path / "no-data-here", "smoke")
    if root is None:
        pytest.skip(reason)
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))  # read-only ../shared/data caches there
    args = [
        "fit",
        "--config", str(config_path(benchmark, pattern, "smoke")),
        "--data.init_args.data_dir", str(root),
        "--trainer.max_steps", "2",
        "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "2",
        "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.enable_progress_bar", "false",
        "--recorder.runs_path", str(tmp_path / "runs.csv"),
        "--recorder.curves_path", str(tmp_path / "curves.csv"),
    ]  # fmt: skip
    if benchmark in ("imagenet64", "audio") and root == SAMPLE_DIR:
        args += ["--data.init_args.cache_dir", str(data_cache)]
    build_cli(args)
    (row,) = read_rows(tmp_path / "runs.csv")
    assert row["status"] == "ok" and row["steps"] == "2" and float(row["val_bpd"]) > 0
    assert row["benchmark"] == benchmark and row["pattern"] == pattern and row["preset"] == "smoke"


@pytest.mark.skipif(bool(HARNESS_IMPORT_ERROR), reason=HARNESS_IMPORT_ERROR or "ok")
def test_fit_config_runs_fit_then_test_without_jsonargparse(tmp_path, monkeypatch, data_cache):
    """benchmarks/fit_config.py is the GPU image's path (its jsonargparse is too old for LightningCLI): the
    same config, fit and then test from the last checkpoint, one row per stage."""
    from benchmarks.fit_config import main
    from benchmarks.recorder import read_rows

    root, reason = find_data("enwik8", tmp_path / "no-data-here", "smoke")
    if root is None:
        pytest.skip(reason)
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))
    config = str(config_path("enwik8", "strided", "smoke"))
    common = [
        f"data.init_args.data_dir={root}",
        f"trainer.default_root_dir={tmp_path / 'run'}",
        "trainer.enable_progress_bar=false",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=2",
        f"recorder.runs_path={tmp_path / 'runs.csv'}",
        f"recorder.curves_path={tmp_path / 'curves.csv'}",
    ]
    assert main([config, "trainer.max_steps=2", "trainer.val_check_interval=2", *common]) == 0
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert last.exists()
    assert main(["test", config, f"ckpt_path={last}", "data.init_args.eval_min_context=64", *common]) == 0
    fit_row, test_row = read_rows(tmp_path / "runs.csv")
    assert (fit_row["stage"], test_row["stage"]) == ("fit", "test")
    assert float(test_row["test_bpd"]) > 0 and test_row["eval_min_context"] == "64"
    with pytest.raises(SystemExit, match="not key=value"):
        main([config, "trainer.max_steps"])


@pytest.mark.skipif(bool(HARNESS_IMPORT_ERROR), reason=HARNESS_IMPORT_ERROR or "ok")
def test_audio_trains_on_a_time_budget_without_held_out_data(tmp_path, monkeypatch, data_cache):
    """Table 4's 1,048,576 run on the shared excerpts (gpu_train.sh table4): eval_fraction=0 trains on all the
    audio, trainer.max_time (a mapping) bounds the wall clock, and the row keeps the training bits per byte."""
    from benchmarks.fit_config import main
    from benchmarks.recorder import read_rows

    root, reason = find_data("audio", tmp_path / "no-data-here", "smoke")
    if root is None:
        pytest.skip(reason)
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))
    args = [
        str(config_path("audio", "dense", "smoke")),
        f"data.init_args.data_dir={root}",
        f"data.init_args.cache_dir={data_cache}",
        "data.init_args.eval_fraction=0",
        "trainer.limit_val_batches=0",
        "trainer.max_time={seconds: 60}",
        "trainer.max_steps=2",
        "trainer.enable_progress_bar=false",
        f"trainer.default_root_dir={tmp_path / 'run'}",
        f"recorder.runs_path={tmp_path / 'runs.csv'}",
        f"recorder.curves_path={tmp_path / 'curves.csv'}",
    ]
    assert main(args) == 0
    (row,) = read_rows(tmp_path / "runs.csv")
    assert row["status"] == "ok" and row["steps"] == "2" and float(row["train_bpd"]) > 0 and row["val_bpd"] == ""


@pytest.mark.skipif(bool(HARNESS_IMPORT_ERROR), reason=HARNESS_IMPORT_ERROR or "ok")
def test_step_profiler_writes_where_the_time_went(tmp_path, monkeypatch, data_cache):
    from benchmarks.fit_config import main
    from benchmarks.step_profiler import StepProfiler

    root, reason = find_data("enwik8", tmp_path / "no-data-here", "smoke")
    if root is None:
        pytest.skip(reason)
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))
    out = tmp_path / "profile.txt"
    args = [
        str(config_path("enwik8", "strided", "smoke")),
        f"data.init_args.data_dir={root}",
        "trainer.max_steps=4",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        f"trainer.default_root_dir={tmp_path / 'run'}",
        f"recorder.runs_path={tmp_path / 'runs.csv'}",
        f"recorder.curves_path={tmp_path / 'curves.csv'}",
        f"profile.out={out}",
        "profile.start_step=1",
        "profile.steps=2",
        "profile.trace=true",
    ]
    assert main(args) == 0
    text = out.read_text()
    assert text.startswith("# steps 1..2 of ") and "strided-smoke.yaml on cpu" in text and "aten::" in text
    # the chrome trace and its reading (benchmarks/trace_stalls.py) come with it
    assert (tmp_path / "profile.trace.json.gz").is_file()
    assert "# trace profile.trace.json.gz: window" in text and "no GPU events in the trace" in text
    with pytest.raises(ValueError, match="steps"):
        StepProfiler(out=str(out), steps=0)


def test_fit_series_refuses_a_malformed_run_before_any_runs():
    from benchmarks.fit_series import main, parse_runs

    with pytest.raises(ValueError, match="run 2 .*expected \\[stage\\] CONFIG.yaml"):
        parse_runs(["fit a.yaml x=1", "fit trainer.max_steps=2"])
    with pytest.raises(ValueError, match="not key=value"):
        parse_runs(["test a.yaml ckpt_path"])
    with pytest.raises(ValueError, match="No closing quotation"):
        parse_runs(["fit a.yaml 'recorder.note=open"])
    with pytest.raises(SystemExit):  # argparse's error: exit 2, nothing ran
        main(["fit a.yaml", "oops"])


@pytest.mark.skipif(bool(HARNESS_IMPORT_ERROR), reason=HARNESS_IMPORT_ERROR or "ok")
def test_fit_series_runs_in_one_process_and_goes_on_after_a_failure(tmp_path, monkeypatch, data_cache):
    """gpu_train.sh table2's path: fit, a run that fails, then test, in one process; the failure is counted,
    the others record their rows (a quoted note with spaces stays one override)."""
    from benchmarks.fit_series import main
    from benchmarks.recorder import read_rows

    root, reason = find_data("enwik8", tmp_path / "no-data-here", "smoke")
    if root is None:
        pytest.skip(reason)
    monkeypatch.setenv("XDG_CACHE_HOME", str(data_cache))
    config = config_path("enwik8", "strided", "smoke")
    common = (
        f"data.init_args.data_dir={root} trainer.default_root_dir={tmp_path / 'run'} trainer.enable_progress_bar=false "
        f"trainer.limit_val_batches=1 trainer.limit_test_batches=2 recorder.runs_path={tmp_path / 'runs.csv'} "
        f"recorder.curves_path={tmp_path / 'curves.csv'} 'recorder.note=table2, one process'"
    )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    runs = [
        f"fit {config} {common} trainer.max_steps=2 trainer.val_check_interval=2",
        f"fit {config} {common} trainer.max_steps=2 data.class_path=datamodules.NoSuchModule",
        f"test {config} {common} ckpt_path={last}",
    ]
    assert main(runs) == 1
    fit_row, test_row = read_rows(tmp_path / "runs.csv")
    assert (fit_row["stage"], test_row["stage"]) == ("fit", "test")
    assert fit_row["note"] == test_row["note"] == "table2, one process"


def test_fit_config_help_and_a_missing_config(capsys):
    from benchmarks.fit_config import main

    assert main(["--help"]) == 0 and "Run `fit` from a config" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no config file"):
        main(["test", "benchmarks/configs/nope.yaml"])
