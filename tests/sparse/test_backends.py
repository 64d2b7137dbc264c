"""Every backend computes the same function: flex (forward on the CPU; forward and backward on a GPU) and sdpa
(attn_mode "all") against the float64 reference, for every pattern and part of the kernel tests."""

import os
import subprocess
import sys

import pytest
import torch

import sparse
from sparse.reference import reference_attention
from tests.sparse.test_kernels import PATTERNS, check_against_reference, make_inputs, rel_err


@pytest.mark.parametrize("name", list(PATTERNS))
@pytest.mark.parametrize("n", [7, 37])
def test_flex_forward_matches_reference(name, n, device):
    p = sparse.pattern(**PATTERNS[name])
    q, k, v, _ = make_inputs((2, 4, n, 32), torch.float32, device, seed=n)
    out = sparse.attention(q, k, v, p, backend="flex")
    ref = reference_attention(q.double(), k.double(), v.double(), p, scale=32**-0.5)
    assert rel_err(out, ref) < 2e-5


def test_sdpa_matches_reference_for_dense(device):
    check_against_reference(sparse.pattern("all"), (2, 3, 41, 32), torch.float32, device, backend="sdpa", tol=2e-5)


def test_flex_backward_is_refused_on_the_cpu_with_a_clear_message():
    if torch.cuda.is_available():
        pytest.skip("flex has a backward on a GPU")
    q = torch.randn(1, 1, 8, 32, requires_grad=True)
    with pytest.raises(NotImplementedError, match="backward needs a GPU"):
        sparse.attention(q, q, q, sparse.pattern("strided", local_attn_ctx=4), backend="flex")


def test_triton_on_cpu_tensors_without_the_interpreter_is_refused_by_name():
    """Without TRITON_INTERPRET=1 at import, Triton itself would fail in its launcher ("0 active drivers"); the check
    names the backend, the device and the ways out, also when the variable was set too late to count."""
    script = """
import os, torch, sparse
q = torch.randn(1, 1, 16, 32)
p = sparse.pattern("strided", local_attn_ctx=4)
for setting in ("unset", "late"):
    if setting == "late":
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        sparse.attention(q, q, q, p, backend="triton")
        print(setting, "| no error")
    except ValueError as error:
        print(setting, "|", error)
"""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" | ", 1) for line in result.stdout.splitlines() if " | " in line)
    assert "runs its kernels on CUDA tensors, got tensors on cpu" in lines["unset"]
    assert "backend 'reference'" in lines["unset"] and "TRITON_INTERPRET=1" in lines["unset"]
    assert "only after sparse.kernels was imported" not in lines["unset"]
    assert "only after sparse.kernels was imported" in lines["late"]
