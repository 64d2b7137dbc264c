#!/usr/bin/env bash
# One device call: kernel benchmark targets, then the GPU test suite; everything lands under $OUT.
# Usage on the GPU machine: SPARSE_REPRO_COMMIT=<sha> bash benchmarks/gpu_session.sh [targets|sweep|tests]...
set -uo pipefail
export PYTHONPATH=.
OUT="${OUT:-out}"; mkdir -p "$OUT"
python3 -c "import pytest, hypothesis, tqdm" 2>/dev/null || pip install -q --no-index --find-links .devwheels pytest hypothesis tqdm
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
for step in "$@"; do
  case "$step" in
    targets) timeout 240 python3 -m benchmarks.bench_kernels --cases targets --out "$OUT/kernels.csv" --ceilings-out "$OUT/device_ceilings.csv" 2>&1 | tail -40 ;;
    sweep)   timeout 400 python3 -m benchmarks.bench_kernels --cases sweep --out "$OUT/kernels.csv" --ceilings-out "$OUT/device_ceilings.csv" 2>&1 | tail -80 ;;
    tests)   timeout 320 python3 -m pytest tests/sparse/test_kernels.py tests/sparse/test_patterns.py -q --maxfail=5 -p no:cacheprovider -p no:warnings --durations=5 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt" ;;
  esac
done
