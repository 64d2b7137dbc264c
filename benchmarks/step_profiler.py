"""A callback that profiles a few training steps with torch.profiler and writes where the time went.

    python -m benchmarks.fit_config benchmarks/configs/enwik8/fixed-paper.yaml ... \
        profile.start_step=4 profile.steps=2 profile.out=out/profile-enwik8-fixed.txt

The file holds torch.profiler's table of operators and kernels over the profiled steps, sorted by their own
device time on a GPU (CPU time on a CPU), then on a GPU the same sorted by CPU time (where CUDA runtime calls
such as cudaLaunchKernel or cudaStreamSynchronize show up) and the caching allocator's counters over the window;
its first line says which steps, which config and which device. `profile.trace=true` also writes the chrome
trace beside it (<out stem>.trace.json.gz, viewable in Perfetto) and appends benchmarks/trace_stalls.py's
reading of it: GPU busy time and idle gaps, the slowest runtime calls and what the CPU ran meanwhile.
Steps before `start_step` are warm-up (compilation, allocator growth); they are not profiled. Through the
LightningCLI: `--trainer.callbacks+=benchmarks.step_profiler.StepProfiler --trainer.callbacks.out=<file>`.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch


class StepProfiler(pl.Callback):
    def __init__(
        self, out: str, start_step: int = 3, steps: int = 2, rows: int = 40, label: str = "a run", trace: bool = False
    ) -> None:
        """label: what the file's first line says was profiled (fit_config passes the config's path); trace: also
        export the chrome trace and append its reading (benchmarks/trace_stalls.py)."""
        if start_step < 0 or steps < 1 or rows < 1:
            raise ValueError(f"need start_step >= 0, steps >= 1 and rows >= 1, got {start_step}, {steps}, {rows}")
        self.out, self.start_step, self.steps, self.rows = Path(out), start_step, steps, rows
        self.label, self.trace = label, trace
        self._memory_before: dict[str, int] = {}
        self._profiler: torch.profiler.profile | None = None
        self._cuda = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.start_step and self._profiler is None:
            self._cuda = pl_module.device.type == "cuda"
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self._cuda:
                activities.append(torch.profiler.ProfilerActivity.CUDA)
                torch.cuda.synchronize(pl_module.device)
                self._memory_before = torch.cuda.memory_stats(pl_module.device)
            self._profiler = torch.profiler.profile(activities=activities)
            self._profiler.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if self._profiler is not None and trainer.global_step >= self.start_step + self.steps:
            self._finish(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._profiler is not None:  # the run ended inside the profiled window
            self._finish(pl_module)

    def _finish(self, pl_module: pl.LightningModule) -> None:
        if self._cuda:
            torch.cuda.synchronize(pl_module.device)
        profiler, self._profiler = self._profiler, None
        profiler.__exit__(None, None, None)
        sort = "self_cuda_time_total" if self._cuda else "self_cpu_time_total"
        averages = profiler.key_averages()
        table = averages.table(sort_by=sort, row_limit=self.rows, max_name_column_width=70)
        device = torch.cuda.get_device_name(pl_module.device) if self._cuda else "cpu"
        head = f"# steps {self.start_step}..{self.start_step + self.steps - 1} of {self.label} on {device}"
        parts = [f"{head}, sorted by {sort}\n{table}\n"]
        if self._cuda:
            cpu_table = averages.table(sort_by="self_cpu_time_total", row_limit=self.rows, max_name_column_width=70)
            parts.append(f"# the same, sorted by self_cpu_time_total\n{cpu_table}\n")
            parts.append(self._allocator_counters(pl_module.device))
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.trace:
            from benchmarks.trace_stalls import summarize

            trace_path = self.out.with_name(self.out.stem + ".trace.json.gz")
            profiler.export_chrome_trace(str(trace_path))
            parts.append(summarize(trace_path, steps=self.steps))
        self.out.write_text("".join(parts))

    def _allocator_counters(self, device) -> str:
        """What the caching allocator did in the window: a cudaMalloc or cudaFree inside a step can stall it."""
        after = torch.cuda.memory_stats(device)
        keys = ("num_alloc_retries", "num_device_alloc", "num_device_free", "num_sync_all_streams", "num_ooms")
        counts = ", ".join(f"{key} {after.get(key, 0) - self._memory_before.get(key, 0)}" for key in keys)
        return f"# caching allocator over the profiled steps: {counts}\n"
