"""Pattern pictures: the colour codes are the pattern's factors, and the command writes every picture."""

from __future__ import annotations

import pytest
import torch

import sparse
from sparse.patterns.__main__ import main
from sparse.patterns.draw import MAX_DRAW_N, draw, draw_positions, figure_patterns, part_codes


@pytest.mark.parametrize(
    "pattern, first, second",
    [
        (sparse.pattern("strided", local_attn_ctx=4), ("strided", "local"), ("strided", "stride")),
        (sparse.pattern("fixed", local_attn_ctx=4, summary_ctx=2), ("fixed", "local"), ("fixed", "summary")),
    ],
)
def test_codes_are_the_factors_inside_the_pattern(pattern, first, second):
    n = 24
    codes = part_codes(pattern, n)
    kwargs = {"local_attn_ctx": 4} | ({"summary_ctx": 2} if first[0] == "fixed" else {})
    a1 = sparse.pattern(first[0], part=first[1], **kwargs).mask(n)[0]
    a2 = sparse.pattern(second[0], part=second[1], **kwargs).mask(n)[0]
    assert torch.equal(codes > 0, pattern.mask(n)[0])
    assert torch.equal(codes == 3, a1 & a2)
    assert torch.equal(codes == 1, a1 & ~a2) and torch.equal(codes == 2, a2 & ~a1)


def test_distinct_heads_draw_different_summaries():
    p = sparse.pattern("fixed", local_attn_ctx=8, summary_ctx=2, distinct_heads=True)
    heads = [part_codes(p, 32, head=h) for h in range(4)]
    assert all(not torch.equal(heads[0], other) for other in heads[1:])
    assert torch.equal(part_codes(sparse.pattern("all"), 8) > 0, torch.ones(8, 8, dtype=torch.bool).tril())


def test_draw_returns_its_axes_and_checks_sizes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert draw(sparse.pattern("strided", local_attn_ctx=4), 16, ax=ax) is ax
    assert draw_positions(sparse.pattern("fixed", local_attn_ctx=4, summary_ctx=2), 16, width=4) is not None
    plt.close("all")
    with pytest.raises(ValueError, match="n must be <="):
        part_codes(sparse.pattern("all"), MAX_DRAW_N + 1)
    with pytest.raises(ValueError, match="width must divide n"):
        draw_positions(sparse.pattern("all"), 16, width=5)


def test_command_writes_every_pattern(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--n", "16", "--l", "4", "--c", "2"]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    expected = {f"pattern-{stem}.png" for stem, _, _ in figure_patterns(16, 4, 2)} | {"patterns.png"}
    assert names == expected and "pattern-fixed-distinct-head1.png" in names
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--n", "16", "--l", "5"])
    assert "--l must divide --n" in capsys.readouterr().err
