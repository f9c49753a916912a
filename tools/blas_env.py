#!/usr/bin/env python3
"""Choose OpenBLAS's kernels for this CPU (OPENBLAS_CORETYPE) where Debian's
OpenBLAS 0.3.21 does not recognise it; see python/hrenet/blas_env.py.

    tools/blas_env.py                        # the choice and why
    tools/blas_env.py --shell                # for eval "$(...)" in a shell
    tools/blas_env.py --exec PROGRAM [ARGS]  # run PROGRAM with it set
"""
import sys

from hrenet.blas_env import main

if __name__ == "__main__":
    sys.exit(main())
