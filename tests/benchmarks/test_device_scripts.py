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
