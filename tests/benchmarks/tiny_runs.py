"""Helpers for the harness tests: a tiny Enwik8-format data set, a tiny config, and fault-injecting callbacks.

The tiny run (seq_len 64, one layer of width 16, reference backend) takes about a second per few steps on a
CPU, so the tests can train, crash, resume and compare on it. Nothing here writes outside the tmp paths given.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

try:
    import benchmarks.module  # noqa: F401
    import datamodules  # noqa: F401

    HARNESS_IMPORT_ERROR = ""
except ImportError as err:  # the model and datamodule packages are written in parallel with the harness
    HARNESS_IMPORT_ERROR = f"benchmarks.module or datamodules cannot be imported yet: {err}"

needs_harness = pytest.mark.skipif(bool(HARNESS_IMPORT_ERROR), reason=HARNESS_IMPORT_ERROR or "ok")

SEQ_LEN = 64


def write_enwik8(root: Path, size: int = 48_000) -> Path:
    """<root>/enwik8/enwik8: deterministic text-like bytes (a prefix, so the datamodule calls it partial)."""
    words = [b"the ", b"sparse ", b"transformer ", b"attends ", b"to ", b"strided ", b"and ", b"fixed ", b"keys. "]
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(0, len(words), (size,), generator=generator).tolist()
    data = b"".join(words[i] for i in picks)[:size]
    path = root / "enwik8" / "enwik8"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tiny_config(tmp_path: Path, data_root: Path, callbacks: list[dict] | None = None, **overrides) -> Path:
    """Write a tiny Enwik8 fit config under tmp_path and return its path. `overrides` are section dicts
    (trainer=..., model=..., data=...) merged into the defaults."""
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "precision": "32-true",
            "max_steps": 6,
            "val_check_interval": 2,
            "check_val_every_n_epoch": None,
            "limit_val_batches": 2,
            "limit_test_batches": 2,
            "num_sanity_val_steps": 0,
            "gradient_clip_val": 1.0,
            "logger": False,
            "enable_model_summary": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path / "run"),
        },
        "model": {
            "d_model": 16,
            "n_layer": 1,
            "n_head": 2,
            "attn_mode": "strided",
            "local_attn_ctx": 8,
            "summary_ctx": 2,
            "backend": "reference",
            "dropout": 0.1,
            "lr": 3.0e-3,
            "warmup_steps": 1,
            "max_steps": 6,
        },
        "data": {
            "class_path": "datamodules.Enwik8DataModule",
            "init_args": {
                "data_dir": str(data_root),
                "batch_size": 2,
                "allow_partial": True,
                "seq_len": SEQ_LEN,
                "row_width": 8,
                "train_samples_per_epoch": 4,  # 2 steps per epoch: checkpoints land on epoch ends
            },
        },
        "recorder": {
            "preset": "smoke",
            "runs_path": str(tmp_path / "results" / "runs.csv"),
            "curves_path": str(tmp_path / "results" / "curves.csv"),
            "curve_every_n_steps": 1,
        },
        "checkpoint": {"every_n_train_steps": 2},
    }
    for section, values in overrides.items():
        target = config[section]["init_args"] if section == "data" else config[section]
        target.update(values)
    if callbacks:
        config["trainer"]["callbacks"] = callbacks
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class ExitAtStep(pl.Callback):
    """Kill the process (os._exit, no clean-up, like a lost node) when training reaches `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os._exit(17)


class PoisonAtStep(pl.Callback):
    """Set a weight to NaN just before the forward pass of `step`, so that its loss is NaN."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
