"""Kernel micro-benchmark: pattern x backend x n x head dim, forward and forward+backward, one process, one GPU.

    sparse-repro bench-kernels                      the full sweep of issue 7 (on an H200, by its parts: ~20 min below
                                                    n = 1,048,576; its cells there 6 min at head dim 64, 4.4 at 128)
    sparse-repro bench-kernels --cases targets      only the rows of issue 7's target table
    sparse-repro bench-kernels --cases models       the attention calls of the small presets' models
    sparse-repro bench-kernels --n 1024 --backends triton,sdpa --head-dims 64 --passes fwd
    sparse-repro bench-kernels --cases targets --autograd-thread caller   every backward on the calling thread
    sparse-repro bench-kernels --cases targets --call-graphs off          our launches issued one by one
    sparse-repro bench-kernels --cases targets --backends triton,sdpa,sdpa-flash,sdpa-cudnn   each dense kernel

Every cell: random bf16 inputs (never zeros), warm-up, then the median of triton.testing.do_bench (or, for a
cell whose warm run takes over a second, that run alone: one warm-up and one timed run); for triton and SDPA cells
under a second also the median of the same call replayed from a CUDA graph (graph_ms: the GPU's time without the host's,
which varies between machines); peak memory as
max_memory_allocated over one run after a reset, less what was allocated before the cell's inputs (inputs included,
the same for every backend; what earlier cells left allocated is not counted); useful TFLOP/s
from the pattern's allowed elements (forward = 4 * B * H * D * nnz, backward = 2.5 x forward); tiles computed
(the plan's for triton, the block mask's for flex). A cell predicted to exceed the time budget or the card's
memory, or that fails with out-of-memory, is recorded as skipped with the reason. A forward + backward cell's time is
predicted from the same backend's forward of that case in this process where one ran (FWD_BWD_OVER_FWD times it), else
from an assumed FLOP rate. Rows are appended to
results/kernels.csv through the recorder, with provenance. The device's measured ceilings (copy bandwidth,
bf16 matmul rate) go to results/device_ceilings.csv, so the report can name each case's floor.

Our kernels' eager calls replay each repeated call's launches from a CUDA graph (sparse/kernels/call_graphs.py: the
host issues one graph launch per forward and per backward instead of each kernel); `--call-graphs off` issues every
launch directly, as every row before schema 4 of kernels.csv did. Each triton row records which way its eager calls
went (`call_graphs`: "on" only where they were replayed).

Dense SDPA is every ratio's baseline, and torch picks its kernel per call (cuDNN's, FlashAttention-2's, the
memory-efficient one or the math path that materialises the n^2 scores, by GPU, dtype and version): each SDPA row
records the one that ran (`sdpa_kernel`, from torch's own dispatcher choice). `sdpa` is torch's choice, the baseline
of issue 7's targets; `sdpa-flash`, `sdpa-cudnn`, `sdpa-efficient` and `sdpa-math` force one kernel
(torch.nn.attention.sdpa_kernel) and are recorded as such, so a ratio can be read against each dense kernel; one the
GPU or dtype does not offer is recorded as skipped with torch's reason.

On a CPU (tests) the same code runs with a wall-clock timer and the Triton interpreter at tiny sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel

import sparse
from benchmarks.provenance import provenance
from benchmarks.recorder import KERNEL_COLUMNS, append_rows
from sparse.attention import check_gpu
from sparse.flex import block_mask_for
from sparse.kernels import build_plan, call_graphs
from sparse.kernels.launch import hopper_features_wanted
from sparse.kernels.plan import interpreting

# The paper's choice of stride near sqrt(n): CIFAR's 96 at 3,072 ([DA]), Enwik8's and ImageNet's 128 at 12,288.
STRIDE_FOR_N = {1024: 32, 3072: 96, 12288: 128, 65536: 256, 262144: 512, 1048576: 1024}
FIXED_L, FIXED_C = 128, 32  # Enwik8's fixed pattern (paper section 7.2)
FULL_SWEEP_N = (1024, 3072, 12288, 65536, 262144, 1048576)
PATTERNS = ("all", "strided", "fixed")
CEILING_COLUMNS = ["gpu", "copy_gbps", "matmul_tflops", "torch", "triton", "commit", "date"]

# Assumed rates used only to predict whether a cell fits the time budget (deliberately pessimistic).
# flex's rate is over the elements of its computed 128 x 128 blocks (skip_reason): the H200 measured about 330
# TFLOP/s for flex dense at n = 65,536 fwd+bwd, so 150 is pessimistic.
# Ours: the H200 measured 206-365 useful TFLOP/s for every n = 1,048,576 cell (8d61ca2f20c4), so 150 is
# pessimistic too (60, set on the H100's first kernels, skipped cells that run in 15-40 s).
# The math path is bound by its n^2 scores' memory traffic, not by the matmul rate.
PREDICT_TFLOPS = {"triton": 150.0, "flex": 150.0, "sdpa": 250.0, "reference": 1.0, "sdpa-math": 10.0}
# A forward + backward cell over the same backend's forward of one case, to predict the first from the second, measured
# where a process ran both: 3.25-4.20 over the 52 pairs of results/kernels.csv whose forward took over 0.1 s (triton,
# flex and SDPA, head dims 64 and 128; the FLOP count's ratio is 3.5). The rates above, the only predictor before
# 2026-12-01, had SDPA's head dim 128 forward + backward at n = 1,048,576 at 63 s a run and skipped it, where its
# forward took 8.8 s in the same process (so ~31 s at that process's ratio).
FWD_BWD_OVER_FWD = 4.5

# SDPA's kernels by the names rows use (the order torch.nn.attention.SDPBackend lists them in).
SDPA_KERNELS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
FORCED_SDPA = tuple(f"sdpa-{name}" for name in SDPA_KERNELS)
BENCH_BACKENDS = (*sparse.BACKENDS, *FORCED_SDPA)


@dataclass(frozen=True)
class Case:
    attn_mode: str
    n: int
    batch: int
    heads: int
    head_dim: int
    local_attn_ctx: int | None = None
    summary_ctx: int | None = None

    def pattern(self) -> sparse.Pattern:
        return sparse.pattern(self.attn_mode, local_attn_ctx=self.local_attn_ctx, summary_ctx=self.summary_ctx)


def stride_for(n: int) -> int:
    if n in STRIDE_FOR_N:
        return STRIDE_FOR_N[n]
    return max(1, 2 ** round(math.log2(math.sqrt(n))))


def sweep_cases(ns, attn_modes, head_dims, batch: int, heads: int) -> list[Case]:
    cases = []
    for n in ns:
        for d in head_dims:
            for mode in attn_modes:
                if mode == "all":
                    cases.append(Case("all", n, batch, heads, d))
                elif mode == "strided":
                    cases.append(Case("strided", n, batch, heads, d, local_attn_ctx=stride_for(n)))
                elif mode == "fixed":
                    cases.append(Case("fixed", n, batch, heads, d, FIXED_L, FIXED_C))
                else:
                    raise ValueError(f"unknown pattern {mode!r}; valid: all, strided, fixed")
    return cases


def target_cases() -> list[Case]:
    """Issue 7's target table: each sparse case beside dense at the same n and batch."""
    rows = [
        Case("strided", 12288, 1, 16, 64, 128),
        Case("fixed", 12288, 1, 16, 64, FIXED_L, FIXED_C),
        Case("all", 12288, 1, 16, 64),
        Case("strided", 3072, 8, 16, 64, 96),
        Case("all", 3072, 8, 16, 64),
        Case("strided", 65536, 1, 16, 64, 256),
        Case("all", 65536, 1, 16, 64),
        Case("strided", 1048576, 1, 16, 64, 1024),
        Case("all", 1048576, 1, 16, 64),
    ]
    return rows


MODEL_BENCHMARKS = ("cifar10", "enwik8", "audio")
CONFIG_DIR = Path(__file__).parent / "configs"


def model_cases(preset: str = "small") -> list[Case]:
    """The attention calls of the preset's models, one per benchmark and pattern, read from their configs:
    batch, heads, head width as the backend sees it (q, k or v zero-padded to the wider, sparse/model.py), n,
    l and c. Table 2's step times are made of these calls, not of the issue-7 shapes (H = 16, D = 64)."""
    from datamodules.cifar10 import IMAGE_TOKENS

    cases = []
    for benchmark in MODEL_BENCHMARKS:
        for pattern_name in ("dense", "strided", "fixed"):
            config = yaml.safe_load((CONFIG_DIR / benchmark / f"{pattern_name}-{preset}.yaml").read_text())
            model, data = config["model"], config["data"].get("init_args", {})
            n = data.get("seq_len") or (IMAGE_TOKENS if benchmark == "cifar10" else None)
            if n is None:
                raise ValueError(f"{benchmark}/{pattern_name}-{preset}.yaml: no data.init_args.seq_len")
            heads = model["n_head"]
            width = max(int(model["d_model"] * model.get("qk_ratio", 1.0)), model["d_model"]) // heads
            batch = data.get("batch_size", 1)
            if model["attn_mode"] == "all":
                cases.append(Case("all", n, batch, heads, width))
            elif model["attn_mode"] == "strided":
                cases.append(Case("strided", n, batch, heads, width, model["local_attn_ctx"]))
            else:
                cases.append(
                    Case(model["attn_mode"], n, batch, heads, width, model["local_attn_ctx"], model["summary_ctx"])
                )
    return cases


def is_sdpa(backend: str) -> bool:
    return backend == "sdpa" or backend in FORCED_SDPA


def backends_for(case: Case, backends) -> list[str]:
    # SDPA computes dense causal attention only: it is the baseline at attn_mode "all".
    return [b for b in backends if not is_sdpa(b) or case.attn_mode == "all"]


def sdpa_kernel_run(q: torch.Tensor, backend: str) -> str:
    """The name (SDPA_KERNELS) of the kernel torch's dispatcher picks for `backend`'s causal call on q-shaped
    inputs, under the forcing context `backend` runs in. Raises RuntimeError with torch's reason when none can run."""
    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:  # a private function: if a later torch drops it, say so in every row rather than guess
        return "unknown: this torch has no _fused_sdp_choice"
    names = {kernel: name for name, kernel in SDPA_KERNELS.items()}
    with _sdpa_context(backend), warnings.catch_warnings(record=True) as why:
        warnings.simplefilter("always")
        # torch's private choice function is what F.scaled_dot_product_attention dispatches on; it raises
        # "No viable backend" when the allowed kernels cannot take these inputs, after warning why each declined.
        try:
            choice = SDPBackend(choose(q, q, q, None, 0.0, True))
        except RuntimeError as err:
            declined = "; ".join(str(w.message).splitlines()[0] for w in why) or str(err).splitlines()[0]
            raise RuntimeError(f"{backend} cannot take this call here ({declined})") from err
    return names.get(choice, choice.name.lower())  # one this benchmark does not force (e.g. a device's override)


def _sdpa_context(backend: str):
    """torch.nn.attention.sdpa_kernel for a forced SDPA backend (`sdpa-<name>`); torch's own choice otherwise."""
    if backend in FORCED_SDPA:
        return sdpa_kernel([SDPA_KERNELS[backend.removeprefix("sdpa-")]])
    return contextlib.nullcontext()


def skip_reason(case: Case, backend: str, pass_: str, budget_s: float, forward_ms: float | None = None) -> str | None:
    """Why the cell cannot or should not run here, or None. forward_ms: this process's measurement of the same case and
    backend's forward, which predicts a forward + backward cell's time better than an assumed rate."""
    p = case.pattern()
    flops = p.flops(case.n, case.batch, case.heads, case.head_dim, backward=pass_ == "fwd+bwd")
    flops = flops + (p.flops(case.n, case.batch, case.heads, case.head_dim) if pass_ == "fwd+bwd" else 0)
    if backend == "flex" and torch.cuda.is_available():
        # Flex computes whole 128 x 128 blocks, masked or not: its time follows the block mask's computed blocks,
        # not the useful elements (a strided tile on a stride diagonal holds 128 allowed elements of 16,384).
        blocks = _tiles(case, backend, "cuda")  # summed over the mask's heads: one head when all heads are alike
        mask_heads = case.heads if p.distinct_heads else 1
        elements = blocks * (case.heads // mask_heads) * 128 * 128 * case.batch
        flops = 4 * case.head_dim * elements * (3.5 if pass_ == "fwd+bwd" else 1.0)
    rate = PREDICT_TFLOPS.get(backend, PREDICT_TFLOPS["sdpa"])  # a forced SDPA kernel: SDPA's, math apart
    predicted, basis = flops / (rate * 1e12), f"at {rate:.0f} TFLOP/s"
    if pass_ == "fwd+bwd" and forward_ms is not None:
        predicted = FWD_BWD_OVER_FWD * forward_ms / 1e3
        basis = f"({FWD_BWD_OVER_FWD}x this process's forward, {forward_ms / 1e3:.1f} s)"
    # A slow cell costs two runs (a warm-up, which also compiles, and the timed run): the budget is for both.
    if torch.cuda.is_available() and predicted * 2 > budget_s:
        return f"predicted {predicted:.0f} s per run {basis} exceeds the budget"
    if backend == "triton" and not torch.cuda.is_available() and not interpreting():
        return "no CUDA device (TRITON_INTERPRET=1 runs the kernels on the CPU, slowly)"
    if backend == "flex" and pass_ == "fwd+bwd" and not torch.cuda.is_available():
        return "FlexAttention's backward needs a GPU"
    if backend == "reference" and case.n > 4096:
        return "the reference materialises n^2 scores"
    if torch.cuda.is_available():
        elem = case.batch * case.heads * case.n * case.head_dim * 2
        need = elem * (10 if pass_ == "fwd+bwd" else 5)
        if backend == "sdpa-math":  # the scores, probabilities and (backward) their gradients, n^2 each, in fp32
            need += case.batch * case.heads * case.n**2 * 4 * (4 if pass_ == "fwd+bwd" else 2)
        # Blocks the caching allocator keeps from earlier cells are free for this one: give them back first
        # (without this the 1,048,576 cells were skipped after the 65,536 ones, "3 GiB free" on an 80 GB card).
        gc.collect()
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info()
        if need > 0.9 * free:
            return f"needs about {need / 2**30:.0f} GiB, {free / 2**30:.0f} GiB free"
    return None


def _timed_once(fn, cuda: bool) -> tuple[float, float]:
    """(ms of one call of fn() by CUDA events on a GPU, else by the wall clock; the wall clock's seconds, which include
    the host's launches and so tell a slow cell from a host-bound one)."""
    t0 = time.perf_counter()
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end), time.perf_counter() - t0
    fn()
    wall = time.perf_counter() - t0
    return wall * 1e3, wall


def _from_graphs() -> int:
    """Our calls so far whose launches ran from a call graph: replayed, or captured then replayed (a slow cell's timed
    call is the second of its key, the one captured; with replays alone counted, those rows said "off" at
    510e5ddd0d94)."""
    counts = call_graphs.state()
    return counts["replayed"] + counts["captured"]


def _timer(fn) -> float:
    """Median milliseconds of fn() over many calls (do_bench on a GPU, after its own warm-up)."""
    if torch.cuda.is_available():
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


# FlexAttention's first call compiles and its later ones run guards: not replayed from a graph here.
GRAPH_BACKENDS = ("triton", "sdpa", *FORCED_SDPA)


def _graph_ms(fn, backend: str, slow: bool) -> tuple[float | None, str]:
    """Median ms of fn() replayed from a CUDA graph (the GPU's time alone), or None and why not.

    Why beside do_bench's eager median: an eager call as short as ours at n <= 12,288 is host-bound, and the
    host differs between device calls (strided 12,288 measured 0.451 ms in one call and 0.691 ms in another
    with the same kernels; benchmarks/KERNEL_NOTES.md); the graph time follows the kernels alone."""
    if not torch.cuda.is_available() or backend not in GRAPH_BACKENDS:
        return None, ""
    if slow:
        return None, "no graph time: a call over 1 s"  # a graph of it would cost minutes of replays
    import triton.testing

    try:
        return triton.testing.do_bench_cudagraph(fn, rep=100, return_mode="median"), ""
    except Exception as err:  # noqa: BLE001 - a failed capture must not lose the eager measurement
        return None, f"no graph time: {type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''}"


def _tiles(case: Case, backend: str, device: str) -> int | None:
    p = case.pattern()
    if backend == "triton":
        return build_plan(p, case.n, case.head_dim).tiles
    if backend == "flex":
        # The cache entry the measured call uses: flex_sparse_attention keys it by str(q.device), "cuda:0" for
        # "cuda"; another key would build and hold a second BlockMask (about 1 GB per head at n = 1,048,576).
        bm = block_mask_for(p, case.n, case.heads, str(torch.empty(0, device=device).device))
        total = bm.kv_num_blocks.sum() + (bm.full_kv_num_blocks.sum() if bm.full_kv_num_blocks is not None else 0)
        return int(total)
    return None


def measure(
    case: Case,
    backend: str,
    pass_: str,
    dtype: torch.dtype,
    budget_s: float,
    device: str,
    forward_ms: float | None = None,
) -> dict:
    """One cell's row: measured, or skipped with the reason. forward_ms: see skip_reason."""
    p = case.pattern()
    row = dict(
        pattern=case.attn_mode,
        local_attn_ctx=case.local_attn_ctx or "",
        summary_ctx=case.summary_ctx or "",
        backend=backend,
        n=case.n,
        batch=case.batch,
        heads=case.heads,
        head_dim=case.head_dim,
        dtype=str(dtype).replace("torch.", ""),
        **{"pass": pass_},
        element_density=f"{p.element_density(case.n):.6f}",
    )
    if backend == "triton":
        row["tile_density"] = f"{build_plan(p, case.n, case.head_dim).tile_density:.6f}"
    # Block masks kept from earlier flex cells are live memory that this cell's peak would count (1 GiB per mask head
    # at n = 1,048,576; the flex rows of 8d61ca2f20c4 carry up to 2 GiB of other patterns' masks): drop them, so a flex
    # cell counts its own mask and no other, and no other backend's cell counts any.
    block_mask_for.cache_clear()
    reason = skip_reason(case, backend, pass_, budget_s, forward_ms)
    if reason:
        return {**row, "status": "skipped", "reason": reason}
    shape = (case.batch, case.heads, case.n, case.head_dim)
    if is_sdpa(backend):
        try:
            # With the gradient flag of the measured call: a kernel may take the forward but not the backward.
            probe = torch.empty(shape, device=device, dtype=dtype, requires_grad=pass_ == "fwd+bwd")
            row["sdpa_kernel"] = sdpa_kernel_run(probe, backend)
            del probe
        except RuntimeError as err:  # a forced kernel this GPU, dtype or head dim does not offer
            return {**row, "status": "skipped", "reason": f"no SDPA kernel: {str(err)[:200]}"}
    try:
        with _sdpa_context(backend):  # warm-up, timing and graph capture all run the forced kernel
            return _measured(row, case, p, backend, pass_, shape, dtype, device)
    except torch.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return {**row, "status": "skipped", "reason": f"out of memory: {str(err).splitlines()[0][:120]}"}
    except RuntimeError as err:
        if not (is_sdpa(backend) and "No viable backend" in str(err)):  # found by the call where no choice check ran
            raise
        return {**row, "status": "skipped", "reason": f"no SDPA kernel: {str(err).splitlines()[0][:160]}"}


def _measured(row: dict, case: Case, p: sparse.Pattern, backend: str, pass_: str, shape, dtype, device) -> dict:
    """`row` completed with the cell's times, memory, FLOP rate and tiles (measure's checks passed)."""
    # Memory an earlier cell left allocated (a backend's cache, a workspace) is not this cell's: the peak counts what
    # is allocated from here on, inputs included. Without this, the cells after the forced SDPA kernels of 45130a920b7e
    # counted 94-160 MB that those left behind (every backend alike: strided 3,072 x 8 0.50 / 0.63 GiB against 0.41 /
    # 0.50 in every earlier process).
    held_before = torch.cuda.memory_allocated() if device == "cuda" else 0
    q, k, v, do = (torch.randn(shape, device=device, dtype=dtype) for _ in range(4))
    backward = pass_ == "fwd+bwd"
    if backward:
        q, k, v = (t.requires_grad_() for t in (q, k, v))

    def run():
        out = sparse.attention(q, k, v, p, backend="sdpa" if is_sdpa(backend) else backend)
        if backward:
            torch.autograd.backward(out, do)
            q.grad = k.grad = v.grad = None
        return out

    run()  # compile / autotune / block-mask creation outside the measurement
    # Whether a cell is slow (no graph replay, and its warm call is its one timed run) is judged on this second, warm
    # call: the first includes compiling the kernels, and judging on it (before 8dee3b8cb96b) timed every freshly
    # compiled triton fwd+bwd cell by a single run and replayed none of them from a graph. A slow cell takes this call
    # as its measurement rather than running a third time (the "one warm-up and one timed run"): at n =
    # 1,048,576 a third run cost up to 40 s a cell.
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    replayed = _from_graphs()
    warm_ms, warm_wall_s = _timed_once(run, cuda=device == "cuda")
    if device == "cuda":
        row["peak_gib"] = f"{(torch.cuda.max_memory_allocated() - held_before) / 2**30:.4f}"
    slow = warm_wall_s > 1.0
    if not slow:
        replayed = _from_graphs()  # the row's call_graphs says how the timed calls went
    median_ms = warm_ms if slow else _timer(run)
    if backend == "triton":
        row["call_graphs"] = "on" if _from_graphs() > replayed else "off"
    graph_ms, graph_note = _graph_ms(run, backend, slow=slow) if device == "cuda" else (None, "")
    flops = p.flops(case.n, case.batch, case.heads, case.head_dim)
    if backward:
        flops += p.flops(case.n, case.batch, case.heads, case.head_dim, backward=True)
    row.update(
        median_ms=f"{median_ms:.4f}",
        useful_tflops=f"{flops / (median_ms * 1e-3) / 1e12:.2f}",
        tiles=_tiles(case, backend, device) or "",
        graph_ms=f"{graph_ms:.4f}" if graph_ms is not None else "",
        status="ok",
        reason=graph_note,
    )
    return row


def measure_ceilings() -> dict:
    """The card's copy bandwidth (bytes read + written) and bf16 matmul rate, on random data."""
    import triton.testing

    src = torch.randn(2**28, device="cuda", dtype=torch.bfloat16)  # 512 MiB
    dst = torch.empty_like(src)
    copy_ms = triton.testing.do_bench(lambda: dst.copy_(src), return_mode="median")
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    mm_ms = triton.testing.do_bench(lambda: a @ b, return_mode="median")
    return {
        "copy_gbps": f"{2 * src.numel() * 2 / (copy_ms * 1e-3) / 1e9:.0f}",
        "matmul_tflops": f"{2 * 8192**3 / (mm_ms * 1e-3) / 1e12:.0f}",
    }


def parse_list(text: str, kind=str) -> list:
    return [kind(x) for x in text.split(",") if x]


def _positive_ints(parser: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    try:
        values = parse_list(text, int)
    except ValueError:
        parser.error(f"{flag} takes comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        parser.error(f"{flag} takes comma-separated integers >= 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparse-repro bench-kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases",
        choices=["sweep", "targets", "both", "models"],
        default="both",
        help="both = sweep + targets; models = the attention calls of the small presets' models (model_cases)",
    )
    parser.add_argument(
        "--n",
        default=",".join(map(str, FULL_SWEEP_N)),
        help="comma-separated sequence lengths: the sweep's, and a filter on the targets' (default: every target's n)",
    )
    parser.add_argument("--patterns", default=",".join(PATTERNS), help="comma-separated, of: " + ", ".join(PATTERNS))
    parser.add_argument(
        "--backends",
        default="triton,flex,sdpa",
        help="comma-separated, of: " + ", ".join(BENCH_BACKENDS) + " (sdpa: torch's choice of dense kernel; "
        "sdpa-<kernel>: that kernel forced)",
    )
    parser.add_argument("--head-dims", default="64,128", help="comma-separated, of: 32, 64, 128")
    parser.add_argument("--passes", default="fwd,fwd+bwd", help="comma-separated, of: fwd, fwd+bwd")
    parser.add_argument("--batch", type=int, default=1, help="batch of the sweep's cases (targets fix their own)")
    parser.add_argument("--heads", type=int, default=16, help="heads of the sweep's cases (targets fix their own)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--budget-s", type=float, default=90.0, help="skip cells predicted to take longer")
    parser.add_argument(
        "--autograd-thread",
        default="engine",
        choices=["engine", "caller"],
        help="where every backend's backward runs: the autograd engine's device thread (PyTorch's default) or "
        "the calling thread (torch.autograd.set_multithreading_enabled(False)); recorded in each row",
    )
    parser.add_argument(
        "--call-graphs",
        default="on",
        choices=["on", "off"],
        help="our kernels' eager calls: replayed from per-call CUDA graphs once a call repeats (sparse/kernels/"
        "call_graphs.py), or every launch issued directly; recorded in each triton row",
    )
    parser.add_argument("--out", default="results/kernels.csv", help="the CSV the rows are appended to")
    parser.add_argument(
        "--ceilings-out", default="results/device_ceilings.csv", help="the CSV the card's measured ceilings go to"
    )
    args = parser.parse_args(argv)

    # Every argument is checked here, before the ceilings are measured or a row is written: a typo found after
    # minutes of GPU work, or a run that measures nothing, would leave a ceilings row and no answer.
    backends = parse_list(args.backends)
    for b in backends:
        if b not in BENCH_BACKENDS:
            parser.error(f"unknown backend {b!r}; valid: {', '.join(BENCH_BACKENDS)}")
    head_dims = _positive_ints(parser, "--head-dims", args.head_dims)
    for d in head_dims:
        if d not in (32, 64, 128):
            parser.error(f"head dim {d} unsupported; valid: 32, 64, 128")
    passes = parse_list(args.passes)
    if not passes or any(p not in ("fwd", "fwd+bwd") for p in passes):
        parser.error("--passes takes fwd and/or fwd+bwd")
    passes = [p for p in ("fwd", "fwd+bwd") if p in passes]  # each forward first: it predicts its fwd+bwd's time
    attn_modes = parse_list(args.patterns)
    for mode in attn_modes:
        if mode not in PATTERNS:
            parser.error(f"unknown pattern {mode!r}; valid: {', '.join(PATTERNS)}")
    n_list = _positive_ints(parser, "--n", args.n)
    if args.batch < 1 or args.heads < 1:
        parser.error(f"--batch and --heads must be >= 1, got {args.batch} and {args.heads}")
    if args.budget_s <= 0:
        parser.error(f"--budget-s must be > 0, got {args.budget_s}")
    cases = []
    if args.cases in ("sweep", "both"):
        cases += sweep_cases(n_list, attn_modes, head_dims, args.batch, args.heads)
    if args.cases in ("targets", "both"):
        # --n filters the targets (its default lists every target's n); --patterns, --head-dims, --batch and
        # --heads do not: each target fixes its own.
        cases += [c for c in target_cases() if c not in cases and c.n in n_list]
    if args.cases == "models":
        cases += model_cases()
    work = [(c, b, p) for c in cases for p in passes for b in backends_for(c, backends)]
    if not work:
        target_n = ", ".join(str(n) for n in sorted({c.n for c in target_cases()}))
        parser.error(
            f"nothing to measure: --cases {args.cases} with --n {args.n} and --backends {args.backends} selects no "
            f"cell (the targets' n: {target_n}; sdpa and sdpa-<kernel> run only beside pattern 'all' or a target)"
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    if device == "cuda" and "triton" in backends:
        # Before any GPU work: a GPU the kernels cannot serve (sparse.attention.check_gpu), and rows that would carry
        # this card's name for the older GPUs' plan (profile_kernels --paths=direct,older-gpus compares the two).
        try:
            check_gpu(torch.device("cuda", torch.cuda.current_device()), dtype)
        except ValueError as refused:
            parser.error(str(refused))
        if not hopper_features_wanted():
            parser.error(
                "SPARSE_HOPPER_FEATURES=0 is set: kernels.csv names rows by card, so the older GPUs' plan would be "
                "recorded as this card's; unset it, or compare the two with `python -m benchmarks.profile_kernels "
                "--paths=direct,older-gpus`"
            )
    prov = provenance()
    base = {key: prov[key] for key in ("gpu", "torch", "triton", "commit", "date")}
    # On the H100 host a Python backward ran twice as slowly on the engine's device thread as on the caller's
    # (results/profiles/host_breakdown-696efd59e1db.txt); the setting applies to every backend of the process.
    base["autograd_thread"] = args.autograd_thread

    if device == "cuda":
        ceilings = measure_ceilings()
        provenance_only = {key: base[key] for key in ("gpu", "torch", "triton", "commit", "date")}
        append_rows(args.ceilings_out, [{**provenance_only, **ceilings}], CEILING_COLUMNS)
        print(
            f"ceilings on {prov['gpu']}: copy {ceilings['copy_gbps']} GB/s, matmul {ceilings['matmul_tflops']} TFLOP/s"
        )

    saved_call_graphs, call_graphs.ENABLED = call_graphs.ENABLED, args.call_graphs == "on"
    from tqdm import tqdm

    rows = []
    try:
        with torch.autograd.set_multithreading_enabled(args.autograd_thread == "engine"):
            forward_ms: dict[tuple[Case, str], float] = {}  # each case and backend's forward, before its fwd+bwd
            for case, backend, pass_ in tqdm(work, desc="bench-kernels", unit="cell", file=sys.stderr):
                row = {
                    **base,
                    **measure(case, backend, pass_, dtype, args.budget_s, device, forward_ms.get((case, backend))),
                }
                if pass_ == "fwd" and row["status"] == "ok":
                    forward_ms[(case, backend)] = float(row["median_ms"])
                rows.append(row)
                append_rows(args.out, [row], KERNEL_COLUMNS)  # one by one, so a crash keeps what was measured
    finally:
        call_graphs.ENABLED = saved_call_graphs
    state = call_graphs.state()
    if state["disabled_reason"]:
        print(f"call graphs were switched off during the run: {state['disabled_reason']}", file=sys.stderr)
    _print_summary(rows)
    return 0


def _print_summary(rows: list[dict]) -> None:
    head = (
        f"{'pattern':8} {'backend':14} {'n':>8} {'B':>2} {'D':>4} {'pass':8} {'ms':>10} {'graph ms':>9} {'TFLOP/s':>8} "
        f"{'GiB':>7}"
    )
    print(f"\n{head}  status")
    for r in rows:
        print(
            f"{r['pattern']:8} {r['backend']:14} {r['n']:>8} {r['batch']:>2} {r['head_dim']:>4} {r['pass']:8} "
            f"{r.get('median_ms', ''):>10} {r.get('graph_ms', ''):>9} {r.get('useful_tflops', ''):>8} "
            f"{r.get('peak_gib', ''):>7}  "
            f"{r['status']} {r.get('reason', '')}"
        )


if __name__ == "__main__":
    sys.exit(main())
