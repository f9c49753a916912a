#!/usr/bin/env bash
# The test command: sets up and builds if needed (scripts/setup.sh), then runs
#   1. Caffe's gtest binary: upstream's whole suite plus our layers' tests,
#   2. upstream's pycaffe unit tests,
#   3. our pytest suite (python/tests).
# Extra arguments go to pytest. GTEST_FILTER narrows the C++ run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
BUILD_DIR=${BUILD_DIR:-build}
VENV=${VENV:-.venv}
export BUILD_DIR VENV

"$root/scripts/setup.sh" --no-main-job

src="$root/$BUILD_DIR/caffe-src"
testbin="$root/$BUILD_DIR/caffe-build/test/test.testbin"
py="$root/$VENV/bin/python"
filter=${GTEST_FILTER:-}
if [ -z "$filter" ] && grep -q "CPU_ONLY:BOOL=ON" "$root/$BUILD_DIR/CMakeCache.txt"; then
  filter='-*GPU*'
fi

failed=()
echo "== C++ tests (upstream + HRENet layers) =="
# Caffe's tests read their data relative to the source tree.
if ! (cd "$src" && "$testbin" --gtest_shuffle ${filter:+--gtest_filter="$filter"} 2>&1 \
      | grep -vE '^\[ +(RUN|OK) +\]'); then
  failed+=(gtest)
fi

echo "== upstream pycaffe tests =="
if ! (cd "$src/python" && "$py" -m unittest discover -s caffe/test -t . 2>&1 | tail -n 4); then
  failed+=(pycaffe)
fi

echo "== pytest =="
set +e
"$py" -m pytest -q -p no:cacheprovider python/tests "$@"
rc=$?
set -e
[ $rc -eq 0 ] || failed+=(pytest)

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test suites passed"
