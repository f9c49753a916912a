"""Pick OpenBLAS's kernels by the CPU's features where its own detection fails.

Caffe here links Debian's OpenBLAS 0.3.21, built with DYNAMIC_ARCH: at load
time it chooses its kernels by the CPU model. Intel models newer than that
release (Emerald Rapids, family 6 model 0xCF, among them) are unknown to it and
get its generic "Prescott" SSE3 kernels: SGEMM runs 5 to 7 times slower than
with the AVX-512 kernels the CPU can run (measured here: 20-35 GFLOP/s instead
of 140-220 on two cores). OpenBLAS reads OPENBLAS_CORETYPE in its library
constructor, before any code of ours runs, so the variable has to be in the
environment before libopenblas is loaded:

- the venv's ``caffe`` is ``python tools/blas_env.py --exec <caffe> ...``;
- the venv's ``.pth`` calls :func:`apply_quietly` at interpreter start,
  before ``import caffe`` loads the library;
- scripts export it with ``eval "$(python tools/blas_env.py --shell)"``.

The choice by features is what OpenBLAS 0.3.21 itself makes for the Intel
models it knows (AVX-512: SkylakeX; AVX2 with FMA: Haswell), so forcing it on
a known model changes nothing. CPUs with AVX-512 BF16 get SkylakeX too: 0.3.21
has Cooperlake kernels but its OPENBLAS_CORETYPE lookup does not know the
name ("Core not found") and falls back to a choice of its own (Prescott
on one CI machine). Cooperlake's single-precision GEMM is SkylakeX's,
so nothing is lost. Other vendors are left to OpenBLAS (0.3.21 recognises
AMD's Zen families by their features). A value the user set is never
overridden.

The command line is tools/blas_env.py.
"""
import os
import sys

VARIABLE = "OPENBLAS_CORETYPE"


def parse_cpuinfo(text):
    """(vendor, set of flags) of the first processor in /proc/cpuinfo text."""
    vendor, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if vendor and flags:
            break
    return vendor, flags


def coretype_for(vendor, flags):
    """The OpenBLAS core type for an Intel CPU with these flags, or None
    (another vendor, or a CPU without AVX2: left to OpenBLAS)."""
    if vendor != "GenuineIntel":
        return None
    avx512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
    if avx512 <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def choose(environ=None, cpuinfo_path="/proc/cpuinfo"):
    """(value or None, reason): what OPENBLAS_CORETYPE should be."""
    environ = os.environ if environ is None else environ
    unreadable = None
    try:
        with open(cpuinfo_path) as f:
            vendor, flags = parse_cpuinfo(f.read())
    except OSError as e:
        vendor, flags = "", set()
        unreadable = f"cannot read {cpuinfo_path} ({e.strerror})"
    value = coretype_for(vendor, flags)
    given = environ.get(VARIABLE)
    if given and given != value:
        return given, f"{VARIABLE} set in the environment (kept as it is)"
    if unreadable:
        return None, f"{unreadable}; left to OpenBLAS's own detection"
    if value is None:
        return None, (f"{vendor or 'unknown vendor'}: left to OpenBLAS's own "
                      "detection")
    return value, (f"chosen for this {vendor} CPU with "
                   f"{'AVX2' if value == 'Haswell' else 'AVX-512'}")


def apply(environ, cpuinfo_path="/proc/cpuinfo"):
    """Set OPENBLAS_CORETYPE in the mapping ``environ`` when unset and the
    CPU calls for it. Returns the value in effect, or None."""
    value, _ = choose(environ, cpuinfo_path)
    if value is not None and not environ.get(VARIABLE):
        environ[VARIABLE] = value
    return value


def apply_quietly(environ):
    """For the venv's .pth file (``apply_quietly(os.environ)``, before
    anything loads OpenBLAS: the only place the process environment is set);
    never lets interpreter start-up fail."""
    try:
        apply(environ)
    except Exception:  # noqa: BLE001 - a .pth line must not break python
        pass


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--exec":
        if len(argv) < 2:
            print("usage: blas_env.py --exec PROGRAM [ARGS...]",
                  file=sys.stderr)
            return 2
        environ = dict(os.environ)
        apply(environ)
        try:
            os.execve(argv[1], argv[1:], environ)
        except OSError as e:
            print(f"error: cannot run {argv[1]}: {e.strerror}; run "
                  "scripts/setup.sh to build it", file=sys.stderr)
            return 127
    if argv and argv[0] in ("-h", "--help"):
        print("usage: blas_env.py [--shell | --exec PROGRAM [ARGS...]]\n\n"
              "Prints the OPENBLAS_CORETYPE this CPU needs and why; --shell "
              "prints it as an export line, --exec runs PROGRAM with it set.")
        return 0
    value, reason = choose()
    if argv == ["--shell"]:
        if value is not None:
            print(f"export {VARIABLE}={value}")
        return 0
    if argv:
        print(f"error: unknown arguments {' '.join(argv)}; usage: "
              "blas_env.py [--shell | --exec PROGRAM [ARGS...]]",
              file=sys.stderr)
        return 2
    print(f"{VARIABLE}={value or '(unset)'}: {reason}")
    return 0
