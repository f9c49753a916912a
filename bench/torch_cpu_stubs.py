"""Make a CUDA build of PyTorch importable on a CPU-only machine.

PyPI's Linux torch wheel is built with CUDA and needs libraries that its
nvidia-* dependencies (gigabytes) would bring. Installed with `--no-deps`
(plus its small pure-Python dependencies), it runs on the CPU once the
libraries it links can be loaded: the CUDA toolkit in /usr/local/cuda
provides most of them; this tool writes empty stand-ins for the rest
(cuFile, cuSPARSELt, NVSHMEM, and NCCL where the toolkit's is too old) into
torch/lib, each defining the symbols torch references. The stand-ins do
nothing: torch's CUDA paths are unusable with them; its CPU paths (what the
ReNet tests and benchmark use) are unaffected.

    pip install --no-deps torch==2.13.0
    pip install typing_extensions filelock sympy networkx jinja2 fsspec
    python bench/torch_cpu_stubs.py
"""
import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

# soname, symbol-name pattern, symbol version (or None)
STUBS = [
    ("libcufile.so.0", r"cuFile", None),
    ("libcusparseLt.so.0", r"cusparseLt", None),
    ("libnvshmem_host.so.3", r"nvshmem", "NVSHMEM"),
    ("libnccl.so.2", r"p?nccl", None),
]


def torch_lib_dir():
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: torch is not installed in this interpreter "
                         f"({sys.executable}); pip install --no-deps "
                         "torch==2.13.0 first")
    return os.path.join(list(spec.submodule_search_locations)[0], "lib")


def undefined_symbols(lib_dir):
    names = set()
    for f in sorted(os.listdir(lib_dir)):
        if not (f.startswith(("libtorch", "libc10")) and f.endswith(".so")):
            continue
        out = subprocess.run(["readelf", "--dyn-syms", "-W",
                              os.path.join(lib_dir, f)],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 8 and cols[6] == "UND":
                names.add(cols[7].split("@")[0])
    return names


def import_error(python):
    r = subprocess.run([python, "-c", "import torch"], capture_output=True,
                       text=True)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines()
                                           or ["unknown error"])[-1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cc", default="cc", help="C compiler for the stubs")
    p.add_argument("--force", action="store_true",
                   help="write the stubs even if torch already imports")
    return p.parse_args(argv)


def main(args):
    err = import_error(sys.executable)
    if err is None and not args.force:
        print("torch imports already; nothing to do")
        return 0
    print(f"torch does not import: {err}" if err else "forced")
    lib_dir = torch_lib_dir()
    symbols = undefined_symbols(lib_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for soname, pattern, version in STUBS:
            names = sorted(s for s in symbols if re.match(pattern, s))
            src = os.path.join(tmp, soname + ".c")
            with open(src, "w") as f:
                for name in names:
                    f.write(f"int {name}(void) {{ return 1; }}\n")
            cmd = [args.cc, "-shared", "-fPIC", "-o",
                   os.path.join(lib_dir, soname + ".tmp"), src,
                   f"-Wl,-soname,{soname}"]
            if version:
                vmap = os.path.join(tmp, soname + ".map")
                with open(vmap, "w") as f:
                    f.write(f"{version} {{ global: *; }};\n")
                cmd.append(f"-Wl,--version-script={vmap}")
            subprocess.run(cmd, check=True)
            os.replace(os.path.join(lib_dir, soname + ".tmp"),
                       os.path.join(lib_dir, soname))
            print(f"wrote {soname}: {len(names)} stub symbols")
    err = import_error(sys.executable)
    if err:
        print(f"error: torch still does not import: {err}", file=sys.stderr)
        return 1
    print("torch imports (CPU only)")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
