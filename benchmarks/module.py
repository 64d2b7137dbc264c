"""The LightningModule: an autoregressive density model over byte tokens, scored in bits per dim.

Batches are tuples (tokens, score_from): tokens int64 [B, n] in 0..255 with n <= seq_len, score_from int64
[B]; positions t < score_from[b] of sequence b are context only: they are fed to the model but neither
trained on nor scored (0 scores every position, as for CIFAR-10; the Enwik8 evaluation scores the last part
of each window).

Logged:
- "train/loss": mean nats per scored token of the batch (what is optimised);
- "train/bpd" (per step), "val/bpd", "test/bpd" (per epoch): nats / ln 2 through torchmetrics with summed
  states (total nats and total scored tokens), so the epoch value is exact and correct under DDP;
- "lr" per step; "perf/peak_gib": peak CUDA memory allocated during the step (forward, backward and
  optimizer step: reset at batch start, read at batch end), only when the module runs on CUDA.
At the end of training on CUDA with the triton backend, one line (rank zero) says how many of the process's attention
calls were replayed from call graphs (sparse/kernels/call_graphs.py) and how many were launched directly.
Throughput: `flops_per_batch` is the model's exact FLOP count for the last batch's shape (forward and
backward while training, forward only in evaluation), with sparse attention counted by its allowed
elements, for Lightning's ThroughputMonitor; `throughput_monitor()` returns one configured for these
batches (tokens/s as items/s, TFLOP/s as flops_per_sec).

Optimisation (paper section 6): AdamW with decoupled weight decay on matrices only, linear warm-up then
cosine decay, stepped per optimizer step by a LambdaLR whose state (the step, and the schedule's warm-up
and horizon) is in Lightning checkpoints. Weight decay: every parameter with two or more dimensions, i.e.
the Linear weights, the logits weight, and the token (start row included) and position embedding tables,
as [DA]'s train.py (which decays every tensor of rank > 1); LayerNorm weights and all biases are not
decayed. Gradient clipping at 1.0 (the paper's) is the Trainer's `gradient_clip_val: 1.0`, set by the
configs; precision (bf16-mixed, 16-mixed with dynamic loss scaling, 32-true) is the Trainer's too.

Resuming: a Lightning checkpoint restores the model, the optimizer, the scheduler and the 16-mixed grad
scaler. This module keeps no other state and draws random numbers only for dropout, from torch's global
generator: an exact resume also needs the data position and the RNG states, which are the harness's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import Metric

from sparse.attention import check_gpu
from sparse.kernels import call_graphs
from sparse.model import SparseTransformer, SparseTransformerConfig

LN2 = math.log(2.0)


class BitsPerDim(Metric):
    """Bits per dim = total nats / total scored tokens / ln 2, from summed states (exact under DDP)."""

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("nats", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, nats: torch.Tensor, count: torch.Tensor) -> None:
        self.nats += nats.detach().to(torch.float64)
        self.count += count.detach().to(torch.int64)

    def compute(self) -> torch.Tensor:
        return (self.nats / self.count / LN2).to(torch.float32)


class WarmupCosine:
    """LR factor at optimizer step s (0-based): (s + 1) / warmup during the warm-up, then a cosine from 1
    down to min_lr_ratio at total_steps, and min_lr_ratio after. A callable object (not a lambda), so
    LambdaLR puts its fields in the checkpoint."""

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_size(batch) -> int:
    """Sequences in a (tokens, score_from) batch: ThroughputMonitor's batch_size_fn."""
    return int(batch[0].shape[0])


def batch_tokens(batch) -> int:
    """Tokens in a (tokens, score_from) batch: ThroughputMonitor's length_fn (items/s = tokens/s)."""
    return int(batch[0].numel())


COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune")
BACKWARD_THREADS = ("caller", "engine")
COMPILE_BACKEND = "inductor"  # the tests compile with "aot_eager" (no C++ toolchain needed, same graph capture)


def throughput_monitor(window_size: int = 20) -> ThroughputMonitor:
    """A ThroughputMonitor for these batches; its rates appear once `window_size` steps were seen."""
    return ThroughputMonitor(batch_size_fn=batch_size, length_fn=batch_tokens, window_size=window_size)


class SparseTransformerModule(L.LightningModule):
    """The Sparse Transformer as a Lightning density model over byte tokens (bits per dim).

    Args:
        seq_len: context length n (linked from the datamodule).
        token_axes: the position axes, product == seq_len: (32, 32, 3) for CIFAR-10, (n // width, width)
            for text and audio (linked from the datamodule).
        d_model: model width d (paper: 256 CIFAR-10, 512 Enwik8 and ImageNet 64).
        n_layer: residual blocks N (paper: 128 CIFAR-10, 30 Enwik8, 48 ImageNet 64).
        n_head: attention heads (paper: 2, 8, 16).
        ffn_multiple: FFN width as a multiple of d; 4.0 default, 2.0 the paper's "half-size" (CIFAR-10).
        qk_ratio: query-key projection width as a fraction of d; 0.5 the paper's half-size (CIFAR-10).
        dropout: residual dropout at the end of each residual branch (paper: 0.25, 0.40, 0.01).
        embd_dropout: dropout on the summed input embedding.
        attn_mode: all | local | strided | fixed (the paper's patterns; "all" is dense causal).
        integration: merged (one head over A1 | A2, Eq. 7) | interleaved (one part per layer from
            layer_pattern, Eq. 6) | multihead (heads split between the parts of layer_pattern, Eq. 8).
        layer_pattern: comma-separated parts for interleaved and multihead, e.g. "local,stride" or
            "stride,local,local,local" ([DA]'s CIFAR-10 'bT,b,b,b'); parts: strided has local, stride,
            merged; fixed has local, summary, merged.
        local_attn_ctx: the stride / window l (paper: 128; [DA] CIFAR-10: 96).
        summary_ctx: fixed's summary width c (paper Enwik8: 32).
        distinct_heads: fixed only: each head summarises a distinct length-c sub-block (paper 4.3).
        backend: attention backend: triton | flex | sdpa (attn_mode all only) | reference (tests).
        checkpoint: recompute each block in the backward pass (activation checkpointing).
        lr: peak learning rate (paper CIFAR-10: 0.00035).
        warmup_steps: linear warm-up in optimizer steps (paper: 5000).
        max_steps: horizon of the cosine decay in optimizer steps; None uses the Trainer's
            estimated_stepping_batches.
        weight_decay: decoupled weight decay on matrices (paper: 0.01).
        betas: Adam betas.
        min_lr_ratio: the cosine ends at lr * min_lr_ratio.
        compile_mode: torch.compile the model (in place, so checkpoints load either way): None (eager),
            "default", "reduce-overhead" (CUDA graphs, against the launch overhead of small and deep models)
            or "max-autotune". The attention ops are registered custom ops: compile keeps them whole.
        backward_thread: where the training step's backward runs: "caller" (the training loop's own thread,
            torch.autograd.set_multithreading_enabled(False) around it) or "engine" (PyTorch's default,
            the autograd engine's device thread). On the H100 host the triton backend's Python backward took
            twice as long on the engine's thread (results/profiles/host_breakdown-696efd59e1db.txt); one
            process drives one GPU here, so the engine's per-device threads buy nothing.
    """

    def __init__(
        self,
        seq_len: int,
        token_axes: tuple[int, ...] | list[int],
        d_model: int = 256,
        n_layer: int = 2,
        n_head: int = 2,
        ffn_multiple: float = 4.0,
        qk_ratio: float = 1.0,
        dropout: float = 0.0,
        embd_dropout: float = 0.0,
        attn_mode: str = "strided",
        integration: str = "merged",
        layer_pattern: str = "local,stride",
        local_attn_ctx: int = 128,
        summary_ctx: int = 32,
        distinct_heads: bool = False,
        backend: str = "triton",
        checkpoint: bool = False,
        lr: float = 3.5e-4,
        warmup_steps: int = 5000,
        max_steps: int | None = None,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.95),
        min_lr_ratio: float = 0.0,
        compile_mode: str | None = None,
        backward_thread: str = "caller",
    ) -> None:
        super().__init__()
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
        if backward_thread not in BACKWARD_THREADS:
            raise ValueError(f"backward_thread must be one of {BACKWARD_THREADS}, got {backward_thread!r}")
        if isinstance(token_axes, list):
            token_axes = tuple(token_axes)
        _check_optimiser_args(lr, warmup_steps, max_steps, weight_decay, betas, min_lr_ratio)
        self.save_hyperparameters()
        self.config = SparseTransformerConfig(
            seq_len=seq_len, token_axes=token_axes, d_model=d_model, n_layer=n_layer, n_head=n_head,
            ffn_multiple=ffn_multiple, qk_ratio=qk_ratio, dropout=dropout, embd_dropout=embd_dropout,
            attn_mode=attn_mode, integration=integration, layer_pattern=layer_pattern,
            local_attn_ctx=local_attn_ctx, summary_ctx=summary_ctx, distinct_heads=distinct_heads,
            backend=backend, checkpoint=checkpoint,
        )  # fmt: skip
        self.model = SparseTransformer(self.config)
        if compile_mode is not None:
            # Past its recompile limit dynamo silently runs the model eagerly: in one process that had compiled
            # four models before (benchmarks/fit_series.py before it reset dynamo between runs), two "compiled"
            # Table 2 runs were eager, which only their peak memory showed. Fail loudly instead.
            torch._dynamo.config.fail_on_recompile_limit_hit = True
            self.model.compile(mode=compile_mode, backend=COMPILE_BACKEND)
        self.train_bpd = BitsPerDim()
        self.val_bpd = BitsPerDim()
        self.test_bpd = BitsPerDim()
        self._batch_shape: tuple[int, int] | None = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        # The setting is thread-local, like grad mode, and lives only for this call (a fit that fails leaves
        # nothing behind); checkpointing's recomputation happens inside it.
        with torch.autograd.set_multithreading_enabled(self.hparams.backward_thread == "engine"):
            super().backward(loss, *args, **kwargs)

    @property
    def flops_per_batch(self) -> int | None:
        """Exact FLOPs of the last batch: forward + backward while training, forward in evaluation."""
        if self._batch_shape is None:
            return None
        batch, n = self._batch_shape
        return self.model.flops(batch, n, backward=self.training)

    def scored_nats(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(total nats over scored positions, number of scored positions) of a (tokens, score_from) batch."""
        tokens, score_from = _unpack(batch)
        self._batch_shape = (int(tokens.shape[0]), int(tokens.shape[1]))
        logits = self.model(tokens)
        nats = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten(), reduction="none")
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        scored = positions.unsqueeze(0) >= score_from.to(tokens.device).unsqueeze(1)
        return (nats.view_as(tokens) * scored).sum(), scored.sum()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        nats, count = self.scored_nats(batch)
        loss = nats / count.clamp_min(1)
        self.train_bpd(nats, count)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bpd", self.train_bpd, on_step=True, on_epoch=False)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        nats, count = self.scored_nats(batch)
        self.val_bpd.update(nats, count)
        self.log("val/bpd", self.val_bpd, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        nats, count = self.scored_nats(batch)
        self.test_bpd.update(nats, count)
        self.log("test/bpd", self.test_bpd, on_step=False, on_epoch=True)

    def on_fit_start(self) -> None:
        # Refuse a GPU the kernels cannot serve (compute capability below 8.0, or float32 inputs on a 99 KB GPU:
        # sparse.attention.check_gpu) before the first batch, not at the first attention call. Under mixed precision
        # attention sees the autocast dtype; under "32-true" float32.
        if self.device.type == "cuda" and self.hparams.backend == "triton":
            precision = str(self.trainer.precision)
            dtype = {"bf": torch.bfloat16, "16": torch.float16}.get(precision[:2], torch.float32)
            check_gpu(self.device, dtype)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.device.type == "cuda":
            self.log("perf/peak_gib", torch.cuda.max_memory_allocated(self.device) / 2**30)

    def on_train_end(self) -> None:
        # How often this process's eager calls of our kernels were replayed from call graphs: a call replays only when
        # its tensors sit at the addresses of an earlier call (sparse/kernels/call_graphs.py), which the caching
        # allocator gives step after step to large tensors, less reliably to small ones.
        if self.device.type == "cuda" and self.hparams.backend == "triton":
            state = call_graphs.state()
            off = f"; switched off: {state['disabled_reason']}" if state["disabled_reason"] else ""
            rank_zero_info(
                f"sparse attention call graphs: {state['replayed']} calls replayed, {state['direct']} launched "
                f"directly, {state['captured']} captured{off} (this process so far)"
            )

    def parameter_groups(self) -> list[dict]:
        """AdamW groups: matrices (ndim >= 2) decayed, vectors (biases, LayerNorm) not."""
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        return [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def decay_horizon(self) -> int:
        if self.hparams.max_steps is not None:
            return self.hparams.max_steps
        steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(steps) or steps < 1:
            raise ValueError(
                "the cosine decay needs a horizon: set the module's max_steps, or the Trainer's max_steps or "
                f"max_epochs (estimated_stepping_batches is {steps})"
            )
        return int(steps)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameter_groups(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
        schedule = WarmupCosine(self.hparams.warmup_steps, self.decay_horizon(), self.hparams.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}


def _unpack(batch) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, Sequence) or len(batch) != 2:
        raise TypeError(f"a batch must be a (tokens, score_from) pair, got {type(batch).__name__}")
    tokens, score_from = batch
    if not isinstance(tokens, torch.Tensor) or not isinstance(score_from, torch.Tensor):
        raise TypeError("a batch must be a pair of tensors (tokens [B, n], score_from [B])")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [B, n], got shape {tuple(tokens.shape)}")
    if score_from.shape != (tokens.shape[0],):
        raise ValueError(f"score_from must be [B={tokens.shape[0]}], got shape {tuple(score_from.shape)}")
    if score_from.dtype.is_floating_point or score_from.dtype == torch.bool:
        raise TypeError(f"score_from must be an integer tensor, got {score_from.dtype}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be an integer tensor, got {tokens.dtype}")
    return tokens.long(), score_from


def _check_optimiser_args(lr, warmup_steps, max_steps, weight_decay, betas, min_lr_ratio) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be None or an int >= 1, got {max_steps!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    if len(tuple(betas)) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if isinstance(min_lr_ratio, bool) or not isinstance(min_lr_ratio, (int, float)) or not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
