#!/usr/bin/env python3
"""Train a net with a Caffe solver through pycaffe.

Steps the solver one iteration at a time and writes, under --out:
log.jsonl (JSON lines: iteration, loss, lr, wall time; validation scores;
snapshots), curves.png (loss and validation mean IoU against iterations),
solver.prototxt (the solver as run) and snapshots/ (Caffe snapshots: the
solver's snapshot interval, the end of training, and any interrupt).

On SIGINT (Ctrl-C) or SIGTERM it finishes the running iteration, writes a
snapshot and exits (status 130 / 143); resume with --snapshot
OUT/snapshots/<prefix>_iter_N.solverstate and the same --out: the log and
curves continue.

--val-every K scores the validation split with the deploy net and the
current weights every K iterations (mean IoU, pixel and class accuracy). By
default the deploy net is deploy.prototxt beside the solver's net file and
the split is the source of that net's TEST-phase SegData layer. With it,
the best validation's weights are kept and --patience/--lr-drops stop the
run on a plateau; --budget 5m stops it on time (see the group below).
Relative
paths in the solver and nets are taken from the current directory, as caffe
does.

Examples:
  train.py --solver prototxt/hrenet/d/solver.prototxt \\
      --weights VGG_ILSVRC_16_layers.caffemodel --gpu 0 --val-every 2000 \\
      --out runs/hrenet_d
  train.py --solver prototxt/hrenet/d/solver.prototxt --out runs/hrenet_d \\
      --snapshot runs/hrenet_d/snapshots/hrenet_d_iter_6000.solverstate
"""
import argparse
import os
import signal
import sys

from hrenet.cli import (add_budget, add_device, add_out, add_overwrite,
                        add_quiet, cli, float_range, fraction, nonneg_int,
                        parser, positive_int, warn)
from hrenet import experiment
from hrenet.files import check_output_dir


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--solver", required=True, help="solver prototxt")
    add_out(p, "run directory")
    p.add_argument("--weights", default=None,
                   help="initial weights, copied by layer name, e.g. VGG-16 "
                   "(default: the net's fillers)")
    p.add_argument("--snapshot", default=None, metavar="SOLVERSTATE",
                   help="resume from this .solverstate (default: start)")
    add_device(p)
    p.add_argument("--val-every", type=nonneg_int, default=0, metavar="K",
                   help="validate every K iterations and at the end "
                   "(default: %(default)s = never)")
    p.add_argument("--deploy", default=None,
                   help="deploy net for validation (default: deploy.prototxt "
                   "beside the solver's net)")
    p.add_argument("--val-source", default=None, metavar="DIR",
                   help="validation LMDB directory (default: the net's "
                   "TEST-phase SegData source)")
    p.add_argument("--val-limit", type=positive_int, default=None, metavar="N",
                   help="validate on the first N images only (default: all)")
    stops = p.add_argument_group(
        "validation-driven schedule",
        "A validation that beats the best mean IoU so far by more than "
        "--min-delta is kept as snapshots/best_iter_N.caffemodel. After "
        "--patience validations in a row without a new best the learning "
        "rate is multiplied by --lr-factor, --lr-drops times, then the run "
        "stops. --budget stops it after that much training time. Each stop "
        "takes a snapshot; the summary says why it stopped.")
    stops.add_argument("--patience", type=nonneg_int, default=0, metavar="N",
                       help="validations without a new best that make a "
                       "plateau (needs --val-every; default: %(default)s = "
                       "never stop early)")
    stops.add_argument("--min-delta", type=fraction, default=0.0,
                       help="how much mean IoU (0-1) a new best must gain "
                       "(default: %(default)s)")
    stops.add_argument("--lr-drops", type=nonneg_int, default=0, metavar="N",
                       help="learning-rate drops on plateaus before the "
                       "stop (default: %(default)s)")
    stops.add_argument("--min-iters", type=nonneg_int, default=0,
                       metavar="N", help="validations up to iteration N "
                       "do not count towards a plateau (default: "
                       "%(default)s)")
    stops.add_argument("--lr-factor", type=float_range(
        "a number between 0 and 1", lambda v: 0 < v < 1), default=0.1,
        help="the drop's factor (default: %(default)s)")
    add_budget(stops, None, "stop after this much training time")
    stops.add_argument("--keep-best", action=argparse.BooleanOptionalAction,
                       default=True, help="save the best validation's "
                       "weights (default: %(default)s)")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="train to this iteration instead of the solver's "
                   "max_iter (default: max_iter)")
    p.add_argument("--display", type=positive_int, default=None,
                   help="log the mean loss every N iterations (default: the "
                   "solver's display, else 20)")
    add_overwrite(p, "start again in an --out that holds a log")
    add_quiet(p)
    args = p.parse_args(argv)
    if (args.patience or args.lr_drops) and not args.val_every:
        p.error("--patience and --lr-drops need --val-every K (the "
                "plateau is seen on the validation split)")
    return args


class StopFlag(object):
    """Set by SIGINT/SIGTERM; the training loop stops between iterations."""

    def __init__(self):
        self.signum = None

    def __call__(self):
        return self.signum is not None

    def handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum


@cli(interrupted="a run that had started keeps its log and snapshots")
def main(args):
    check_output_dir(args.out)
    stop = StopFlag()
    old = {s: signal.signal(s, stop.handler)
           for s in (signal.SIGINT, signal.SIGTERM)}
    run = experiment.Run(
        args.solver, args.out, weights=args.weights, snapshot=args.snapshot,
        gpu=args.gpu, deploy=args.deploy, val_source=args.val_source,
        schedule=experiment.Schedule(
            iters=args.iters, display=args.display,
            val_every=args.val_every, val_limit=args.val_limit,
            patience=args.patience, min_delta=args.min_delta,
            lr_drops=args.lr_drops, lr_factor=args.lr_factor,
            min_iters=args.min_iters,
            budget=args.budget, keep_best=args.keep_best))
    try:
        summary = experiment.train(
            run, progress=not args.quiet, should_stop=stop, warn=warn,
            overwrite=args.overwrite,
            info=lambda m: print(m, file=sys.stderr))
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if summary["status"] == "interrupted":
        print(f"interrupted at iteration {summary['iter']}; snapshot "
              f"{summary['snapshot'][1]}; resume with --snapshot "
              f"{summary['snapshot'][1]} --out {args.out}", file=sys.stderr)
        return 128 + (stop.signum or signal.SIGINT)
    if not args.quiet:
        best = summary.get("best_val")
        print(f"trained to iteration {summary['iter']} (stopped: "
              f"{experiment.STOPS[summary['stop']]})"
              + (f"; best val mean IoU {100 * best['miou']:.2f}% at "
                 f"iteration {best['iter']}" if best else "")
              + f"; wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
