"""The `sparse-repro` commands: help, bad input failing before training, NaN stop, exact resume after a kill."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from benchmarks.cli import COMMANDS, main
from benchmarks.recorder import read_rows
from tests.benchmarks.tiny_runs import needs_harness, tiny_config, write_enwik8


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("env", "fit", "validate", "test", "sample", "report", "reproduce", "bench-kernels"):
        assert name in COMMANDS and name in out


def test_an_unknown_config_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", "benchmarks/configs/cifar10/sparse-huge.yaml"])
    message = str(info.value)
    assert "no config file" in message and "benchmarks/configs/cifar10/strided-smoke.yaml" in message
    assert "pattern dense|strided|fixed" in message


@pytest.fixture
def data_root(tmp_path):
    write_enwik8(tmp_path / "data")
    return tmp_path / "data"


def _nothing_ran(tmp_path) -> bool:
    return not (tmp_path / "results" / "runs.csv").exists() and not (tmp_path / "run" / "checkpoints").exists()


@needs_harness
@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.seq_len", "128"], "seq_len"),  # linked from the data: typing it is an error
        (["--model.n_head", "3"], "n_head"),  # 3 heads do not divide d_model 16
        (["--trainer.precision", "13-bogus"], "precision"),
        (["--data.init_args.row_width", "7"], "row_width"),  # 64 is not a multiple of 7
        (["--model.attn_mode", "diagonal"], "attn_mode"),
    ],
)
def test_invalid_values_fail_before_training(tmp_path, data_root, capsys, args, message):
    config = tiny_config(tmp_path, data_root)
    with pytest.raises((SystemExit, ValueError)) as info:
        main(["fit", "--config", str(config), *args])
    text = str(info.value) + capsys.readouterr().err
    assert message in text
    assert _nothing_ran(tmp_path)


@needs_harness
def test_missing_data_fails_before_training_and_says_where(tmp_path):
    config = tiny_config(tmp_path, tmp_path / "nowhere")
    from datamodules import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="enwik8"):
        main(["fit", "--config", str(config)])
    assert _nothing_ran(tmp_path)


@needs_harness
def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, data_root, capsys):
    poison = [{"class_path": "tests.benchmarks.tiny_runs.PoisonAtStep", "init_args": {"step": 3}}]
    config = tiny_config(tmp_path, data_root, callbacks=poison)
    assert main(["fit", "--config", str(config)]) == 3
    err = capsys.readouterr().err
    assert "nan" in err and "step 3" in err and "last.ckpt" in err
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())


def _fit_in_subprocess(config, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "fit", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        cwd=os.getcwd(),
        timeout=300,
    )


@needs_harness
@pytest.mark.parametrize(
    "samples_per_epoch",
    [4, 12],  # 4: 2 steps per epoch, the checkpoint of step 4 is at an epoch end; 12: 6 steps, mid-epoch
    ids=["epoch-end", "mid-epoch"],
)
def test_a_killed_run_resumes_to_the_same_final_metrics(tmp_path, data_root, samples_per_epoch):
    data = {"train_samples_per_epoch": samples_per_epoch}
    # Uninterrupted, in this process.
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    main(["fit", "--config", str(tiny_config(reference_dir, data_root, data=data))])
    (reference,) = read_rows(reference_dir / "results" / "runs.csv")

    # The same run killed (os._exit) at step 5, after the checkpoint of step 4, then resumed from last.
    crashed_dir = tmp_path / "crashed"
    crashed_dir.mkdir()
    kill = [{"class_path": "tests.benchmarks.tiny_runs.ExitAtStep", "init_args": {"step": 5}}]
    crashing = tiny_config(crashed_dir, data_root, callbacks=kill, data=data)
    result = _fit_in_subprocess(crashing)
    assert result.returncode == 17, result.stderr[-2000:]
    assert (crashed_dir / "run" / "checkpoints" / "last.ckpt").exists()
    assert not (crashed_dir / "results" / "runs.csv").exists()  # no row for a run that did not finish
    resumed_config = tiny_config(crashed_dir, data_root, data=data)  # the same config without the killer
    assert main(["fit", "--config", str(resumed_config), "--ckpt_path", "last"]) == 0
    (resumed,) = read_rows(crashed_dir / "results" / "runs.csv")

    assert resumed["steps"] == reference["steps"] == "6"
    assert float(resumed["val_bpd"]) == pytest.approx(float(reference["val_bpd"]), abs=1e-5)
    assert float(resumed["train_bpd"]) == pytest.approx(float(reference["train_bpd"]), abs=1e-5)
    assert resumed["ckpt_path"].endswith("last.ckpt")
    curve = read_rows(crashed_dir / "results" / "curves.csv")
    assert {r["run_id"] for r in curve} == {resumed["run_id"]}  # the resumed run keeps its identity


@needs_harness
def test_test_subcommand_reads_the_last_checkpoint(tmp_path, data_root):
    config = tiny_config(tmp_path, data_root, trainer={"max_steps": 2})
    assert main(["fit", "--config", str(config)]) == 0
    assert main(["test", "--config", str(config), "--ckpt_path", "last"]) == 0
    fit, test = read_rows(tmp_path / "results" / "runs.csv")
    assert test["stage"] == "test" and test["run_id"] == fit["run_id"] and float(test["test_bpd"]) > 0


@needs_harness
def test_a_second_fresh_run_replaces_last_ckpt_and_says_so(tmp_path, data_root):
    # Lightning's default would write last-v1.ckpt beside the first run's last.ckpt, and a test naming last.ckpt
    # would have scored the first run's model under the first run's id (gpu_train.sh table2 on a reused machine).
    config = tiny_config(tmp_path, data_root, trainer={"max_steps": 2})
    assert main(["fit", "--config", str(config)]) == 0
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.warns(UserWarning, match="holds an earlier run's checkpoint"):
        assert main(["fit", "--config", str(config)]) == 0
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]
    assert main(["test", "--config", str(config), "--ckpt_path", str(last)]) == 0
    first, second, test = read_rows(tmp_path / "results" / "runs.csv")
    assert first["run_id"] != second["run_id"] and test["run_id"] == second["run_id"]
    with warnings.catch_warnings(record=True) as caught:  # continuing the run replaces nothing of another run's
        warnings.simplefilter("always")
        resume = tiny_config(tmp_path, data_root, trainer={"max_steps": 3})
        assert main(["fit", "--config", str(resume), "--ckpt_path", "last"]) == 0
    assert not [w for w in caught if "earlier run's checkpoint" in str(w.message)]


@needs_harness
def test_sample_writes_text_for_enwik8(tmp_path, data_root):
    config = tiny_config(tmp_path, data_root, trainer={"max_steps": 2})
    assert main(["fit", "--config", str(config)]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "samples"
    args = ["--ckpt_path", str(ckpt), "--out", str(out), "--num_samples", "2", "--length", "16", "--device", "cpu"]
    assert main(["sample", *args]) == 0
    text = (out / "enwik8-strided-smoke.txt").read_text()
    assert text.count("===== sample") == 2
    (fit,) = read_rows(tmp_path / "results" / "runs.csv")
    (row,) = read_rows(out / "samples.csv")
    assert row["file"] == "enwik8-strided-smoke.txt" and row["run_id"] == fit["run_id"]
    assert row["checkpoint_step"] == "2" and row["length"] == "16" and row["device"] == "cpu" and row["commit"]


def test_host_overhead_tool_runs(capsys):
    from benchmarks.host_overhead import main

    assert main(["--n", "32", "--calls", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "strided: forward" in out and "fixed: forward" in out
    assert out.count("(direct;") == 2 and out.count("(call graphs;") == 2


def test_host_breakdown_refuses_without_a_gpu(capsys):
    import torch

    from benchmarks.host_breakdown import main

    with pytest.raises(SystemExit):
        main(["--n", "8"])
    assert "--n >= 16" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            main([])
        assert "needs a CUDA GPU" in capsys.readouterr().err


def test_every_host_breakdown_piece_runs():
    """The pieces the GPU breakdown times, each run once on the CPU (kernels under the interpreter), so that a
    broken piece fails here and not in a device call."""
    import torch

    from benchmarks.host_breakdown import mean_us, pieces

    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name, fn in pieces(32, device=device, heads=2).items():
        assert mean_us(fn, calls=1, warmup=0) > 0, name
