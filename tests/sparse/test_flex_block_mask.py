"""sparse/flex.py's analytic block masks against torch's create_block_mask over the element mask: the same
partial and full tiles for every pattern, part, head and length (multiples of the block and not), the same
BlockMask tensors, a BlockMask at n = 1,048,576 on the CPU in seconds, and the same FlexAttention output."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sparse
from sparse.flex import (
    _classes_from_elements,
    block_classes,
    block_mask_for,
    mask_mod_for,
    reference_block_mask,
)
from sparse.patterns import Pattern
from sparse.reference import reference_attention
from tests.sparse.test_kernels import check_against_reference, make_inputs, rel_err

pytestmark = pytest.mark.usefixtures("one_thread")

HEADS = 5
LENGTHS = (1, 7, 64, 100, 257, 300)


def _patterns() -> dict[str, Pattern]:
    out = {"all": sparse.pattern("all")}
    for l in (1, 3, 8, 16, 17, 128):
        for part in ("merged", "local", "stride"):
            out[f"strided-{part}-l{l}"] = sparse.pattern("strided", local_attn_ctx=l, part=part)
    for l in (1, 5, 16):
        out[f"local-l{l}"] = sparse.pattern("local", local_attn_ctx=l)
    for l, c in ((8, 2), (16, 4), (12, 5), (128, 32), (6, 6)):
        for part in ("merged", "local", "summary"):
            for distinct in (False, True) if l % c == 0 else (False,):
                name = f"fixed-{part}-l{l}-c{c}" + ("-distinct" if distinct else "")
                out[name] = sparse.pattern("fixed", local_attn_ctx=l, summary_ctx=c, part=part, distinct_heads=distinct)
    return out


PATTERNS = _patterns()


def classes_of(block_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense partial and full tiles a BlockMask lists (each row's indices are a permutation of the
    columns, the first num_blocks of them the listed ones)."""

    def dense(num, indices):
        listed = torch.arange(indices.shape[-1]) < num[..., None]
        return torch.zeros(indices.shape, dtype=torch.bool).scatter(-1, indices.long(), listed)

    return (
        dense(block_mask.kv_num_blocks, block_mask.kv_indices),
        dense(block_mask.full_kv_num_blocks, block_mask.full_kv_indices),
    )


def element_classes(p: Pattern, n: int, heads: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """From the pattern's own element definition (Pattern.mask, not mask_mod), tile by tile."""
    mask = p.mask(n, heads)
    nb = -(-n // block_size)
    pad = nb * block_size - n
    mask = torch.nn.functional.pad(mask, (0, pad, 0, pad))
    counts = mask.view(1, mask.shape[0], nb, block_size, nb, block_size).sum(dim=(3, 5))
    full = counts == block_size * block_size
    return (counts > 0) & ~full, full


@pytest.mark.parametrize("block_size", [8, 16, 128])
@pytest.mark.parametrize("name", list(PATTERNS))
def test_block_classes_equal_create_block_mask(name, block_size):
    p = PATTERNS[name]
    for n in LENGTHS:
        partial, full = block_classes(p, n, HEADS, block_size=block_size)
        nb = -(-n // block_size)
        assert partial.shape == full.shape == (1, HEADS if p.distinct_heads else 1, nb, nb)
        assert partial.dtype == full.dtype == torch.bool
        ref = classes_of(reference_block_mask(p, n, HEADS, "cpu", block_size=block_size))
        assert torch.equal(partial, ref[0]), (name, n)
        assert torch.equal(full, ref[1]), (name, n)
        want = element_classes(p, n, HEADS, block_size)
        assert torch.equal(partial, want[0]) and torch.equal(full, want[1]), (name, n)


@pytest.mark.parametrize("name", list(PATTERNS))
def test_block_mask_for_equals_the_reference_block_mask(name):
    p = PATTERNS[name]
    for n in (1, 100, 128, 257, 300, 700):
        got = block_mask_for.__wrapped__(p, n, HEADS, "cpu")
        want = reference_block_mask(p, n, HEADS, "cpu")
        assert got.seq_lengths == want.seq_lengths == (n, n)
        assert got.BLOCK_SIZE == want.BLOCK_SIZE == (128, 128)
        # Every tensor in full, trailing (unlisted) indices included: both order rows the same way.
        names = ["kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"]
        names += ["q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices"]
        for field in names:
            a, b = getattr(got, field), getattr(want, field)
            assert a.dtype == b.dtype and torch.equal(a, b), (name, n, field)
        assert torch.equal(got.to_dense(), want.to_dense())


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(["all", "local", "strided", "fixed"]),
    n=st.integers(1, 260),
    l=st.integers(1, 40),
    c=st.integers(1, 40),
    part_index=st.integers(0, 2),
    distinct=st.booleans(),
    heads=st.integers(1, 5),
    block_size=st.integers(1, 40),
)
def test_block_classes_equal_element_classes_for_random_patterns(
    mode, n, l, c, part_index, distinct, heads, block_size
):
    if mode == "all":
        p = sparse.pattern("all")
    elif mode == "local":
        p = sparse.pattern("local", local_attn_ctx=l)
    elif mode == "strided":
        p = sparse.pattern("strided", local_attn_ctx=l, part=("merged", "local", "stride")[part_index])
    else:
        c = min(c, l)
        distinct = distinct and l % c == 0
        part = ("merged", "local", "summary")[part_index]
        p = sparse.pattern("fixed", local_attn_ctx=l, summary_ctx=c, part=part, distinct_heads=distinct)
    partial, full = block_classes(p, n, heads, block_size=block_size)
    want = element_classes(p, n, heads, block_size)
    assert torch.equal(partial, want[0]) and torch.equal(full, want[1])


def test_the_element_fallback_is_create_block_masks_classification():
    for name in ("strided-merged-l17", "fixed-merged-l16-c4-distinct", "fixed-summary-l12-c5"):
        p = PATTERNS[name]
        heads = HEADS if p.distinct_heads else 1
        got = _classes_from_elements(mask_mod_for(p), 300, heads, 16, "cpu")
        want = block_classes(p, 300, HEADS, block_size=16)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_a_pattern_without_a_mask_mod_is_refused():
    class Unknown(Pattern):
        attn_mode = "unknown"

    with pytest.raises(TypeError, match="no FlexAttention mask"):
        block_classes(Unknown(), 16, 1)


def test_block_mask_at_a_million_positions_builds_from_tiles_alone():
    """Strided, l = 1024, n = 2^20: 8,192 x 8,192 tiles; the element mask would be 2^40 booleans. A tile on
    block diagonal k = a - b >= 0 holds d = i - j in [128k - 127, 128k + 127]: all allowed (d < 1024) for
    1 <= k <= 7; some but not all for k = 0 (the causal edge) and where the range meets a multiple of 1024
    beyond the band, i.e. k = 8m; none otherwise. Diagonal k has nb - k tiles."""
    n, l, nb = 2**20, 1024, 2**20 // 128
    bm = block_mask_for.__wrapped__(sparse.pattern("strided", local_attn_ctx=l), n, 16, "cpu")
    assert bm.kv_indices.shape == (1, 1, nb, nb)
    assert int(bm.full_kv_num_blocks.sum()) == sum(nb - k for k in range(1, 8))
    assert int(bm.kv_num_blocks.sum()) == sum(nb - k for k in range(0, nb, 8))
    assert int(bm.q_num_blocks.sum()) == int(bm.kv_num_blocks.sum())
    assert int(bm.full_q_num_blocks.sum()) == int(bm.full_kv_num_blocks.sum())
    # A few rows by the element rule, over their whole key range.
    for a in (0, 9, 77):
        i = torch.arange(a * 128, a * 128 + 128).view(128, 1)
        j = torch.arange((a + 1) * 128).view(1, -1)
        d = i - j
        allowed = (d >= 0) & ((d < l) | (d % l == 0))
        counts = allowed.view(128, a + 1, 128).sum(dim=(0, 2))
        partial_cols = torch.nonzero((counts > 0) & (counts < 128 * 128)).flatten()
        full_cols = torch.nonzero(counts == 128 * 128).flatten()
        num, full_num = int(bm.kv_num_blocks[0, 0, a]), int(bm.full_kv_num_blocks[0, 0, a])
        assert torch.equal(bm.kv_indices[0, 0, a, :num].long(), partial_cols)
        assert torch.equal(bm.full_kv_indices[0, 0, a, :full_num].long(), full_cols)


@pytest.mark.parametrize(
    "name",
    [
        "all",
        "strided-merged-l17",
        "strided-stride-l8",
        "local-l16",
        "fixed-merged-l16-c4-distinct",
        "fixed-summary-l128-c32-distinct",
        "fixed-merged-l12-c5",
    ],
)
def test_flex_forward_with_the_analytic_block_mask_matches_the_reference(name):
    p = PATTERNS[name]
    n = 300  # three 128-blocks, the last padded
    q, k, v, _ = make_inputs((2, HEADS, n, 32), torch.float32, "cpu", seed=3)
    out = sparse.attention(q, k, v, p, backend="flex")
    ref = reference_attention(q.double(), k.double(), v.double(), p, scale=32**-0.5)
    assert rel_err(out, ref) < 2e-5


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["all", "strided-merged-l17", "local-l16", "fixed-merged-l16-c4-distinct"])
def test_gpu_flex_forward_and_backward_with_the_analytic_block_mask(name):
    """On a GPU, where the benchmark runs it: the block mask built on the device equals create_block_mask's, and the
    compiled flex_attention's output and gradients through it equal the float64 reference's (n = 1,000: eight
    128-blocks, the last padded)."""
    p, n = PATTERNS[name], 1000
    built = classes_of(block_mask_for(p, n, HEADS, "cuda:0").to("cpu"))
    reference = classes_of(reference_block_mask(p, n, HEADS, "cuda").to("cpu"))
    for got, want in zip(built, reference):
        assert torch.equal(got, want)
    check_against_reference(p, (2, HEADS, n, 32), torch.float32, "cuda", seed=5, backend="flex", tol=1e-4)
