"""What one call's DRAM traffic on this card predicts for another card of the same chip (an H200's call for an H100).

    python -m benchmarks.dram_model results/profiles/dram-strided_12288_1_128-9399856c2f35.txt \
        --to "NVIDIA H100 80GB HBM3"

Inputs: a file of gpu_session.sh's `dram` step (Nsight Compute over one forward + backward, per kernel: time, DRAM
bytes read and written; its section with L2 kept between kernels, `--cache-control none`, is the traffic of calls
run back to back), results/kernels.csv and results/device_ceilings.csv.

The model, per kernel: on the other card it takes max(its time here, its bytes / (f x the other card's copy rate)),
for f = 0.8, 0.9 and 1.0 of the copy rate (device_ceilings.csv's median). A kernel that was not bound by bandwidth
here keeps its time: the H100 and the H200 have the same SMs, clocks and matmul rate, and differ in memory (the copy
rate measured here: 2.96 against 4.16 TB/s). A kernel that becomes bandwidth-bound runs at f of the copy rate. The
call's time is the sum of the kernels', scaled by this card's CUDA-graph time over the ncu sum (ncu runs kernels one
by one; in a call, programmatic launches overlap them, and a sustained call runs at the clock its power limit
allows, lower than ncu's kernel at a time (KERNEL_NOTES, "Clocks and power"): the factor is below 1 where the
overlap weighs more, above 1 where, likely, the clock does). The speed-up divides SDPA's forward + backward on the
other card (every measured row of kernels.csv: the least and the greatest) by that time. Also printed: bytes over
the copy rate, the bound that no kernels moving these bytes can pass. A prediction, not a measurement, and only
between cards of one SM design; kernels whose time here was set by something the other card has less of are not
modelled.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmarks.kernel_resources import parse_case

TIME_UNITS = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}  # to microseconds
BYTE_UNITS = {"byte": 1e-6, "Kbyte": 1e-3, "Mbyte": 1.0, "Gbyte": 1e3}  # to megabytes
FRACTIONS = (0.8, 0.9, 1.0)


@dataclass
class CallTraffic:
    case: str
    kernels: list[str]
    time_us: list[float]
    read_mb: list[float]
    written_mb: list[float]

    @property
    def bytes_mb(self) -> list[float]:
        return [r + w for r, w in zip(self.read_mb, self.written_mb)]


def _values(line: str) -> list[float]:
    """'label (unit): a | b | sum c' -> [a, b] in the unit's base (microseconds, megabytes)."""
    label, _, rest = line.partition(": ")
    unit = re.search(r"\((\w+)\)", label)
    scale = {**TIME_UNITS, **BYTE_UNITS}.get(unit.group(1) if unit else "", None)
    if scale is None:
        raise ValueError(f"unknown unit in {line!r}")
    return [float(v) * scale for v in rest.split(" | ") if not v.startswith("sum")]


def read_traffic(path: Path, cache: str = "none") -> CallTraffic:
    """The section of a `dram` file whose ncu run had `--cache-control <cache>`."""
    sections = re.split(r"^== ", path.read_text(), flags=re.M)
    for section in sections:
        header = section.splitlines()[0] if section.strip() else ""
        if f"--cache-control {cache} " not in header:
            continue
        lines = {line.split(" (")[0].split(":")[0]: line for line in section.splitlines()}
        missing = [key for key in ("kernel", "time", "DRAM read", "DRAM written") if key not in lines]
        if missing:
            raise ValueError(f"{path}: the --cache-control {cache} section lacks {', '.join(missing)}")
        kernels = [k.split(" ", 1)[1] for k in lines["kernel"].partition(": ")[2].split(" | ")]
        return CallTraffic(
            section.split(",")[0], kernels, _values(lines["time"]), _values(lines["DRAM read"]),
            _values(lines["DRAM written"]),
        )  # fmt: skip
    raise ValueError(f"{path}: no section of ncu --cache-control {cache}")


def _case_rows(kernels: pd.DataFrame, case: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Our kernel's and SDPA's fwd+bwd rows of the case (head dim 64, 16 heads, bf16, measured)."""
    pattern, n, batch = parse_case(case)
    rows = kernels[
        (kernels["pass"] == "fwd+bwd") & (kernels.n == n) & (kernels.batch == batch) & (kernels.head_dim == 64)
        & (kernels.heads == 16) & (kernels.dtype.astype(str).str.contains("bfloat16|bf16")) & (kernels.status == "ok")
    ]  # fmt: skip
    ours = rows[(rows.backend == "triton") & (rows.pattern == pattern.attn_mode)]
    for column in ("local_attn_ctx", "summary_ctx"):  # a fixed pattern has both, a strided one the first
        if getattr(pattern, column, None) is not None:
            ours = ours[ours[column] == getattr(pattern, column)]
    return ours, rows[rows.backend == "sdpa"]


def predict(traffic: CallTraffic, kernels: pd.DataFrame, ceilings: pd.DataFrame, here: str, there: str) -> str:
    copy = ceilings.groupby("gpu").copy_gbps.median()
    for gpu in (here, there):
        if gpu not in copy:
            raise ValueError(f"no copy rate of {gpu!r} in device_ceilings.csv (cards: {', '.join(copy.index)})")
    ours, sdpa = _case_rows(kernels, traffic.case)
    ours_here = ours[(ours.gpu == here) & ours.graph_ms.notna()]
    sdpa_there = sdpa[sdpa.gpu == there].median_ms
    if ours_here.empty or sdpa_there.empty:
        raise ValueError(f"kernels.csv lacks {traffic.case}: ours with graph_ms on {here}, or SDPA on {there}")
    newest = ours_here.sort_values("date", kind="stable").iloc[-1]
    graph_over_ncu = newest.graph_ms * 1e3 / sum(traffic.time_us)
    total_mb = sum(traffic.bytes_mb)
    lines = [
        f"{traffic.case}: {total_mb:.0f} MB per call ({sum(traffic.read_mb):.0f} read, {sum(traffic.written_mb):.0f} "
        f"written), ncu's kernel times {sum(traffic.time_us):.1f} us, CUDA graphs {newest.graph_ms * 1e3:.1f} us on "
        f"{here} ({newest.commit}, {newest.date}): graph over ncu {graph_over_ncu:.3f}",
        f"SDPA fwd+bwd on {there}: {sdpa_there.min():.3f}-{sdpa_there.max():.3f} ms ({len(sdpa_there)} rows)",
        "per kernel: time here us, MB, share of this card's copy rate",
    ]
    for name, t, mb in zip(traffic.kernels, traffic.time_us, traffic.bytes_mb):
        lines.append(f"  {name}: {t:.1f} us, {mb:.1f} MB, {mb / t / (copy[here] / 1e3):.0%} of {copy[here]:.0f} GB/s")
    bound_us = total_mb / (copy[there] / 1e3)
    lines.append(
        f"bytes over {there}'s copy rate ({copy[there]:.0f} GB/s): {bound_us:.1f} us, so at most "
        f"{sdpa_there.min() * 1e3 / bound_us:.1f}-{sdpa_there.max() * 1e3 / bound_us:.1f}x SDPA"
    )
    for f in FRACTIONS:
        rate = f * copy[there] / 1e3  # MB per us
        t_there = graph_over_ncu * sum(max(t, mb / rate) for t, mb in zip(traffic.time_us, traffic.bytes_mb))
        lines.append(
            f"kernels at up to {f:.0%} of its copy rate: {t_there:.1f} us, "
            f"{sdpa_there.min() * 1e3 / t_there:.2f}-{sdpa_there.max() * 1e3 / t_there:.2f}x SDPA"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dram_files", nargs="+", type=Path, help="files of gpu_session.sh's dram step")
    parser.add_argument("--here", default="NVIDIA H200", help="the card the files were measured on")
    parser.add_argument("--to", dest="there", default="NVIDIA H100 80GB HBM3", help="the card to predict")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    tables = args.results / "kernels.csv", args.results / "device_ceilings.csv"
    missing = [str(p) for p in (*args.dram_files, *tables) if not p.is_file()]
    if missing:
        parser.error(f"missing {', '.join(missing)}")
    kernels = pd.read_csv(tables[0], low_memory=False)
    ceilings = pd.read_csv(tables[1])
    for path in args.dram_files:
        try:
            print(predict(read_traffic(path), kernels, ceilings, args.here, args.there))
        except ValueError as err:
            parser.error(str(err))
        print()


if __name__ == "__main__":
    main()
