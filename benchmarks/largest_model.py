"""The largest model whose training step fits one GPU at a sequence length: Table 4's rule ("the largest model
that fit", as the paper did on 16 GB V100s), applied to the card at hand.

    python -m benchmarks.largest_model --n 65536,262144,1048576 --out out/largest_model.csv

For each n and each width d of --widths (heads = d / 64), a probe builds the model as audio/strided-paper.yaml
does (strided, merged heads, l = the row width, activation checkpointing, AdamW with fp32 weights and states)
and runs two training steps of batch 1 on random bytes under fp16 autocast, the way `16-mixed` trains; its
peak is torch.cuda.max_memory_allocated, and an out-of-memory error means "does not fit". With checkpointing
the peak grows linearly with the layers (weights, gradients, Adam states and one checkpoint per layer, plus one
layer's recomputation), so two probes (2 and 4 layers) predict the most layers under --budget-gib, and a third
probe checks it, stepping down 10% at a time while it does not fit. Every probe is a row of --out: n, width, l,
d, layers, heads, params, peak_gib, fits, ms_per_step and provenance. The last lines name the largest fitting
model per n (most parameters) as `gpu_train.sh table4-largest` reads them (n l layers d heads ms_per_step).

Needs a CUDA GPU (it measures that GPU's memory); refuses to start without one.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

ROW_WIDTH = {65536: 256, 262144: 512, 1048576: 1024}  # l = the audio row width, as gpu_train.sh table4 sets it
PROBE_LAYERS = (2, 4)
# The probe's peak leaves out what the training run adds (the data loader's pinned batches, validation, the
# caching allocator's fragmentation over hundreds of steps): keep 15% of the card for it.
BUDGET_FRACTION = 0.85
COLUMNS = ["n", "row_width", "d_model", "layers", "heads", "params", "peak_gib", "fits", "ms_per_step",
           "budget_gib", "gpu", "torch", "triton", "commit", "date"]  # fmt: skip


@dataclass(frozen=True)
class Probe:
    layers: int
    fits: bool
    peak_gib: float | None  # None when it did not fit (out of memory)
    params: int
    ms_per_step: float | None


def most_layers(probe: Callable[[int], Probe], budget_gib: float, max_layers: int = 256) -> list[Probe]:
    """Probes (in order) of the search for the most layers under budget_gib; the last fitting one is the answer.

    Two probes give the peak's slope per layer; the prediction is checked, and lowered by 10% (at least one
    layer) while it does not fit or is over the budget. Raises ValueError if even the smallest probe fails."""
    small, large = (probe(layers) for layers in PROBE_LAYERS)
    probes = [small, large]
    if not (small.fits and large.fits):
        raise ValueError(f"{PROBE_LAYERS} layers do not fit in {budget_gib} GiB")
    slope = (large.peak_gib - small.peak_gib) / (large.layers - small.layers)
    if slope <= 0:
        raise ValueError(f"peak memory does not grow with layers ({small.peak_gib} -> {large.peak_gib} GiB)")
    layers = min(max_layers, large.layers + int((budget_gib - large.peak_gib) / slope))
    while layers > large.layers:
        result = probe(layers)
        probes.append(result)
        if result.fits and result.peak_gib <= budget_gib:
            break
        layers -= max(1, layers // 10)
    return probes


def answer(probes: list[Probe], budget_gib: float) -> Probe:
    """The probe with the most layers that fit under the budget; ValueError if none did."""
    fitting = [p for p in probes if p.fits and p.peak_gib <= budget_gib]
    if not fitting:
        raise ValueError(f"no probe fits in {budget_gib} GiB")
    return max(fitting, key=lambda p: p.layers)


def gpu_probe(n: int, row_width: int, d_model: int, device: str = "cuda") -> Callable[[int], Probe]:
    """probe(layers): two fp16-autocast training steps of batch 1 of the model on this GPU. device "cpu" runs
    the same steps (bf16 autocast, the kernels under the Triton interpreter, peak 0) so that the tests catch a
    broken probe before a GPU call does."""
    import torch

    from sparse.model import SparseTransformer, SparseTransformerConfig

    cuda = device == "cuda"

    def synchronize():
        if cuda:
            torch.cuda.synchronize()

    def probe(layers: int) -> Probe:
        model = optimizer = None
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        config = SparseTransformerConfig(
            seq_len=n, token_axes=(n // row_width, row_width), d_model=d_model, n_layer=layers,
            n_head=d_model // 64, attn_mode="strided", integration="merged", local_attn_ctx=row_width,
            backend="triton", checkpoint=True,
        )  # fmt: skip
        params = 0
        try:
            model = SparseTransformer(config).to(device)
            params = sum(p.numel() for p in model.parameters())
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            scaler = torch.amp.GradScaler(device, enabled=cuda)  # 16-mixed's dynamic loss scaling
            tokens = torch.randint(0, 256, (1, n), device=device)
            times = []
            for _ in range(2):
                synchronize()
                start = time.perf_counter()
                with torch.autocast(device, dtype=torch.float16 if cuda else torch.bfloat16):
                    logits = model(tokens)
                    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                synchronize()
                times.append((time.perf_counter() - start) * 1e3)
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
            return Probe(layers, True, peak, params, times[-1])
        except torch.OutOfMemoryError:
            return Probe(layers, False, None, params, None)
        finally:
            del model, optimizer
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()

    return probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="65536,262144,1048576", help="sequence lengths, comma-separated")
    parser.add_argument("--widths", default="512,1024", help="model widths d to try, comma-separated (heads = d/64)")
    parser.add_argument(
        "--budget-gib", type=float, default=None, help="memory budget (default: 85%% of the GPU's; see BUDGET_FRACTION)"
    )
    parser.add_argument("--out", default="results/largest_model.csv", help="CSV of every probe (appended)")
    args = parser.parse_args(argv)
    try:
        lengths = [int(x) for x in args.n.split(",")]
        widths = [int(x) for x in args.widths.split(",")]
    except ValueError:
        parser.error("--n and --widths take comma-separated integers")
    for n in lengths:
        if n not in ROW_WIDTH:
            parser.error(f"--n {n}: no row width known; choose from {sorted(ROW_WIDTH)}")
    for d in widths:
        if d < 64 or d % 64:
            parser.error(f"--widths {d}: must be a positive multiple of 64 (heads of 64)")

    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: the search measures that GPU's memory")
    from benchmarks.provenance import provenance
    from benchmarks.recorder import append_rows

    total_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    budget = args.budget_gib if args.budget_gib is not None else BUDGET_FRACTION * total_gib
    prov = provenance()
    best: dict[int, tuple[int, Probe]] = {}
    for n in lengths:
        for d in widths:
            try:
                probes = most_layers(gpu_probe(n, ROW_WIDTH[n], d), budget)
                chosen = answer(probes, budget)
            except ValueError as err:
                print(f"n={n} d={d}: {err}", flush=True)
                continue
            rows = [
                dict(n=n, row_width=ROW_WIDTH[n], d_model=d, layers=p.layers, heads=d // 64, params=p.params,
                     peak_gib=p.peak_gib if p.peak_gib is not None else "", fits=p.fits,
                     ms_per_step=p.ms_per_step if p.ms_per_step is not None else "", budget_gib=f"{budget:.1f}",
                     **{k: prov[k] for k in ("gpu", "torch", "triton", "commit", "date")})
                for p in probes
            ]  # fmt: skip
            append_rows(args.out, rows, COLUMNS)
            print(
                f"n={n} d={d}: {chosen.layers} layers, {chosen.params / 1e6:.1f}M, {chosen.peak_gib:.1f} GiB",
                flush=True,
            )
            if n not in best or chosen.params > best[n][1].params:
                best[n] = (d, chosen)
    for n, (d, p) in best.items():
        print(f"table4: {n} {ROW_WIDTH[n]} {p.layers} {d} {d // 64} {p.ms_per_step:.0f}")
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
