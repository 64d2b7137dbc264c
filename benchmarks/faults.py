"""`FaultGuard`: the callback that makes a run stop cleanly on a non-finite loss and resume exactly.

Contract:
- Non-finite loss: checked in `on_before_backward`, i.e. before the backward pass and the optimizer step, so
  the weights are still those of the last good step. The guard raises `NonFiniteLossError` (the message
  names the step and the last checkpoint on disk); Lightning then stops without saving another checkpoint,
  so `last.ckpt` stays the last good one. A check per step costs one device-to-host sync of a scalar.
- Exact resume: before every training step the global torch generator (CPU and CUDA) is seeded from
  (seed, global step, rank). Dropout then draws the same masks at step k whether or not the run was
  interrupted before k, whatever else consumed random numbers in between (dataloader iterators, validation),
  and every rank of a DDP run draws its own. The data order is the datamodule's: its EpochSampler draws from
  (seed, epoch). Lightning replays a partly done epoch from its start unless the DataLoader is stateful, so a
  resume is exact from a checkpoint at an epoch end (README: "Faults and resuming").
- A fresh run (no ckpt_path) whose checkpoint folder already holds a `last.ckpt` says so at its start: the entry
  points build ModelCheckpoint with `enable_version_counter=False` (CHECKPOINT_DEFAULTS), so this run's first
  save replaces that file. Lightning's default would write `last-v1.ckpt` beside it instead, and every command
  naming `last.ckpt` (test, sample, gpu_train.sh's table2) would read the earlier run's model.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

# ModelCheckpoint's settings in both entry points (benchmarks/lightning_cli.py, benchmarks/fit_config.py); a config's
# checkpoint section may override them (save_last=false for a model too large to write).
CHECKPOINT_DEFAULTS = {"save_last": True, "save_top_k": 0, "enable_version_counter": False}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run was stopped before the optimizer step."""


def _last_checkpoint(trainer: pl.Trainer) -> str:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
    return path or "none saved yet"


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of training step `step` on `rank` (distinct for every pair, < 2**63)."""
    return (seed * 1_000_003 + step * 4_099 + rank) % (2**63 - 1)


class FaultGuard(pl.Callback):
    """Stop on a NaN/inf loss before it reaches the weights; seed each step for exact resumes.

    Args:
        check_finite: raise NonFiniteLossError when the training loss is not finite.
        seed_every_step: seed torch's generator from (seed, step, rank) before each training step; the seed is
            Lightning's seed_everything (PL_GLOBAL_SEED), 0 when unset.
    """

    def __init__(self, check_finite: bool = True, seed_every_step: bool = True) -> None:
        self.check_finite = check_finite
        self.seed_every_step = seed_every_step
        self.stop_reason = ""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        callback = trainer.checkpoint_callback
        dirpath = getattr(callback, "dirpath", None)
        if trainer.ckpt_path is None and dirpath and getattr(callback, "save_last", False):
            earlier = Path(dirpath) / "last.ckpt"
            if earlier.is_file():
                rank_zero_warn(
                    f"{earlier} holds an earlier run's checkpoint and this run starts fresh (no ckpt_path): its first "
                    "save replaces that file. To keep it, move it or give this run another trainer.default_root_dir; "
                    "to continue that run instead, pass ckpt_path=last."
                )

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        if self.seed_every_step:
            base = int(os.environ.get("PL_GLOBAL_SEED", "0"))
            torch.manual_seed(step_seed(base, trainer.global_step, trainer.global_rank))

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if not self.check_finite:
            return
        value = float(loss.detach())
        if not math.isfinite(value):
            self.stop_reason = f"non-finite loss ({value}) at step {trainer.global_step}"
            raise NonFiniteLossError(
                f"training loss is {value} at step {trainer.global_step}: stopped before the optimizer step. "
                f"Last good checkpoint: {_last_checkpoint(trainer)}. Lower the learning rate, raise warmup_steps "
                "or use bf16-mixed/32-true precision, then resume with --ckpt_path <that checkpoint>."
            )
