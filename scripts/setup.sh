#!/usr/bin/env bash
# One-command set-up: Debian packages (only if missing), the pinned .venv, the
# Caffe superbuild in build/, `import caffe` and `caffe` inside .venv; then the
# main job (skip it with --no-main-job). Idempotent: a second run with nothing
# changed finishes in seconds.
#
#   scripts/setup.sh [--no-main-job] [--cuda]
#
# Environment: BUILD_DIR (default build), VENV (default .venv), PYTHON (the
# interpreter the venv is made from, default python3), CAFFE_SOURCE_DIR (use an
# existing Caffe checkout instead of the pinned tarball), JOBS (build jobs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

main_job=1
cmake_extra=()
for arg in "$@"; do
  case "$arg" in
    --no-main-job) main_job=0 ;;
    --cuda) cmake_extra+=(-DCPU_ONLY=OFF) ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "error: unknown option $arg (see $0 --help)" >&2; exit 2 ;;
  esac
done
BUILD_DIR=${BUILD_DIR:-build}
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }

# ---- Debian packages -------------------------------------------------------
debs=(build-essential cmake ninja-build ccache pkg-config patch
      libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
      libgoogle-glog-dev libgflags-dev libprotobuf-dev protobuf-compiler
      libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev libopenblas-dev libdnnl-dev
      libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev graphviz)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

# ---- Python environment ----------------------------------------------------
req=python/requirements.txt
req_stamp=$(cat "$req" | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV from $(command -v "$PYTHON")"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.requirements-stamp" 2>/dev/null)" != "$req_stamp" ]; then
  log "installing pinned Python packages ($req)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  echo "$req_stamp" > "$VENV/.requirements-stamp"
fi
venv_py=$(cd "$VENV/bin" && pwd)/python

# ---- Build -----------------------------------------------------------------
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ ${#cmake_extra[@]} -gt 0 ]; then
  log "configuring $BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DPYTHON_EXECUTABLE="$venv_py" "${cmake_extra[@]}" >/dev/null
fi
log "building Caffe (first build: ~10 min on 2 cores with a cold compiler cache; then seconds)"
build_log="$BUILD_DIR/build.log"
# The inner Caffe build is a separate ninja: pass the job count through.
export CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}}
if ! cmake --build "$BUILD_DIR" ${JOBS:+-j "$JOBS"} > "$build_log" 2>&1; then
  tail -n 40 "$build_log" >&2
  echo "error: the Caffe build failed; the whole log is $build_log" >&2
  exit 1
fi

# ---- The hrenet package, and caffe from the venv -------------------------------
# hrenet (python/hrenet, pyproject.toml) is installed in editable mode:
# `import hrenet` works from any folder and follows the checkout.
pkg_stamp=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.package-stamp" 2>/dev/null)" != "$pkg_stamp:$root" ]; then
  log "installing the hrenet package (editable)"
  "$venv_py" -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e "$root"
  echo "$pkg_stamp:$root" > "$VENV/.package-stamp"
fi
site=$("$venv_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The .pth puts pycaffe on the path and picks OpenBLAS's kernels for this
# CPU before anything loads the library (python/hrenet/blas_env.py: the one
# place the process's environment is set, at interpreter start-up); the
# venv's caffe does the same, then runs the built binary.
printf '%s\n%s\n' "$root/$BUILD_DIR/caffe-src/python" \
  'import os, hrenet.blas_env; hrenet.blas_env.apply_quietly(os.environ)' \
  > "$site/hrenet-caffe.pth"
rm -f "$VENV/bin/caffe"  # an older setup left a symlink to the binary here
printf '#!/bin/sh\n# Written by scripts/setup.sh: the built caffe, with OPENBLAS_CORETYPE\n# chosen for this CPU (python/hrenet/blas_env.py).\nexec "%s" "%s" --exec "%s" "$@"\n' \
  "$venv_py" "$root/tools/blas_env.py" "$root/$BUILD_DIR/caffe-build/tools/caffe" > "$VENV/bin/caffe"
chmod +x "$VENV/bin/caffe"
"$venv_py" -c 'import caffe' || { echo "error: 'import caffe' fails in $VENV" >&2; exit 1; }
log "caffe: $("$VENV/bin/caffe" --version 2>&1 | tail -n 1); import caffe: ok"

# ---- Main job ----------------------------------------------------------------
if [ "$main_job" = 1 ]; then
  exec "$root/scripts/main_job.sh"
fi
