#!/usr/bin/env bash
# Device calls of training runs, through the same classes, callbacks and recorder as `sparse-repro fit`; rows land
# in $OUT/runs.csv and $OUT/curves.csv. Needs the real data copied into ./data (carried) and the wheels of
# .devwheels (carried). Usage on the GPU machine:
#   SPARSE_REPRO_COMMIT=<sha> bash benchmarks/gpu_train.sh [table2|audio|memory|table3|table4|table4-largest|paper|compiled|profile|samples|cli]...
# table2: the six small runs at $STEPS steps in one process, each then tested (issue 6.1; $TABLE2_CONFIGS picks some); audio: the small audio run; memory: step time and peak memory with and without
# checkpointing at n = 3,072 and 12,288 (issue 4); table3: an Enwik8 model, then its test bits per byte against the
# minimum evaluation context (issue 6.2); table4: audio at 65,536, 262,144 and 1,048,576 with the paper's model
# size for each, one wall-clock budget (issue 6.3); table4-largest: the same with the largest model that fits the
# card at each length (benchmarks/largest_model.py); profile: torch.profiler over two paper-size Enwik8 steps,
# fixed and dense, with chrome traces read by benchmarks/trace_stalls.py; paper: a few steps of each paper-size model
# (issue 6.4; $PAPER_CONFIGS picks some, $PAPER_OVERRIDES adds settings); samples: from
# the runs above (issue 6.6); cli: why LightningCLI does or does not accept the image's jsonargparse.
set -uo pipefail
export PYTHONPATH=.
OUT="${OUT:-out}"; mkdir -p "$OUT"
# The image holds no jsonargparse or soundfile: install them from the carried wheels, with python3's own pip
# (a bare `pip` there belongs to another Python, which is why LightningCLI kept refusing on 2026-11-27).
python3 -m pip install -q -U --no-deps --no-index --find-links .devwheels jsonargparse docstring_parser \
  typeshed_client soundfile cffi pycparser 2>&1 | grep -v "as the 'root' user" | tail -2
STEPS="${STEPS:-300}"

run() {  # run <stage> <config> <seconds> [overrides...]: the recorder's rows go to $OUT
  local stage=$1 cfg=$2 limit=$3; shift 3
  echo "== $stage $cfg $*"
  local start=$SECONDS
  timeout "$limit" python3 -m benchmarks.fit_config "$stage" "benchmarks/configs/$cfg.yaml" \
    recorder.runs_path="$OUT/runs.csv" recorder.curves_path="$OUT/curves.csv" \
    trainer.enable_progress_bar=false trainer.default_root_dir="runs/$cfg" "$@" \
    > "$OUT/last_run.log" 2>&1
  echo "   exit $? after $((SECONDS - start)) s"; grep -E "Error|Traceback|stopped" "$OUT/last_run.log" | tail -3
}
small() {  # small <config> <seconds> [overrides...]: the small preset cut to $STEPS steps
  local cfg=$1 limit=$2; shift 2
  run fit "$cfg" "$limit" trainer.max_steps="$STEPS" model.max_steps="$STEPS" model.warmup_steps=50 \
    trainer.val_check_interval="$STEPS" trainer.limit_val_batches=20 "$@"
}

t4() {  # t4 <n> <row width = l> <layers> <d> <heads> <which size> [val interval] [save last.ckpt]: one Table 4
  # run for $BUDGET_S seconds. A mapping, not "00:00:02:30", which YAML 1.1 would read as a base-60 integer.
  # Validation every 50 steps by default: the last one before the budget ends is the run's val_bpd. Held-out
  # audio: 5% at 65,536, 15% at 262,144 (a window of n must fit), none at 1,048,576 (only one excerpt is that
  # long: training bits only).
  local n=$1 l=$2 layers=$3 d=$4 heads=$5 which=$6 every="${7:-50}" save="${8:-true}" budget="${BUDGET_S:-150}"
  local f=0.05 val=20
  case "$n" in 262144) f=0.15 val=4 ;; 1048576) f=0 val=0 ;; esac
  [ "$every" -lt 50 ] && [ "$val" -gt 4 ] && val=4  # frequent validation of a large model: fewer batches
  run fit audio/strided-paper 240 trainer.devices=1 trainer.num_nodes=1 trainer.strategy=auto \
    trainer.max_time="{seconds: $budget}" trainer.max_steps=100000 trainer.val_check_interval="$every" \
    trainer.limit_val_batches=$val data.init_args.seq_len="$n" data.init_args.row_width="$l" \
    data.init_args.eval_fraction=$f data.init_args.num_workers=4 data.init_args.allow_partial=true \
    model.local_attn_ctx="$l" model.n_layer="$layers" model.d_model="$d" model.n_head="$heads" \
    model.warmup_steps=20 model.max_steps=2000 checkpoint.every_n_train_steps=100000 checkpoint.save_last="$save" \
    trainer.default_root_dir="runs/table4-$n" recorder.note="table4, $which for n=$n, budget $budget s"
}

for job in "$@"; do
  case "$job" in
    cli)
      python3 - <<'EOF' 2>&1 | tail -5
from lightning_utilities.core.imports import RequirementCache
for req in ("jsonargparse[signatures]>=4.27.7", "jsonargparse>=4.27.7", "docstring_parser", "typeshed_client"):
    r = RequirementCache(req); print(req, bool(r), "" if r else str(r))
EOF
      timeout 60 python3 -m benchmarks.cli fit --config benchmarks/configs/cifar10/strided-small.yaml \
        --print_config 2>&1 | tail -3 ;;
    table2)  # all six in one process (benchmarks/fit_series.py), so that their step times compare side by side;
      # each model tested after its training ($TABLE2_TEST=0: not); $TABLE2_PROFILE=0 skips the two profiled steps
      # (100 and 101) per run; $TABLE2_OVERRIDES adds settings to every run (e.g. model.compile_mode=default)
      series=()
      for cfg in ${TABLE2_CONFIGS:-cifar10/dense-small cifar10/strided-small cifar10/fixed-small \
                 enwik8/dense-small enwik8/fixed-small enwik8/strided-small}; do
        common="recorder.runs_path=$OUT/runs.csv recorder.curves_path=$OUT/curves.csv trainer.enable_progress_bar=false"
        common+=" trainer.default_root_dir=runs/$cfg 'recorder.note=${TABLE2_NOTE:-table2}, one process' ${TABLE2_OVERRIDES:-}"
        profile=""
        [ "${TABLE2_PROFILE:-1}" = 1 ] && profile="profile.out=$OUT/profile-${cfg/\//-}.txt profile.start_step=100 \
          profile.steps=2 profile.trace=true"
        series+=("fit benchmarks/configs/$cfg.yaml $common trainer.max_steps=$STEPS model.max_steps=$STEPS \
          model.warmup_steps=50 trainer.val_check_interval=$STEPS trainer.limit_val_batches=20 $profile")
        # Test bits per dim of the same model (the report shows test where a test row of the run exists)
        [ "${TABLE2_TEST:-1}" = 1 ] && series+=("test benchmarks/configs/$cfg.yaml $common ckpt_path=runs/$cfg/checkpoints/last.ckpt")
      done
      timeout "${TABLE2_LIMIT_S:-570}" python3 -m benchmarks.fit_series "${series[@]}" > "$OUT/table2.log" 2>&1
      echo "   series exit $?"; grep -E "^== |Error|Traceback" "$OUT/table2.log" | tail -16 ;;
    audio)  # the small audio model at 65,536, whose checkpoint the samples job draws a WAV from
      small audio/strided-small 150 ;;
    memory)
      for cfg in cifar10/strided-small enwik8/fixed-small cifar10/dense-small enwik8/dense-small; do
        for ckpt in false true; do
          STEPS=60 small "$cfg" 80 model.checkpoint=$ckpt trainer.limit_val_batches=2 \
            recorder.note="memory, checkpoint=$ckpt" trainer.default_root_dir="runs/memory-$ckpt"
        done
      done ;;
    table3)
      small enwik8/fixed-small 150
      for m in 0 6144 9216 10752 11904 12096 12160; do
        run test enwik8/fixed-small 120 ckpt_path=runs/enwik8/fixed-small/checkpoints/last.ckpt \
          data.init_args.eval_min_context=$m data.init_args.batch_size=8 recorder.note="table3, min context $m"
      done ;;
    paper)
      for cfg in ${PAPER_CONFIGS:-cifar10/strided-paper cifar10/dense-paper enwik8/fixed-paper enwik8/dense-paper \
                 imagenet64/strided-paper audio/strided-paper}; do
        run fit "$cfg" 150 trainer.devices=1 trainer.num_nodes=1 trainer.strategy=auto trainer.max_steps=8 \
          trainer.limit_val_batches=0 data.init_args.allow_partial=true data.init_args.num_workers=4 \
          checkpoint.every_n_train_steps=1000 model.backward_thread="${BACKWARD_THREAD:-caller}" \
          recorder.note="paper-size, 8 steps on one GPU, backward on the ${BACKWARD_THREAD:-caller} thread${PAPER_OVERRIDES:+, $PAPER_OVERRIDES}" \
          ${PAPER_OVERRIDES:-}  # e.g. PAPER_OVERRIDES="model.checkpoint=false trainer.precision=bf16-mixed"
      done ;;
    compiled)  # the paper-size Enwik8 step with torch.compile ($COMPILE_MODE: default, or reduce-overhead for CUDA
      # graphs, which would take the host out of the host-bound step), beside the eager rows of the paper job
      mode="${COMPILE_MODE:-default}"
      for cfg in enwik8/fixed-paper enwik8/dense-paper; do
        run fit "$cfg" 240 trainer.devices=1 trainer.num_nodes=1 trainer.strategy=auto trainer.max_steps=10 \
          trainer.limit_val_batches=0 data.init_args.allow_partial=true checkpoint.every_n_train_steps=1000 \
          model.compile_mode="$mode" recorder.note="paper-size, compiled ($mode), 10 steps on one GPU"
      done ;;
    profile)  # where a paper-size Enwik8 step goes, fixed vs dense (fixed steps slower: KERNEL_NOTES.md)
      for cfg in enwik8/fixed-paper enwik8/dense-paper; do
        run fit "$cfg" 150 trainer.devices=1 trainer.num_nodes=1 trainer.strategy=auto trainer.max_steps=7 \
          trainer.limit_val_batches=0 data.init_args.allow_partial=true checkpoint.every_n_train_steps=1000 \
          profile.out="$OUT/profile-${cfg/\//-}.txt" profile.start_step=4 profile.steps=2 profile.trace=true \
          recorder.note="profiled, 7 steps on one GPU"
      done ;;
    table4)  # the paper's model size at each length (Table 4), the same wall-clock budget each ($BUDGET_S seconds)
      t4 65536 256 48 512 8 "paper size"      # paper: 152M
      t4 262144 512 8 512 8 "paper size"      # paper: 25M (8 x 512: 25.2M)
      t4 1048576 1024 4 256 4 "paper size" ;; # paper: 3M (4 x 256: 3.2M); train bpd only
    table4-largest)  # Table 4's rule on this card: the largest model per length (benchmarks/largest_model.py),
      # then each trained for $BUDGET_S seconds; $T4_LENGTHS picks lengths (a call may hold only one or two)
      timeout 300 python3 -m benchmarks.largest_model --n "${T4_LENGTHS:-65536,262144,1048576}" \
        --out "$OUT/largest_model.csv" 2>&1 | grep -v Warning | tee "$OUT/largest_model.txt" | tail -8
      # A model of billions of parameters steps in seconds: validate about three times within the budget (the
      # probe's ms per step says how often), and write no last.ckpt (tens of GB with Adam's states).
      grep "^table4:" "$OUT/largest_model.txt" | while read -r _ n l layers d heads ms; do
        every=$(( ${BUDGET_S:-150} * 1000 / (ms > 0 ? ms : 1) / 3 )); every=$(( every < 50 ? (every < 2 ? 2 : every) : 50 ))
        t4 "$n" "$l" "$layers" "$d" "$heads" "largest that fits" "$every" false
      done ;;
    samples)  # from whichever checkpoints the jobs before it in this call left (runs/ does not outlive a call)
      draw() {  # draw <checkpoint> <seconds> [sample options...]
        local ckpt=$1 limit=$2; shift 2
        if [ -f "$ckpt" ]; then
          echo "== sample $ckpt $*"; timeout "$limit" python3 -m benchmarks.cli sample --ckpt_path "$ckpt" --out "$OUT" \
            "$@" 2>&1 | tail -2
        else echo "== no $ckpt: not sampled"; fi
      }
      draw runs/cifar10/strided-small/checkpoints/last.ckpt 90 --num_samples 4
      draw runs/enwik8/fixed-small/checkpoints/last.ckpt 60 --num_samples 1 --length 2000
      draw runs/audio/strided-small/checkpoints/last.ckpt 120 --num_samples 1 --length 12000 ;;  # 1 s at 12 kHz
  esac
done
ls "$OUT"
