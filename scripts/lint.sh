#!/usr/bin/env bash
# Lints our C++ files (caffe_layers/**/*.hpp, *.cpp, *.cu) with the Caffe
# source's own scripts/cpp_lint.py (Google style as upstream uses it).
#
#   scripts/lint.sh [CAFFE_SRC]     (default: $BUILD_DIR/caffe-src, BUILD_DIR=build)
#
# Exits non-zero, listing each problem, when any file has one.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=${1:-$root/${BUILD_DIR:-build}/caffe-src}
lint="$src/scripts/cpp_lint.py"
if [ ! -f "$lint" ]; then
  echo "error: $lint not found; build first (scripts/setup.sh) or pass the" \
       "prepared Caffe source directory" >&2
  exit 2
fi
py=${PYTHON:-python3}
cd "$root"
mapfile -t files < <(find caffe_layers -path caffe_layers/patches -prune -o \
  -type f \( -name '*.hpp' -o -name '*.cpp' -o -name '*.cu' \) -print | sort)
"$py" -W ignore::DeprecationWarning "$lint" "${files[@]}" 2>&1 \
  | grep -v '^Done processing'
