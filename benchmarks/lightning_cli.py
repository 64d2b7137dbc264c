"""The LightningCLI behind `sparse-repro fit | validate | test`: one YAML per benchmark x pattern x preset.

    sparse-repro fit --config benchmarks/configs/cifar10/strided-smoke.yaml
    sparse-repro fit --config benchmarks/configs/cifar10/strided-smoke.yaml --ckpt_path last      (resume)
    sparse-repro test --config benchmarks/configs/cifar10/strided-smoke.yaml --ckpt_path last

What it adds to Lightning's CLI:
- `data` is any datamodule of datamodules/ (class_path), and its `seq_len` and `token_axes` are linked into the
  model at instantiation, so the sequence length and position axes are typed once, in the data section;
  passing --model.seq_len is an error.
- Always-on callbacks, each with its own config section:
    recorder:   benchmarks.recorder.ResultsRecorder (results/runs.csv and results/curves.csv);
    checkpoint: ModelCheckpoint with save_last=True, in <trainer.default_root_dir>/checkpoints unless dirpath
                is given, so that `--ckpt_path last` finds the run's last checkpoint; a fresh run replaces an
                earlier run's last.ckpt there, and says so (benchmarks/faults.py);
    faults:     benchmarks.faults.FaultGuard (stop on a NaN/inf loss; per-step seeds for exact resumes).
- Bad values fail before training: unknown classes or keys and an unknown precision (parser), heads not
  dividing the width (model) or an accelerator the machine lacks (Trainer), each in one line; missing data or
  data that cannot give the sequence length (the datamodule's prepare_data / setup, which Lightning runs before
  the first step); a --config that is not a file lists the configs that exist.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from benchmarks.faults import CHECKPOINT_DEFAULTS, FaultGuard
from benchmarks.recorder import ResultsRecorder

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class SparseReproCLI(LightningCLI):
    """LightningCLI with the suite's links, callbacks and checks (see the module docstring)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.seq_len", "model.seq_len", apply_on="instantiate")
        parser.link_arguments("data.token_axes", "model.token_axes", apply_on="instantiate")
        parser.add_lightning_class_args(ResultsRecorder, "recorder")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{key}": value for key, value in CHECKPOINT_DEFAULTS.items()})
        parser.add_lightning_class_args(FaultGuard, "faults")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config["trainer"].get("default_root_dir") or os.getcwd()
        if not config["checkpoint"].get("dirpath"):
            config["checkpoint"]["dirpath"] = str(Path(root) / "checkpoints")

    def instantiate_classes(self) -> None:
        # The model's, datamodule's and Trainer's own checks (heads not dividing the width, an accelerator this
        # machine lacks) raise here, before any data is read or device touched: say it in one line, as the parser
        # does for unknown keys, instead of a page of jsonargparse frames. Errors after this point (training) keep
        # their traceback.
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, MisconfigurationException) as bad:
            command = f"sparse-repro {self.subcommand}" if self.subcommand else "sparse-repro"
            raise SystemExit(f"{command}: bad configuration: {bad}") from bad

    # Lightning reads the data (prepare_data, on one process per node) before any training step, so missing
    # or malformed data fails with the datamodule's message before training starts.
    def before_fit(self) -> None:
        self._note_config()

    def before_validate(self) -> None:
        self._note_config()

    def before_test(self) -> None:
        self._note_config()

    def _note_config(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        paths = config.get("config") or []
        recorder = next(cb for cb in self.trainer.callbacks if isinstance(cb, ResultsRecorder))
        recorder.config_path = ",".join(_relative(str(p)) for p in paths)


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def check_config_paths(args: list[str]) -> None:
    """A --config that is not a file: SystemExit naming the configs that exist (benchmark, pattern, preset)."""
    for flag, value in zip(args, args[1:]):
        if flag == "--config" and not Path(value).is_file():
            configs = sorted(p.relative_to(CONFIG_DIR.parent.parent) for p in CONFIG_DIR.rglob("*.yaml"))
            listing = "\n  ".join(str(p) for p in configs)
            raise SystemExit(
                f"sparse-repro: no config file {value!r}. Configs are benchmarks/configs/<benchmark>/<pattern>-<preset>"
                f".yaml with benchmark cifar10|enwik8|imagenet64|audio, pattern dense|strided|fixed, preset "
                f"smoke|small|paper:\n  {listing}"
            )


def build_cli(args: list[str], run: bool = True) -> SparseReproCLI:
    """Parse `args` (a subcommand first when run=True), instantiate, and run it; returns the CLI object."""
    check_config_paths(args)
    from benchmarks.module import SparseTransformerModule
    from datamodules.base import TokenDataModule

    argv, sys.argv = sys.argv, sys.argv[:1]  # `args` is the whole command line; LightningCLI warns otherwise
    try:
        return SparseReproCLI(
            SparseTransformerModule,
            TokenDataModule,
            subclass_mode_data=True,
            args=args,
            run=run,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "sparse-repro", "default_env": False},
        )
    finally:
        sys.argv = argv
