"""The report's PNG plots, drawn from the recorder's CSVs alone (matplotlib, Agg backend).

Each `plot_*` function takes the loaded `Results` and an output folder, writes zero or more PNG files and
returns their paths; with no data for a plot it writes nothing (the report's index then says "not run yet").
- learning curves: bits per dim against step and against wall-clock, dense vs sparse, per benchmark;
- time per iteration and peak memory against sequence length (training runs);
- kernels: time and peak memory against n on log-log axes per backend with the fitted slope in the legend (over
  n >= 65,536, where every backend is GPU-bound, when two such n were measured),
  and the speed-up over dense SDPA per pattern (one figure per pass and head dim);
- Table 3: our test bits per byte against the minimum context, beside the paper's (each on its own axis);
- checkpointing: time per step and peak memory without and with, per model;
- step GPU: where each profiled training step's time goes (attention kernels, the rest of the model's kernels,
  GPU idle), one stacked bar per step, grouped by benchmark, preset, card and commit.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.report_data import Results, pick, run_view  # noqa: E402
from benchmarks.report_tables import (  # noqa: E402
    BENCHMARK_NAMES,
    KERNEL_CASE,
    PATTERNS,
    checkpointing_pairs,
    step_gpu_rows,
    table3_rows,
)

STYLE = {"dense": ("#444444", "o"), "strided": ("#1f77b4", "s"), "fixed": ("#d62728", "^"), "local": ("#2ca02c", "v")}
BACKEND_STYLE = {"triton": ("#1f77b4", "o"), "flex": ("#ff7f0e", "s"), "sdpa": ("#444444", "^")}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fitted_slope(x, y) -> float:
    """Slope of log y against log x (least squares), NaN with fewer than two distinct points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if len(np.unique(x[keep])) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def plot_learning_curves(results: Results, out: Path) -> list[Path]:
    """Per benchmark: train (line) and validation (markers) bits per dim against step and wall-clock, for
    the run each pattern's table cell shows."""
    curves, view = results.curves, run_view(results.runs)
    if curves.empty or view.empty:
        return []
    paths = []
    # A curve needs two points: a few-step timing run (one point) would draw an empty frame.
    points = curves[curves["train_bpd"].notna() | curves["val_bpd"].notna()].groupby("run_id").size()
    drawable = sorted(points[points >= 2].index)
    for benchmark in BENCHMARK_NAMES:
        chosen = {p: pick(view, benchmark=benchmark, pattern=p, run_id=drawable) for p in PATTERNS}
        chosen = {p: r for p, r in chosen.items() if r is not None}
        if not chosen:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
        for pattern, row in chosen.items():
            colour, marker = STYLE.get(pattern, ("#888888", "x"))
            run = curves[curves["run_id"] == row["run_id"]].sort_values("step")
            label = f"{pattern} ({row['preset']}, {row['variant']})"
            for ax, x in zip(axes, ("step", "wall_s")):
                train = run[run["train_bpd"].notna()]
                val = run[run["val_bpd"].notna()]
                ax.plot(train[x], train["train_bpd"], color=colour, alpha=0.6, lw=1, label=f"{label} train")
                if not val.empty:
                    ax.plot(val[x], val["val_bpd"], color=colour, marker=marker, lw=1.5, label=f"{label} val")
        axes[0].set_xlabel("step")
        axes[1].set_xlabel("wall-clock (s)")
        axes[0].set_ylabel("bits per dim")
        axes[1].legend(fontsize=7)
        for ax in axes:
            ax.grid(alpha=0.3)
        fig.suptitle(f"{BENCHMARK_NAMES[benchmark]}: learning curves, dense vs sparse")
        paths.append(_save(fig, out / f"learning_curves_{benchmark}.png"))
    return paths


def plot_time_memory_vs_n(results: Results, out: Path) -> list[Path]:
    """Training time per iteration and peak memory against sequence length, one series per pattern and
    preset (each point the chosen run for that benchmark, pattern and n)."""
    view = run_view(results.runs)
    if view.empty or view["ms_per_iter"].notna().sum() == 0:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    timed = view[view["ms_per_iter"].notna()]
    for (pattern, preset, gpu), group in timed.groupby(["pattern", "preset", "gpu"]):
        points = []
        for (benchmark, n), _ in group.groupby(["benchmark", "n"]):
            row = pick(group, benchmark=benchmark, n=n)
            if row is not None:
                points.append((n, row["ms_per_iter"], row["peak_gib"], benchmark))
        points.sort()
        colour, marker = STYLE.get(pattern, ("#888888", "x"))
        ls = {"paper": "-", "small": "--", "smoke": ":"}.get(preset, "-.")
        label = f"{pattern} ({preset}, {gpu})"
        axes[0].plot([p[0] for p in points], [p[1] for p in points], color=colour, marker=marker, ls=ls, label=label)
        for n, ms, _, benchmark in points:
            axes[0].annotate(benchmark, (n, ms), fontsize=6, alpha=0.7, xytext=(3, 3), textcoords="offset points")
        mem = [(p[0], p[2]) for p in points if p[2] == p[2]]
        if mem:
            axes[1].plot(*zip(*mem), color=colour, marker=marker, ls=ls, label=label)
    if not axes[1].lines:
        axes[1].text(0.5, 0.5, "no GPU runs yet", ha="center", va="center", transform=axes[1].transAxes)
    axes[0].set_ylabel("ms per iteration")
    axes[1].set_ylabel("peak GiB (GPU runs only)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("Training: time per iteration and peak memory against sequence length")
    return [_save(fig, out / "time_memory_vs_n.png")]


def _card_rows(kernels: pd.DataFrame) -> pd.DataFrame:
    """Every measured (status ok) row of the sweep's batch, heads and dtype on one card: for each pass and head dim, the
    (batch, heads, dtype) with the most cells (target cases at other batch sizes, or a run in another dtype, are in the
    kernel table), then the card with the most of our kernel's (triton) cells among them, the newest on a tie. One card
    per figure: a line through an H100 cell and an H200 cell, or a speed-up of one card's kernel over another's SDPA,
    would compare cards; one dtype per figure, for the same reason."""
    kernels = kernels.assign(gpu=kernels["gpu"].fillna("").astype(str)) if "gpu" in kernels else kernels.assign(gpu="")
    ok = kernels[kernels["status"].fillna("ok").astype(str).isin(["ok", "", "nan"]) & kernels["median_ms"].notna()]
    keep = []
    for _, group in ok.groupby(["pass", "head_dim"]):
        group = group.assign(dtype=group["dtype"].fillna("") if "dtype" in group else "")
        cells = _newest(group)
        batch, heads, dtype = cells.groupby(["batch", "heads", "dtype"]).size().idxmax()
        sweep = (group["batch"] == batch) & (group["heads"] == heads) & (group["dtype"] == dtype)
        cells = cells[(cells["batch"] == batch) & (cells["heads"] == heads) & (cells["dtype"] == dtype)]
        ours = cells.assign(triton=cells["backend"] == "triton")
        card = ours.groupby("gpu").agg(cells=("triton", "sum"), newest=("date", "max")).sort_values(["cells", "newest"])
        keep.append(group[sweep & (group["gpu"] == card.index[-1])])
    return pd.concat(keep) if keep else ok


def _newest(rows: pd.DataFrame) -> pd.DataFrame:
    """The newest row of every case, backend and card."""
    return rows.sort_values("date", kind="stable").groupby([*KERNEL_CASE, "backend", "gpu"], dropna=False).tail(1)


def plotted_kernel_cells(kernels: pd.DataFrame) -> pd.DataFrame:
    """The cells the kernel figures' time and memory panels draw: per pass and head dim, the newest row of each case
    and backend of one card and the sweep's batch, heads and dtype (_card_rows)."""
    every = _card_rows(kernels)
    return _newest(every) if len(every) else every


def plot_kernels(results: Results, out: Path) -> list[Path]:
    """Time and memory against n (log-log, fitted slope per backend) and speed-up over SDPA, per pattern,
    one figure per (pass, head dim)."""
    kernels = results.kernels
    if kernels.empty or "median_ms" not in kernels:
        return []
    every = _card_rows(kernels)  # the speed-up figures pair rows of one process from every measurement
    cells = _newest(every) if len(every) else every  # plotted_kernel_cells(kernels), without selecting twice
    paths = []
    for (pass_, head_dim), group in cells.groupby(["pass", "head_dim"]):
        patterns = [p for p in ("all", "strided", "fixed") if (group["pattern"] == p).any()]
        patterns += sorted(set(group["pattern"]) - set(patterns))
        tag = f"{pass_.replace('+', '_')}_d{int(head_dim)}"
        for metric, ylabel in (("median_ms", "median ms"), ("peak_gib", "peak GiB")):
            fig, axes = plt.subplots(1, len(patterns), figsize=(4.2 * len(patterns), 3.8), squeeze=False)
            for ax, pattern in zip(axes[0], patterns):
                sub = group[group["pattern"] == pattern]
                backends = {backend: rows for backend, rows in sub.groupby("backend")}
                if pattern != "all" and "sdpa" not in backends:  # dense SDPA is every pattern's baseline
                    dense = group[(group["pattern"] == "all") & (group["backend"] == "sdpa")]
                    if not dense.empty:
                        backends["sdpa"] = dense
                for backend, rows in sorted(backends.items()):
                    rows = rows.sort_values("n")
                    if rows[metric].notna().sum() == 0:
                        continue
                    colour, marker = BACKEND_STYLE.get(backend, ("#888888", "x"))
                    fit = _slope_label(rows["n"], rows[metric])
                    label = f"{backend}{' (dense)' if backend == 'sdpa' and pattern != 'all' else ''}, {fit}"
                    ax.plot(rows["n"], rows[metric], color=colour, marker=marker, label=label)
                    graph = rows.assign(graph_ms=_graph_ms(rows)).dropna(subset=["graph_ms"])
                    if metric == "median_ms" and backend == "triton" and len(graph):
                        # The GPU's time alone: where the eager call waits for the host (small n), only this line
                        # shows how the kernels scale.
                        fit = _slope_label(graph["n"], graph["graph_ms"])
                        ax.plot(graph["n"], graph["graph_ms"], color=colour, marker=marker, ls=":", mfc="white",
                                label=f"{backend}, CUDA graphs, {fit}")  # fmt: skip
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_title(pattern)
                ax.set_xlabel("n")
                ax.set_ylabel(ylabel)
                ax.grid(alpha=0.3, which="both")
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=7)
            fig.suptitle(f"Attention kernels, {pass_}, head dim {int(head_dim)}: {ylabel} against n{_on_card(group)}")
            name = "time" if metric == "median_ms" else "memory"
            paths.append(_save(fig, out / f"kernels_{name}_{tag}.png"))
        same = (every["pass"] == pass_) & (every["head_dim"] == head_dim)
        speedup = _plot_speedup(every[same], pass_, int(head_dim))
        if speedup is not None:
            paths.append(_save(speedup, out / f"kernels_speedup_{tag}.png"))
    return paths


# From this n on every backend's time is the GPU's (below it an eager call at small n waits for the host, which would
# flatten a fit over every n): the legends' slopes and report_growth's table are fitted there where two n are measured.
GROWTH_FROM = 65_536


def _slope_label(n: pd.Series, values: pd.Series) -> str:
    """The legend's fitted log-log slope (over n >= GROWTH_FROM where two such n were measured, else over every n), or
    why there is none."""
    n, values = pd.Series(n).reset_index(drop=True), pd.Series(values).reset_index(drop=True)
    large = (n >= GROWTH_FROM) & values.notna()
    if large.sum() >= 2 and n[large].nunique() >= 2:
        return f"slope {fitted_slope(n[large], values[large]):.2f} for n >= {GROWTH_FROM // 1024}K"
    slope = fitted_slope(n, values)
    return f"slope {slope:.2f}" if np.isfinite(slope) else "one n, no slope"


def _graph_ms(rows: pd.DataFrame) -> pd.Series:
    """The rows' CUDA-graph times (kernels.csv schema 3 on; NaN where none was measured), as numbers."""
    if "graph_ms" not in rows:
        return pd.Series(np.nan, index=rows.index)
    return pd.to_numeric(rows["graph_ms"], errors="coerce")


def speedups_over_sdpa(rows: pd.DataFrame, pattern: str, backend: str, column: str = "median_ms") -> pd.DataFrame:
    """SDPA's time over `backend`'s for `pattern` at each n of `rows` (one card, one pass and head dim): from the newest
    process (rows of one benchmark process share their date) that measured both at that n, else (same_process False)
    from the newest row of each. Columns n, speedup, same_process. column="graph_ms": the CUDA-graph times (the GPU's
    time alone), from processes that replayed both; no unpaired points."""
    rows = rows.assign(graph_ms=_graph_ms(rows))
    ours = rows[(rows["pattern"] == pattern) & (rows["backend"] == backend) & rows[column].notna()]
    sdpa = rows[(rows["pattern"] == "all") & (rows["backend"] == "sdpa") & rows[column].notna()]
    points = []
    for n, mine in ours.groupby("n"):
        theirs = sdpa[sdpa["n"] == n]
        if theirs.empty:
            continue
        both = mine.merge(theirs, on="date", suffixes=("", "_sdpa")).sort_values("date", kind="stable")
        if len(both):
            pair, same = both.iloc[-1], True
            ratio = pair[f"{column}_sdpa"] / pair[column]
        elif column == "graph_ms":
            continue
        else:
            pair, same = None, False
            newest = mine.sort_values("date", kind="stable").iloc[-1]
            ratio = theirs.sort_values("date", kind="stable").iloc[-1]["median_ms"] / newest["median_ms"]
        points.append({"n": n, "speedup": float(ratio), "same_process": same})
    return pd.DataFrame(points, columns=["n", "speedup", "same_process"])


def _plot_speedup(rows: pd.DataFrame, pass_: str, head_dim: int):
    """Speed-up over dense SDPA against n, per pattern and backend; a hollow marker where no one process measured both
    (then SDPA's newest row on the same card). Dotted: ours over SDPA with both calls replayed from CUDA graphs, the
    GPU's time alone, where the eager ratio at small n is the host's (autograd's engine thread in the sweep)."""
    if not ((rows["backend"] == "sdpa") & (rows["pattern"] == "all")).any():
        return None
    fig, ax = plt.subplots(figsize=(8.2, 3.8))
    drawn = hollow = False
    for pattern in sorted(set(rows["pattern"])):
        for backend in ("triton", "flex"):
            points = speedups_over_sdpa(rows, pattern, backend)
            if points.empty:
                continue
            colour = STYLE.get("dense" if pattern == "all" else pattern, ("#888888", "x"))[0]
            ls = "-" if backend == "triton" else "--"
            ax.plot(points["n"], points["speedup"], color=colour, ls=ls, label=f"{pattern}, {backend}")
            same = points["same_process"].astype(bool)
            ax.scatter(points["n"][same], points["speedup"][same], color=colour, marker="o", zorder=3)
            ax.scatter(points["n"][~same], points["speedup"][~same], facecolors="white", edgecolors=colour, zorder=3)
            drawn, hollow = True, hollow or bool((~same).any())
            graph = speedups_over_sdpa(rows, pattern, backend, "graph_ms") if backend == "triton" else points[:0]
            if len(graph):
                ax.plot(graph["n"], graph["speedup"], color=colour, ls=":", marker="s", ms=3,
                        label=f"{pattern}, {backend}, CUDA graphs")  # fmt: skip
    if not drawn:
        plt.close(fig)
        return None
    if hollow:
        ax.scatter([], [], facecolors="white", edgecolors="#444444", label="hollow: SDPA from another process")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n")
    ax.set_ylabel("speed-up over dense SDPA")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the lines fill the axes
    ax.set_title(f"Speed-up over SDPA, {pass_}, head dim {head_dim}{_on_card(rows)}", fontsize=9)
    return fig


def _on_card(cells: pd.DataFrame) -> str:
    card = str(cells["gpu"].iloc[0]) if "gpu" in cells and len(cells) else ""
    return f" ({card})" if card and card != "nan" else ""


def plot_patterns(out: Path) -> list[Path]:
    from sparse.patterns.draw import write_pictures

    return write_pictures(out / "patterns")


def plot_table3(results: Results, out: Path) -> list[Path]:
    """Bits per byte against the minimum evaluation context: ours (left axis) and the paper's (right axis),
    on separate axes because a short run sits bits above the paper; the shapes are what compare."""
    ours, paper = table3_rows(results), results.paper["table3"]
    if ours.empty:
        return []
    fig, left = plt.subplots(figsize=(6.4, 4.0))
    left.plot(ours["eval_min_context"], ours["test_bpd"], "o-", color=STYLE["fixed"][0], label="ours (left)")
    first = ours.iloc[-1]
    left.set_xlabel("minimum context of every scored byte")
    left.set_ylabel(f"our test bits per byte ({first['preset']}, {first['variant']})")
    left.grid(alpha=0.3)
    handles = left.get_lines()
    if not paper.empty:
        right = left.twinx()
        right.plot(paper["eval_min_context"], paper["bpd"], "s--", color="#444444", label="paper (right)")
        right.set_ylabel("paper's test bits per byte")
        handles = handles + right.get_lines()
    left.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")
    left.set_title(f"Table 3: Enwik8, n = {int(first['n']):,}, {first['gpu']}")
    return [_save(fig, out / "table3_context.png")]


def plot_checkpointing(results: Results, out: Path) -> list[Path]:
    """Time per step and peak memory without and with activation checkpointing, one pair of bars per model."""
    pairs = checkpointing_pairs(results)
    if not pairs:
        return []
    labels = [
        f"{BENCHMARK_NAMES.get(a['benchmark'], a['benchmark'])}\n{a['pattern']}, n={int(a['n']):,}" for a, _ in pairs
    ]
    x = np.arange(len(pairs))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.0))
    for ax, column, unit in ((axes[0], "ms_per_iter", "ms per step"), (axes[1], "peak_gib", "peak GiB")):
        ax.bar(x - 0.2, [a[column] for a, _ in pairs], 0.4, label="without", color="#9ecae1")
        ax.bar(x + 0.2, [b[column] for _, b in pairs], 0.4, label="with checkpointing", color="#3182bd")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    gpus = sorted({str(a["gpu"]) for a, _ in pairs})
    fig.suptitle(f"Activation checkpointing: time for memory ({', '.join(gpus)})", fontsize=10)
    return [_save(fig, out / "checkpointing.png")]


def plot_step_gpu(results: Results, out: Path) -> list[Path]:
    """Per profiled step (results/profiles/step-*.txt) a stacked bar: attention kernels, the other kernels, and the
    rest of the step's wall time (GPU idle: the host's); one panel per benchmark, preset, card and commit, each on
    its own scale. The dashed line marks the dense step's non-attention GPU time: the floor no attention kernel
    can pass."""
    frame = step_gpu_rows(results)
    if frame.empty:
        return []
    groups = list(frame.sort_values("pattern").groupby(["benchmark", "preset", "card", "commit"], sort=True))
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 1.0 + 0.95 * len(groups)), squeeze=False)
    for ax, ((benchmark, preset, card, commit), group) in zip(axes[:, 0], groups):
        y = np.arange(len(group))
        attention, other = group["attention_ms"].to_numpy(), group["other_ms"].to_numpy()
        idle = np.clip(group["window_ms"].to_numpy() - group["busy_ms"].to_numpy(), 0, None)
        colors = ["#3182bd" if k == "ours" else "#969696" for k in group["kernels"]]
        ax.barh(y, attention, color=colors, label="attention (blue: ours, grey: cuDNN)")
        ax.barh(y, other, left=attention, color="#fdae6b", label="other kernels")
        ax.barh(y, idle, left=attention + other, color="#eeeeee", edgecolor="#bbbbbb", label="GPU idle (host)")
        dense = group[group["pattern"] == "dense"]
        if not dense.empty:
            ax.axvline(float(dense["other_ms"].iloc[0]), color="k", ls="--", lw=1, label="dense without attention")
        ax.set_yticks(y, list(group["pattern"]), fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
        name = BENCHMARK_NAMES.get(benchmark, benchmark)
        ax.set_title(f"{name}, {preset} ({str(card).replace('NVIDIA ', '')}, {commit[:7]})", fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("ms per training step (profiled)", fontsize=8)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="upper center", ncol=4, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle("Where a training step's time goes (results/tables/step_gpu.md)", fontsize=10, y=1.03)
    return [_save(fig, out / "step_gpu.png")]


PLOTS = {
    "learning_curves": plot_learning_curves,
    "time_memory_vs_n": plot_time_memory_vs_n,
    "kernels": plot_kernels,
    "table3": plot_table3,
    "checkpointing": plot_checkpointing,
    "step_gpu": plot_step_gpu,
}
