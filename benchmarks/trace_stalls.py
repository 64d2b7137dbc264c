"""Where a host-bound step waits: read a torch.profiler chrome trace and say what the CPU and the GPU did.

    python -m benchmarks.trace_stalls out/profile-enwik8-fixed-paper.trace.json.gz [--top 12]

Why: an operator table (benchmarks/step_profiler.py) says how long each operator took on the CPU, not why. The
paper-size Enwik8 step with our kernels spent 675 us per aten::addmm call on the CPU against 52 us with cuDNN's
attention (results/profiles/step-enwik8-*-06b7535c9b99.txt) while its GPU was busy for less than half the step:
the CPU was waiting for something. The trace has every operator, every CUDA runtime/driver call inside it and
every GPU kernel, linked by correlation id, which is enough to tell the candidates apart:

- a launch that blocks because the GPU is far behind: long cudaLaunchKernel calls whose kernels start long after
  they were queued (launch-to-start delay of milliseconds), GPU busy near 100% of the window;
- a synchronizing call (cudaStreamSynchronize, cudaDeviceSynchronize, cudaMemcpy, cudaFree, cudaEventSynchronize,
  a module load): long runtime calls of those names, then GPU idle gaps after the queue drains;
- host work or a lock outside CUDA: a long operator with no long runtime call inside it.

Input: a chrome trace as torch.profiler's export_chrome_trace writes it (.json or .json.gz). Output: plain text,
also returned by `summarize(path)` (the step profiler appends it to its table).

    python -m benchmarks.trace_stalls --restate results/profiles/step-*.txt

rewrites step profiles' per-step line (`# step-gpu:`) from the kernel table in the same file, for profiles whose
trace was not kept (restate_step_gpu says how, and when it refuses).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
RUNTIME_CATEGORIES = ("cuda_runtime", "cuda_driver")
# Kernels that compute attention, by name: ours (every Triton kernel of sparse/kernels), cuDNN's and flash SDPA,
# FlexAttention's compiled template (inductor names it triton_tem_fused_*). The rest of a step is the model around
# attention. Ours are listed whole because a needle of "_sparse_" missed the backward kernels added after it
# (_group_bwd_kernel, _dq_dkdv_kernel), which then counted as the model's: tests/benchmarks/test_trace_stalls.py
# checks this list against the kernels the modules define.
OUR_KERNELS = (
    "_sparse_fwd_kernel",
    "_sparse_dq_kernel",
    "_sparse_dkdv_kernel",
    "_dq_dkdv_kernel",
    "_band_bwd_kernel",
    "_group_bwd_kernel",
    "_delta_kernel",
)
ATTENTION_KERNELS = {"ours": OUR_KERNELS, "vendor": ("sdpa", "fmha", "flash"), "flex": ("triton_tem_fused",)}
STEP_GPU_PREFIX = "# step-gpu: "


def attention_kind(kernel_name: str) -> str | None:
    name = kernel_name.lower()
    for kind, needles in ATTENTION_KERNELS.items():
        if any(needle in name for needle in needles):
            return kind
    return None


def load_events(path: str | Path) -> list[dict]:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    return [e for e in events if e.get("ph") == "X" and "dur" in e]


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def _idle_gaps(intervals: list[tuple[float, float]], min_gap: float) -> list[tuple[float, float]]:
    gaps, end = [], None
    for start, stop in sorted(intervals):
        if end is not None and start - end >= min_gap:
            gaps.append((end, start))
        end = stop if end is None else max(end, stop)
    return gaps


def _ops_at(ops: list[dict], tid, ts: float) -> str:
    """'outermost / innermost' CPU operator running on thread `tid` at time ts ('- / -' if none)."""
    running = [op for op in ops if op["tid"] == tid and op["ts"] <= ts <= op["ts"] + op["dur"]]
    if not running:
        return "- / -"
    return f"{max(running, key=lambda op: op['dur'])['name']} / {min(running, key=lambda op: op['dur'])['name']}"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]


def step_gpu_line(gpu: list[dict], window: float, steps: int) -> str:
    """One parseable line: per step, the window, GPU busy time, attention kernels (by kind) and other kernels.

    The report reads it (benchmarks/report_tables.py: table_step_gpu); attention_ms over busy_ms says how much
    of a step any attention kernel could save (Amdahl's bound on the step's speed-up)."""
    busy = _union_length([(e["ts"], e["ts"] + e["dur"]) for e in gpu])
    attention: dict[str, float] = defaultdict(float)
    other = 0.0
    for e in gpu:
        kind = attention_kind(e["name"]) if e.get("cat") == "kernel" else None
        if kind is None:
            other += e["dur"]
        else:
            attention[kind] += e["dur"]
    kinds = "+".join(sorted(attention)) or "none"
    fields = {
        "steps": steps,
        "window_ms": window / 1e3 / steps,
        "busy_ms": busy / 1e3 / steps,
        "attention_ms": sum(attention.values()) / 1e3 / steps,
        "other_ms": other / 1e3 / steps,
    }
    return _format_step_gpu(fields, kinds)


def _format_step_gpu(fields: dict, kinds: str) -> str:
    text = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
    return f"{STEP_GPU_PREFIX}{text} attention_kernels={kinds}"


def read_step_gpu(text: str) -> tuple[int, dict[str, str]] | None:
    """(line index, fields) of the first step-gpu line in a step profile's text, None if it has none: the reader of
    what step_gpu_line writes (the report's step table and restate_step_gpu)."""
    for index, line in enumerate(text.splitlines()):
        if line.startswith(STEP_GPU_PREFIX):
            return index, dict(item.split("=", 1) for item in line[len(STEP_GPU_PREFIX) :].split())
    return None


_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(cell: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", cell)
    if match is None:
        raise ValueError(f"not a profiler time: {cell!r}")
    return float(match.group(1)) * _TIME_UNITS[match.group(2)]


def kernel_table_ms(text: str) -> dict[str, float]:
    """Self CUDA ms per device kernel in a step profile's first table (benchmarks/step_profiler.py's file, sorted by
    self_cuda_time_total): the rows with no host time of their own. Operator rows (aten::mm, an autograd Function)
    also carry Self CUDA, the kernels they launched, and would count them twice."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "sorted by self_cuda_time_total" in line), None)
    if start is None:
        raise ValueError("no table sorted by self_cuda_time_total")
    kernels: dict[str, float] = {}
    rules = 0
    for line in lines[start + 1 :]:
        if line.startswith("---"):
            rules += 1
            if rules == 3:  # above the header, below it, below the rows
                break
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if rules < 2 or len(cells) != 11:
            continue
        name, self_cpu, self_cuda = cells[0], cells[2], cells[6]
        if _ms(self_cpu) == 0.0 and _ms(self_cuda) > 0.0:
            kernels[name] = kernels.get(name, 0.0) + _ms(self_cuda)
    return kernels


def restate_step_gpu(text: str, when: str) -> str:
    """`text` (a step profile) with its step-gpu line recomputed from the file's own kernel table, for files whose
    trace was not kept: attention per kind is the Self CUDA time of the table's kernel rows that attention_kind names
    (every attention kernel must be among its rows), over the line's steps; window and busy stay the trace's, and
    other_ms gives up exactly what attention gains (both are sums over the same GPU events). The trace's line is
    kept in a comment below the new one; a file whose line the table confirms (read with today's kernel list, or
    restated before) comes back unchanged. Raises if the table gives less attention than the trace's line did: a
    kernel that the trace counted is then missing from the table's rows, and so may others be."""
    found = read_step_gpu(text)
    if found is None:
        raise ValueError("no step-gpu line")
    index, fields = found
    lines = text.splitlines(keepends=True)
    old_line = lines[index].rstrip("\n")
    steps = int(fields["steps"])
    attention: dict[str, float] = defaultdict(float)
    for name, ms in kernel_table_ms(text).items():
        kind = attention_kind(name)
        if kind is not None:
            attention[kind] += ms / steps
    new_attention = sum(attention.values())
    old_attention = float(fields["attention_ms"])
    if new_attention < old_attention - 0.01:
        raise ValueError(
            f"the kernel table gives {new_attention:.2f} ms of attention per step, the trace gave {old_attention:.2f}"
            ": the table's rows do not hold every attention kernel"
        )
    if round(new_attention, 2) == old_attention:
        return text
    restated = {
        "steps": steps,
        "window_ms": float(fields["window_ms"]),
        "busy_ms": float(fields["busy_ms"]),
        "attention_ms": new_attention,
        "other_ms": float(fields["other_ms"]) - (new_attention - old_attention),
    }
    note = (
        f"# the line above restated {when} by `python -m benchmarks.trace_stalls --restate` from the Self CUDA "
        f"column of the kernel table (the trace is not kept); the trace's reading was: {old_line[2:]}\n"
    )
    kinds = "+".join(sorted(attention)) or "none"
    lines[index : index + 1] = [_format_step_gpu(restated, kinds) + "\n", note]
    return "".join(lines)


def summarize(path: str | Path, top: int = 12, min_gap_us: float = 200.0, steps: int | None = None) -> str:
    """steps: how many training steps the trace holds; with it, the parseable per-step line (step_gpu_line)."""
    events = load_events(path)
    ops = [e for e in events if e.get("cat") == "cpu_op"]
    runtime = [e for e in events if e.get("cat") in RUNTIME_CATEGORIES]
    gpu = [e for e in events if e.get("cat") in GPU_CATEGORIES]
    if not ops:
        return f"# {path}: no CPU operators in the trace\n"
    window_start = min(e["ts"] for e in ops + gpu)
    window_end = max(e["ts"] + e["dur"] for e in ops + gpu)
    window = window_end - window_start
    cpu_time = defaultdict(float)
    for op in ops:
        cpu_time[op["tid"]] += op["dur"]
    main_tid = max(cpu_time, key=cpu_time.get)
    head = f"# trace {Path(path).name}: window {window / 1e3:.1f} ms"
    lines = [f"{head}, {len(ops)} CPU operators, {len(gpu)} GPU events"]

    if gpu:
        intervals = [(e["ts"], e["ts"] + e["dur"]) for e in gpu]
        busy = _union_length(intervals)
        lines.append(f"GPU busy {busy / 1e3:.1f} ms = {100 * busy / window:.0f}% of the window")
        if steps:
            lines.append(step_gpu_line(gpu, window, steps))
        gaps = _idle_gaps(intervals, min_gap_us)
        gap_total = sum(b - a for a, b in gaps)
        lines.append(
            f"GPU idle gaps >= {min_gap_us:.0f} us: {len(gaps)}, {gap_total / 1e3:.1f} ms in all; the longest, with "
            "what the busiest CPU thread was running (outermost / innermost operator):"
        )
        for a, b in sorted(gaps, key=lambda g: g[0] - g[1])[:top]:
            mid = (a + b) / 2
            lines.append(
                f"  {(b - a) / 1e3:8.2f} ms at +{(a - window_start) / 1e3:8.1f} ms: {_ops_at(ops, main_tid, mid)}"
            )
    else:
        lines.append("no GPU events in the trace (a CPU run, or CUDA activity was not recorded)")

    if runtime:
        by_name: dict[str, list[float]] = defaultdict(list)
        for e in runtime:
            by_name[e["name"]].append(e["dur"])
        lines.append("CUDA runtime/driver calls (all threads): calls, total ms, median us, max us")
        for call, durs in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]:
            lines.append(
                f"  {call:40s} {len(durs):7d} {sum(durs) / 1e3:9.2f} {_percentile(durs, 0.5):9.1f} {max(durs):9.1f}"
            )
        kernel_start = {e["args"].get("correlation"): e["ts"] for e in gpu if "args" in e}
        delays = []
        for e in runtime:
            start = kernel_start.get(e.get("args", {}).get("correlation"))
            if start is not None:
                delays.append(start - (e["ts"] + e["dur"]))
        if delays:
            lines.append(
                "launch-to-start delay of each GPU event (queued work ahead of it): median "
                f"{_percentile(delays, 0.5):.0f} us, p90 {_percentile(delays, 0.9):.0f} us, max {max(delays):.0f} us"
            )
        slow = sorted(runtime, key=lambda e: -e["dur"])[:top]
        lines.append(
            "the longest runtime/driver calls: us, name, inside (outermost / innermost operator), its GPU start delay"
        )
        for e in slow:
            start = kernel_start.get(e.get("args", {}).get("correlation"))
            delay = f"{start - (e['ts'] + e['dur']):.0f} us" if start is not None else "-"
            lines.append(f"  {e['dur']:9.1f} {e['name']:28s} {_ops_at(ops, e['tid'], e['ts'])}  {delay}")

    own = defaultdict(list)
    for op in ops:
        if op["tid"] == main_tid:
            own[op["name"]].append(op["dur"])
    lines.append("operators on the busiest CPU thread by their longest call: name, calls, median us, max us")
    for op_name, durs in sorted(own.items(), key=lambda kv: -max(kv[1]))[:top]:
        lines.append(f"  {op_name:50s} {len(durs):6d} {_percentile(durs, 0.5):9.1f} {max(durs):9.1f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trace", nargs="?", help="a chrome trace from torch.profiler (.json or .json.gz)")
    parser.add_argument("--top", type=int, default=12, help="rows per list")
    parser.add_argument("--steps", type=int, default=None, help="training steps in the trace (per-step line)")
    parser.add_argument("--min-gap-us", type=float, default=200.0, help="list GPU idle gaps at least this long")
    parser.add_argument(
        "--restate",
        nargs="+",
        metavar="PROFILE",
        help="instead: rewrite these step profiles' step-gpu lines from their kernel tables (restate_step_gpu)",
    )
    args = parser.parse_args(argv)
    if args.restate:
        missing = [path for path in args.restate if not Path(path).is_file()]
        if missing or args.trace:
            parser.error(f"no such profile: {missing[0]}" if missing else "--restate takes profiles, not a trace")
        when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
        restated = {path: restate_step_gpu(Path(path).read_text(), when) for path in args.restate}  # all or none
        for path, text in restated.items():
            Path(path).write_text(text)
            print(f"{path}: {next(ln for ln in text.splitlines() if ln.startswith(STEP_GPU_PREFIX))}")
        return 0
    if not args.trace or not Path(args.trace).is_file():
        parser.error(f"no such trace file: {args.trace}" if args.trace else "a trace file is required")
    print(summarize(args.trace, args.top, args.min_gap_us, args.steps), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
