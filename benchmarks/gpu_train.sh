#!/usr/bin/env bash
# One device call of training runs (issue 4's step times with and without checkpointing; issue 6's Table 2
# at reduced steps). Runs through the same `sparse-repro fit` as users; rows land in $OUT/runs.csv.
# Needs the real data copied into ./data (carried). Usage: SPARSE_REPRO_COMMIT=<sha> bash benchmarks/gpu_train.sh
set -uo pipefail
export PYTHONPATH=.
OUT="${OUT:-out}"; mkdir -p "$OUT"
# The image may hold an older jsonargparse than LightningCLI needs: upgrade from the carried wheels, then check.
pip install -q -U --no-deps --no-index --find-links .devwheels jsonargparse docstring_parser typeshed_client \
  typing_extensions tqdm soundfile
# LightningCLI still refused the image's packages on 2026-11-27, so runs go through benchmarks/fit_config.py (the
# same classes and callbacks without jsonargparse).
STEPS="${STEPS:-300}"
fit() {  # fit <config> <seconds> [overrides...]
  local cfg=$1 limit=$2; shift 2
  echo "== $cfg $*"
  timeout "$limit" python3 -m benchmarks.fit_config "benchmarks/configs/$cfg.yaml" \
    recorder.runs_path="$OUT/runs.csv" recorder.curves_path="$OUT/curves.csv" \
    trainer.enable_progress_bar=false trainer.max_steps="$STEPS" model.max_steps="$STEPS" \
    model.warmup_steps=50 trainer.val_check_interval=150 trainer.limit_val_batches=20 \
    trainer.default_root_dir="runs/$cfg" "$@" 2>&1 | grep -E "Error|error|Traceback|stopped" | tail -3
}
fit cifar10/strided-small 90
fit enwik8/fixed-small 90
fit cifar10/strided-small 55 trainer.max_steps=40 model.checkpoint=true recorder.note=checkpointing \
  trainer.default_root_dir=runs/ckpt-cifar
fit enwik8/fixed-small 55 trainer.max_steps=40 model.checkpoint=true recorder.note=checkpointing \
  trainer.default_root_dir=runs/ckpt-enwik8
fit cifar10/dense-small 80
fit enwik8/dense-small 80
fit cifar10/fixed-small 60
fit enwik8/strided-small 60
timeout 30 python3 -m benchmarks.cli sample --ckpt_path runs/cifar10/strided-small/checkpoints/last.ckpt \
  --num_samples 4 --out "$OUT" 2>&1 | tail -2
ls "$OUT"
