"""The report's table of how each kernel's time and memory grow with n: the paper's O(n·sqrt(n)) claim, measured.

Factorized attention computes O(n·sqrt(n)) scores where dense attention computes O(n^2) (paper section 4): with the
stride l near sqrt(n), as the sweep sets it (bench_kernels.STRIDE_FOR_N), strided attention's allowed elements grow as
about n^1.5, and its time should follow once the GPU's work, not the host or a launch's fixed cost, sets it. The sweep's
fixed pattern keeps l = 128 and c = 32 at every n (Enwik8's setting): each query sees c of every earlier block's l keys,
so its work stays quadratic, at about c / l of dense's.

Contract: `table_kernel_growth(results)` -> markdown. From the cells the kernel figures draw (one card, the sweep's
batch and heads: report_plots.plotted_kernel_cells), forward + backward, per pattern, backend and head dim, over the
measured n >= GROWTH_FROM: the log-log slope of time against n, of the useful FLOPs (the pattern's allowed elements: the
work; useful TFLOP/s x time), of peak memory, and the useful TFLOP/s at the smallest and largest n. Below GROWTH_FROM an
eager call at small n waits for the host (the figures' dotted lines), which would flatten every slope. A backend with
fewer than two such n has no row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.report_data import Results
from benchmarks.report_plots import GROWTH_FROM, fitted_slope, plotted_kernel_cells
from benchmarks.report_tables import _card, fmt, markdown

PASS = "fwd+bwd"
BACKEND_ORDER = {"triton": 0, "flex": 1, "sdpa": 2}
PATTERN_ORDER = {"strided": 0, "fixed": 1, "all": 2}


def growth_rows(kernels: pd.DataFrame) -> pd.DataFrame:
    """One row per (pattern, backend, head dim) with its slopes over n >= GROWTH_FROM (see the module docstring)."""
    columns = ["pattern", "backend", "head_dim", "n_from", "n_to", "points", "time_slope", "work_slope",
               "memory_slope", "tflops_from", "tflops_to", "gpu", "commits"]  # fmt: skip
    if kernels.empty or "median_ms" not in kernels:
        return pd.DataFrame(columns=columns)
    cells = plotted_kernel_cells(kernels)
    cells = cells[(cells["pass"] == PASS) & (cells["n"] >= GROWTH_FROM)]
    rows = []
    for (pattern, backend, head_dim), group in cells.groupby(["pattern", "backend", "head_dim"]):
        group = group.sort_values("n")
        time_slope = fitted_slope(group["n"], group["median_ms"])
        if not np.isfinite(time_slope):
            continue
        rows.append({
            "pattern": pattern, "backend": backend, "head_dim": int(head_dim), "n_from": int(group["n"].iloc[0]),
            "n_to": int(group["n"].iloc[-1]), "points": len(group), "time_slope": time_slope,
            "work_slope": fitted_slope(group["n"], group["useful_tflops"] * group["median_ms"]),
            "memory_slope": fitted_slope(group["n"], group["peak_gib"]),
            "tflops_from": group["useful_tflops"].iloc[0], "tflops_to": group["useful_tflops"].iloc[-1],
            "gpu": group["gpu"].iloc[-1], "commits": ", ".join(dict.fromkeys(group["commit"].astype(str))),
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    order = frame["pattern"].map(PATTERN_ORDER).fillna(9) * 10 + frame["backend"].map(BACKEND_ORDER).fillna(9)
    return frame.assign(_order=order).sort_values(["head_dim", "_order"], kind="stable").drop(columns="_order")


def table_kernel_growth(results: Results) -> str:
    out = ["## How kernel time grows with n: the paper's n·sqrt(n), measured\n"]
    out.append(
        f"Forward + backward, the sweep's cells (B = 1, H = 16, bf16, causal; the card and the newest row of each cell "
        f"that the kernel plots draw), n >= {GROWTH_FROM:,}, where every backend's time is the GPU's. Slopes are "
        "least-squares fits of log y against log n: `work` is the pattern's useful FLOPs (its allowed elements), so "
        "a kernel that keeps its rate has a time slope equal to its work slope, and one below it is still "
        "gaining efficiency as n grows. Strided attention with l near sqrt(n) (l = 256, 512, 1,024 at n = 65,536, "
        "262,144, 1,048,576) has a work slope near 1.5, the paper's n·sqrt(n); dense (`all`) has 2, and so does "
        "fixed attention at the sweep's l = 128, c = 32, whose summary keys grow with n. TFLOP/s: useful FLOPs per "
        "second at the smallest and largest n.\n"
    )
    rows = growth_rows(results.kernels)
    headers = ["pattern", "backend", "D", "n", "time slope", "work slope", "memory slope", "useful TFLOP/s",
               "card", "commits"]  # fmt: skip
    body = [
        [
            r["pattern"],
            r["backend"],
            str(r["head_dim"]),
            f"{r['n_from']:,} to {r['n_to']:,} ({r['points']})",
            fmt(r["time_slope"], 2),
            fmt(r["work_slope"], 2),
            fmt(r["memory_slope"], 2),
            f"{fmt(r['tflops_from'], 1)} to {fmt(r['tflops_to'], 1)}",
            _card(r["gpu"]),
            r["commits"],
        ]  # fmt: skip
        for _, r in rows.iterrows()
    ]
    out.append(markdown(headers, body))
    return "\n".join(out)
