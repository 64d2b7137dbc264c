"""The report: paper numbers beside ours, row choice by scale, 'not run yet', plots and the README block."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.recorder import CURVE_COLUMNS, KERNEL_COLUMNS, RUN_COLUMNS, append_rows
from benchmarks.report import README_BEGIN, README_END, report, update_readme
from benchmarks.report_data import load, pick, run_view
from benchmarks.report_plots import fitted_slope

REPO = Path(__file__).resolve().parents[2]
PAPER_DIR = REPO / "results" / "paper"
PAPER_MD = REPO.parent / "shared" / "PAPER.md"


@pytest.fixture
def results(tmp_path):
    shutil.copytree(PAPER_DIR, tmp_path / "paper")
    return tmp_path


def _run(run_id, benchmark, pattern, preset, date, stage="fit", **values):
    row = {"run_id": run_id, "stage": stage, "benchmark": benchmark, "pattern": pattern, "preset": preset,
           "variant": "subset-4000-1000", "n": 3072 if benchmark == "cifar10" else 12288, "layers": 2,
           "d_model": 64, "heads": 2, "params": 100_000, "steps": 10, "max_steps": 10, "devices": 1, "gpu": "H100",
           "commit": "abc", "date": date}  # fmt: skip
    row.update(values)
    return row


def test_paper_tables_hold_the_papers_numbers():
    t1, t2 = pd.read_csv(PAPER_DIR / "table1.csv"), pd.read_csv(PAPER_DIR / "table2.csv")
    t3, t4 = pd.read_csv(PAPER_DIR / "table3.csv"), pd.read_csv(PAPER_DIR / "table4.csv")
    headline = t1[t1["model"] == "Sparse Transformer"].set_index("benchmark")["bpd"].to_dict()
    assert headline == {"cifar10": 2.80, "enwik8": 0.99, "imagenet64": 3.44, "audio": 1.97}
    assert len(t1) == 15 and len(t2) == 6 and len(t3) == 6 and len(t4) == 3
    assert t2.set_index(["benchmark", "pattern"]).loc[("enwik8", "strided"), "bpd"] == 1.13
    for table in (t1, t2, t3, t4, pd.read_csv(PAPER_DIR / "blog_memory.csv")):
        assert table["source"].str.contains("PAPER.md").all()


@pytest.mark.skipif(not PAPER_MD.exists(), reason="../shared/PAPER.md is not beside the repository")
def test_every_paper_number_appears_in_paper_md():
    text = PAPER_MD.read_text()
    for name in ("table2", "table3", "table4"):
        for value in pd.read_csv(PAPER_DIR / f"{name}.csv", dtype=str)["bpd"]:
            assert value in text, (name, value)


def test_no_results_yet_says_not_run_yet(results):
    written = report(results, patterns=False)
    for name in ("table1", "table2", "table3", "table4", "kernels", "paper_size", "scaling", "runs"):
        text = (results / "tables" / f"{name}.md").read_text()
        assert "not run yet" in text, name
    assert "2.80" in (results / "tables" / "table1.md").read_text()  # the paper's side is always there
    assert results / "REPORT.md" in written and not (results / "runs.csv").exists()


def test_a_smoke_row_never_hides_a_small_row(results):
    append_rows(results / "runs.csv", [
        _run("small1", "cifar10", "strided", "small", "2025-01-01T00:00:00Z", val_bpd=3.5, ms_per_iter=40),
        _run("smoke1", "cifar10", "strided", "smoke", "2025-06-01T00:00:00Z", val_bpd=7.9, ms_per_iter=900, gpu="cpu"),
        _run("paper1", "cifar10", "strided", "paper", "2025-06-02T00:00:00Z", val_bpd=7.0, steps=5, max_steps=360000),
    ], RUN_COLUMNS)  # fmt: skip
    view = run_view(load(results).runs)
    assert pick(view, benchmark="cifar10", pattern="strided")["run_id"] == "small1"  # paper1 is partial
    assert pick(view, prefer_complete=False, benchmark="cifar10")["run_id"] == "paper1"
    report(results, patterns=False)
    table2 = (results / "tables" / "table2.md").read_text()
    cifar_strided = next(line for line in table2.splitlines() if "CIFAR" in line and "| strided |" in line)
    assert "3.500 (val)" in cifar_strided and "| small |" in cifar_strided and "subset-4000-1000" in cifar_strided
    paper_size = (results / "tables" / "paper_size.md").read_text()
    assert "5 of 360,000" in paper_size


def test_test_rows_join_their_fit_and_table3_uses_contexts(results):
    rows = [_run(f"e-{p}", "enwik8", p, "small", "2025-01-01T00:00:00Z", val_bpd=1.5, ms_per_iter=m)
            for p, m in (("dense", 100.0), ("fixed", 40.0), ("strided", 30.0))]  # fmt: skip
    rows.append(_run("e-fixed", "enwik8", "fixed", "small", "2025-01-02T00:00:00Z", stage="test", test_bpd=1.4))
    for context, bpd in ((6144, 1.41), (12160, 1.38)):
        rows.append(_run("e-fixed", "enwik8", "fixed", "small", "2025-01-03T00:00:00Z", stage="test",
                         test_bpd=bpd, eval_min_context=context))  # fmt: skip
    append_rows(results / "runs.csv", rows, RUN_COLUMNS)
    report(results, patterns=False)
    table2 = (results / "tables" / "table2.md").read_text()
    fixed = next(line for line in table2.splitlines() if "Enwik8" in line and "| fixed |" in line)
    assert "1.400 (test)" in fixed and "| 0.40 |" in fixed and "| 0.42 |" in fixed  # ours / dense, paper / dense
    table3 = (results / "tables" / "table3.md").read_text()
    assert "| 6,144 | 0.9952 | 1.4100 |" in table3 and "| 12,160 | 0.9908 | 1.3800 |" in table3
    assert "| 9,216 | 0.9936 | not run yet |" in table3


def test_plots_from_curves_runs_and_kernels(results):
    date = "2025-01-01T00:00:00Z"
    append_rows(results / "runs.csv", [
        _run("c-dense", "cifar10", "dense", "small", date, val_bpd=3.4, ms_per_iter=50, peak_gib=2.0),
        _run("c-strided", "cifar10", "strided", "small", date, val_bpd=3.5, ms_per_iter=30, peak_gib=1.0),
    ], RUN_COLUMNS)  # fmt: skip
    curves = [{"run_id": r, "step": s, "wall_s": s * 0.1, "train_bpd": 8 - s / 10} for r in ("c-dense", "c-strided")
              for s in range(1, 11)]  # fmt: skip
    curves += [{"run_id": "c-dense", "step": 10, "wall_s": 1.0, "val_bpd": 3.4}]
    append_rows(results / "curves.csv", curves, CURVE_COLUMNS)
    kernels = []
    for backend, power in (("triton", 1.0), ("sdpa", 2.0)):
        for n in (1024, 4096, 16384):
            pattern = "strided" if backend == "triton" else "all"
            kernels.append({"pattern": pattern, "backend": backend, "n": n, "batch": 1, "heads": 16, "head_dim": 64,
                            "dtype": "bf16", "pass": "fwd+bwd", "median_ms": (n / 1024) ** power, "peak_gib": n / 1e4,
                            "status": "ok", "gpu": "H100", "date": "2025"})  # fmt: skip
    kernels.append({**kernels[2], "n": 1048576, "status": "skipped", "reason": "over the time budget", "median_ms": ""})
    append_rows(results / "kernels.csv", kernels, KERNEL_COLUMNS)
    written = {p.name for p in report(results, patterns=False)}
    assert {"learning_curves_cifar10.png", "time_memory_vs_n.png", "kernels_time_fwd_bwd_d64.png",
            "kernels_memory_fwd_bwd_d64.png", "kernels_speedup_fwd_bwd_d64.png"} <= written  # fmt: skip
    table = (results / "tables" / "kernels.md").read_text()
    assert "| strided |  |  | 16,384 | 1 | 16 | 64 | bf16 | fwd+bwd | 16.000 |" in table and "| 16.00 |" in table
    assert "skipped (over the time budget)" in table


def test_fitted_slope_of_a_power_law():
    assert fitted_slope([1024, 2048, 4096], [1.0, 4.0, 16.0]) == pytest.approx(2.0)
    assert fitted_slope([1024], [1.0]) != fitted_slope([1024], [1.0])  # NaN with one point


def test_readme_block_is_replaced_between_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n{README_BEGIN}\nold\n{README_END}\n\n## After\n")
    assert update_readme(readme, "new table")
    assert readme.read_text() == f"# Title\n\nintro\n{README_BEGIN}\nnew table\n{README_END}\n\n## After\n"
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, "x") and plain.read_text() == "no markers\n"


def test_report_refreshes_the_readme_block_from_a_relative_results_folder(results, monkeypatch):
    readme = results.parent / "README.md"
    readme.write_text(f"# T\n{README_BEGIN}\n{README_END}\n")
    monkeypatch.chdir(results.parent)
    written = report(Path(results.name), readme=readme, patterns=False)
    text = readme.read_text()
    assert readme in written and "### Table 1" in text
    assert f"[{results.name}/REPORT.md]({results.name}/REPORT.md)" in text


def test_samples_of_the_largest_preset_are_shown(results):
    from PIL import Image

    folder = results / "samples"
    folder.mkdir()
    for preset in ("smoke", "small"):
        Image.new("RGB", (8, 8)).save(folder / f"cifar10-strided-{preset}.png")
    report(results, patterns=False)
    page = (results / "REPORT.md").read_text()
    assert "![cifar10-strided-small](samples/cifar10-strided-small.png)" in page
    assert "![cifar10-strided-smoke]" not in page and "samples/cifar10-strided-smoke.png" in page


def test_side_runs_stay_in_their_own_tables(results):
    """A short memory run (checkpointing on and off) and multi-GPU runs never stand in for Table 2's one-GPU
    run; they fill the checkpointing and scaling tables, each beside its own baseline."""
    early, late = "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"
    append_rows(results / "runs.csv", [
        _run("main", "cifar10", "strided", "small", early, steps=300, max_steps=300, val_bpd=6.0, ms_per_iter=39.0),
        _run("off", "cifar10", "strided", "small", late, steps=60, max_steps=60, val_bpd=7.3, ms_per_iter=35.0,
             peak_gib=2.0, checkpointing="false"),
        _run("on", "cifar10", "strided", "small", late, steps=60, max_steps=60, val_bpd=7.6, ms_per_iter=70.0,
             peak_gib=0.5, checkpointing="true"),
        _run("one", "cifar10", "strided", "small", late, steps=200, max_steps=200, val_bpd=6.4, batch=8,
             tokens_per_s=500.0, commit="ddp"),
        _run("four", "cifar10", "strided", "small", late, steps=200, max_steps=200, val_bpd=6.0, batch=8,
             tokens_per_s=1800.0, devices=4, strategy="ddp", commit="ddp"),
    ], RUN_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table2 = (results / "tables" / "table2.md").read_text()
    line = next(row for row in table2.splitlines() if "CIFAR" in row and "| strided |" in row)
    assert "6.000 (val)" in line and "| 300 |" in line
    checkpointing = (results / "tables" / "checkpointing.md").read_text()
    assert "| 35.0 | 70.0 | 2.00 | 2.00 | 0.50 | 0.25 |" in checkpointing
    scaling = (results / "tables" / "scaling.md").read_text()
    assert "| 4 | ddp | 8 | 32 | 200 | 1,800 | 3.60 | 6.000 | 8 | 500 | 6.400 |" in scaling


def test_table4_shows_training_bits_where_nothing_was_held_out(results):
    append_rows(results / "runs.csv", [
        _run("a1m", "audio", "strided", "paper", "2025-01-01T00:00:00Z", n=1048576, train_bpd=3.21, steps=40,
             max_steps=2000, peak_gib=30.5),
        _run("a65", "audio", "strided", "paper", "2025-01-01T00:00:00Z", n=65536, train_bpd=2.5, val_bpd=2.61),
    ], RUN_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table4 = (results / "tables" / "table4.md").read_text()
    assert "| 1,048,576 | 3M | 2.99 | 0.1M | 3.210 (train) | 30.50 |" in table4
    assert "| 65,536 | 152M | 1.97 | 0.1M | 2.610 (val) |" in table4


def test_table3_and_checkpointing_plots(results):
    date = "2025-01-01T00:00:00Z"
    rows = [_run("e", "enwik8", "fixed", "small", date, stage="test", test_bpd=b, eval_min_context=m)
            for m, b in ((0, 1.5), (6144, 1.45), (12160, 1.4))]  # fmt: skip
    rows += [_run(f"c{flag}", "cifar10", "strided", "small", date, ms_per_iter=ms, peak_gib=gib, checkpointing=flag)
             for flag, ms, gib in (("false", 30.0, 2.0), ("true", 60.0, 0.5))]  # fmt: skip
    append_rows(results / "runs.csv", rows, RUN_COLUMNS)
    written = report(results, patterns=False)
    plots = results / "plots"
    assert plots / "table3_context.png" in written and plots / "checkpointing.png" in written
    assert (plots / "table3_context.png").stat().st_size > 10_000


def test_table4_job_runs_stay_in_table4_and_win_there(results):
    """A complete small audio run never stands in for the table4 job's (partial, budget-bound) run at the same
    n, and the table4 runs stay out of Table 2 and the paper-size table."""
    append_rows(results / "runs.csv", [
        _run("small", "audio", "strided", "small", "2025-02-01T00:00:00Z", n=65536, val_bpd=7.19, steps=300,
             max_steps=300),
        _run("t4", "audio", "strided", "paper", "2025-01-01T00:00:00Z", n=65536, val_bpd=7.32, steps=214,
             max_steps=2000, note="table4, paper size for n=65536, budget 120 s"),
        _run("t4long", "audio", "strided", "paper", "2025-01-01T00:00:00Z", n=262144, val_bpd=6.95, steps=331,
             max_steps=2000, note="table4, paper size for n=262144, budget 120 s"),
    ], RUN_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table4 = (results / "tables" / "table4.md").read_text()
    assert "| 65,536 | 152M | 1.97 | 0.1M | 7.320 (val) |" in table4
    assert "| 262,144 | 25M | 2.17 | 0.1M | 6.950 (val) |" in table4
    assert "6.950" not in (results / "tables" / "table2.md").read_text()
    assert "| 262,144" not in (results / "tables" / "paper_size.md").read_text()


def test_kernel_targets_pair_rows_of_one_process_and_name_the_floors(results):
    """Our kernel is compared with SDPA only from the same process (commit, card and start date), and the floors
    come from that run's device ceilings."""
    from benchmarks.bench_kernels import CEILING_COLUMNS

    first, second = "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"

    def cell(backend, pattern, ms, date, **extra):
        return {"pattern": pattern, "local_attn_ctx": 128 if pattern == "strided" else "", "summary_ctx": "",
                "backend": backend, "n": 12288, "batch": 1, "heads": 16, "head_dim": 64, "dtype": "bfloat16",
                "pass": "fwd+bwd", "median_ms": ms, "useful_tflops": 40.0, "peak_gib": 0.2, "status": "ok",
                "gpu": "H100", "commit": "abc", "date": date, **extra}  # fmt: skip

    append_rows(results / "kernels.csv", [
        cell("triton", "strided", 1.2, first),  # no SDPA row of its process: not a row of the table
        cell("sdpa", "all", 2.5, second), cell("triton", "strided", 0.5, second),
    ], KERNEL_COLUMNS)  # fmt: skip
    append_rows(results / "device_ceilings.csv", [
        {"gpu": "H100", "copy_gbps": 3000, "matmul_tflops": 800, "commit": "abc", "date": second},
    ], CEILING_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table = (results / "tables" / "kernel_targets.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| strided")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[4:8] == ["0.500", "2.500", "5.00x", "no (50% of it)"]
    # compute floor: 40 TFLOP/s x 0.5 ms of useful work at 800 TFLOP/s; memory: 8 x 16 x 12,288 x 64 x 2 B at 3 TB/s
    assert cells[8:11] == ["", "", ""]  # rows without graph_ms (schema < 3): no graph times
    assert cells[13] == "0.025" and cells[14] == "0.067" and cells[15] == "7.5"
    assert cells[18] == "engine thread"  # rows without the column ran their backward on the engine's thread


def test_kernel_targets_pair_rows_by_the_backward_thread(results):
    """Within one process every backend's backward runs on one thread; a row is paired with SDPA of that thread."""
    date = "2025-01-02T00:00:00Z"

    def cell(backend, pattern, ms, thread, graph="", call_graphs=""):
        return {"pattern": pattern, "local_attn_ctx": 128 if pattern == "strided" else "", "summary_ctx": "",
                "backend": backend, "n": 12288, "batch": 1, "heads": 16, "head_dim": 64, "dtype": "bfloat16",
                "pass": "fwd+bwd", "median_ms": ms, "useful_tflops": 40.0, "peak_gib": 0.2, "status": "ok",
                "gpu": "H100", "commit": "abc", "date": date, "autograd_thread": thread,
                "graph_ms": graph, "call_graphs": call_graphs}  # fmt: skip

    append_rows(results / "kernels.csv", [
        cell("sdpa", "all", 2.0, "engine"), cell("triton", "strided", 1.0, "engine", call_graphs="off"),
        cell("sdpa", "all", 2.4, "caller", 2.3), cell("triton", "strided", 0.4, "caller", 0.46, call_graphs="on"),
    ], KERNEL_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table = (results / "tables" / "kernel_targets.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| strided")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert [(r[6], r[18]) for r in rows] == [("2.00x", "engine thread"), ("6.00x", "caller thread, call graphs")]
    assert [r[8:11] for r in rows] == [["", "", ""], ["0.460", "2.300", "5.00x"]]  # graph times, same process


def test_kernels_table_names_the_card_of_a_flex_cell_from_another_card(results):
    def cell(backend, pattern, ms, gpu, peak=0.2):
        return {"pattern": pattern, "local_attn_ctx": 128 if pattern != "all" else "", "summary_ctx": "",
                "backend": backend, "n": 12288, "batch": 1, "heads": 16, "head_dim": 128, "dtype": "bfloat16",
                "pass": "fwd", "median_ms": ms, "useful_tflops": 40.0, "peak_gib": peak, "status": "ok",
                "gpu": gpu, "commit": "abc", "date": "2025-01-02T00:00:00Z"}  # fmt: skip

    append_rows(results / "kernels.csv", [
        cell("triton", "strided", 0.5, "NVIDIA H100 80GB HBM3"), cell("flex", "strided", 2.0, "NVIDIA H200"),
        cell("triton", "local", 0.4, "NVIDIA H100 80GB HBM3"), cell("flex", "local", 9.0, "NVIDIA H100 80GB HBM3", 5),
    ], KERNEL_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table = (results / "tables" / "kernels.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in
            table.splitlines() if line.startswith("| strided") or line.startswith("| local")}  # fmt: skip
    assert rows["strided"][10] == "2.000 (on H200)" and rows["local"][10] == "9.000 †"


def test_table4_prefers_the_largest_model_that_fits(results):
    append_rows(results / "runs.csv", [
        _run("paper", "audio", "strided", "paper", "2025-01-01T00:00:00Z", n=65536, val_bpd=7.3, steps=214,
             max_steps=2000, note="table4, paper size for n=65536, budget 120 s"),
        _run("largest", "audio", "strided", "paper", "2025-01-01T00:00:00Z", n=65536, val_bpd=6.9, steps=90,
             max_steps=2000, params=700_000_000, note="table4, largest that fits for n=65536, budget 120 s"),
    ], RUN_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table4 = (results / "tables" / "table4.md").read_text()
    assert "| 65,536 | 152M | 1.97 | 700.0M | 6.900 (val) |" in table4


def test_kernel_profiles_table_reads_the_profile_files(results):
    folder = results / "profiles"
    folder.mkdir()
    (folder / "profile_kernels-abc.txt").write_text(
        "# gpu: H100; torch 2.11; triton 3.6; commit abc; 2025-01-01T00:00:00Z\n"
        "strided:12288:1:128 triton (direct launches) fwd_bwd: eager 0.9545 ms, graph 0.4431 ms, host 0.9924 ms\n"
        "all:12288:1 sdpa (direct launches) fwd_bwd: eager 2.6395 ms, graph 2.6655 ms, host 0.4063 ms\n"
        "   50    0.011    0.000    0.050    0.001 {method 'run_backward'}\n"
    )
    (folder / "profile_kernels-old.txt").write_text(
        "strided:12288:1:128 triton fwd: eager 0.2348 ms, graph 0.1191 ms, host 0.1211 ms\n"
    )
    report(results, patterns=False)
    table = (results / "tables" / "kernel_profiles.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| strided") or line.startswith("| all")]
    assert rows == [
        "| strided:12288:1:128 | triton | direct | fwd+bwd | 0.9545 | 0.4431 | 0.9924 | host | H100 | "
        "profile_kernels-abc.txt |",
        "| all:12288:1 | sdpa |  | fwd+bwd | 2.6395 | 2.6655 | 0.4063 | GPU | H100 | profile_kernels-abc.txt |",
        "| strided:12288:1:128 | triton | triton | fwd | 0.2348 | 0.1191 | 0.1211 | host | see README | "
        "profile_kernels-old.txt |",
    ]


def test_step_gpu_table_reads_profiled_steps_and_bounds_the_step_ratio(tmp_path):
    """results/profiles/step-*.txt with a `# step-gpu:` line (benchmarks/trace_stalls.py) -> per-step GPU time,
    attention against the rest, and the floor any attention kernel could reach against dense."""
    from benchmarks.report_tables import table_step_gpu

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    head = "# steps 4..5 of benchmarks/configs/enwik8/{p}-paper.yaml on NVIDIA H100 80GB HBM3, sorted by x\n"
    lines = {
        "dense": "# step-gpu: steps=2 window_ms=270.00 busy_ms=100.00 attention_ms=50.00 other_ms=50.00 "
        "attention_kernels=vendor\n",
        "fixed": "# step-gpu: steps=2 window_ms=200.00 busy_ms=80.00 attention_ms=30.00 other_ms=50.00 "
        "attention_kernels=ours\n",
    }
    for pattern, line in lines.items():
        (profiles / f"step-enwik8-{pattern}-paper-abcdef123456.txt").write_text(head.format(p=pattern) + "x\n" + line)
    (profiles / "step-enwik8-fixed-paper-0123456789ab.txt").write_text(head.format(p="fixed"))  # no line: skipped
    text = table_step_gpu(load(tmp_path))
    rows = [r for r in text.splitlines() if r.startswith("| Enwik8")]
    assert len(rows) == 2
    dense, fixed = (r.split(" | ") for r in rows)
    assert dense[1:10] == ["dense", "paper", "270", "100", "50.0", "50.0", "vendor", "1.00", "0.50"]
    assert fixed[1:10] == ["fixed", "paper", "200", "80.0", "30.0", "50.0", "ours", "0.80", "0.50"]
    assert fixed[10] == "NVIDIA H100 80GB HBM3" and fixed[11].startswith("abcdef123456")
    from benchmarks.report_plots import plot_step_gpu

    assert [p.name for p in plot_step_gpu(load(tmp_path), tmp_path / "plots")] == ["step_gpu.png"]
    assert (tmp_path / "plots" / "step_gpu.png").stat().st_size > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert plot_step_gpu(load(empty), empty / "plots") == []  # nothing profiled: no figure


def test_kernel_profiles_name_the_descriptor_setting_of_each_path(results):
    """A file that records HEAD's TMA_BAND_LOADS names which of `direct` and `tma` loaded by descriptor."""
    folder = results / "profiles"
    folder.mkdir()
    (folder / "profile_kernels-def.txt").write_text(
        "# gpu: H200; torch 2.11; triton 3.6; commit def; 2025-01-01T00:00:00Z\n"
        "# HEAD's plan.TMA_BAND_LOADS: True (the `tma` path runs the other setting)\n"
        "strided:3072:8:96 triton (direct launches) fwd: eager 0.2 ms, graph 0.15 ms, host 0.1 ms\n"
        "strided:3072:8:96 triton (tma launches) fwd: eager 0.2 ms, graph 0.16 ms, host 0.1 ms\n"
    )
    report(results, patterns=False)
    table = (results / "tables" / "kernel_profiles.md").read_text()
    assert "| triton | direct, descriptors on | fwd |" in table and "| triton | tma, descriptors off | fwd |" in table


def test_kernel_plots_take_one_card_per_figure():
    """A newer row from another card does not join a sweep measured on one: the figure keeps the card with the most
    triton cells (the newest on a tie), whose newest row per cell it plots, other backends' included."""
    from benchmarks.report_plots import plotted_kernel_cells as _kernel_cells

    def row(n, gpu, date, ms, backend="triton"):
        return {"pattern": "strided", "local_attn_ctx": 128, "summary_ctx": None, "backend": backend, "n": n,
                "batch": 1, "heads": 16, "head_dim": 64, "dtype": "bfloat16", "pass": "fwd+bwd", "median_ms": ms,
                "status": "ok", "gpu": gpu, "date": date}  # fmt: skip

    rows = [row(n, "H100", "2026-01-01", 1.0) for n in (1024, 4096, 16384)]
    rows += [row(16384, "H200", "2026-02-01", 0.5), row(16384, "H100", "2026-01-02", 0.9)]
    rows += [row(n, "H200", "2026-02-01", 2.0, backend="sdpa") for n in (1024, 4096, 16384, 65536)]  # not ours
    cells = _kernel_cells(pd.DataFrame(rows))
    assert set(cells["gpu"]) == {"H100"} and sorted(cells["n"]) == [1024, 4096, 16384]
    assert cells.set_index("n").loc[16384, "median_ms"] == 0.9  # H100's newest row of that cell
    rows += [row(n, "H200", "2026-02-01", 0.5) for n in (1024, 4096)]  # three cells each: the newest card wins
    assert set(_kernel_cells(pd.DataFrame(rows))["gpu"]) == {"H200"}
    # a float16 run of a few cells (bench-kernels --dtype float16) does not join the bfloat16 sweep's lines
    rows += [{**row(n, "H200", "2026-03-01", 0.4), "dtype": "float16"} for n in (4096, 16384)]
    cells = _kernel_cells(pd.DataFrame(rows))
    ours = cells[cells["backend"] == "triton"].set_index("n")
    assert set(cells["dtype"]) == {"bfloat16"} and ours.loc[16384, "median_ms"] == 0.5


def test_speedups_pair_our_rows_with_sdpa_of_the_same_process():
    """The speed-up at an n divides times of one benchmark process (one date) where one measured both; else the newest
    of each, flagged, so the plot can draw it hollow."""
    from benchmarks.report_plots import speedups_over_sdpa

    def row(pattern, backend, n, date, ms):
        return {"pattern": pattern, "backend": backend, "n": n, "date": date, "median_ms": ms}

    rows = pd.DataFrame([
        row("strided", "triton", 1024, "A", 1.0), row("all", "sdpa", 1024, "A", 3.0),
        row("all", "sdpa", 1024, "B", 9.0),  # a newer SDPA row from a process without ours: not paired
        row("strided", "triton", 4096, "C", 2.0), row("all", "sdpa", 4096, "D", 8.0),  # never in one process
        row("strided", "triton", 16384, "E", 1.0),  # no SDPA at all: no point
    ])  # fmt: skip
    points = speedups_over_sdpa(rows, "strided", "triton").set_index("n")
    assert points.loc[1024, "speedup"] == 3.0 and points.loc[1024, "same_process"]
    assert points.loc[4096, "speedup"] == 4.0 and not points.loc[4096, "same_process"]
    assert 16384 not in points.index


def test_graph_speedups_pair_only_processes_that_replayed_both():
    """The dotted GPU-time line: graph_ms of ours and SDPA's from one process; a cell without graph_ms (slow cells are
    not replayed) or without a same-process SDPA replay has no point, and no newest-of-each fallback either."""
    from benchmarks.report_plots import speedups_over_sdpa

    def row(pattern, backend, n, date, ms, graph):
        return {"pattern": pattern, "backend": backend, "n": n, "date": date, "median_ms": ms, "graph_ms": graph}

    rows = pd.DataFrame([
        row("strided", "triton", 1024, "A", 0.6, 0.02), row("all", "sdpa", 1024, "A", 0.15, 0.05),
        row("strided", "triton", 4096, "C", 0.4, 0.06), row("all", "sdpa", 4096, "D", 0.25, 0.24),  # two processes
        row("strided", "triton", 16384, "E", 80.0, ""), row("all", "sdpa", 16384, "E", 900.0, ""),  # not replayed
    ])  # fmt: skip
    eager = speedups_over_sdpa(rows, "strided", "triton").set_index("n")
    graphs = speedups_over_sdpa(rows, "strided", "triton", "graph_ms").set_index("n")
    assert eager.loc[1024, "speedup"] == pytest.approx(0.25) and graphs.loc[1024, "speedup"] == pytest.approx(2.5)
    assert list(graphs.index) == [1024] and list(eager.index) == [1024, 4096, 16384]


def _target_cell(backend, pattern, ms, date, gpu="NVIDIA H200", n=12288, graph="", peak=0.2, **extra):
    return {"pattern": pattern, "local_attn_ctx": 128 if pattern == "strided" else "", "summary_ctx": "",
            "backend": backend, "n": n, "batch": 1, "heads": 16, "head_dim": 64, "dtype": "bfloat16",
            "pass": "fwd+bwd", "median_ms": ms, "useful_tflops": 40.0, "peak_gib": peak, "status": "ok", "gpu": gpu,
            "commit": date[:10], "date": date, "autograd_thread": "caller", "graph_ms": graph, **extra}  # fmt: skip


def test_kernel_target_status_gives_the_newest_and_the_best_measurement_per_card(results):
    """One row per target case and card: the newest same-process pair, whether it meets the target eager and in
    CUDA graphs, and the best of that card's measurements; a case never measured says so."""
    d1, d2, d3 = "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z"
    d4 = "2025-01-05T00:00:00Z"
    append_rows(results / "kernels.csv", [
        _target_cell("sdpa", "all", 2.6, d1, gpu="NVIDIA H100 80GB HBM3"),
        _target_cell("triton", "strided", 0.5, d1, gpu="NVIDIA H100 80GB HBM3"),
        _target_cell("sdpa", "all", 2.6, d2, graph=2.6), _target_cell("triton", "strided", 0.25, d2, graph=0.25),
        _target_cell("sdpa", "all", 2.6, d3, graph=2.6), _target_cell("triton", "strided", 0.3, d3, graph=0.26),
        _target_cell("triton", "strided", 0.1, "2025-01-04T00:00:00Z"),  # no SDPA row of its process: left out
        # a sweep's process, backward on autograd's engine thread: counted and in the best, not the newest
        _target_cell("sdpa", "all", 2.6, d4, autograd_thread="engine"),
        _target_cell("triton", "strided", 0.65, d4, autograd_thread="engine"),
    ], KERNEL_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table = (results / "tables" / "kernel_target_status.md").read_text()
    rows = {
        tuple(c.strip() for c in line.strip("|").split("|"))[4]: [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines() if line.startswith("| strided l=128 | 12,288")
    }  # fmt: skip
    h100, h200 = rows["H100 80GB HBM3"], rows["H200"]
    assert h100[5:10] == ["1", "0.500", "2.600", "5.20x", "no (52% of it)"] and h100[10:12] == ["", ""]
    assert h200[5:12] == ["3", "0.300", "2.600", "8.67x", "no (87% of it)", "10.00x", "yes"]
    assert h200[12:16] == ["0.20 / 0.20", "40.0 / 40.0", "", ""]  # no device ceilings recorded: no floors
    assert h200[16:19] == ["10.40x (2025-01-02)", "10.40x (2025-01-02)", "2025-01-03"]
    fixed = next(line for line in table.splitlines() if line.startswith("| fixed l=128 c=32"))
    assert "not run yet" in fixed


def test_kernel_target_status_checks_peak_memory_in_the_targets_scope_and_names_the_rest(results):
    """The memory target holds for fwd+bwd at head dim 64; outside that scope a forward above SDPA's by its
    log-sum-exp rows is counted as such, and a larger excess is listed by name."""
    date = "2025-01-02T00:00:00Z"

    def fwd(backend, pattern, peak, n=262144):
        return _target_cell(backend, pattern, 1.0, date, n=n, peak=peak, **{"pass": "fwd"})

    append_rows(results / "kernels.csv", [
        _target_cell("sdpa", "all", 2.6, date, peak=0.27), _target_cell("triton", "strided", 0.3, date, peak=0.22),
        # 16 heads x 262,144 rows x 4 bytes = 16 MiB = 0.015625 GiB of log-sum-exp
        fwd("sdpa", "all", 2.5310), fwd("triton", "strided", 2.5466),
        fwd("sdpa", "all", 0.0510, n=1024), fwd("triton", "fixed", 0.0820, n=1024),
    ], KERNEL_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    text = (results / "tables" / "kernel_target_status.md").read_text()
    assert "**met** in all 1 cases" in text
    assert "ours is higher in 2. In 1 the excess is no more than the forward's log-sum-exp rows" in text
    assert "The other 1: fixed n = 1,024 D = 64 fwd on H200: 0.082 against 0.051 GiB" in text

    append_rows(results / "kernels.csv", [
        _target_cell("sdpa", "all", 2.6, "2025-01-03T00:00:00Z", peak=0.27),
        _target_cell("triton", "strided", 0.3, "2025-01-03T00:00:00Z", peak=0.28),
    ], KERNEL_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    text = (results / "tables" / "kernel_target_status.md").read_text()
    assert "**not met** in 1 of 1 cases: strided n = 12,288 D = 64 fwd+bwd on H200: 0.280 against 0.270 GiB" in text


def test_readme_block_shows_the_target_status_and_report_md_keeps_the_history(results, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold\n{README_END}\n")
    append_rows(results / "kernels.csv", [
        _target_cell("sdpa", "all", 2.6, "2025-01-02T00:00:00Z"),
        _target_cell("triton", "strided", 0.3, "2025-01-02T00:00:00Z"),
    ], KERNEL_COLUMNS)  # fmt: skip
    report(results, readme=readme, patterns=False)
    block = readme.read_text()
    assert "### Kernel targets (issue 7): where each stands" in block
    assert "every measurement, per commit" not in block
    assert "## Kernel targets (issue 7): every measurement, per commit" in (results / "REPORT.md").read_text()


def test_kernel_target_status_names_the_larger_floor(results):
    from benchmarks.bench_kernels import CEILING_COLUMNS

    date = "2025-01-02T00:00:00Z"
    append_rows(results / "kernels.csv", [
        _target_cell("sdpa", "all", 2.6, date), _target_cell("triton", "strided", 0.5, date),
    ], KERNEL_COLUMNS)  # fmt: skip
    append_rows(results / "device_ceilings.csv", [
        {"gpu": "NVIDIA H200", "copy_gbps": 3000, "matmul_tflops": 800, "commit": date[:10], "date": date},
    ], CEILING_COLUMNS)  # fmt: skip
    report(results, patterns=False)
    table = (results / "tables" / "kernel_target_status.md").read_text()
    line = next(line for line in table.splitlines() if line.startswith("| strided l=128 | 12,288"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # memory: 8 x 16 x 12,288 x 64 x 2 B at 3 TB/s = 0.067 ms, above compute's 40 TFLOP/s x 0.5 ms / 800 = 0.025
    assert cells[14:16] == ["memory 0.067 ms", "7.5"]


def test_kernel_growth_fits_time_work_and_memory_over_the_gpu_bound_n(results):
    """The growth table's slopes: time, useful FLOPs (useful TFLOP/s x time) and memory against n, over n >= 65,536
    only (a host-bound small n would flatten them), forward + backward only; a backend with one such n has no row."""
    from benchmarks.report_growth import growth_rows

    def cell(backend, pattern, n, ms, work, passes="fwd+bwd", date="2025-01-02T00:00:00Z"):
        return {"pattern": pattern, "local_attn_ctx": 256 if pattern == "strided" else None, "summary_ctx": None,
                "backend": backend, "n": n, "batch": 1, "heads": 16, "head_dim": 64, "dtype": "bfloat16",
                "pass": passes, "median_ms": f"{ms:.6g}", "useful_tflops": f"{work / ms:.6g}", "peak_gib": n / 2**20,
                "status": "ok", "gpu": "NVIDIA H200", "commit": "abc", "date": date}  # fmt: skip

    big = (65_536, 262_144, 1_048_576)
    rows = [cell("triton", "strided", n, 1e-6 * n**1.4, 1e-6 * n**1.5) for n in big]
    rows += [cell("triton", "strided", 1024, 5.0, 1e-6 * 1024**1.5)]  # host-bound: would pull the slope down
    rows += [cell("sdpa", "all", n, 1e-9 * n**2, 1e-9 * n**2) for n in big]
    rows += [cell("triton", "strided", n, 1e-6 * n, 1e-6 * n, passes="fwd") for n in big]  # forward rows: not here
    rows += [cell("flex", "strided", 65_536, 1.0, 1.0)]  # one n: no slope, no row
    append_rows(results / "kernels.csv", rows, KERNEL_COLUMNS)
    growth = growth_rows(load(results).kernels).set_index(["pattern", "backend"])
    assert sorted(growth.index) == [("all", "sdpa"), ("strided", "triton")]
    strided = growth.loc[("strided", "triton")]
    assert (strided["n_from"], strided["n_to"], strided["points"]) == (65_536, 1_048_576, 3)
    assert strided["time_slope"] == pytest.approx(1.4, abs=1e-3) and strided["work_slope"] == pytest.approx(
        1.5, abs=1e-3
    )
    assert strided["memory_slope"] == pytest.approx(1.0, abs=1e-3)
    assert growth.loc[("all", "sdpa"), "time_slope"] == pytest.approx(2.0, abs=1e-3)
    report(results, patterns=False)
    table = (results / "tables" / "kernel_growth.md").read_text()
    assert "| strided | triton | 64 | 65,536 to 1,048,576 (3) | 1.40 | 1.50 | 1.00 |" in table


def test_kernel_growth_without_kernel_rows_says_not_run_yet(results):
    report(results, patterns=False)
    assert "not run yet" in (results / "tables" / "kernel_growth.md").read_text()


def test_a_legend_slope_is_fitted_where_the_gpu_sets_the_time():
    """Time against n is flat where an eager call waits for the host (small n): the legend fits n >= 65,536 when two
    such n were measured, and says so; otherwise every n."""
    from benchmarks.report_plots import _slope_label

    n = pd.Series([1024, 4096, 65_536, 262_144, 1_048_576])
    ms = pd.Series([0.4, 0.4, 1.0 * 4**0, 4.0**1.4, 16.0**1.4])  # host-bound, then n^1.4
    assert _slope_label(n, ms) == "slope 1.40 for n >= 64K"
    assert _slope_label(n[:3], ms[:3]).startswith("slope 0.")  # one large n: every n
    assert _slope_label(n[:1], ms[:1]) == "one n, no slope"
