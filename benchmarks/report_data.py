"""Reading the result CSVs for the report, and choosing which row fills each table cell.

Contract:
- `load(results_dir)` reads runs.csv, curves.csv, kernels.csv and paper/*.csv into pandas DataFrames (empty
  frames for absent files; numeric columns converted, unparseable values NaN). kernels.csv's rows of a forced SDPA
  kernel (backend `sdpa-<kernel>`, bench-kernels' comparison of dense kernels) go to `forced_sdpa`, the rest to
  `kernels`: every other table and plot compares against torch's own choice (`sdpa`), the targets' baseline.
- `run_view(runs)`: one row per run_id, the latest fit (or, without one, validate/test) row, with `test_bpd`
  filled from the latest test row of the same run evaluated at the default context, and the ranking columns
  `scale` (paper 3 > small 2 > smoke 1 > custom 0), `complete` (the run finished its learning-rate schedule).
- `pick(view, **where)`: the row chosen for one table cell: among rows matching `where`, completed runs first,
  then the largest preset scale, then the newest. So a smoke run never hides a committed small or paper row,
  and a paper-size run that only timed a few steps never stands in for a trained model's bits per dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmarks.recorder import PRESET_SCALE, read_rows

NUMERIC_RUN_COLUMNS = [
    "n",
    "layers",
    "d_model",
    "heads",
    "params",
    "steps",
    "devices",
    "val_bpd",
    "test_bpd",
    "train_bpd",
    "ms_per_iter",
    "tokens_per_s",
    "peak_gib",
    "wall_s",
    "seed",
    "batch",
    "accumulate",
    "num_nodes",
    "max_steps",
    "eval_min_context",
    "local_attn_ctx",
    "summary_ctx",
]
NUMERIC_KERNEL_COLUMNS = [
    "graph_ms",
    "n",
    "batch",
    "heads",
    "head_dim",
    "median_ms",
    "useful_tflops",
    "peak_gib",
    "tiles",
    "element_density",
    "tile_density",
    "local_attn_ctx",
    "summary_ctx",
]
NUMERIC_CURVE_COLUMNS = ["step", "wall_s", "train_bpd", "val_bpd", "lr"]
PAPER_TABLES = ("table1", "table2", "table3", "table4", "blog_memory", "hyperparameters")


@dataclass
class Results:
    runs: pd.DataFrame
    curves: pd.DataFrame
    kernels: pd.DataFrame
    paper: dict[str, pd.DataFrame] = field(default_factory=dict)
    ceilings: pd.DataFrame = field(default_factory=pd.DataFrame)  # device_ceilings.csv: copy GB/s, matmul TFLOP/s
    profiles: dict[str, str] = field(default_factory=dict)  # profiles/profile_kernels-<commit>.txt: name -> text
    step_profiles: dict[str, str] = field(default_factory=dict)  # profiles/step-<bench>-<pattern>-<preset>-<commit>.txt
    resources: pd.DataFrame = field(default_factory=pd.DataFrame)  # kernel_resources.csv (compiled, no GPU)
    forced_sdpa: pd.DataFrame = field(default_factory=pd.DataFrame)  # kernels.csv's sdpa-<kernel> rows


def _frame(path: Path, numeric: list[str]) -> pd.DataFrame:
    rows = read_rows(path)
    frame = pd.DataFrame(rows)
    for column in numeric:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def load(results_dir: str | Path) -> Results:
    root = Path(results_dir)
    paper = {}
    for name in PAPER_TABLES:
        path = root / "paper" / f"{name}.csv"
        paper[name] = pd.read_csv(path) if path.exists() else pd.DataFrame()
    kernels = _frame(root / "kernels.csv", NUMERIC_KERNEL_COLUMNS)
    forced = kernels["backend"].str.startswith("sdpa-") if "backend" in kernels else pd.Series(False, kernels.index)
    return Results(
        runs=_frame(root / "runs.csv", NUMERIC_RUN_COLUMNS),
        curves=_frame(root / "curves.csv", NUMERIC_CURVE_COLUMNS),
        kernels=kernels[~forced],
        forced_sdpa=kernels[forced],
        paper=paper,
        ceilings=_frame(root / "device_ceilings.csv", ["copy_gbps", "matmul_tflops"]),
        profiles={p.name: p.read_text() for p in sorted((root / "profiles").glob("profile_kernels-*.txt"))},
        step_profiles={p.name: p.read_text() for p in sorted((root / "profiles").glob("step-*.txt"))},
        resources=_frame(root / "kernel_resources.csv", ["registers", "spill_bytes", "programs_per_sm", "waves"]),
    )


def _default_context(frame: pd.DataFrame) -> pd.Series:
    return frame["eval_min_context"].isna() | (frame["eval_min_context"] == 0)


def run_view(runs: pd.DataFrame, include_invalid: bool = False) -> pd.DataFrame:
    """One row per run (see the module docstring); empty when there are no runs. Runs marked invalid (status
    "invalid: <why>") only with include_invalid."""
    if runs.empty or "run_id" not in runs:
        return pd.DataFrame()
    runs = runs.sort_values("date", kind="stable")
    stage_order = {"fit": 2, "validate": 1, "test": 0}
    runs = runs.assign(_stage=runs["stage"].map(stage_order).fillna(-1))
    base = runs.sort_values(["_stage", "date"], kind="stable").groupby("run_id", sort=False).tail(1)
    tests = runs[(runs["stage"] == "test") & _default_context(runs) & runs["test_bpd"].notna()]
    latest_test = tests.groupby("run_id").tail(1).set_index("run_id")["test_bpd"]
    view = base.drop(columns=["_stage", "test_bpd"]).copy()
    # A row whose status starts with "invalid:" stays in runs.csv and the all-runs table for the record, with
    # the reason, but no other table uses it (e.g. a "compiled" run that dynamo ran eagerly).
    view["invalid"] = view["status"].fillna("").astype(str).str.startswith("invalid:")
    view["test_bpd"] = view["run_id"].map(latest_test)
    view["devices"] = view["devices"].fillna(1)  # rows written without a device count ran on one device
    view["scale"] = view["preset"].map(PRESET_SCALE).fillna(-1).astype(int)
    view["complete"] = view["max_steps"].isna() | (view["steps"] >= view["max_steps"])
    view["bpd"] = view["test_bpd"].where(view["test_bpd"].notna(), view["val_bpd"])
    # Runs of `gpu_train.sh table4` (their note starts with "table4") are Table 4's own: one wall-clock budget
    # per length; other tables leave them out, and Table 4 prefers them.
    note = view["note"].fillna("").astype(str)
    view["job"] = ""
    view.loc[note.str.startswith("table4"), "job"] = "table4"
    view.loc[note.str.startswith("table4, largest"), "job"] = "table4-largest"  # gpu_train.sh table4-largest
    # Runs with model.compile_mode (the jobs' notes say "compiled (<mode>)"): Table 2 keeps them apart from eager.
    view["compile_mode"] = note.str.extract(r"compiled \(([\w-]+)\)", expand=False).fillna("")
    view["bpd_split"] = view["test_bpd"].notna().map({True: "test", False: "val"})
    view.loc[view["bpd"].isna(), "bpd_split"] = ""
    if not include_invalid:
        view = view[~view["invalid"]]
    return view.reset_index(drop=True)


def rank(frame: pd.DataFrame, prefer_complete: bool = True) -> pd.DataFrame:
    """Rows best first: completed runs, then larger preset scale, then more steps, then newer (so a short
    side run, e.g. a memory measurement, never hides a longer run of the same preset)."""
    if frame.empty:
        return frame
    keys = (["complete"] if prefer_complete else []) + ["scale", "steps", "date"]
    return frame.sort_values(keys, ascending=False, kind="stable")


def pick(view: pd.DataFrame, prefer_complete: bool = True, need: tuple[str, ...] = (), **where) -> pd.Series | None:
    """The best row matching `where` (column == value; a list means "one of") that has a value in every
    column of `need`, or None."""
    if view.empty:
        return None
    mask = pd.Series(True, index=view.index)
    for column in need:
        mask &= view[column].notna()
    for column, value in where.items():
        if column not in view:
            return None
        mask &= view[column].isin(value) if isinstance(value, (list, tuple, set)) else (view[column] == value)
    chosen = rank(view[mask], prefer_complete)
    return None if chosen.empty else chosen.iloc[0]
