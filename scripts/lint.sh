#!/usr/bin/env bash
# Lints our C++ files (caffe_layers/**/*.hpp, *.cpp, *.cu) with the Caffe
# source's own scripts/cpp_lint.py (Google style as upstream uses it), then
# our Python (python/, tools/, bench/, scripts/) with flake8 (PEP 8 at its
# defaults; PYTHON must have it, as .venv does).
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
status=0
# cpp_lint.py exits non-zero on any problem; its "Total errors found" line
# is what scripts/run_tests.sh counts.
out=$("$py" -W ignore::DeprecationWarning "$lint" "${files[@]}" 2>&1) \
  || status=1
grep -v '^Done processing' <<<"$out" || true
echo "== flake8 (python tools bench scripts) =="
if "$py" -m flake8 --version >/dev/null 2>&1; then
  n=0
  out=$("$py" -m flake8 python tools bench scripts 2>&1) || status=1
  [ -z "$out" ] || { echo "$out"; n=$(wc -l <<<"$out"); }
  echo "flake8 problems found: $n"
else
  echo "error: flake8 is not installed for $py; run scripts/setup.sh" >&2
  status=1
fi
exit $status
