"""Shared pieces of the CLIs in tools/ (argument groups, error handling)."""
import functools
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "python"))

from hrenet import crf as crf_mod  # noqa: E402
from hrenet.datasets import DataError  # noqa: E402
from hrenet.inference import ToolError  # noqa: E402


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def add_device(p):
    p.add_argument("--gpu", type=int, default=None, metavar="N",
                   help="run on GPU N (default: CPU)")


def add_transform(p):
    p.add_argument("--mean", type=float, nargs=3, default=None,
                   metavar=("B", "G", "R"),
                   help="BGR mean subtracted from the image (default: the "
                   "deploy net's Input transform_param, else 0)")
    p.add_argument("--scale", type=float, default=None,
                   help="scale applied after the mean (default: the deploy "
                   "net's transform_param, else 1)")
    p.add_argument("--blob", default=None,
                   help="output blob to take the prediction from (default: "
                   "the net's last output)")


def add_crf(p):
    g = p.add_argument_group("DenseCRF (--crf)")
    g.add_argument("--crf", action="store_true",
                   help="post-process with DenseCRF: the net's own DenseCRF "
                   "layer, or one appended after the output blob with the "
                   "parameters below (default: off)")
    d = crf_mod.DEFAULTS
    g.add_argument("--crf-iter", type=int, default=d["max_iter"],
                   help="mean-field iterations (default: %(default)s)")
    g.add_argument("--crf-pos-w", type=float, default=d["pos_w"],
                   help="spatial kernel weight (default: %(default)s)")
    g.add_argument("--crf-pos-xy-std", type=float, default=d["pos_xy_std"],
                   help="spatial theta_gamma (default: %(default)s)")
    g.add_argument("--crf-bi-w", type=float, default=d["bi_w"],
                   help="bilateral kernel weight (default: %(default)s)")
    g.add_argument("--crf-bi-xy-std", type=float, default=d["bi_xy_std"],
                   help="bilateral theta_alpha (default: %(default)s)")
    g.add_argument("--crf-bi-rgb-std", type=float, default=d["bi_rgb_std"],
                   help="bilateral theta_beta (default: %(default)s)")


def crf_params(args):
    return dict(max_iter=args.crf_iter, pos_w=args.crf_pos_w,
                pos_xy_std=args.crf_pos_xy_std, bi_w=args.crf_bi_w,
                bi_xy_std=args.crf_bi_xy_std, bi_rgb_std=args.crf_bi_rgb_std)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def cli(main):
    """Wrap ``main(args)``: user errors (and OS errors such as a folder
    that cannot be written) become one ``error:`` line and exit status 1,
    Ctrl-C exits 130 with one line, SIGTERM exits 143. Set
    HRENET_TRACEBACK=1 to get the traceback instead."""
    @functools.wraps(main)
    def wrapper(args):
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminate)
        try:
            return main(args)
        except (ToolError, DataError, OSError) as e:
            if os.environ.get("HRENET_TRACEBACK"):
                raise
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
    return wrapper
