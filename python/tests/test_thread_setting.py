"""HRENET_THREADS is the process's one thread setting: loading libcaffe
gives its value to OpenBLAS and to OpenMP (oneDNN's threads), over
OPENBLAS_NUM_THREADS and OMP_NUM_THREADS; unset, those keep theirs."""
import json
import os
import subprocess
import sys

import pytest

# Run in a fresh interpreter: the setting is read when libcaffe loads.
PROBE = r"""
import ctypes, json, caffe
blas = ctypes.CDLL("libopenblas.so.0")
omp = ctypes.CDLL("libgomp.so.1")
print(json.dumps({"blas": blas.openblas_get_num_threads(),
                  "omp": omp.omp_get_max_threads()}))
"""


def probe(**env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("HRENET_THREADS", "OMP_NUM_THREADS",
                         "OPENBLAS_NUM_THREADS")}
    full.update(env)
    r = subprocess.run([sys.executable, "-c", PROBE], env=full,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dnnl(caffe):
    """Whether libcaffe links oneDNN (and with it OpenMP); skips unless it
    links OpenBLAS."""
    with open("/proc/self/maps") as f:
        maps = f.read()
    if "openblas" not in maps:
        pytest.skip("this build does not load libopenblas")
    return "libdnnl" in maps


def test_hrenet_threads_sets_blas_and_openmp(dnnl):
    # Without oneDNN libcaffe has no OpenMP to set: OMP_NUM_THREADS stays.
    got = probe(HRENET_THREADS="1", OMP_NUM_THREADS="3",
                OPENBLAS_NUM_THREADS="3")
    assert got == {"blas": 1, "omp": 1 if dnnl else 3}
    got = probe(HRENET_THREADS="3", OMP_NUM_THREADS="2")
    assert got == {"blas": 3, "omp": 3 if dnnl else 2}


def test_without_it_the_libraries_keep_their_own(dnnl):
    got = probe(OMP_NUM_THREADS="3", OPENBLAS_NUM_THREADS="2")
    assert got == {"blas": 2, "omp": 3}


def test_an_invalid_value_is_left_to_the_layers_error(dnnl):
    # Loading still works; HrenetThreads() reports it when a layer is set
    # up (test_parallel.cpp).
    got = probe(HRENET_THREADS="many", OMP_NUM_THREADS="3",
                OPENBLAS_NUM_THREADS="2")
    assert got == {"blas": 2, "omp": 3}
