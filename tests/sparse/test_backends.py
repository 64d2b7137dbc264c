"""Every backend computes the same function: flex (forward on the CPU; forward and backward on a GPU) and sdpa
(attn_mode "all") against the float64 reference, for every pattern and part of the kernel tests."""

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
