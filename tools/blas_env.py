#!/usr/bin/env python3
"""Choose OpenBLAS's kernels for this CPU (OPENBLAS_CORETYPE) where Debian's
OpenBLAS 0.3.21 does not recognise it; see python/hrenet/blas_env.py.

    tools/blas_env.py                        # the choice and why
    tools/blas_env.py --shell                # eval "$(tools/blas_env.py --shell)"
    tools/blas_env.py --exec PROGRAM [ARGS]  # run PROGRAM with it set
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "python"))
from hrenet.blas_env import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
