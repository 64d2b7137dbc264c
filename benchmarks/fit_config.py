"""Run `fit` from a config without LightningCLI: the same classes, callbacks and recorder as `sparse-repro fit`,
for a machine whose jsonargparse is older than LightningCLI needs (as the lent GPU image was on 2026-11-27).

    python -m benchmarks.fit_config benchmarks/configs/cifar10/strided-small.yaml trainer.max_steps=300
    python -m benchmarks.fit_config test benchmarks/configs/enwik8/fixed-small.yaml \
        ckpt_path=runs/enwik8/fixed-small/checkpoints/last.ckpt data.init_args.eval_min_context=6144

The first argument may name the stage (fit, validate or test; default fit). Overrides are dotted keys with
YAML values; `ckpt_path=` is passed to the stage as the CLI's --ckpt_path is; `profile.out=<file>` adds the
StepProfiler callback (benchmarks/step_profiler.py). Sequence length and position
axes are taken from the datamodule, as the CLI's links do.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import yaml

STAGES = ("fit", "validate", "test")


def _set(config: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def main(argv: list[str]) -> int:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from benchmarks.faults import CHECKPOINT_DEFAULTS, FaultGuard
    from benchmarks.module import SparseTransformerModule
    from benchmarks.recorder import ResultsRecorder
    from benchmarks.step_profiler import StepProfiler

    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    stage = argv.pop(0) if argv and argv[0] in STAGES else "fit"
    if not argv:
        raise SystemExit(f"usage: python -m benchmarks.fit_config [{'|'.join(STAGES)}] CONFIG [key=value ...]")
    path, overrides = argv[0], argv[1:]
    if not Path(path).is_file():
        raise SystemExit(f"no config file {path!r}")
    config = yaml.safe_load(Path(path).read_text())
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"override {item!r} is not key=value")
        _set(config, key, yaml.safe_load(value))
    ckpt_path = config.pop("ckpt_path", None)
    pl.seed_everything(config.get("seed_everything", 0))
    module_name, _, class_name = config["data"]["class_path"].rpartition(".")
    datamodule = getattr(importlib.import_module(module_name), class_name)(**config["data"].get("init_args", {}))
    model = SparseTransformerModule(
        seq_len=datamodule.seq_len, token_axes=tuple(datamodule.token_axes), **config["model"]
    )
    recorder = ResultsRecorder(**config.get("recorder", {}))
    recorder.config_path = path
    trainer_args = dict(config["trainer"])
    root = trainer_args.get("default_root_dir", ".")
    # The config's checkpoint section may override these (checkpoint.save_last=false for a model too large to write).
    defaults = {"dirpath": str(Path(root) / "checkpoints"), **CHECKPOINT_DEFAULTS}
    checkpoint = ModelCheckpoint(**{**defaults, **config.get("checkpoint", {})})
    callbacks = [recorder, checkpoint, FaultGuard(**config.get("faults", {}))]
    if (
        "profile" in config
    ):  # profile.out=<file> [profile.start_step=3 profile.steps=2]: see benchmarks/step_profiler.py
        callbacks.append(StepProfiler(**{"label": path, **config["profile"]}))
    trainer = pl.Trainer(**trainer_args, callbacks=callbacks)
    getattr(trainer, stage)(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
