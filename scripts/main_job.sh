#!/usr/bin/env bash
# The main job. Until the paper's nets and solvers land (later issues), this is
# an end-to-end smoke run of the fork's own pieces on the synthetic context
# dataset: tools/make_synthetic.py -> tools/build_lmdb.py -> `caffe train` of a
# tiny one-group ReNet net (SegData -> ReNet vertical -> ReNet horizontal ->
# 1x1 conv -> upsampling -> softmax loss) -> `caffe time`. Everything goes to a
# fresh run folder under runs/ that keeps the data, the prototxts, the logs,
# the git commit and the command line.
#
#   scripts/main_job.sh [--iters N] [--num-images N]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
iters=60
num_images=40
while [ $# -gt 0 ]; do
  case "$1" in
    --iters) iters=$2; shift 2 ;;
    --num-images) num_images=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see $0 --help)" >&2; exit 2 ;;
  esac
done
py="$root/.venv/bin/python"
caffe_bin="$root/.venv/bin/caffe"
[ -x "$caffe_bin" ] || { echo "error: $caffe_bin missing; run scripts/setup.sh first" >&2; exit 1; }

run_dir="${RUNS_DIR:-$root/runs}/smoke-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run_dir"
git -C "$root" rev-parse HEAD > "$run_dir/commit" 2>/dev/null || echo unknown > "$run_dir/commit"
printf '%q ' "$0" "$@" > "$run_dir/command"; echo >> "$run_dir/command"
cd "$run_dir"
export GLOG_minloglevel=0  # the logs are parsed below

classes=4
"$py" "$root/tools/make_synthetic.py" --out synthetic --format voc --num "$num_images" \
    --classes "$classes" --seed 0 --quiet
"$py" "$root/tools/build_lmdb.py" --format voc --root synthetic \
    --classes synthetic/classes.txt --split train --shuffle --quiet --out lmdb_train

cat > net.prototxt <<NET
name: "renet_smoke"
layer { name: "data" type: "SegData" top: "data" top: "label"
  seg_data_param { source: "lmdb_train" batch_size: 4 crop_h: 96 crop_w: 128
    mirror: true shuffle: true seed: 1 mean_value: 104 mean_value: 117
    mean_value: 123 scale: 0.0078125 } }
layer { name: "renet_v" type: "ReNet" bottom: "data" top: "renet_v"
  renet_param { num_output: 16 direction: VERTICAL patch_h: 4 patch_w: 4 } }
layer { name: "renet_h" type: "ReNet" bottom: "renet_v" top: "renet_h"
  renet_param { num_output: 16 direction: HORIZONTAL } }
layer { name: "score" type: "Convolution" bottom: "renet_h" top: "score"
  convolution_param { num_output: $((classes + 1)) kernel_size: 1
    weight_filler { type: "xavier" } } }
layer { name: "upscore" type: "Deconvolution" bottom: "score" top: "upscore"
  param { lr_mult: 0 }
  convolution_param { num_output: $((classes + 1)) group: $((classes + 1))
    kernel_size: 8 stride: 4 pad: 2 bias_term: false
    weight_filler { type: "bilinear" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "upscore" bottom: "label"
  top: "loss" loss_param { ignore_label: 255 } }
NET
cat > solver.prototxt <<SOLVER
net: "net.prototxt"
type: "Adam"
base_lr: 0.01
lr_policy: "fixed"
max_iter: $iters
display: 10
snapshot: 0
snapshot_prefix: "renet_smoke"
solver_mode: CPU
random_seed: 1
SOLVER
"$caffe_bin" train -solver solver.prototxt > train.log 2>&1 || { tail -n 20 train.log; exit 1; }
"$caffe_bin" time -model net.prototxt -iterations 5 > time.log 2>&1 || { tail -n 20 time.log; exit 1; }
first=$(grep -E "Iteration 0 .*loss = " train.log | head -n 1 | sed "s/.*loss = //" || true)
last=$(grep -E "Iteration [0-9]+ .*loss = " train.log | tail -n 1 | sed -E 's/.*Iteration ([0-9]+) .*loss = /\1: /' || true)
echo "train: loss $first at iteration 0, $last (iteration: loss)"
grep -E "Average Forward-Backward" time.log | sed 's/.*\] /time: /'
echo "smoke run ok: $run_dir"
