"""The band backward that computes each score once and sums dq across programs in a fixed order
(sparse/kernels/ordered_dq.py, plan.ORDERED_DQ): where the plan uses it, its gradients against the float64 reference
(windows shorter and longer than its tiles, odd lengths, several heads), its flags back at zero after each call, and
equal bits from two calls."""

import pytest
import torch

import sparse
from sparse.kernels import launch, plan
from tests.sparse.test_kernels import check_against_reference, make_inputs


def ordered_segments(p, n, head_dim=64, interpret=False, **switches):
    built = plan.build_plan(p, n, head_dim, interpret=interpret, **switches)
    return [launch.ordered_dq is not None for launch in built.launches]


def test_which_segments_take_the_ordered_backward():
    """Strided attention's local band (after the stride part in the backward) does; a band that comes first (local
    attention: nobody has written D yet), fixed attention's local blocks (whole groups) and the stride part do not."""
    strided = sparse.pattern("strided", local_attn_ctx=128)
    assert ordered_segments(strided, 12288) == [False, True]
    assert ordered_segments(strided, 12288, ordered_dq=False) == [False, False]
    assert ordered_segments(sparse.pattern("local", local_attn_ctx=128), 12288) == [False]
    assert not any(ordered_segments(sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32), 12288))
    ordered = plan.build_plan(strided, 12288, 64, interpret=False).launches[1]
    assert not ordered.one_grid and not ordered.reduce_read_back  # it adds to the stride part's sums itself


@pytest.mark.parametrize("l", [1, 5, 9, 40])
@pytest.mark.parametrize("n", [45, 70])
def test_ordered_backward_matches_the_reference(l, n, device):
    """Windows of 1 to 40 rows against the interpreter's 16-query, 32-key tiles: one to three contributors per
    query tile, the last tile cut by n."""
    p = sparse.pattern("strided", local_attn_ctx=l)
    assert ordered_segments(p, n, 32, interpret=device == "cpu") == [False, True]
    for dtype in (torch.float32, torch.bfloat16):
        check_against_reference(p, (2, 3, n, 32), dtype, device, seed=n + l)


def test_ordered_backward_switched_off_matches_the_reference(device, monkeypatch):
    monkeypatch.setattr(plan, "ORDERED_DQ", False)
    check_against_reference(sparse.pattern("strided", local_attn_ctx=9), (1, 2, 70, 32), torch.float32, device)


def test_flags_are_zero_after_each_call_and_two_calls_give_equal_bits(device):
    p = sparse.pattern("strided", local_attn_ctx=9)
    q, k, v, do = make_inputs((2, 2, 70, 32), torch.bfloat16, device, seed=5)
    grads = []
    for _ in range(2):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        out = sparse.attention(*inputs, p)
        grads.append(torch.autograd.grad(out, inputs, do))
        assert not launch._FLAGS[torch.device(device) if device == "cpu" else q.device].any()
    for first, second in zip(*grads):
        assert torch.equal(first, second)


@pytest.mark.cuda
def test_gpu_ordered_backward_gives_equal_bits_at_every_call():
    """Issue 7's strided 12,288 case, bf16: the programs that sum a query tile's dq run at once on the GPU and their
    waits decide the order; the bits must not depend on the timing."""
    p = sparse.pattern("strided", local_attn_ctx=128)
    q, k, v, do = make_inputs((1, 16, 12288, 64), torch.bfloat16, "cuda", seed=1)
    grads = []
    for _ in range(3):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        grads.append(torch.autograd.grad(sparse.attention(*inputs, p), inputs, do))
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            assert torch.equal(a, b)
    assert not launch._FLAGS[q.device].any()
