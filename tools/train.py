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
the split is the source of that net's TEST-phase SegData layer. Relative
paths in the solver and nets are taken from the current directory, as caffe
does.

Examples:
  train.py --solver prototxt/hrenet/d/solver.prototxt \\
      --weights VGG_ILSVRC_16_layers.caffemodel --gpu 0 --val-every 2000 \\
      --out runs/hrenet_d
  train.py --solver prototxt/hrenet/d/solver.prototxt --out runs/hrenet_d \\
      --snapshot runs/hrenet_d/snapshots/hrenet_d_iter_6000.solverstate
"""
import os
import signal
import sys

from hrenet.cli import (add_device, add_out, add_overwrite, add_quiet, cli,
                        nonneg_int, parser, positive_int, warn)
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
    p.add_argument("--iters", type=positive_int, default=None,
                   help="train to this iteration instead of the solver's "
                   "max_iter (default: max_iter)")
    p.add_argument("--display", type=positive_int, default=None,
                   help="log the mean loss every N iterations (default: the "
                   "solver's display, else 20)")
    add_overwrite(p, "start again in an --out that holds a log")
    add_quiet(p)
    return p.parse_args(argv)


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
            val_every=args.val_every, val_limit=args.val_limit))
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
        print(f"trained to iteration {summary['iter']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
