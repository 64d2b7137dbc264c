"""Result rows: atomic CSV appends, the column lists, and the Lightning callback that records runs.

Contract:
- `append_rows(path, rows, columns)` appends whole rows to a CSV file and nothing else. It takes an exclusive
  `fcntl.flock` on the file, writes the header only when the file is empty, encodes every row first and
  writes them with one `os.write` of complete lines, then fsyncs. Two processes appending at once, or a
  process killed at any instant, leave a file of whole rows (a killed writer can leave at most a partial
  last line only if the kernel tears a single write, which does not happen for regular files on local
  disks; `read_rows` drops such a line rather than mis-parsing it). A row with a key that is not a column
  raises ValueError before anything is written; a missing column is written empty.
- Files are append-only: nothing in the suite rewrites or truncates them, so a smoke run can never replace
  a committed GPU row (the report chooses between rows; see benchmarks/report_tables.py).
- `SCHEMA_VERSION` is written in every row. Add columns only at the end of a column list and bump the
  version; `read_rows` maps older rows by the header they were written under.
- `ResultsRecorder` (a Lightning callback) appends one row per finished fit, validate or test to
  `runs.csv` (RUN_COLUMNS) and the learning curve to `curves.csv` (CURVE_COLUMNS), on global rank 0 only.
"""

from __future__ import annotations

import csv
import fcntl
import io
import math
import os
import statistics
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch

# 2: kernels.csv gained autograd_thread (older kernel rows: the engine's thread); 3: kernels.csv gained graph_ms
# (older kernel rows: empty, not measured); 4: kernels.csv gained call_graphs (older kernel rows: empty, every launch
# issued directly); 5: kernels.csv gained sdpa_kernel (older rows: empty, not recorded)
SCHEMA_VERSION = 5

# One row per finished fit / validate / test (issue 8's columns first, then what the report needs).
RUN_COLUMNS = [
    "schema_version",
    "run_id",
    "stage",
    "benchmark",
    "pattern",
    "preset",
    "variant",
    "n",
    "layers",
    "d_model",
    "heads",
    "params",
    "steps",
    "precision",
    "devices",
    "gpu",
    "val_bpd",
    "test_bpd",
    "ms_per_iter",
    "tokens_per_s",
    "peak_gib",
    "wall_s",
    "seed",
    "commit",
    "date",
    # what exactly ran
    "attn_mode",
    "integration",
    "layer_pattern",
    "local_attn_ctx",
    "summary_ctx",
    "backend",
    "checkpointing",
    "batch",
    "accumulate",
    "num_nodes",
    "strategy",
    "max_steps",
    "train_bpd",
    "eval_min_context",
    "data_dir",
    "config",
    "ckpt_path",
    # provenance (benchmarks.provenance)
    "gpu_count",
    "cuda",
    "torch",
    "triton",
    "lightning",
    "python",
    "host",
    "status",
    "note",
]

# One row per kernel measurement (issue 7), written by the kernel benchmark.
KERNEL_COLUMNS = [
    "schema_version",
    "pattern",
    "local_attn_ctx",
    "summary_ctx",
    "backend",
    "n",
    "batch",
    "heads",
    "head_dim",
    "dtype",
    "pass",
    "median_ms",
    "useful_tflops",
    "peak_gib",
    "tiles",
    "element_density",
    "tile_density",
    "status",
    "reason",
    "gpu",
    "torch",
    "triton",
    "commit",
    "date",
    "autograd_thread",  # where the backward ran: "engine" (PyTorch's default device thread) or "caller"
    "graph_ms",  # median of the same call replayed from a CUDA graph: the GPU's time alone (empty: not measured)
    "call_graphs",  # our kernels' eager calls: "on" (replayed from per-call CUDA graphs), "off"; empty: other backends
    "sdpa_kernel",  # SDPA's rows: the kernel torch's dispatcher ran (cudnn, flash, efficient, math); empty: others
]

# One row per recorded training step (and per validation), to draw learning curves.
CURVE_COLUMNS = [
    "schema_version",
    "run_id",
    "benchmark",
    "pattern",
    "preset",
    "variant",
    "step",
    "wall_s",
    "train_bpd",
    "val_bpd",
    "lr",
]

PRESETS = ("smoke", "small", "paper", "custom")
# Larger is a better scale; the report shows, per table cell, the row of the largest scale.
PRESET_SCALE = {"custom": 0, "smoke": 1, "small": 2, "paper": 3}


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.8g}"
    if isinstance(value, torch.Tensor):
        return _format(value.item())
    return str(value)


def encode_rows(rows: Iterable[dict[str, Any]], columns: list[str], header: bool) -> bytes:
    """CSV bytes for `rows` (and the header when asked); raises ValueError on a key that is not a column."""
    known = set(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        unknown = sorted(set(row) - known)
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; valid columns: {', '.join(columns)}")
        full = {"schema_version": SCHEMA_VERSION, **row} if "schema_version" in known else dict(row)
        writer.writerow([_format(full.get(c)) for c in columns])
    return buffer.getvalue().encode("utf-8")


def append_rows(path: str | os.PathLike, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Append `rows` to the CSV at `path` atomically (see the module docstring); creates folders and the
    header as needed. An existing file must have been written with the same `columns` (else ValueError)."""
    rows = list(rows)
    payload_rows = encode_rows(rows, columns, header=False)  # validates keys before the file is touched
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size == 0:
            payload = encode_rows([], columns, header=True) + payload_rows
        else:
            _check_header(fd, path, columns)
            payload = payload_rows
            # A writer killed between its write and its newline cannot happen (one write), but a file edited
            # by hand may lack the final newline: never glue a row onto someone else's line.
            if os.pread(fd, 1, size - 1) != b"\n":
                payload = b"\n" + payload
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def _check_header(fd: int, path: Path, columns: list[str]) -> None:
    head = os.pread(fd, 1 << 16, 0).split(b"\n", 1)[0].decode("utf-8")
    found = next(csv.reader([head]))
    if found != columns:
        # Older schema versions wrote a prefix of today's columns; appending new columns to such a file
        # would misalign them, so the caller must start a new file.
        raise ValueError(
            f"{path} was written with other columns ({len(found)} columns: {', '.join(found[:6])}, ...); "
            f"the recorder writes {len(columns)} columns (schema {SCHEMA_VERSION}). Move the old file aside "
            f"or convert it; rows are never rewritten in place."
        )


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a recorder CSV as dicts of strings ([] if the file is absent). A last line without its
    newline (a torn write) is dropped, as is a row with the wrong number of fields."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    if not text:
        return []
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return []
    return [dict(zip(header, fields)) for fields in reader if len(fields) == len(header)]


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        return None
    value = float(value.item() if isinstance(value, torch.Tensor) else value)
    return value


def _hparam(module: pl.LightningModule, name: str, default: Any = None) -> Any:
    hparams = getattr(module, "hparams", {}) or {}
    if name in hparams:
        return hparams[name]
    return getattr(module, name, default)


PATTERN_NAMES = {"all": "dense"}  # the tables say dense where the code says attn_mode "all"
SAMPLE_MARKER = "SAMPLE"  # benchmarks/sample_data/SAMPLE marks the embedded sample (make_sample_data.py)


def recorded_variant(datamodule: Any) -> str:
    """The datamodule's variant, prefixed with "sample-" when its data root is the embedded sample (a folder
    holding the SAMPLE marker) and the datamodule did not say so itself: a result on the 2 MB sample must never
    read like one on the shared subset."""
    try:
        variant = str(getattr(datamodule, "variant", "") or "")
    except RuntimeError:  # variant is known only after prepare_data()/setup()
        return ""
    data_dir = getattr(datamodule, "data_dir", None)
    if data_dir is not None and (Path(data_dir) / SAMPLE_MARKER).is_file() and not variant.startswith("sample-"):
        return "sample-" + variant
    return variant


class ResultsRecorder(pl.Callback):
    """Append one row per finished fit, validate or test to `runs_path`, and the learning curve (every
    `curve_every_n_steps` training steps plus every validation) to `curves_path`.

    Args:
        runs_path: CSV of runs (RUN_COLUMNS); appended, never rewritten.
        curves_path: CSV of learning curves (CURVE_COLUMNS); appended, never rewritten.
        preset: the scale the run belongs to; the report ranks paper > small > smoke > custom.
        curve_every_n_steps: record train bits per dim every this many optimizer steps (1 = every step).
        warmup_steps_excluded: the first steps are left out of the time per iteration (compilation, autotune).
        note: free text copied into every row (e.g. "4xH100 ddp").
    """

    def __init__(
        self,
        runs_path: str = "results/runs.csv",
        curves_path: str = "results/curves.csv",
        preset: Literal["smoke", "small", "paper", "custom"] = "custom",
        curve_every_n_steps: int = 10,
        warmup_steps_excluded: int = 2,
        note: str = "",
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
        if curve_every_n_steps < 1:
            raise ValueError(f"curve_every_n_steps must be >= 1, got {curve_every_n_steps}")
        self.runs_path = runs_path
        self.curves_path = curves_path
        self.preset = preset
        self.curve_every_n_steps = curve_every_n_steps
        self.warmup_steps_excluded = warmup_steps_excluded
        self.note = note
        self.config_path = ""  # set by the CLI to the YAML the run came from
        self.run_id = uuid.uuid4().hex[:12]
        self._step_ms: list[float] = []
        self._curve: list[dict[str, Any]] = []
        self._batch_started = 0.0
        self._stage_started = 0.0
        self._wall_offset = 0.0  # wall time of earlier sessions of a resumed run
        self._tokens_per_step = 0
        self._peak_bytes = 0
        self._cuda_device: torch.device | None = None
        self.last_row: dict[str, Any] | None = None
        self._identity: dict[str, str] = {}

    # --- state carried by checkpoints: a resumed run or a later test keeps its run_id and clock ---
    def state_dict(self) -> dict[str, Any]:
        # benchmark, pattern, preset and variant let `sparse-repro sample` name its files from a checkpoint.
        return {"run_id": self.run_id, "wall_s": self._wall_offset + self._elapsed(), **self._identity}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.run_id = state_dict.get("run_id", self.run_id)
        self._wall_offset = float(state_dict.get("wall_s", 0.0))

    def _elapsed(self) -> float:
        return time.perf_counter() - self._stage_started if self._stage_started else 0.0

    # --- timing ---
    def _start_stage(self, pl_module: pl.LightningModule) -> None:
        self._stage_started = time.perf_counter()
        self._peak_bytes = 0
        # Remembered here: Lightning moves the module back to the CPU before on_fit_end.
        self._cuda_device = pl_module.device if pl_module.device.type == "cuda" else None
        if self._cuda_device is not None:
            torch.cuda.reset_peak_memory_stats(self._cuda_device)

    def _update_peak(self) -> None:
        # Read after every step: the module resets the peak at each batch start to log a per-step peak.
        if self._cuda_device is not None:
            self._peak_bytes = max(self._peak_bytes, torch.cuda.max_memory_allocated(self._cuda_device))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_stage(pl_module)
        self._identity = {
            "benchmark": getattr(trainer.datamodule, "benchmark", ""),
            "pattern": self._pattern(pl_module),
            "preset": self.preset,
            "variant": recorded_variant(trainer.datamodule),
        }
        self._step_ms = []
        self._curve = []

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._start_stage(pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_stage(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_started = time.perf_counter()
        if not self._tokens_per_step:
            tokens = batch[0] if isinstance(batch, (tuple, list)) else batch
            self._tokens_per_step = int(tokens.numel()) * trainer.world_size

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self._step_ms.append((time.perf_counter() - self._batch_started) * 1e3)
        self._update_peak()
        step = trainer.global_step
        if step % self.curve_every_n_steps == 0 or step == 1:
            train_bpd = _metric(trainer.callback_metrics, "train/bpd")
            if train_bpd is None and isinstance(outputs, dict) and "loss" in outputs:
                train_bpd = float(outputs["loss"]) / math.log(2)
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            self._curve.append(self._curve_row(trainer, step, train_bpd=train_bpd, lr=lr))
            if len(self._curve) >= 100:
                self._flush_curve(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._write_run(trainer, pl_module, "validate", wall_s=self._elapsed())
            return
        if trainer.sanity_checking:
            return
        val_bpd = _metric(trainer.callback_metrics, "val/bpd")
        if val_bpd is not None:
            self._curve.append(self._curve_row(trainer, trainer.global_step, val_bpd=val_bpd))
            self._flush_curve(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        # A checkpoint is a point a resumed run restarts from: curve rows up to it must be on disk.
        self._flush_curve(trainer)

    def _curve_row(self, trainer: pl.Trainer, step: int, **values: Any) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "benchmark": getattr(trainer.datamodule, "benchmark", ""),
            "pattern": self._pattern(trainer.lightning_module),
            "preset": self.preset,
            "variant": recorded_variant(trainer.datamodule),
            "step": step,
            "wall_s": round(self._wall_offset + self._elapsed(), 3),
            **values,
        }

    def _flush_curve(self, trainer: pl.Trainer) -> None:
        if self._curve and trainer.is_global_zero:
            append_rows(self.curves_path, self._curve, CURVE_COLUMNS)
        self._curve = []

    # --- rows ---
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_curve(trainer)
        self._wall_offset += self._elapsed()
        wall = self._wall_offset
        self._stage_started = 0.0
        self._write_run(trainer, pl_module, "fit", wall_s=wall)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_run(trainer, pl_module, "test", wall_s=self._elapsed())

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._flush_curve(trainer)

    def _pattern(self, pl_module: pl.LightningModule) -> str:
        attn_mode = _hparam(pl_module, "attn_mode", "")
        return PATTERN_NAMES.get(attn_mode, attn_mode)

    def _write_run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, wall_s: float) -> None:
        if not trainer.is_global_zero:
            return
        self.last_row = self.run_row(trainer, pl_module, stage, wall_s)
        append_rows(self.runs_path, [self.last_row], RUN_COLUMNS)

    def run_row(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, wall_s: float) -> dict:
        """The row this callback writes for `stage`; public so that tests and tools can inspect it."""
        from benchmarks.provenance import provenance

        metrics = trainer.callback_metrics
        data = trainer.datamodule
        model = getattr(pl_module, "model", None)
        params = model.num_params() if hasattr(model, "num_params") else sum(p.numel() for p in pl_module.parameters())
        timed = self._step_ms[self.warmup_steps_excluded :] or self._step_ms
        ms_per_iter = statistics.median(timed) if stage == "fit" and timed else None
        tokens_per_s = self._tokens_per_step / (ms_per_iter / 1e3) if ms_per_iter else None
        self._update_peak()
        peak = self._peak_bytes / 2**30 if self._cuda_device is not None else None
        strategy = type(trainer.strategy).__name__.replace("Strategy", "").lower()
        row = {
            "run_id": self.run_id,
            "stage": stage,
            "benchmark": getattr(data, "benchmark", ""),
            "pattern": self._pattern(pl_module),
            "preset": self.preset,
            "variant": recorded_variant(data),
            "n": _hparam(pl_module, "seq_len", getattr(data, "seq_len", None)),
            "layers": _hparam(pl_module, "n_layer"),
            "d_model": _hparam(pl_module, "d_model"),
            "heads": _hparam(pl_module, "n_head"),
            "params": params,
            "steps": trainer.global_step,
            "precision": trainer.precision,
            "devices": trainer.num_devices,
            "val_bpd": _metric(metrics, "val/bpd") if stage in ("fit", "validate") else None,
            "test_bpd": _metric(metrics, "test/bpd") if stage == "test" else None,
            "train_bpd": _metric(metrics, "train/bpd") if stage == "fit" else None,
            "ms_per_iter": ms_per_iter,
            "tokens_per_s": tokens_per_s,
            "peak_gib": peak,
            "wall_s": round(wall_s, 3),
            "seed": getattr(data, "seed", None),
            "attn_mode": _hparam(pl_module, "attn_mode"),
            "integration": _hparam(pl_module, "integration"),
            "layer_pattern": _hparam(pl_module, "layer_pattern"),
            "local_attn_ctx": _hparam(pl_module, "local_attn_ctx"),
            "summary_ctx": _hparam(pl_module, "summary_ctx"),
            "backend": _hparam(pl_module, "backend"),
            "checkpointing": _hparam(pl_module, "checkpoint"),
            "batch": getattr(data, "batch_size", None),
            "accumulate": trainer.accumulate_grad_batches,
            "num_nodes": trainer.num_nodes,
            "strategy": strategy,
            "max_steps": _hparam(pl_module, "max_steps"),
            "eval_min_context": getattr(data, "eval_min_context", None),
            "data_dir": getattr(data, "data_dir", None),
            "config": self.config_path,
            "ckpt_path": trainer.ckpt_path or "",
            "status": "ok",
            "note": self.note,
        }
        reasons = [getattr(cb, "stop_reason", "") for cb in trainer.callbacks]
        if stage == "fit" and any(reasons):
            row["status"] = "stopped: " + "; ".join(r for r in reasons if r)
        fields = provenance()
        for key in ("gpu", "gpu_count", "cuda", "torch", "triton", "lightning", "python", "host", "commit", "date"):
            row[key] = fields.get(key, "")
        return row
