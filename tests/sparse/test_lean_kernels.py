"""The two ways the kernels cut work per tile (sparse/kernels/plan.py's LEAN_MASKS and REDUCE_READ_BACK): a band's
interior tiles skip the mask, and a later band segment adds its dq, dk, dv by TMA reduction instead of reading them
back. Here: the interior ranges and the band mask itself against a brute-force mask, the interpreter's stand-in for
the TMA reduction against round-to-nearest-even sums, where the plan uses each, and every pattern's output and
gradients with each switch off (test_kernels covers them on)."""

import itertools
import os

import numpy as np
import pytest
import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

import sparse
from sparse.kernels import plan
from sparse.kernels.geometry import band_interior, band_interior_queries, band_positions, tile_allowed
from tests.sparse.test_kernels import PATTERNS, check_against_reference

# The helper kernels below take CPU tensors: they run under the interpreter (the kernels' own tests cover the GPU).
interpreter_only = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="runs under the interpreter")


@triton.jit
def _interior_kernel(OUT, first, lo, hi, window, n, group, group_len, step, group_stride,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_WINDOW: tl.constexpr):  # fmt: skip
    a, b = band_interior(first, lo, hi, window, BLOCK_M, BLOCK_N, HAS_WINDOW)
    c, d = band_interior_queries(
        first, lo, hi, window, n, group, group_len, step, group_stride, BLOCK_M, BLOCK_N, HAS_WINDOW
    )
    tl.store(OUT + tl.arange(0, 4), tl.where(tl.arange(0, 4) == 0, a, tl.where(tl.arange(0, 4) == 1, b,
             tl.where(tl.arange(0, 4) == 2, c, d))))  # fmt: skip


def _interior(*args, **constexprs) -> list[int]:
    out = torch.zeros(4, dtype=torch.int32)
    _interior_kernel[(1,)](out, *args, **constexprs)
    return out.tolist()


def _allowed(t, u, window, exclude_self):
    return u <= t - exclude_self and (window == 0 or u > t - window)


@interpreter_only
@pytest.mark.parametrize("block_m, block_n", [(64, 32), (32, 64), (16, 16), (64, 64)])
@pytest.mark.parametrize("window", [0, 5, 96, 128, 200])
def test_interior_tiles_allow_every_pair_and_miss_none_of_the_window(block_m, block_n, window):
    """For query tiles of block_m rows streaming key tiles of block_n (forward, dq) and key tiles of block_m streaming
    query tiles of block_n (dk/dv), in a band of step 1 or in group 2 of a stride part of step 3 (n = 700: its last
    row is missing): every tile the helpers call interior allows every pair for EXCLUDE_SELF 0 and 1, and for dk/dv
    holds only existing queries; with a window, the forward's interior is every fully allowed key tile below the
    query tile (one run of tiles)."""
    n = 700
    for step, group, group_stride in ((1, 0, 0), (3, 2, 1)):
        group_len = -(-n // step)
        existing = sum(1 for t in range(group_len) if group * group_stride + t * step < n)
        args = (n, group, group_len, step, group_stride)
        for first in range(0, group_len, block_m):  # query tiles
            lo = max(0, first - window + 1) // block_n * block_n if window else 0
            hi = min(first + block_m, group_len)
            a, b, _, _ = _interior(first, lo, hi, window, *args, BLOCK_M=block_m, BLOCK_N=block_n,
                                   HAS_WINDOW=window > 0)  # fmt: skip
            assert lo <= a <= b <= hi
            full = [s for s in range(lo, hi, block_n) if all(
                _allowed(t, u, window, x) for t in range(first, first + block_m) for u in range(s, s + block_n)
                for x in (0, 1))]  # fmt: skip
            inside = [s for s in range(lo, hi, block_n) if a <= s < b]
            assert set(inside) <= set(full), (first, a, b, full)
            if window:
                assert inside == [s for s in full if s + block_n <= first]
        for first_key in range(0, group_len, block_m):  # key tiles
            lo = first_key // block_n * block_n
            hi = min(group_len, first_key + block_m - 1 + window) if window else group_len
            _, _, c, d = _interior(first_key, lo, hi, window, *args, BLOCK_M=block_n, BLOCK_N=block_m,
                                   HAS_WINDOW=window > 0)  # fmt: skip
            assert min(lo, hi) <= c <= d <= max(lo, hi)
            for s in range(lo, hi, block_n):
                if c <= s < d:
                    assert s + block_n <= existing, (first_key, s)
                    assert all(_allowed(t, u, window, x) for t in range(s, s + block_n)
                               for u in range(first_key, first_key + block_m) for x in (0, 1))  # fmt: skip


@triton.jit
def _mask_kernel(OUT, q_first, k_first, n, group, group_len, step, group_stride, window, BLOCK: tl.constexpr,
                 HAS_WINDOW: tl.constexpr, EXCLUDE_SELF: tl.constexpr):  # fmt: skip
    q_index = q_first + tl.arange(0, BLOCK)
    k_index = k_first + tl.arange(0, BLOCK)
    q_pos, q_valid = band_positions(group, q_index, n, group_len, step, group_stride)
    k_pos, k_valid = band_positions(group, k_index, n, group_len, step, group_stride)
    allowed = tile_allowed(
        q_index, q_pos, q_valid, k_index, k_pos, k_index, k_valid, window, 1, False, HAS_WINDOW, EXCLUDE_SELF, False
    )  # fmt: skip
    rows = tl.arange(0, BLOCK)
    tl.store(OUT + rows[:, None] * BLOCK + rows[None, :], allowed.to(tl.int32))


@interpreter_only
@pytest.mark.parametrize("window, exclude_self", [(0, 0), (0, 1), (5, 0), (5, 1), (40, 1)])
def test_band_mask_is_the_rule_where_both_rows_exist(window, exclude_self):
    """A band segment's mask (geometry.tile_allowed over band_positions' existence) against the rule by brute force:
    query t attends key u of its group where both rows exist (in-group index below group_len, position below n) and
    u <= t - exclude_self, u > t - window with a window; for a whole group, a group cut by n, a group that starts at or
    past n, and tiles that hang over the group's end."""
    block = 16
    for n, group, group_len, step, group_stride in (
        (700, 0, 700, 1, 0),  # one band of step 1
        (700, 2, 234, 3, 1),  # a stride part's group whose last row is past n
        (700, 5, 100, 3, 150),  # groups of 100 rows every 150 positions, step 3: group 5 starts past n
        (700, 5, 100, 3, 140),  # group 5 starts at n: (n - 1 - first) // step rounds toward zero in Triton
        (64, 1, 40, 1, 40),  # contiguous groups of 40 rows: group 1 is cut by n at 24 rows
    ):
        exists = [t < group_len and group * group_stride + t * step < n for t in range(256)]
        for q_first, k_first in ((0, 0), (16, 0), (16, 16), (32, 16), (224, 208), (96, 80)):
            out = torch.zeros(block, block, dtype=torch.int32)
            _mask_kernel[(1,)](out, q_first, k_first, n, group, group_len, step, group_stride, window, BLOCK=block,
                               HAS_WINDOW=window > 0, EXCLUDE_SELF=exclude_self)  # fmt: skip
            want = [[int(exists[t] and exists[u] and _allowed(t, u, window, exclude_self))
                     for u in range(k_first, k_first + block)] for t in range(q_first, q_first + block)]  # fmt: skip
            assert out.tolist() == want, (n, group, group_len, step, group_stride, q_first, k_first)


@triton.jit
def _reduce_kernel(DESC, X, first, ROWS: tl.constexpr, D: tl.constexpr):
    x = tl.load(X + tl.arange(0, ROWS)[:, None] * D + tl.arange(0, D)[None, :])
    DESC.atomic_add([0, 1, first, 0], x.reshape(1, 1, ROWS, D))


@interpreter_only
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_interpreter_reduction_adds_with_one_rounding_and_drops_rows_past_the_tensor(dtype):
    torch.manual_seed(0)
    target = torch.randn(1, 2, 20, 16).to(dtype)
    value = torch.randn(16, 16).to(dtype)
    before = target.clone()
    _reduce_kernel[(1,)](TensorDescriptor(target, list(target.shape), list(target.stride()), [1, 1, 16, 16]),
                         value, 8, ROWS=16, D=16)  # fmt: skip
    want = before.clone()
    want[0, 1, 8:] = (before[0, 1, 8:].float() + value[:12].float()).to(dtype)  # torch rounds to nearest even
    assert torch.equal(target, want)


def test_reduction_rounds_bfloat16_ties_to_even_and_carries_into_the_exponent():
    from sparse.kernels.interpreter_support import _from_float32

    values = np.array([1.00390625, 1.01171875, 1.99609375 + 2**-9, -3.0], dtype=np.float32)
    want = torch.tensor(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(_from_float32(values, tl.bfloat16), want)


def test_reduction_is_planned_for_a_later_band_whose_tiles_stay_in_their_group(monkeypatch):
    strided = plan.build_plan(sparse.pattern("strided", local_attn_ctx=128), 12288, 64, interpret=False)
    stride_part, band = strided.launches
    assert band.reduce_read_back and not stride_part.reduce_read_back  # the stride part: whole groups, first
    off = plan.build_plan(sparse.pattern("strided", local_attn_ctx=128), 12288, 64, interpret=False,
                          reduce_read_back=False)  # fmt: skip
    assert not any(launch.reduce_read_back for launch in off.launches)
    # Fixed's local blocks run whole groups and its summary gathers keys: no reduction there.
    fixed = plan.build_plan(sparse.pattern("fixed", local_attn_ctx=128, summary_ctx=32), 12288, 64, interpret=False)
    assert not any(launch.reduce_read_back for launch in fixed.launches)


@pytest.mark.parametrize("name", ["strided", "fixed", "local", "strided-stride"])
@pytest.mark.parametrize("setting", ["LEAN_MASKS", "REDUCE_READ_BACK"])
def test_each_switch_off_still_matches_the_reference(name, setting, device, monkeypatch):
    monkeypatch.setattr(plan, setting, False)
    for dtype in (torch.float32, torch.bfloat16):
        check_against_reference(sparse.pattern(**PATTERNS[name]), (1, 2, 45, 32), dtype, device)


def test_every_tile_kind_combination_compiles_under_both_switches(device, monkeypatch):
    """The lean and the full forms, with and without the reduction, agree to rounding on the interpreter."""
    results = []
    for lean, reduce in itertools.product([True, False], repeat=2):
        monkeypatch.setattr(plan, "LEAN_MASKS", lean)
        monkeypatch.setattr(plan, "REDUCE_READ_BACK", reduce)
        g = torch.Generator().manual_seed(3)
        q, k, v, do = (torch.randn(1, 2, 70, 32, generator=g).to(device) for _ in range(4))
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        out = sparse.attention(q, k, v, sparse.pattern("strided", local_attn_ctx=9))
        results.append((out, *torch.autograd.grad(out, (q, k, v), do)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
