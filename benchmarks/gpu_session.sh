#!/usr/bin/env bash
# One device call: any of the steps below, in order; everything lands under $OUT.
# Usage on the GPU machine: SPARSE_REPRO_COMMIT=<sha> bash benchmarks/gpu_session.sh [targets|targets-caller|dense-kernels|targets-1m|models|sweep|sweep-1m|flexsweep|flexlarge|tests|cudatests|oldergpus|profile|tune|counters|dram|host]...
set -uo pipefail
export PYTHONPATH=.
OUT="${OUT:-out}"; mkdir -p "$OUT"
python3 -c "import pytest, hypothesis, tqdm" 2>/dev/null \
  || python3 -m pip install -q --no-deps --no-index --find-links .devwheels pytest hypothesis tqdm iniconfig pluggy pytest-xdist execnet \
       sortedcontainers
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
bench=(python3 -m benchmarks.bench_kernels --out "$OUT/kernels.csv" --ceilings-out "$OUT/device_ceilings.csv")
for step in "$@"; do
  case "$step" in
    targets)   timeout 280 "${bench[@]}" --cases targets 2>&1 | tail -42 ;;
    # The target cases below 1,048,576 with every backward on the calling thread (--autograd-thread caller).
    targets-caller) timeout 280 "${bench[@]}" --cases targets --n 3072,12288,65536 --autograd-thread caller \
                 2>&1 | tail -22 ;;  # ~85 s before graph_ms; the CUDA-graph replays add to that
    # The targets with each of SDPA's dense kernels forced beside torch's choice (results/tables/dense_kernels.md).
    dense-kernels) timeout 400 "${bench[@]}" --cases targets --n 3072,12288,65536 --autograd-thread caller \
                 --backends triton,sdpa,sdpa-cudnn,sdpa-flash,sdpa-efficient,sdpa-math 2>&1 | tail -40 ;;
    # The 1,048,576 target alone: SDPA's forward + backward there takes ~20 s a run on an H200.
    targets-1m) timeout 400 "${bench[@]}" --cases targets --n 1048576 --backends triton,sdpa --autograd-thread caller \
                 2>&1 | tail -8 ;;
    models)    timeout 280 "${bench[@]}" --cases models --backends triton,sdpa 2>&1 | tail -22 ;;  # Table 2's calls
    # Our kernels and SDPA; FlexAttention has the two steps below (with it this step would pass its time limit).
    sweep)     timeout 280 "${bench[@]}" --cases sweep --backends triton,sdpa --n 1024,3072,12288,65536,262144 \
                 --head-dims 64,128 2>&1 | tail -5 ;;
    # The sweep's 1,048,576 cells, all three backends in one process (so every speed-up there is same-process), one
    # head dim a device call: SWEEP_HEAD_DIM=64 (default; ~6 min on an H200) or 128 (~5 min).
    sweep-1m)  timeout 560 "${bench[@]}" --cases sweep --backends triton,flex,sdpa --n 1048576 \
                 --head-dims "${SWEEP_HEAD_DIM:-64}" 2>&1 | grep -v Warning | tee "$OUT/sweep_1m.txt" | tail -16 ;;
    tests)     timeout 320 python3 -m pytest tests/sparse/test_kernels.py tests/sparse/test_patterns.py -q \
                 -p no:cacheprovider -p no:warnings --durations=5 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt" ;;
    # Compile-bound (each dtype x head dim x mask shape compiles its kernels): spread over processes with xdist.
    # 12 workers: 171 s for 83 tests, 229 s for 114 on an H200 host of 16 cores (gpu_cuda_tests-c81dfa6386eb.txt,
    # -a98f5515647b.txt); 6 did not finish in 240 s. Twelve processes on one card ran out of its memory once
    # (gpu_cuda_tests-3957e72d6b3c.txt): tests/conftest.py and tests/process_lock.py since. 114 tests took 264 s and
    # 346 s on two machines (-a448c2e5a456, -4f84f0ee6d51): 540 s leaves room within a device call's 600.
    cudatests) timeout 540 python3 -m pytest tests/sparse -m cuda -p no:cacheprovider \
                 -p no:warnings -n 12 -rA --tb=short --durations=8 > "$OUT/gpu_cuda_tests.txt" 2>&1
               grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/gpu_cuda_tests.txt" | tail -12 ;;
    # The older GPUs' plan (no descriptors, no programmatic launch; sparse/kernels/plan.py's HOPPER_ARCH) compiled on
    # this GPU against the reference, then timed beside Hopper's in one process (profile_kernels' `older-gpus` path).
    oldergpus) python3 -m benchmarks.cli env | tee "$OUT/env.txt" | grep kernels
               timeout 300 python3 -m pytest tests/sparse/test_gpu_targets.py -m cuda -p no:cacheprovider \
                 -p no:warnings -n 12 -rA --tb=short --durations=8 > "$OUT/gpu_older_gpus_tests.txt" 2>&1
               grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/gpu_older_gpus_tests.txt" | tail -12
               timeout 240 python3 -m benchmarks.profile_kernels --paths=direct,older-gpus strided:12288:1:128 \
                 fixed:12288:1:128:32 strided:3072:8:96 > "$OUT/profile_kernels_older_gpus.txt" 2>&1
               grep -E "eager|Error" "$OUT/profile_kernels_older_gpus.txt" ;;
    # Where the time of the missed target cases goes: eager vs CUDA graph vs host, host functions, GPU kernels.
    profile)   timeout 240 python3 -m benchmarks.profile_kernels strided:12288:1:128 fixed:12288:1:128:32 \
                 strided:3072:8:96 strided:3072:1:96 all:12288:1 all:3072:8 > "$OUT/profile_kernels.txt" 2>&1
               grep -E "eager|Error" "$OUT/profile_kernels.txt" ;;
    # Hardware counters of one call of each COUNTER_CASES case (benchmarks/hw_counters.py) under Nsight Compute, as text.
    counters)  ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
               for case in ${COUNTER_CASES:-strided:12288:1:128}; do
                 name="counters-${case//:/_}"
                 timeout 240 "$ncu_bin" --clock-control none --profile-from-start off --set full -f -o "$OUT/$name" \
                   python3 -m benchmarks.hw_counters "$case" > "$OUT/$name-details.txt" 2>&1
                 "$ncu_bin" --import "$OUT/$name.ncu-rep" --page details >> "$OUT/$name-details.txt" 2>&1
                 "$ncu_bin" --import "$OUT/$name.ncu-rep" --page raw --csv > "$OUT/$name-raw.csv" 2>&1
                 "$ncu_bin" --import "$OUT/$name.ncu-rep" --page source --csv --print-source sass \
                   > "$OUT/$name-source.csv" 2>&1
                 rm -f "$OUT/$name.ncu-rep"; python3 -m benchmarks.counter_summary "$OUT/$name" > "$OUT/$name-summary.txt"
                 head -24 "$OUT/$name-summary.txt"  # not through tee: head's early exit would cut the file short
               done ;;
    # DRAM bytes of one call with the kernels back to back, L2 kept between them (--cache-control none: what a
    # training step or a graph replay moves), beside the same call with L2 flushed before each kernel (the counters
    # step's setting). Application replay: ncu needs three passes for these metrics, and each pass reruns the whole
    # process, so that no pass sees an L2 that an earlier pass of the same kernel warmed (kernel replay would).
    dram)      ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
               metrics=dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sector_hit_rate.pct
               for case in ${COUNTER_CASES:-strided:12288:1:128 strided:3072:8:96 all:12288:1}; do
                 file="$OUT/dram-${case//:/_}.txt"
                 echo "# $(tail -1 "$OUT/gpu.txt"); commit ${SPARSE_REPRO_COMMIT:-unknown}; $(date -u +%FT%TZ)" > "$file"
                 for cache in none all; do
                   name="$OUT/dram-${case//:/_}-l2-$cache"
                   timeout 200 "$ncu_bin" --clock-control none --cache-control "$cache" --replay-mode application \
                     --profile-from-start off --metrics "$metrics" -f -o "$name" \
                     python3 -m benchmarks.hw_counters "$case" > "$name-log.txt" 2>&1
                   "$ncu_bin" --import "$name.ncu-rep" --page raw --csv > "$name-raw.csv" 2>&1
                   { echo "== $case, ncu --cache-control $cache --replay-mode application --metrics $metrics"
                     grep -E "^==(PROF|ERROR)==.*(Profiling|pass|rror)" "$name-log.txt" | head -8
                     python3 -m benchmarks.counter_summary "$name" 2>&1; echo; } >> "$file"
                   rm -f "$name.ncu-rep" "$name-log.txt" "$name-raw.csv"
                 done
                 grep -E "^==|sum" "$file"
               done ;;
    host)      timeout 150 python3 -m benchmarks.host_breakdown 2>&1 | tee "$OUT/host_breakdown.txt" | tail -18 ;;
    tune)      timeout 240 python3 -m benchmarks.tune_tiles --kinds "${TUNE_KINDS:-dkdv_summary}" \
                 --head-dim "${TUNE_HEAD_DIM:-64}" 2>&1 | grep -v Warning | tee "$OUT/tune_tiles.txt" | tail -7 ;;
    flexsweep) timeout 240 "${bench[@]}" --cases sweep --backends flex --n 1024,3072,12288,65536 --head-dims 64 \
                 2>&1 | tail -5 ;;
    # FlexAttention where only its tile-built block masks reach (sparse/flex.py): 1.6 + 3.4 min of cells on an H200.
    flexlarge) timeout 300 "${bench[@]}" --cases sweep --backends flex --n 262144 --head-dims 64,128 2>&1 | tail -14
               timeout 280 "${bench[@]}" --cases sweep --backends flex --n 1048576 --head-dims 64,128 2>&1 | tail -14 ;;
  esac
done
