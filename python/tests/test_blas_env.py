"""OPENBLAS_CORETYPE chosen for the CPU (hrenet.blas_env), the venv's caffe
wrapper and libcaffe's warning when OpenBLAS runs pre-AVX2 kernels."""
import ctypes
import os
import subprocess
import sys

import pytest

from hrenet import blas_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir))
# scripts/run_tests.sh exports BUILD_DIR and VENV (relative to the root).
VENV_CAFFE = os.path.join(ROOT, os.environ.get("VENV", ".venv"), "bin",
                          "caffe")
CAFFE_BIN = os.path.join(ROOT, os.environ.get("BUILD_DIR", "build"),
                         "caffe-build", "tools", "caffe")

AVX512 = ("fpu sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw "
          "avx512vl")


def cpuinfo(vendor, flags, processors=2):
    block = (f"processor\t: {{}}\nvendor_id\t: {vendor}\n"
             f"model name\t: Some CPU\nflags\t\t: {flags}\n\n")
    return "".join(block.format(i) for i in range(processors))


@pytest.mark.parametrize("vendor,flags,expected", [
    # BF16 too: 0.3.21 does not accept the name Cooperlake.
    ("GenuineIntel", AVX512 + " avx512_bf16 amx_tile", "SkylakeX"),
    ("GenuineIntel", AVX512, "SkylakeX"),
    ("GenuineIntel", "sse sse2 avx avx2 fma", "Haswell"),
    ("GenuineIntel", "sse sse2 avx avx2", None),       # no FMA: not Haswell
    ("GenuineIntel", "sse sse2 sse3", None),
    # partial AVX-512
    ("GenuineIntel", "avx2 fma avx512f avx512bw", "Haswell"),
    ("AuthenticAMD", AVX512 + " avx512_bf16", None),   # left to OpenBLAS
])
def test_coretype_for_flags(vendor, flags, expected):
    got_vendor, got_flags = blas_env.parse_cpuinfo(cpuinfo(vendor, flags))
    assert got_vendor == vendor
    assert got_flags == set(flags.split())
    assert blas_env.coretype_for(got_vendor, got_flags) == expected


def test_choose_and_apply(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo("GenuineIntel", AVX512))
    env = {}
    assert blas_env.choose(env, str(path))[0] == "SkylakeX"
    assert blas_env.apply(env, str(path)) == "SkylakeX"
    assert env == {"OPENBLAS_CORETYPE": "SkylakeX"}
    # A value the user set is kept, and said to be theirs.
    env = {"OPENBLAS_CORETYPE": "Haswell"}
    value, reason = blas_env.choose(env, str(path))
    assert value == "Haswell" and "kept" in reason
    assert blas_env.apply(env, str(path)) == "Haswell"
    assert env == {"OPENBLAS_CORETYPE": "Haswell"}
    # Other vendors and unreadable files: nothing set.
    path.write_text(cpuinfo("AuthenticAMD", AVX512))
    env = {}
    assert blas_env.apply(env, str(path)) is None and env == {}
    value, reason = blas_env.choose({}, str(tmp_path / "missing"))
    assert value is None and "cannot read" in reason


def test_shell_and_exec_cli(tmp_path):
    tool = os.path.join(ROOT, "tools", "blas_env.py")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    want = blas_env.choose(env)[0]
    out = subprocess.run([sys.executable, tool, "--shell"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out == (f"export OPENBLAS_CORETYPE={want}\n" if want else "")
    out = subprocess.run(
        [sys.executable, tool, "--exec", "/usr/bin/env"], env=env,
        capture_output=True, text=True, check=True).stdout
    assert (f"OPENBLAS_CORETYPE={want}\n" in out) == bool(want)
    nope = str(tmp_path / "nope")
    r = subprocess.run([sys.executable, tool, "--exec", nope],
                       capture_output=True, text=True)
    assert r.returncode == 127 and "cannot run" in r.stderr
    r = subprocess.run([sys.executable, tool, "--bogus"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def _loaded_openblas():
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f
                        if "libopenblas" in line.split()[-1]})
    return paths


def _cpu_has(*flags):
    _, have = blas_env.parse_cpuinfo(open("/proc/cpuinfo").read())
    return set(flags) <= have


def test_pycaffe_gets_the_chosen_kernels(caffe):
    """The venv's .pth set the variable before pycaffe loaded OpenBLAS."""
    want = blas_env.choose()[0]
    assert os.environ.get("OPENBLAS_CORETYPE") == want
    libs = [p for p in _loaded_openblas() if "scipy" not in p]
    if not libs:
        pytest.skip("Caffe is not linked with OpenBLAS in this build")
    lib = ctypes.CDLL(libs[0])
    lib.openblas_get_corename.restype = ctypes.c_char_p
    core = lib.openblas_get_corename().decode()
    if want:
        assert core.lower() == want.lower()


def test_linked_openblas_accepts_every_name_we_choose(caffe):
    """OpenBLAS looks the name up in its own list and, when it is not there,
    says "Core not found" and picks kernels of its own: every value
    coretype_for can return must be a name this OpenBLAS knows."""
    libs = [p for p in _loaded_openblas() if "scipy" not in p]
    if not libs:
        pytest.skip("Caffe is not linked with OpenBLAS in this build")
    probe = ("import ctypes, sys\n"
             "lib = ctypes.CDLL(sys.argv[1])\n"
             "lib.openblas_get_corename.restype = ctypes.c_char_p\n"
             "print(lib.openblas_get_corename().decode())\n")
    # Only kernels this CPU can run are loaded.
    names = [name for name, flags in (
        ("Haswell", ("avx2", "fma")),
        ("SkylakeX", ("avx512f", "avx512cd", "avx512bw", "avx512dq",
                      "avx512vl"))) if _cpu_has(*flags)]
    if not names:
        pytest.skip("the CPU has no AVX2/FMA: no name is chosen for it")
    for name in names:
        env = dict(os.environ, OPENBLAS_CORETYPE=name, OPENBLAS_VERBOSE="2")
        r = subprocess.run([sys.executable, "-S", "-c", probe, libs[0]],
                           env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "Core not found" not in r.stderr, (name, r.stderr)
        assert r.stdout.strip().lower() == name.lower()


@pytest.mark.skipif(not os.path.exists(CAFFE_BIN),
                    reason="the caffe binary is not built (scripts/setup.sh)")
def test_libcaffe_warns_about_generic_kernels():
    if not _cpu_has("avx2", "fma"):
        pytest.skip("the CPU has no AVX2/FMA: OpenBLAS's generic kernels are "
                    "the right ones and no warning is due")
    env = dict(os.environ, OPENBLAS_CORETYPE="Prescott")
    r = subprocess.run([CAFFE_BIN, "--version"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0
    assert "OpenBLAS did not recognise this CPU" in r.stderr
    assert "'Prescott'" in r.stderr and "OPENBLAS_CORETYPE=" in r.stderr
    # Through the venv's wrapper, with nothing set: no warning.
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    r = subprocess.run([VENV_CAFFE, "--version"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "caffe version" in r.stdout
    assert "did not recognise" not in r.stderr
