#!/usr/bin/env bash
# The GPU check, one prepared script for a machine with an NVIDIA GPU:
#   1. detects the GPU and its architecture (nvidia-smi),
#   2. builds the CUDA variant for that architecture only (build-gpu/),
#   3. runs the GPU tests of our layers (ReNet, DenseCRF, permutohedral
#      lattice, SegData, BilinearResize, patched MAX pooling) and upstream's
#      GPU tests of the layers our nets use,
#   4. times N-ReNet, the FCN and H-ReNet (d) without and with DenseCRF (g)
#      with tools/time_net.py --gpu 0 (nets not in this checkout are skipped),
#   5. runs scripts/gpu_multi_check.sh when it exists (multi-GPU training),
# and writes one JSON summary (OUT/gpu_check.json). Without a GPU (or without
# nvcc) it says what it skipped and why, writes the summary and exits 0; a
# failed step makes it exit 1. Under 10 minutes on one modern GPU with a warm
# compiler cache (the build dominates).
#
#   scripts/gpu_check.sh [--out DIR] [--build-dir DIR] [--skip-build] [--repeats N]
#
# Environment: PYTHON (default .venv/bin/python, else python3: a Python with
# python/requirements.txt installed), GPU_ARCH (e.g. 90; default detected).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

out="runs/gpu_check-$(date +%Y%m%d-%H%M%S)"
build_dir=build-gpu
skip_build=0
repeats=10
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    --repeats) repeats=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see $0 --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
steps="$out/steps.tsv"
: > "$steps"
start_all=$(date +%s)
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi

# record NAME STATUS SECONDS DETAIL   (status: ok, failed, skipped)
record() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(printf '%s' "$4" | tr '\t\n' '  ')" >> "$steps"
  if [ "$2" = skipped ]; then
    echo "[gpu_check] SKIPPED $1: $4"
  else
    echo "[gpu_check] $1: $2 (${3}s) $4"
  fi
}

# run_step NAME LOGFILE CMD...: runs CMD with its output in LOGFILE
run_step() {
  local name=$1 logf=$2; shift 2
  local t0 rc
  t0=$(date +%s)
  set +e
  "$@" > "$logf" 2>&1
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    record "$name" ok $(( $(date +%s) - t0 )) "log: $logf"
  else
    tail -n 20 "$logf" | sed 's/^/    /'
    record "$name" failed $(( $(date +%s) - t0 )) "exit status $rc; log: $logf"
  fi
  return $rc
}

gpu_name=""
arch=${GPU_ARCH:-}
nets=(prototxt/fcn/a/deploy.prototxt prototxt/hrenet/d/deploy.prototxt
      prototxt/hrenet/g/deploy.prototxt prototxt/nrenet/fold1/deploy.prototxt)
names=("FCN (a)" "H-ReNet (d)" "H-ReNet (d) + DenseCRF (g)" "N-ReNet (fold1)")

finish() {
  "$py" - "$steps" "$out" "$gpu_name" "$arch" $(( $(date +%s) - start_all )) <<'PY' || true
import json, os, sys
steps_path, out, gpu, arch, total = sys.argv[1:6]
steps = []
for line in open(steps_path):
    name, status, secs, detail = (line.rstrip("\n").split("\t") + [""] * 4)[:4]
    steps.append({"step": name, "status": status, "seconds": int(secs or 0),
                  "detail": detail})
summary = {"gpu": gpu or None, "arch": arch or None, "seconds": int(total),
           "ok": all(s["status"] != "failed" for s in steps), "steps": steps}
t = os.path.join(out, "time", "time.json")
if os.path.exists(t):
    summary["time_net"] = json.load(open(t))
path = os.path.join(out, "gpu_check.json")
with open(path + ".tmp", "w") as f:
    json.dump(summary, f, indent=1)
os.replace(path + ".tmp", path)
print(f"[gpu_check] summary: {path} ({sum(s['status'] == 'ok' for s in steps)} ok, "
      f"{sum(s['status'] == 'failed' for s in steps)} failed, "
      f"{sum(s['status'] == 'skipped' for s in steps)} skipped, {total} s)")
PY
}

skip_all() {
  local why=$1
  for s in build gtest-ours gtest-upstream time_net multi_gpu; do record "$s" skipped 0 "$why"; done
  finish
  exit 0
}

# ---- 1. the GPU ---------------------------------------------------------------
if ! command -v nvidia-smi > /dev/null 2>&1; then
  skip_all "no NVIDIA driver here (nvidia-smi not found): nothing to run on"
fi
if ! gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1) \
    || [ -z "$gpu_name" ]; then
  skip_all "nvidia-smi found no GPU"
fi
if [ -z "$arch" ]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)
  arch=${cap/./}
fi
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
record detect ok 0 "$gpu_name, sm_$arch, $ngpu GPU(s)"
if ! command -v nvcc > /dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  for s in build gtest-ours gtest-upstream time_net multi_gpu; do
    record "$s" skipped 0 "no CUDA toolkit (nvcc) to build with"
  done
  finish
  exit 0
fi
export PATH="$PATH:/usr/local/cuda/bin"

# ---- 2. the CUDA build, this architecture only --------------------------------
jobs=$(nproc)
if [ $skip_build = 1 ] && [ -x "$build_dir/caffe-build/test/test.testbin" ]; then
  record build skipped 0 "--skip-build: using $build_dir as it is"
else
  run_step build "$out/build.log" bash -c "
    cmake -S . -B '$build_dir' -G Ninja -DCPU_ONLY=OFF -DCUDA_ARCH_BIN='$arch' \
      -DCUDA_ARCH_PTX= -DPYTHON_EXECUTABLE='$(command -v "$py" || echo "$py")' &&
    CMAKE_BUILD_PARALLEL_LEVEL=$jobs cmake --build '$build_dir' -j $jobs" || {
    for s in gtest-ours gtest-upstream time_net multi_gpu; do
      record "$s" skipped 0 "the CUDA build failed (see $out/build.log)"
    done
    finish
    exit 1
  }
fi
testbin="$root/$build_dir/caffe-build/test/test.testbin"
src="$root/$build_dir/caffe-src"

# ---- 3. GPU tests ------------------------------------------------------------
# Typed tests over TestDtypesAndDevices: instances 2 and 3 are GPUDevice<float>
# and GPUDevice<double>.
gpu_instances() { local f="" t; for t in "$@"; do f="$f:$t/2.*:$t/3.*"; done; echo "${f#:}"; }
ours="$(gpu_instances ReNetLayerTest DenseCRFLayerTest SegDataLayerTest \
  BilinearResizeLayerTest PoolingNaNTest):PermutohedralTest/*.TestGPU*"
upstream="$(gpu_instances ConvolutionLayerTest DeconvolutionLayerTest PoolingLayerTest \
  NeuronLayerTest BatchNormLayerTest ScaleLayerTest ConcatLayerTest CropLayerTest \
  SoftmaxLayerTest SoftmaxWithLossLayerTest EltwiseLayerTest InnerProductLayerTest \
  SGDSolverTest AdamSolverTest):Im2colKernelTest*"
export GLOG_minloglevel=2
failed=0
(cd "$src" && run_step gtest-ours "$out/gtest_ours.log" "$testbin" --gtest_filter="$ours") || failed=1
grep -E '^\[  (PASSED|FAILED)  \]' "$out/gtest_ours.log" | sed 's/^/    /' || true
(cd "$src" && run_step gtest-upstream "$out/gtest_upstream.log" "$testbin" --gtest_filter="$upstream") || failed=1
grep -E '^\[  (PASSED|FAILED)  \]' "$out/gtest_upstream.log" | sed 's/^/    /' || true

# ---- 4. forward times on the GPU --------------------------------------------
present=() present_names=() absent=()
for i in "${!nets[@]}"; do
  if [ -f "${nets[$i]}" ]; then present+=("${nets[$i]}"); present_names+=("${names[$i]}")
  else absent+=("${nets[$i]}"); fi
done
if [ ${#present[@]} -eq 0 ]; then
  record time_net skipped 0 "none of the paper's deploy nets is in this checkout (${nets[*]})"
elif ! PYTHONPATH="$src/python:$root/python" "$py" -c "import caffe, tqdm, cv2" > /dev/null 2>&1; then
  record time_net skipped 0 "$py cannot import the CUDA pycaffe with tqdm and cv2 (install python/requirements.txt)"
else
  PYTHONPATH="$src/python:$root/python" run_step time_net "$out/time_net.log" \
    "$py" tools/time_net.py "${present[@]}" --names "${present_names[@]}" \
    --gpu 0 --repeats "$repeats" --out "$out/time" --quiet || failed=1
  [ -f "$out/time/time.md" ] && cat "$out/time/time.md"
  [ ${#absent[@]} -gt 0 ] && echo "[gpu_check] not timed (not in this checkout): ${absent[*]}"
fi

# ---- 5. multi-GPU training ----------------------------------------------------
if [ -x scripts/gpu_multi_check.sh ]; then
  BUILD_DIR="$build_dir" PYTHON="$py" run_step multi_gpu "$out/multi_gpu.log" \
    scripts/gpu_multi_check.sh || failed=1
  tail -n 3 "$out/multi_gpu.log" | sed 's/^/    /'
else
  record multi_gpu skipped 0 "scripts/gpu_multi_check.sh is not in this checkout"
fi

finish
exit $failed
