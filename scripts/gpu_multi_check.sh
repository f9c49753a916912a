#!/usr/bin/env bash
# Multi-GPU training check. On a machine with two or more GPUs: a short
# data-parallel `caffe train -gpu all` (NCCL) of a small N-ReNet-like net
# (SegData -> ReNet vertical 2x2 -> ReNet horizontal 2x2 -> 1x1 conv ->
# bilinear Deconvolution x4 -> Crop -> SoftmaxWithLoss, plus a TEST net on
# whole images) on a synthetic LMDB built in a temporary folder with
# tools/make_synthetic.py and tools/build_lmdb.py. It passes when the loss
# falls and every GPU's SegData layer reported its share of the records
# (rank r of N). With fewer than two GPUs it says what it skipped and why,
# and exits 0.
#
#   scripts/gpu_multi_check.sh [--caffe BIN] [--python PY] [--iters N]
#                              [--keep DIR] [--cpu-dry]
#
#   --caffe BIN   the caffe tool, a CUDA build with NCCL (default: .venv/bin/caffe)
#   --python PY   Python with the project's packages (default: .venv/bin/python)
#   --iters N     training iterations (default 60)
#   --keep DIR    work in DIR (created, must not exist) and keep it
#   --cpu-dry     same data, net and checks, one solver on the CPU: for
#                 machines without GPUs (the tests run this)
#
# GPUs are counted with `nvidia-smi -L`, limited to CUDA_VISIBLE_DEVICES when
# that is set. Exit status: 0 passed or skipped, 1 failed, 2 bad usage.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
caffe_bin="$root/.venv/bin/caffe"
py="$root/.venv/bin/python"
iters=60
keep=""
cpu_dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --caffe) caffe_bin=$2; shift 2 ;;
    --python) py=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --cpu-dry) cpu_dry=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see $0 --help)" >&2; exit 2 ;;
  esac
done
case "$iters" in
  ''|*[!0-9]*) echo "error: --iters must be a positive integer, not '$iters'" >&2; exit 2 ;;
esac
[ "$iters" -ge 20 ] || { echo "error: --iters $iters: use at least 20 (the loss is read every 10)" >&2; exit 2; }
# The work happens in another folder: make the two programs' paths absolute.
absolute() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    */*) printf '%s\n' "$PWD/$1" ;;
    *) command -v "$1" || printf '%s\n' "$1" ;;
  esac
}
caffe_bin=$(absolute "$caffe_bin")
py=$(absolute "$py")
name=gpu_multi_check
say() { printf '%s: %s\n' "$name" "$*"; }

# ---- How many GPUs --------------------------------------------------------
gpus=0
if [ "$cpu_dry" = 0 ]; then
  if ! command -v nvidia-smi > /dev/null 2>&1; then
    say "SKIPPED: nvidia-smi not found (no NVIDIA driver), so no GPUs to train on; multi-GPU training needs at least 2"
    exit 0
  fi
  if ! listing=$(nvidia-smi -L 2>&1); then
    say "SKIPPED: nvidia-smi -L failed (${listing%%$'\n'*}); multi-GPU training needs at least 2 working GPUs"
    exit 0
  fi
  gpus=$(printf '%s\n' "$listing" | grep -c '^GPU [0-9]' || true)
  if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    visible=$(printf '%s' "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c '[^[:space:]]' || true)
    if [ "$visible" -lt "$gpus" ]; then
      say "CUDA_VISIBLE_DEVICES='$CUDA_VISIBLE_DEVICES' shows $visible of the $gpus GPUs"
      gpus=$visible
    fi
  fi
  if [ "$gpus" -lt 2 ]; then
    say "SKIPPED: $gpus GPU(s) found (nvidia-smi -L); the multi-GPU check needs at least 2"
    exit 0
  fi
fi
[ -x "$caffe_bin" ] || { echo "error: caffe tool $caffe_bin not found; run scripts/setup.sh or pass --caffe" >&2; exit 1; }
[ -x "$py" ] || { echo "error: Python $py not found; run scripts/setup.sh or pass --python" >&2; exit 1; }

# ---- Work folder, data ------------------------------------------------------
if [ -n "$keep" ]; then
  [ ! -e "$keep" ] || { echo "error: --keep $keep exists; give a new folder" >&2; exit 2; }
  mkdir -p "$keep"
  work=$(cd "$keep" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_multi_check.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
cd "$work"
git -C "$root" rev-parse HEAD > commit 2>/dev/null || echo unknown > commit
printf '%q ' "$0" "$@" > command; echo >> command

classes=4
"$py" "$root/tools/make_synthetic.py" --out synthetic --format voc --num 40 \
    --height 96 --width 128 --classes "$classes" --seed 0 --quiet
for split in train val; do
  "$py" "$root/tools/build_lmdb.py" --format voc --root synthetic \
      --classes synthetic/classes.txt --split "$split" --shuffle --quiet \
      --out "lmdb_$split"
done
val_images=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["count"])' lmdb_val/meta.json)

# ---- Net and solver ---------------------------------------------------------
# 64x64 crops -> 2x2 patches twice -> 16x16; Deconvolution x4 without padding
# gives 4 * 16 + 4 = 68, cropped back to 64 at offset 2 (whole 96x128 test
# images likewise: 24x32 -> 100x132 -> 96x128).
mean='mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.0078125'
cat > net.prototxt <<NET
name: "renet_multi_gpu_check"
layer { name: "data" type: "SegData" top: "data" top: "label"
  include { phase: TRAIN }
  seg_data_param { source: "lmdb_train" batch_size: 4 crop_h: 64 crop_w: 64
    mirror: true shuffle: true seed: 1 $mean } }
layer { name: "data" type: "SegData" top: "data" top: "label"
  include { phase: TEST }
  seg_data_param { source: "lmdb_val" batch_size: 1 $mean } }
layer { name: "renet1_v" type: "ReNet" bottom: "data" top: "renet1_v"
  renet_param { num_output: 16 direction: VERTICAL patch_h: 2 patch_w: 2 } }
layer { name: "renet1_h" type: "ReNet" bottom: "renet1_v" top: "renet1_h"
  renet_param { num_output: 16 direction: HORIZONTAL patch_h: 2 patch_w: 2 } }
layer { name: "score" type: "Convolution" bottom: "renet1_h" top: "score"
  convolution_param { num_output: $((classes + 1)) kernel_size: 1
    weight_filler { type: "xavier" } } }
layer { name: "upscore" type: "Deconvolution" bottom: "score" top: "upscore"
  param { lr_mult: 0 }
  convolution_param { num_output: $((classes + 1)) group: $((classes + 1))
    kernel_size: 8 stride: 4 bias_term: false
    weight_filler { type: "bilinear" } } }
layer { name: "crop" type: "Crop" bottom: "upscore" bottom: "data"
  top: "crop" crop_param { axis: 2 offset: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "crop" bottom: "label"
  top: "loss" loss_param { ignore_label: 255 } }
NET
if [ "$cpu_dry" = 1 ]; then mode=CPU; else mode=GPU; fi
cat > solver.prototxt <<SOLVER
net: "net.prototxt"
type: "Adam"
base_lr: 0.01
lr_policy: "fixed"
max_iter: $iters
display: 10
test_iter: $val_images
test_interval: $iters
test_initialization: false
snapshot: 0
snapshot_after_train: false
snapshot_prefix: "check"
solver_mode: $mode
random_seed: 1
SOLVER

# ---- Train --------------------------------------------------------------
if [ "$cpu_dry" = 1 ]; then
  args=(train -solver solver.prototxt)
  say "CPU dry run: $iters iterations on one solver in $work"
else
  args=(train -solver solver.prototxt -gpu all)
  say "training on all $gpus GPUs for $iters iterations in $work"
fi
set +e
GLOG_minloglevel=0 "$caffe_bin" "${args[@]}" > train.log 2>&1
rc=$?
set -e
fail() { say "FAILED: $*"; say "log: $work/train.log (last lines below)"; tail -n 15 train.log | sed 's/^/  /'; [ -n "$keep" ] || trap - EXIT; exit 1; }
if [ $rc -ne 0 ]; then
  if grep -q "CPU-only Caffe" train.log; then
    fail "$caffe_bin is a CPU-only build; build the CUDA version (scripts/setup.sh --cuda) and pass it with --caffe"
  elif grep -q "rebuild with USE_NCCL" train.log; then
    fail "$caffe_bin was built without NCCL, which multi-GPU training needs; install NCCL 2 and rebuild (docs/CUDA.md)"
  fi
  fail "caffe ${args[*]} exited with status $rc"
fi

# ---- Checks ---------------------------------------------------------------
losses=$(sed -nE 's/.*Iteration ([0-9]+)[ ,].*loss = ([-0-9.e+]+).*/\1 \2/p' train.log)
[ -n "$losses" ] || fail "no 'Iteration N ..., loss = X' line in the log"
read -r first_iter first_loss <<< "$(printf '%s\n' "$losses" | head -n 1)"
read -r last_iter last_loss <<< "$(printf '%s\n' "$losses" | tail -n 1)"
[ "$first_iter" = 0 ] || fail "the first loss line is iteration $first_iter, not 0"
[ "$last_iter" -gt 0 ] || fail "only iteration 0 was displayed"
if ! awk -v a="$first_loss" -v b="$last_loss" 'BEGIN { exit !(b < 0.8 * a) }'; then
  fail "the loss did not fall: $first_loss at iteration 0, $last_loss at iteration $last_iter (want below 0.8 x)"
fi
if [ "$cpu_dry" = 1 ]; then
  ! grep -q "reads items" train.log || fail "one solver, yet a SegData layer shared its records"
  solvers=1
else
  solvers=$(sed -nE 's/.*solver rank [0-9]+ of ([0-9]+) reads items.*/\1/p' train.log | sort -u)
  [ "$solvers" = "$gpus" ] || fail "SegData reported '${solvers:-no}' solver(s), not $gpus: the records were not shared across the GPUs"
  for ((r = 0; r < gpus; ++r)); do
    grep -q "SegData layer data: solver rank $r of $gpus reads items" train.log \
      || fail "no SegData share line for rank $r of $gpus"
  done
fi
test_loss=$(sed -nE 's/.*Test net output #[0-9]+: loss = ([-0-9.e+]+).*/\1/p' train.log | tail -n 1)
[ -n "$test_loss" ] || fail "no test-net loss in the log (the TEST net runs on rank 0)"
say "OK: $solvers solver(s), loss $first_loss at iteration 0 -> $last_loss at iteration $last_iter; test loss $test_loss"
