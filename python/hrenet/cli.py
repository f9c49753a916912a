"""The command-line layer of tools/*.py: the argument parser, the numeric
argument types, argument groups and the error handling.

Every tool builds its parser with :func:`parser` and wraps its ``main``
with :func:`cli`, so that all of them fail the same way: one ``error:``
line on stderr naming the file or flag and the fix, exit status 2 for a
malformed command line (an unknown flag, a number out of range: checked
at parse time by the types below), 1 for any other user error, 130 after
Ctrl-C and 143 after SIGTERM, never a traceback for a user's mistake.
"""
import argparse
import functools
import math
import os
import signal
import sys

from hrenet import crf as crf_mod
from hrenet.datasets import DataError
from hrenet.files import os_error_message
from hrenet.inference import ToolError

USAGE_ERROR = 2


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------
# The parser

class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``error: ...`` (no usage
    block), exit status 2."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"error: {message} (see {self.prog} "
                  "--help)\n")


def parser(doc):
    """The parser of a tool: its module docstring as the description."""
    return ArgumentParser(
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter)


# ---------------------------------------------------------------------------
# Numeric argument types (argparse ``type=``): the range is checked when the
# command line is parsed, so -5 iterations or a NaN scale never reach a tool.

INT32_MAX = 2 ** 31 - 1  # Caffe's iterations, sizes and counts are int32


def _typed(convert, what, check=lambda v: True):
    """An argparse type: ``convert`` the text (None if it does not
    convert), then ``check`` the value (True, or a complaint)."""
    def parse(text):
        try:
            value = convert(text)
        except (TypeError, ValueError, OverflowError):
            value = None
        if value is None:
            raise argparse.ArgumentTypeError(f"give {what}, not {text!r}")
        ok = check(value)
        if ok is not True:
            raise argparse.ArgumentTypeError(
                f"give {what}, not {text!r}" + (f" ({ok})" if ok else ""))
        return value
    parse.__name__ = what
    return parse


def _int(text):
    return int(text.strip())


def _float(text):
    value = float(text)
    return value if math.isfinite(value) else None


def int_range(low, high=INT32_MAX):
    """Whole numbers in [low, high]."""
    what = (f"a whole number >= {low}" if high == INT32_MAX else
            f"a whole number from {low} to {high}")

    def check(v):
        if v < low:
            return ""
        if v <= high:
            return True
        return f"at most {high}" if high == INT32_MAX else ""
    return _typed(_int, what, check)


def float_range(what, check):
    return _typed(_float, what, lambda v: True if check(v) else "")


positive_int = int_range(1)
nonneg_int = int_range(0)
#: seeds of numpy's RandomState and Caffe's random_seed
seed = int_range(0, 2 ** 32 - 1)
#: a GPU number
device = int_range(0)
finite_float = float_range("a finite number", lambda v: True)
positive_float = float_range("a finite number > 0", lambda v: v > 0)
nonneg_float = float_range("a finite number >= 0", lambda v: v >= 0)
fraction = float_range("a number from 0 to 1", lambda v: 0 <= v <= 1)


def parse_duration(text):
    """Seconds in ``text``: "300", "90s", "5m", "1h30m", "2.5m"; None if it
    is not a duration."""
    import re
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


#: a positive time span: 300 (seconds), 90s, 5m, 1h30m
duration = _typed(parse_duration, "a time span such as 300, 90s, 5m or "
                  "1h30m", lambda v: True if 0 < v < math.inf else "")


def nonzero_float(text):
    value = finite_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"give a finite number other "
                                         f"than 0, not {text!r}")
    return value


# ---------------------------------------------------------------------------
# Argument groups: every flag that several tools share is declared here once.

def add_out(p, what="output directory", required=True, default=None):
    """--out: where the tool writes."""
    p.add_argument("--out", required=required, default=default,
                   help=what if required else
                   f"{what} (default: {default or 'print only'})")


def add_switch(p, flag, what):
    """An on/off flag, off by default."""
    p.add_argument(flag, action="store_true", help=f"{what} (default: off)")


def add_count(p, flag, default, what):
    """A positive whole number."""
    p.add_argument(flag, type=positive_int, default=default,
                   help=f"{what} (default: %(default)s)")


def add_quiet(p, what="no progress bar"):
    p.add_argument("--quiet", action="store_true",
                   help=f"{what} (default: off)")


def add_overwrite(p, what="replace an existing --out"):
    p.add_argument("--overwrite", action="store_true",
                   help=f"{what} (default: refuse)")


def add_seed(p, what="random seed", default=0):
    p.add_argument("--seed", type=seed, default=default,
                   help=f"{what} (default: %(default)s)")


def add_size(p, height, width, low=1, high=8192, group=None, default=None):
    """--height and --width in [low, high] pixels; ``default`` describes
    the defaults in the help where they are None (set later). With
    ``group`` (a mutually exclusive group), --height joins it (an argparse
    group can hold only one of two flags that go together)."""
    side = int_range(low, high)
    shown = default or "%(default)s"
    (group or p).add_argument(
        "--height", type=side, default=height,
        help=f"image height, {low}-{high} (default: {shown})")
    p.add_argument("--width", type=side, default=width,
                   help=f"image width, {low}-{high} (default: {shown})")


def add_budget(p, default, what="most training time per model"):
    """--budget: a time span (seconds; 90s, 5m, 1h30m); ``default`` in
    seconds or None."""
    shown = "none" if default is None else (
        f"{default / 60:g}m" if default % 60 == 0 else f"{default:g}s")
    p.add_argument("--budget", type=duration, default=default,
                   help=f"{what}, e.g. 90s, 5m, 1h30m (default: {shown})")


def add_timing(p, warmup=1, repeats=5):
    """--warmup and --repeats of a timing."""
    p.add_argument("--warmup", type=nonneg_int, default=warmup,
                   help="untimed passes first (default: %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=repeats,
                   help="timed passes (default: %(default)s)")


def add_model(p, required=True, note=""):
    """--model (deploy prototxt) and --weights (.caffemodel)."""
    p.add_argument("--model", required=required, default=None,
                   help="deploy prototxt" + note)
    p.add_argument("--weights", required=required, default=None,
                   help=".caffemodel" + note)


def add_dataset(p, required=False, split_help="split name",
                root_help="dataset directory", group=None):
    """A dataset in a published layout: --format, --root, --split or
    --list, --voc-root (sbd aug), --annotations (coco)."""
    from hrenet import datasets
    g = group or p
    g.add_argument("--format", required=required, default=None,
                   choices=datasets.FORMATS, help="dataset layout of --root")
    g.add_argument("--root", required=required, default=None,
                   help=root_help)
    which = g.add_mutually_exclusive_group()
    which.add_argument("--split", default=None, help=split_help)
    which.add_argument("--list", default=None, metavar="FILE",
                       help="file of image names (one per line) instead of "
                       "--split")
    g.add_argument("--voc-root", default=None, metavar="DIR",
                   help="sbd --split aug: the VOC2012 directory whose "
                   "train/val lists and labels it uses (default: "
                   "%(default)s)")
    g.add_argument("--annotations", default=None, metavar="JSON",
                   help="coco: the instances JSON (default: %(default)s)")


def add_classes(p, what):
    p.add_argument("--classes", default=None, metavar="FILE",
                   help=f"class names, one per line ({what})")


def add_device(p):
    p.add_argument("--gpu", type=device, default=None, metavar="N",
                   help="run on GPU N (default: CPU)")


def add_transform(p, blob=True):
    """--mean and --scale (the net's preprocessing) and, with ``blob``,
    --blob (the output to predict from)."""
    p.add_argument("--mean", type=finite_float, nargs=3, default=None,
                   metavar=("B", "G", "R"),
                   help="BGR mean subtracted from the image (default: the "
                   "deploy net's Input transform_param, else 0)")
    p.add_argument("--scale", type=nonzero_float, default=None,
                   help="scale applied after the mean (default: the deploy "
                   "net's transform_param, else 1)")
    if not blob:
        return
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
    g.add_argument("--crf-iter", type=positive_int, default=d["max_iter"],
                   help="mean-field iterations (default: %(default)s)")
    g.add_argument("--crf-pos-w", type=nonneg_float, default=d["pos_w"],
                   help="spatial kernel weight (default: %(default)s)")
    g.add_argument("--crf-pos-xy-std", type=positive_float,
                   default=d["pos_xy_std"],
                   help="spatial theta_gamma (default: %(default)s)")
    g.add_argument("--crf-bi-w", type=nonneg_float, default=d["bi_w"],
                   help="bilateral kernel weight (default: %(default)s)")
    g.add_argument("--crf-bi-xy-std", type=positive_float,
                   default=d["bi_xy_std"],
                   help="bilateral theta_alpha (default: %(default)s)")
    g.add_argument("--crf-bi-rgb-std", type=positive_float,
                   default=d["bi_rgb_std"],
                   help="bilateral theta_beta (default: %(default)s)")


def crf_params(args):
    return dict(max_iter=args.crf_iter, pos_w=args.crf_pos_w,
                pos_xy_std=args.crf_pos_xy_std, bi_w=args.crf_bi_w,
                bi_xy_std=args.crf_bi_xy_std, bi_rgb_std=args.crf_bi_rgb_std)


# ---------------------------------------------------------------------------
# Error handling

def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def _line(message):
    """One line: a message that spans several (a nested error) is joined."""
    return " ".join(str(message).split("\n")).strip()


def cli(main=None, interrupted="nothing was written; run the command "
        "again"):
    """Wrap ``main(args)``: user errors (ToolError, DataError, OSError such
    as a folder that cannot be written, and RuntimeError: pycaffe raises it
    for a Caffe layer's UserError, a damaged LMDB say, with the layer's one
    sentence) become one ``error:`` line and exit status 1, running out of
    memory too; Ctrl-C exits 130 with one line
    (``error: interrupted (Ctrl-C); `` + ``interrupted``, which says what
    is left); SIGTERM exits 143. Set HRENET_TRACEBACK=1 to get the
    traceback instead. Use as ``@cli`` or ``@cli(interrupted="...")``."""
    if main is None:
        return functools.partial(cli, interrupted=interrupted)

    @functools.wraps(main)
    def wrapper(args):
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminate)
        try:
            return main(args)
        except (ToolError, DataError, OSError, MemoryError,
                RuntimeError) as e:
            if os.environ.get("HRENET_TRACEBACK"):
                raise
            if isinstance(e, MemoryError):
                text = ("out of memory; use smaller inputs (infer.py: "
                        "--max-side) or a machine with more memory")
            elif isinstance(e, OSError) and not isinstance(e, ToolError):
                text = os_error_message(e)
            else:
                text = str(e)
            if sys.stderr.isatty():
                sys.stderr.write("\n")  # below a progress bar
            print(f"error: {_line(text)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            if os.environ.get("HRENET_TRACEBACK"):
                raise
            if sys.stderr.isatty():
                sys.stderr.write("\n")  # below ^C and a progress bar
            print(f"error: interrupted (Ctrl-C); {interrupted}",
                  file=sys.stderr)
            return 130
    return wrapper
