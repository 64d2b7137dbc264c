"""The batched device-call scripts (benchmarks/gpu_session.sh, gpu_train.sh) cannot run here, but they must not
rot: valid bash, every job their usage line names has a case, and every Python module they call exists."""

import importlib
import re
import subprocess
from pathlib import Path

import pytest

SCRIPTS = [Path("benchmarks/gpu_session.sh"), Path("benchmarks/gpu_train.sh")]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses_and_every_named_job_has_a_case(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    usage = re.search(r"\[([a-z0-9|-]+)\]\.\.\.", text)
    assert usage, "the usage line lists the jobs as [a|b|c]..."
    for job in usage.group(1).split("|"):
        assert re.search(rf"^\s+{re.escape(job)}\)", text, re.M), f"{script.name}: job {job!r} has no case"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_module_a_script_runs_exists(script):
    for module in set(re.findall(r"python3 -m (benchmarks\.[a-z_]+)", script.read_text())):
        importlib.import_module(module)


def test_table2_job_hands_fit_series_runs_it_accepts(tmp_path):
    """gpu_train.sh table2 builds its runs as quoted shell words (a note with spaces, optional profile and
    overrides): with python3 replaced by a recorder of its arguments, every run parses and names a real config."""
    import os

    from benchmarks.fit_series import parse_runs

    shim = tmp_path / "bin"
    shim.mkdir()
    args_file = tmp_path / "args.txt"
    (shim / "python3").write_text(
        f'#!/usr/bin/env bash\n[ "$2" = benchmarks.fit_series ] && printf "%s\\n" "${{@:3}}" > {args_file}\nexit 0\n'
    )
    (shim / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}", "OUT": str(tmp_path / "out"), "STEPS": "7",
           "TABLE2_CONFIGS": "enwik8/fixed-small cifar10/dense-small", "TABLE2_OVERRIDES": "model.compile_mode=default",
           "TABLE2_NOTE": "table2, compiled (default)"}  # fmt: skip
    subprocess.run(["bash", "benchmarks/gpu_train.sh", "table2"], check=True, env=env, capture_output=True)
    runs = parse_runs(args_file.read_text().splitlines())
    assert [r[0] for r in runs] == ["fit", "test", "fit", "test"]
    for run in runs:
        assert Path(run[1]).is_file()
        assert "recorder.note=table2, compiled (default), one process" in run and "model.compile_mode=default" in run
    assert "trainer.max_steps=7" in runs[0] and "profile.trace=true" in runs[0]
    env["TABLE2_TEST"], env["TABLE2_PROFILE"] = "0", "0"
    subprocess.run(["bash", "benchmarks/gpu_train.sh", "table2"], check=True, env=env, capture_output=True)
    runs = parse_runs(args_file.read_text().splitlines())
    assert [r[0] for r in runs] == ["fit", "fit"] and not any("profile.out" in a for r in runs for a in r)
