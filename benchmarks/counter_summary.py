"""Summarize Nsight Compute's pages for one call (benchmarks/hw_counters.py): per kernel, its time, throughputs and
occupancy, the warps' stall reasons, and the SASS instruction mix with the share of stall samples each opcode holds.

    python -m benchmarks.counter_summary out/counters-strided_12288_1_128   # reads <prefix>-raw.csv, -source.csv

The inputs are `ncu --import R --page raw --csv` and `--page source --csv --print-source sass` (gpu_session.sh's
`counters` step writes both; its `dram` step only the raw page, of a few metrics: then the instruction mix is left
out); the output is plain text (results/profiles/counters-*.txt keep it). Times and DRAM bytes are also summed over
the call's kernels: the whole call's traffic.
"""

from __future__ import annotations

import argparse
import collections
import csv
import re
from pathlib import Path

import pandas as pd

SOL = {
    "gpu__time_duration.sum": "time",
    "dram__bytes_read.sum": "DRAM read",
    "dram__bytes_write.sum": "DRAM written",
    "lts__t_sector_hit_rate.pct": "L2 hit rate",
    "lts__throughput.avg.pct_of_peak_sustained_elapsed": "L2 of peak",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed": "SM of peak",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "occupancy",
    "smsp__issue_active.avg.pct_of_peak_sustained_active": "issue slots busy, of active cycles",
    "launch__registers_per_thread": "registers",
    "smsp__sass_inst_executed_op_local_ld.sum": "spill loads (warp instr)",
    "smsp__inst_executed.sum": "warp instructions",
}
SUMMED = {"gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum"}  # per call, not per kernel
STALL = re.compile(r"smsp__average_warps_issue_stalled_(\w+)_per_issue_active\.ratio")


def _number(text) -> float:
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return 0.0


def throughput_table(raw_csv: Path) -> str:
    raw = pd.read_csv(raw_csv, low_memory=False)
    units, raw = raw.iloc[0], raw.iloc[1:]  # ncu's second row names each metric's unit
    names = [f"{i} {n}" for i, n in enumerate(raw["Kernel Name"])]
    lines = ["kernel: " + " | ".join(names)]
    for m, label in SOL.items():
        if m not in raw:
            continue
        values = [_number(v) for v in raw[m]]
        unit = units[m] if isinstance(units[m], str) else ""
        line = f"{label}{f' ({unit})' if unit else ''}: " + " | ".join(f"{v:.4g}" for v in values)
        lines.append(line + (f" | sum {sum(values):.4g}" if m in SUMMED else ""))
    stalls = {STALL.match(c).group(1): [_number(v) for v in raw[c]] for c in raw.columns if STALL.match(c)}
    if not stalls:
        return "\n".join(lines)
    lines.append("stall reasons, cycles per issued instruction (largest first by the sum over kernels):")
    for reason, values in sorted(stalls.items(), key=lambda kv: -sum(kv[1])):
        if max(values) >= 0.05:
            lines.append(f"  {reason}: " + " | ".join(f"{v:.2f}" for v in values))
    return "\n".join(lines)


def instruction_mix(source_csv: Path, top: int = 12) -> str:
    kernels, header, current = [], None, None
    with open(source_csv, newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            if row[0] == "Kernel Name":
                current = {"name": row[1], "rows": []}
                kernels.append(current)
            elif row[0] == "Address":
                header = row
            elif current is not None and header is not None:
                current["rows"].append(dict(zip(header, row)))
    lines = []
    for i, kernel in enumerate(kernels):
        executed, sampled = collections.Counter(), collections.Counter()
        for r in kernel["rows"]:
            words = re.sub(r"^@!?U?P\w+\s+", "", r["Source"].strip()).split()
            opcode = words[0].split(".")[0] if words else "?"
            executed[opcode] += _number(r["Instructions Executed"])
            sampled[opcode] += _number(r["Warp Stall Sampling (All Samples)"])
        total_e, total_s = sum(executed.values()) or 1, sum(sampled.values()) or 1
        lines.append(f"{i} {kernel['name']}: {total_e:.0f} warp instructions, {total_s:.0f} stall samples")
        lines += [
            f"  {op:10s} {n / total_e * 100:5.1f}% of instructions, {sampled[op] / total_s * 100:5.1f}% of samples"
            for op, n in executed.most_common(top)
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", help="path prefix of the -raw.csv and -source.csv files")
    args = parser.parse_args(argv)
    raw, source = Path(f"{args.prefix}-raw.csv"), Path(f"{args.prefix}-source.csv")
    if not raw.is_file():
        parser.error(f"missing {raw}")
    print(throughput_table(raw))
    print()
    if source.is_file():
        print(instruction_mix(source))
    else:
        print(f"(no {source.name}: the instruction mix is left out)")


if __name__ == "__main__":
    main()
