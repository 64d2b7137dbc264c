"""Masks against brute-force definitions written here, element by element; segments tile them exactly."""

import itertools

import pytest
import torch

import sparse
from sparse.patterns import segment_mask


def brute_force(attn_mode, n, l=None, c=None, part="merged", distinct_heads=False, head=0):
    """The definitions of issue 3 / PAPER.md section 5, one element at a time."""
    m = torch.zeros(n, n, dtype=torch.bool)
    for i, j in itertools.product(range(n), range(n)):
        if j > i:
            continue
        if attn_mode == "all":
            ok = True
        elif attn_mode in ("local", "strided"):
            a1, a2 = i - j < l, (i - j) % l == 0
            ok = {"merged": a1 or a2, "local": a1, "stride": a2}["local" if attn_mode == "local" else part]
        else:
            start = l - c
            if distinct_heads:
                verts = l // c
                start = ((verts - 1 - head) % verts) * c
            a1, a2 = j // l == i // l, start <= j % l < start + c
            ok = {"merged": a1 or a2, "local": a1, "summary": a2}[part]
        m[i, j] = ok
    return m


CASES = [
    ("all", None, None, "merged", False),
    ("local", 1, None, "merged", False),
    ("local", 5, None, "merged", False),
    ("strided", 1, None, "merged", False),
    ("strided", 4, None, "merged", False),
    ("strided", 7, None, "local", False),
    ("strided", 3, None, "stride", False),
    ("strided", 30, None, "merged", False),
    ("fixed", 4, 1, "merged", False),
    ("fixed", 6, 6, "merged", False),
    ("fixed", 8, 3, "summary", False),
    ("fixed", 5, 2, "local", False),
    ("fixed", 8, 2, "merged", True),
    ("fixed", 8, 4, "summary", True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("n", [1, 7, 23])
def test_mask_matches_brute_force_and_segments_tile_it(case, n):
    attn_mode, l, c, part, distinct = case
    heads = 5
    p = sparse.pattern(attn_mode, local_attn_ctx=l, summary_ctx=c, part=part, distinct_heads=distinct)
    mask = p.mask(n, num_heads=heads)
    assert mask.dtype == torch.bool
    assert mask.shape == ((heads if distinct else 1), n, n)
    for h in range(heads):
        expected = brute_force(attn_mode, n, l, c, part, distinct, head=h)
        assert torch.equal(mask[h if distinct else 0], expected)
        covered = sum(segment_mask(s, n, h).int() for s in p.segments(n))
        assert covered.max() <= 1, "segments overlap"
        assert torch.equal(covered.bool(), expected), "segments do not tile the pattern"
        for i in (0, n // 2, n - 1):
            assert torch.equal(p.allowed_keys(i, head=h), torch.nonzero(expected[i]).flatten())
    assert p.allowed_count(n, heads) == int(mask.sum()) * (1 if distinct else heads)


def test_exact_flops_and_density():
    p = sparse.pattern("strided", local_attn_ctx=128)
    n = 12288
    count = p.allowed_count(n)
    # i - j < l gives min(i + 1, l) keys; the stride part adds floor(i / l) more.
    expected = sum(min(i + 1, 128) + i // 128 for i in range(n))
    assert count == expected
    assert p.flops(n, batch=2, num_heads=3, head_dim=64) == 4 * 2 * 3 * 64 * count
    assert p.flops(n, 2, 3, 64, backward=True) == int(4 * 2 * 3 * 64 * count * 2.5)
    assert 0.0 < p.element_density(n) < 0.02
    assert sparse.pattern("all").element_density(n) == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(attn_mode="banded"), ValueError, "attn_mode"),
        (dict(attn_mode="strided"), ValueError, "local_attn_ctx"),
        (dict(attn_mode="strided", local_attn_ctx=0), ValueError, "local_attn_ctx"),
        (dict(attn_mode="strided", local_attn_ctx=2.5), TypeError, "local_attn_ctx"),
        (dict(attn_mode="fixed", local_attn_ctx=8), ValueError, "summary_ctx"),
        (dict(attn_mode="fixed", local_attn_ctx=8, summary_ctx=0), ValueError, "summary_ctx"),
        (dict(attn_mode="fixed", local_attn_ctx=8, summary_ctx=9), ValueError, "summary_ctx"),
        (dict(attn_mode="fixed", local_attn_ctx=8, summary_ctx=3, distinct_heads=True), ValueError, "distinct"),
        (dict(attn_mode="strided", local_attn_ctx=8, part="summary"), ValueError, "part"),
        (dict(attn_mode="fixed", local_attn_ctx=8, summary_ctx=2, part="stride"), ValueError, "part"),
        (dict(attn_mode="all", part="local"), ValueError, "part"),
    ],
)
def test_bad_pattern_parameters(kwargs, error, text):
    with pytest.raises(error, match=text):
        sparse.pattern(**kwargs)


def test_bad_lengths():
    p = sparse.pattern("all")
    with pytest.raises(ValueError, match="n must be"):
        p.mask(0)
    with pytest.raises(TypeError, match="n must be"):
        p.mask(3.0)
