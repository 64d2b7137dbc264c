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
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from pathlib import Path

GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
RUNTIME_CATEGORIES = ("cuda_runtime", "cuda_driver")
# Kernels that compute attention, by name: ours (sparse/kernels), cuDNN's and flash SDPA, FlexAttention's
# compiled template (inductor names it triton_tem_fused_*). The rest of a step is the model around attention.
ATTENTION_KERNELS = {"ours": ("_sparse_",), "vendor": ("sdpa", "fmha", "flash"), "flex": ("triton_tem_fused",)}


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
    text = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
    return f"# step-gpu: {text} attention_kernels={kinds}"


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
    parser.add_argument("trace", help="a chrome trace from torch.profiler (.json or .json.gz)")
    parser.add_argument("--top", type=int, default=12, help="rows per list")
    parser.add_argument("--steps", type=int, default=None, help="training steps in the trace (per-step line)")
    parser.add_argument("--min-gap-us", type=float, default=200.0, help="list GPU idle gaps at least this long")
    args = parser.parse_args(argv)
    if not Path(args.trace).is_file():
        parser.error(f"no such trace file: {args.trace}")
    print(summarize(args.trace, args.top, args.min_gap_us, args.steps), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
