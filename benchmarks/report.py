"""`sparse-repro report`: regenerate the tables and plots from the result CSVs alone.

Reads <results>/runs.csv, curves.csv, kernels.csv and paper/*.csv (any of them may be missing) and writes
- <results>/tables/<name>.md for every table of benchmarks/report_tables.py, report_dense.py and report_growth.py
  (paper beside ours);
- <results>/plots/*.png (learning curves, time and memory against n, kernels, pattern pictures, where a step's
  time goes);
- <results>/REPORT.md: every table and plot in one page, with the sample files under <results>/samples/;
- optionally the block between `<!-- report:begin -->` and `<!-- report:end -->` of a README (`--readme`).
Nothing else is touched; the CSVs are only read. A table without rows says "not run yet".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.recorder import PRESET_SCALE, read_rows
from benchmarks.report_data import load
from benchmarks.report_dense import table_dense_kernels
from benchmarks.report_growth import table_kernel_growth
from benchmarks.report_plots import PLOTS, plot_patterns
from benchmarks.report_tables import TABLES as KERNEL_AND_RUN_TABLES

# Tables in modules of their own (they use report_tables' formatting), each placed after the table it extends: how the
# kernels' time grows with n after the kernel table, ours against each dense kernel after the targets' measurements.
PLACED_AFTER = {
    "kernels": ("kernel_growth", table_kernel_growth),
    "kernel_targets": ("dense_kernels", table_dense_kernels),
}


def _with_placed_tables(tables: dict) -> dict:
    out = {}
    for name, make in tables.items():
        out[name] = make
        if name in PLACED_AFTER:
            extra, make_extra = PLACED_AFTER[name]
            out[extra] = make_extra
    return out


TABLES = _with_placed_tables(KERNEL_AND_RUN_TABLES)

README_BEGIN = "<!-- report:begin -->"
README_END = "<!-- report:end -->"
README_TABLES = (
    "table1",
    "table2",
    "table2_compiled",
    "table3",
    "table4",
    "paper_size",
    "step_gpu",
    "scaling",
    "checkpointing",
    "kernel_growth",
    "kernel_target_status",
)  # REPORT.md: all (kernel_targets, every measurement of the targets, and dense_kernels, ours against each dense
#   kernel, are linked from kernel_target_status)
SAMPLE_SUFFIXES = (".png", ".txt", ".wav")


def _sample_key(path: Path) -> tuple[str, int]:
    """(benchmark, preset scale) of a file named <benchmark>-<pattern>-<preset>[_NNN].<ext>."""
    parts = path.stem.split("_")[0].split("-")
    preset = parts[-1] if len(parts) >= 3 else "custom"
    return parts[0], PRESET_SCALE.get(preset, -1)


def _sample_provenance(row: dict | None) -> str:
    if row is None:
        return "_(no row in samples/samples.csv: where it came from is not recorded)_\n"
    drawn = f"temperature {row['temperature']}, seed {row['seed']}" + (
        f", {row['length']} tokens" if row["length"] else ""
    )
    return (
        f"_from run {row['run_id']} (runs.csv; {row['variant']}) at step {row['checkpoint_step']}; {drawn}; "
        f"{row['gpu']}, commit {row['commit']}, {row['date']}_\n"
    )


def _samples_section(results_dir: Path) -> str:
    """Per benchmark, the samples of the largest preset shown (images inline), the others linked."""
    folder = results_dir / "samples"
    files = sorted(p for p in folder.rglob("*") if p.suffix in SAMPLE_SUFFIXES) if folder.is_dir() else []
    lines = ["## Samples\n"]
    if not files:
        return "\n".join(lines + ["not run yet (`sparse-repro sample` writes them under results/samples/)\n"])
    best: dict[str, int] = {}
    for path in files:
        benchmark, scale = _sample_key(path)
        best[benchmark] = max(best.get(benchmark, -1), scale)
    records = (
        {row["file"]: row for row in read_rows(folder / "samples.csv")} if (folder / "samples.csv").is_file() else {}
    )
    others = []
    for path in files:
        rel = path.relative_to(results_dir).as_posix()
        benchmark, scale = _sample_key(path)
        if scale < best[benchmark]:
            others.append(f"[{rel}]({rel})")
            continue
        if path.suffix == ".png":
            lines.append(f"**{rel}**\n\n![{path.stem}]({rel})\n")
        elif path.suffix == ".txt":
            text = path.read_text(encoding="utf-8", errors="replace")[:600]
            lines.append(f"**{rel}** (first 600 characters)\n\n```\n{text}\n```\n")
        else:
            lines.append(f"- audio: [{rel}]({rel})\n")
        lines.append(_sample_provenance(records.get(path.name)))
    if others:
        lines.append("Samples of smaller presets: " + ", ".join(others) + "\n")
    return "\n".join(lines)


def _plots_section(plots: list[Path], results_dir: Path) -> str:
    lines = ["## Plots\n"]
    if not plots:
        return "\n".join(lines + ["not run yet\n"])
    for path in plots:
        if path.parent.name == "patterns" and path.name != "patterns.png":
            continue  # the per-pattern pictures are in the folder; the page shows the combined one
        rel = path.relative_to(results_dir).as_posix()
        lines.append(f"**{path.stem}**\n\n![{path.stem}]({rel})\n")
    return "\n".join(lines)


def update_readme(readme: Path, block: str) -> bool:
    """Replace the text between the report markers of `readme`; False (untouched) when the markers are absent."""
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return False
    new = text[: start + len(README_BEGIN)] + "\n" + block.rstrip() + "\n" + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return True


def report(results_dir: str | Path = "results", readme: str | Path | None = None, patterns: bool = True) -> list[Path]:
    """Write every table and plot (see the module docstring); returns the paths written."""
    results_dir = Path(results_dir)
    results = load(results_dir)
    tables_dir, plots_dir = results_dir / "tables", results_dir / "plots"
    tables_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    texts = {}
    for name, make in TABLES.items():
        texts[name] = make(results)
        path = tables_dir / f"{name}.md"
        path.write_text(texts[name], encoding="utf-8")
        written.append(path)
    plots: list[Path] = []
    for make in PLOTS.values():
        plots += make(results, plots_dir)
    if patterns:
        plots += plot_patterns(plots_dir)
    written += plots
    page = ["# Results\n", "Regenerated by `sparse-repro report` from the CSV files in this folder; do not edit.\n"]
    page += [texts[name] for name in TABLES]
    page += [_plots_section(plots, results_dir), _samples_section(results_dir)]
    index = results_dir / "REPORT.md"
    index.write_text("\n".join(page), encoding="utf-8")
    written.append(index)
    if readme is not None:
        readme = Path(readme)
        try:
            link = index.resolve().relative_to(readme.resolve().parent).as_posix()
        except ValueError:  # the results folder is not below the README's: link by absolute path
            link = index.resolve().as_posix()
        block = [texts[name] for name in README_TABLES]
        block.append(f"All tables, plots and samples: [{link}]({link}).\n")
        if update_readme(readme, "\n".join(block).replace("## ", "### ")):
            written.append(readme)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparse-repro report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", default="results", help="the results folder (default: results)")
    parser.add_argument(
        "--readme", default=None, help="a README whose report block to refresh (e.g. README.md); default: none"
    )
    parser.add_argument("--no-patterns", action="store_true", help="skip drawing the pattern pictures")
    args = parser.parse_args(argv)
    if not Path(args.results).is_dir():
        parser.error(f"--results {args.results} is not a folder")
    paths = report(args.results, readme=args.readme, patterns=not args.no_patterns)
    print(f"report: wrote {len(paths)} files under {args.results} (index: {Path(args.results) / 'REPORT.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
