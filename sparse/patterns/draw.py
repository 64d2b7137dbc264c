"""Pictures of the patterns, in the manner of the paper's Figure 3.

    from sparse.patterns.draw import draw, draw_figure
    draw(sparse.pattern("strided", local_attn_ctx=8), n=64)     # the [n, n] connectivity, coloured by part
    draw_figure(n=64, l=8, c=2).savefig("patterns.png")         # all patterns side by side

Contract: `draw` returns the matplotlib Axes it drew on (a new figure when `ax` is None). Colours: the first
factor A1 (local / own window) dark blue, the second A2 (stride / summary) light blue, elements in both
purple, the query's own row highlighted in `draw_positions`. Dense n x n masks are materialised, so keep n
small (at most a few hundred). matplotlib is imported lazily: the rest of `sparse` does not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sparse.patterns.base import Pattern
from sparse.patterns.fixed import FixedPattern
from sparse.patterns.strided import StridedPattern

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_DRAW_N = 1024

# 0 = not attended, 1 = A1 only, 2 = A2 only, 3 = both
_COLOURS = ["#ffffff", "#1f4e8c", "#8cb8e6", "#7b3f9e"]
_PART_LABELS = ["", "A1 (local)", "A2 (stride / summary)", "A1 and A2"]


def part_codes(pattern: Pattern, n: int, head: int = 0) -> torch.Tensor:
    """int64 [n, n]: 0 not attended, 1 in A1 only, 2 in A2 only, 3 in both (dense: every allowed key is 1)."""
    if n > MAX_DRAW_N:
        raise ValueError(f"drawing materialises an n x n mask; n must be <= {MAX_DRAW_N}, got {n}")
    first, second = _factors(pattern)
    masks = []
    for factor in (first, second):
        if factor is None:
            masks.append(torch.zeros(n, n, dtype=torch.bool))
        else:
            m = factor.mask(n, num_heads=head + 1)
            masks.append(m[min(head, m.shape[0] - 1)])
    allowed = pattern.mask(n, num_heads=head + 1)
    allowed = allowed[min(head, allowed.shape[0] - 1)]
    codes = masks[0].long() + 2 * masks[1].long()
    return torch.where(allowed, codes, torch.zeros_like(codes))


def _factors(pattern: Pattern) -> tuple[Pattern, Pattern | None]:
    """The two factors of the pattern restricted to its own `part` (A1, A2); dense has one factor."""
    if isinstance(pattern, FixedPattern):
        l, c, distinct = pattern.local_attn_ctx, pattern.summary_ctx, pattern.distinct_heads
        local = FixedPattern(l, c, "local", distinct)
        summary = FixedPattern(l, c, "summary", distinct)
        return {"merged": (local, summary), "local": (local, None), "summary": (summary, None)}[pattern.part]
    if isinstance(pattern, StridedPattern):
        l = pattern.local_attn_ctx
        local, stride = StridedPattern(l, "local"), StridedPattern(l, "stride")
        if pattern.part == "stride":
            return stride, None
        return (local, None) if pattern.part == "local" else (local, stride)
    return pattern, None


def _title(pattern: Pattern, head: int) -> str:
    if isinstance(pattern, FixedPattern):
        text = f"fixed l={pattern.local_attn_ctx} c={pattern.summary_ctx}"
        return text + (f" (head {head})" if pattern.distinct_heads else "")
    if isinstance(pattern, StridedPattern):
        return f"{pattern.attn_mode} l={pattern.local_attn_ctx}"
    return "all (dense causal)"


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(3, 3))
    return ax


def draw(pattern: Pattern, n: int, ax: Axes | None = None, head: int = 0, title: str | None = None) -> Axes:
    """Draw the [n, n] connectivity of `pattern` (rows: queries i, columns: keys j), coloured by factor."""
    from matplotlib.colors import ListedColormap

    ax = _axes(ax)
    codes = part_codes(pattern, n, head)
    ax.imshow(codes.numpy(), cmap=ListedColormap(_COLOURS), vmin=0, vmax=3, interpolation="nearest")
    ax.set_title(title if title is not None else _title(pattern, head), fontsize=9)
    ax.set_xlabel("key j", fontsize=8)
    ax.set_ylabel("query i", fontsize=8)
    ax.tick_params(labelsize=7)
    return ax


def draw_positions(
    pattern: Pattern, n: int, width: int, query: int | None = None, ax: Axes | None = None, head: int = 0
) -> Axes:
    """The paper's top row of Figure 3: positions laid out in rows of `width`, the keys one query attends
    coloured by factor and the query itself in red (default query: the middle of the last row)."""
    from matplotlib.colors import ListedColormap

    if n % width:
        raise ValueError(f"width must divide n, got n={n}, width={width}")
    query = n - width // 2 - 1 if query is None else query
    if not 0 <= query < n:
        raise ValueError(f"query must be in [0, {n}), got {query}")
    ax = _axes(ax)
    row = part_codes(pattern, n, head)[query].clone()
    row[query] = 4
    ax.imshow(
        row.view(n // width, width).numpy(),
        cmap=ListedColormap(_COLOURS + ["#d62728"]),
        vmin=0,
        vmax=4,
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def figure_patterns(n: int = 64, l: int = 8, c: int = 2) -> list[tuple[str, Pattern, int]]:
    """(file stem, pattern, head) for every picture `python -m sparse.patterns` draws."""
    from sparse.patterns import pattern

    items = [
        ("all", pattern("all"), 0),
        ("local", pattern("local", local_attn_ctx=l), 0),
        ("strided", pattern("strided", local_attn_ctx=l), 0),
        ("fixed", pattern("fixed", local_attn_ctx=l, summary_ctx=c), 0),
    ]
    distinct = pattern("fixed", local_attn_ctx=l, summary_ctx=c, distinct_heads=True)
    items += [(f"fixed-distinct-head{h}", distinct, h) for h in range(l // c)]
    return items


def draw_figure(n: int = 64, l: int = 8, c: int = 2) -> Figure:
    """One figure: for every pattern, the positions one query attends (top) and the n x n mask (bottom)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    items = figure_patterns(n, l, c)
    fig, axes = plt.subplots(2, len(items), figsize=(2.2 * len(items), 5), gridspec_kw={"height_ratios": [1, 2.2]})
    for col, (stem, pat, head) in enumerate(items):
        draw_positions(pat, n, width=l, ax=axes[0, col], head=head)
        axes[0, col].set_title(stem.replace("-", " "), fontsize=9)
        draw(pat, n, ax=axes[1, col], head=head, title="")
    handles = [Patch(color=_COLOURS[k], label=_PART_LABELS[k]) for k in (1, 2, 3)]
    handles.append(Patch(color="#d62728", label="the query"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Attention patterns (paper Figure 3), n={n}, l={l}, c={c}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig


def write_pictures(out_dir, n: int = 64, l: int = 8, c: int = 2) -> list:
    """Write one PNG per pattern plus `patterns.png` (all of them) into `out_dir`; returns the paths."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, pat, head in figure_patterns(n, l, c):
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(3, 4.6), gridspec_kw={"height_ratios": [1, 2.2]})
        draw_positions(pat, n, width=l, ax=top, head=head)
        top.set_title(stem.replace("-", " "), fontsize=9)
        draw(pat, n, ax=bottom, head=head)
        fig.tight_layout()
        path = out / f"pattern-{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    fig = draw_figure(n, l, c)
    path = out / "patterns.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths
