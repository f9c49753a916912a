#!/usr/bin/env bash
# The test command: sets up and builds if needed (scripts/setup.sh), then runs
#   1. Caffe's gtest binary: upstream's whole suite plus our layers' tests,
#      and the ReNet tests again on the portable path (HRENET_PORTABLE=1:
#      the BLAS does every product: no AVX-512 kernel, no oneDNN),
#   2. upstream's pycaffe unit tests,
#   3. our pytest suite (python/tests),
#   4. lint (scripts/lint.sh): the Caffe source's cpp_lint.py over our C++
#      files, flake8 over our Python.
# Extra arguments go to pytest. GTEST_FILTER narrows the C++ run.
#
#   scripts/run_tests.sh --asan [pytest args]
# builds Caffe with AddressSanitizer in build-asan/ (a separate build: about
# three times slower to compile and to run) and runs the same suites on it:
# the gtest binary, and pycaffe and pytest with the ASan runtime preloaded
# into Python. Any invalid read or write, use after free or double free
# stops the run with ASan's report. Leak checking is off: Caffe, glog and
# protobuf keep process-lifetime singletons that LeakSanitizer reports.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ "${1:-}" = "--asan" ]; then
  shift
  export BUILD_DIR=${BUILD_DIR:-build-asan}
  VENV=${VENV:-.venv}
  # packages, .venv and the normal build (whose pycaffe the venv keeps)
  BUILD_DIR=build "$root/scripts/setup.sh" --no-main-job
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DSANITIZE=address \
      -DPYTHON_EXECUTABLE="$root/$VENV/bin/python" > /dev/null
  fi
  echo "[run_tests --asan] building $BUILD_DIR (AddressSanitizer)"
  CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-$(nproc)} cmake --build "$BUILD_DIR" \
    > "$BUILD_DIR/build.log" 2>&1 || { tail -n 40 "$BUILD_DIR/build.log";
    echo "error: the ASan build failed ($BUILD_DIR/build.log)" >&2; exit 1; }
  # libstdc++ too: the ASan runtime must find __cxa_throw to intercept it
  # in a Python that was not linked with it (else "CHECK failed ...
  # real___cxa_throw" at the first C++ exception).
  asan_lib="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0:halt_on_error=1}
  export HRENET_ASAN_PRELOAD="$asan_lib"
  export HRENET_CAFFE_PYTHON="$root/$BUILD_DIR/caffe-src/python"
  export PYTHONPATH="$HRENET_CAFFE_PYTHON${PYTHONPATH:+:$PYTHONPATH}"
  export SKIP_SETUP=1
fi
BUILD_DIR=${BUILD_DIR:-build}
VENV=${VENV:-.venv}
export BUILD_DIR VENV

[ -n "${SKIP_SETUP:-}" ] || "$root/scripts/setup.sh" --no-main-job

src="$root/$BUILD_DIR/caffe-src"
testbin="$root/$BUILD_DIR/caffe-build/test/test.testbin"
py="$root/$VENV/bin/python"
filter=${GTEST_FILTER:-}
if [ -z "$filter" ] && grep -q "CPU_ONLY:BOOL=ON" "$root/$BUILD_DIR/CMakeCache.txt"; then
  filter='-*GPU*'
fi

export GLOG_minloglevel=${GLOG_minloglevel:-2}
# OpenBLAS's kernels for this CPU, for the gtest binary too.
eval "$("$py" "$root/tools/blas_env.py" --shell)"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()

echo "== C++ tests (upstream + HRENet layers) =="
# Caffe's tests read their data relative to the source tree.
if ! (cd "$src" && "$testbin" --gtest_shuffle ${filter:+--gtest_filter="$filter"} 2>&1 \
      | tee "$logs/gtest" | grep -vE '^(\[ +(RUN|OK) +\]|\[-+\]|\s*$)'); then
  failed+=(gtest)
fi

echo "== C++ ReNet tests, portable path (HRENET_PORTABLE=1) =="
if ! (cd "$src" && HRENET_PORTABLE=1 "$testbin" --gtest_shuffle \
      --gtest_filter="${GTEST_FILTER:-*ReNet*}" 2>&1 \
      | tee "$logs/gtest_portable" | grep -vE '^(\[ +(RUN|OK) +\]|\[-+\]|\s*$)'); then
  failed+=(gtest-portable)
fi

echo "== upstream pycaffe tests =="
# Under --asan, Python gets the ASan runtime preloaded (it loads the
# instrumented _caffe.so); the variable is empty otherwise.
pyenv=(env ${HRENET_ASAN_PRELOAD:+"LD_PRELOAD=$HRENET_ASAN_PRELOAD"})
if ! (cd "$src/python" && "${pyenv[@]}" "$py" -m unittest discover -s caffe/test > "$logs/pycaffe" 2>&1); then
  failed+=(pycaffe)
fi
grep -E '^(Ran |OK|FAILED|ERROR:|FAIL:)' "$logs/pycaffe" || true

echo "== pytest =="
set +e
"${pyenv[@]}" "$py" -m pytest -q -p no:cacheprovider python/tests "$@" 2>&1 | tee "$logs/pytest"
rc=${PIPESTATUS[0]}
set -e
[ $rc -eq 0 ] || failed+=(pytest)

echo "== lint (cpp_lint.py, flake8) =="
if ! PYTHON="$py" "$root/scripts/lint.sh" "$src" 2>&1 | tee "$logs/lint"; then
  failed+=(lint)
fi

# One closing line over the suites (cpp_lint and flake8 count as one test
# each).
"$py" - "$logs" <<'PY'
import re, sys, os
d = sys.argv[1]
def read(n):
    try:
        return open(os.path.join(d, n), errors="replace").read()
    except OSError:
        return ""
g, u, p = read("gtest"), read("pycaffe"), read("pytest")
passed = failed = skipped = 0
for g in (read("gtest"), read("gtest_portable")):
    m = re.search(r"\[  PASSED  \] (\d+) test", g); passed += int(m.group(1)) if m else 0
    m = re.search(r"\[  FAILED  \] (\d+) test", g); failed += int(m.group(1)) if m else 0
for pattern in (r"Total errors found: (\d+)", r"flake8 problems found: (\d+)"):
    m = re.search(pattern, read("lint"))
    if m and m.group(1) == "0":
        passed += 1
    else:
        failed += 1
m = re.search(r"^Ran (\d+) test", u, re.M)
if m:
    bad = sum(int(x) for x in re.findall(r"(?:failures|errors)=(\d+)", u))
    sk = sum(int(x) for x in re.findall(r"skipped=(\d+)", u))
    passed += int(m.group(1)) - bad - sk; failed += bad; skipped += sk
for n, what in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", p.splitlines()[-1] if p.strip() else ""):
    if what == "passed": passed += int(n)
    elif what == "skipped": skipped += int(n)
    else: failed += int(n)
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
PY

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED suites: ${failed[*]}"
  exit 1
fi
