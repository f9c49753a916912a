#!/usr/bin/env bash
# The main job. Until the nets and the synthetic dataset land (later issues),
# this is a smoke run: `caffe train` on a tiny net for a few iterations and a
# `caffe time` of it, from a run folder under runs/ that keeps the prototxts,
# the git commit and the command line.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
caffe_bin="$root/.venv/bin/caffe"
[ -x "$caffe_bin" ] || { echo "error: $caffe_bin missing; run scripts/setup.sh first" >&2; exit 1; }

run_dir="$root/runs/smoke-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run_dir"
git -C "$root" rev-parse HEAD > "$run_dir/commit" 2>/dev/null || echo unknown > "$run_dir/commit"
echo "$0 $*" > "$run_dir/command"

cat > "$run_dir/net.prototxt" <<'NET'
name: "smoke"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {
    shape { dim: 4 dim: 3 dim: 8 dim: 8 } shape { dim: 4 dim: 1 dim: 8 dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1
    weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
NET
cat > "$run_dir/solver.prototxt" <<SOLVER
net: "$run_dir/net.prototxt"
base_lr: 0.1
lr_policy: "fixed"
max_iter: 20
display: 5
snapshot_prefix: "$run_dir/smoke"
solver_mode: CPU
random_seed: 1
SOLVER
cd "$run_dir"
"$caffe_bin" train -solver solver.prototxt > train.log 2>&1 || { tail -n 20 train.log; exit 1; }
"$caffe_bin" time -model net.prototxt -iterations 5 > time.log 2>&1 || { tail -n 20 time.log; exit 1; }
grep -E "Iteration [0-9]+.*, loss = " train.log | sed 's/.*\] //'
grep -E "Average Forward-Backward" time.log | sed 's/.*\] //'
echo "smoke run ok: $run_dir"
