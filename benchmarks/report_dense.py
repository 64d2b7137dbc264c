"""The report's table of our kernel against each of SDPA's dense kernels.

Dense SDPA is every speed-up's baseline, and torch picks its kernel (cuDNN's, FlashAttention-2's, the memory-efficient
one, or the math path that materialises the n^2 scores) by GPU, dtype and version. `sparse-repro bench-kernels
--backends triton,sdpa,sdpa-flash,sdpa-cudnn,...` measures each forced kernel beside torch's choice in one process;
this table reads those rows (report_data's `forced_sdpa`) so a ratio can be read against each.

Contract: `table_dense_kernels(results)` -> markdown. One row per case and card, from the newest process (commit, card,
start date, backward thread) that measured our kernel and at least one forced SDPA kernel at the same n, batch, heads,
head dim, dtype and pass (earlier ones are in kernels.csv): our time, then torch's choice and each forced kernel as
"ms, our speed-up over it", eager and replayed from CUDA graphs. Timings compare only inside one process; a kernel the
card did not offer shows why.
"""

from __future__ import annotations

import pandas as pd

from benchmarks.report_data import Results
from benchmarks.report_tables import _card, fmt, markdown

KERNEL_ORDER = ("cudnn", "flash", "efficient", "math")  # as rows name them (bench_kernels.SDPA_KERNELS)
PROCESS = ["commit", "gpu", "date", "autograd_thread"]
SHAPE = ["n", "batch", "heads", "head_dim", "dtype", "pass"]


def _versus(ours: pd.Series, dense: pd.Series | None) -> str:
    """'ms, speed-up (graphs: speed-up)' of ours over `dense`, or why `dense` has no time."""
    if dense is None:
        return ""
    if dense["status"] != "ok":
        reason = str(dense["reason"])
        if reason.startswith("no SDPA kernel: ") and "(" in reason:  # bench_kernels.sdpa_kernel_run's "why", shortened
            return "not offered: " + reason.split("(", 1)[1].rstrip(")")[:80]
        return "skipped: " + reason[:80]
    cell = f"{fmt(dense['median_ms'], 3)} ms, {dense['median_ms'] / ours['median_ms']:.2f}x"
    if pd.notna(dense.get("graph_ms")) and pd.notna(ours.get("graph_ms")):
        cell += f" (graphs {dense['graph_ms'] / ours['graph_ms']:.2f}x)"
    return cell


def _newest(frame: pd.DataFrame, shape: pd.Series) -> pd.Series | None:
    same = frame
    for column in SHAPE:
        same = same[same[column] == shape[column]]
    return same.iloc[-1] if not same.empty else None


def table_dense_kernels(results: Results) -> str:
    out = ["## Our kernel against each of SDPA's dense kernels\n"]
    out.append(
        "SDPA (`torch.nn.functional.scaled_dot_product_attention`, causal) picks one of several dense kernels; the "
        "targets' speed-ups are over torch's own choice (`sdpa`, named in the column's cells). Here the same "
        "process also forced each kernel (`bench-kernels --backends triton,sdpa,sdpa-<kernel>`, "
        "torch.nn.attention.sdpa_kernel): "
        "per cell the dense kernel's median ms and our kernel's speed-up over it, eager and with both calls replayed "
        "from CUDA graphs. `math` materialises the n^2 scores, as the dense kernels of 2019 did; a kernel the card, "
        "dtype or head dim does not offer is skipped with torch's reason.\n"
    )
    headers = ["case", "n", "B", "H", "D", "dtype", "pass", "ours ms", "torch's choice", *KERNEL_ORDER, "card",
               "commit", "date"]  # fmt: skip
    newest = {}  # (case columns, card) -> the row of the newest process that forced a kernel there
    forced, kernels = results.forced_sdpa, results.kernels
    if not forced.empty and not kernels.empty:
        ok = kernels[kernels["status"] == "ok"]
        for process, dense_forced in forced.sort_values("date", kind="stable").groupby(
            PROCESS, sort=False, dropna=False
        ):
            in_process = ok
            for column, value in zip(PROCESS, process):
                in_process = in_process[in_process[column] == value]
            ours = in_process[in_process["backend"] == "triton"]
            chosen = in_process[in_process["backend"] == "sdpa"]
            for _, t in ours.iterrows():
                by_kernel = {k: _newest(dense_forced[dense_forced["backend"] == f"sdpa-{k}"], t) for k in KERNEL_ORDER}
                if all(row is None for row in by_kernel.values()):
                    continue
                default = _newest(chosen, t)
                choice = "" if default is None else f"{default.get('sdpa_kernel') or '?'}: {_versus(t, default)}"
                case = t["pattern"] + "".join(
                    f" {name}={int(t[column])}"
                    for name, column in (("l", "local_attn_ctx"), ("c", "summary_ctx"))
                    if pd.notna(t[column])
                )
                row = [
                    case, f"{int(t['n']):,}", fmt(t["batch"], 0), fmt(t["heads"], 0), fmt(t["head_dim"], 0),
                    t["dtype"], t["pass"], fmt(t["median_ms"], 3), choice,
                    *(_versus(t, by_kernel[k]) for k in KERNEL_ORDER),
                    _card(t["gpu"]), t["commit"], t["date"],
                ]  # fmt: skip
                newest[(*row[:7], row[-3])] = row  # a later process of the same case and card replaces an earlier
    out.append(markdown(headers, sorted(newest.values(), key=lambda row: row[-1])))
    return "\n".join(out)
