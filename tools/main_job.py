#!/usr/bin/env python3
"""The main job: show on a CPU that context across the whole image matters.

Generates the synthetic context dataset (--variant: any set of the family;
or reads --format/--root), builds its LMDBs (every 8th training image kept
apart to validate on), trains a small N-ReNet and a local-context baseline
with pycaffe, each until its validation score stops improving (or --budget
per model), scores the best weights of each on the held-out split and
writes RUN/report.md (with PNGs) and
RUN/report.json ({"models": {"nrenet": {"miou", "pixel_acc", "class_acc"},
"baseline": {...}}}). The run folder also keeps the prototxts, the training
logs, the git commit and the command line.

Examples:
  main_job.py                              # synthetic, 2-5 min on 2 cores
  main_job.py --quick                      # the few-second smoke version
  main_job.py --variant ring-96x128-k3 --budget 4m
  main_job.py --format voc --root VOCdevkit/VOC2012 --budget 20m
"""
import datetime
import os
import shlex
import shutil
import sys

from hrenet.cli import (add_budget, add_classes, add_overwrite, add_seed, cli,
                        parser, positive_int)

from hrenet import mainjob, synthetic
from hrenet.files import check_output_dir
from hrenet.inference import ToolError

ROOT = os.path.normpath(os.path.join(os.path.dirname(
    os.path.abspath(__file__)), os.pardir))


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--format", default="synthetic", choices=mainjob.FORMATS,
                   help="dataset layout (default: %(default)s, generated)")
    p.add_argument("--root", default=None,
                   help="dataset folder for --format other than synthetic")
    p.add_argument("--voc-root", default=None,
                   help="sbd: the VOC2012 folder (default: %(default)s)")
    add_classes(p, "default: the format's")
    p.add_argument("--variant", default=mainjob.DEFAULT_VARIANT,
                   choices=sorted(synthetic.VARIANTS),
                   help="--format synthetic: which set of the family to "
                   "generate (default: %(default)s)")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="train each model exactly this many iterations, "
                   "without early stops (default: until the validation "
                   "score stops improving, at most %d; --quick: %d)" % (
                       mainjob.settings()["iters"],
                       mainjob.settings(True)["iters"]))
    add_budget(p, mainjob.settings()["budget"])
    add_seed(p, "data and solver seed")
    p.add_argument("--quick", action="store_true",
                   help="smoke version, seconds long: fewer, smaller "
                   "images and a few iterations (default: off)")
    p.add_argument("--out", default=None,
                   help="run folder (default: runs/main-<date>-<time>)")
    add_overwrite(p, "replace a run folder that --out already holds "
                  "(finished, or left by a killed run)")
    return p.parse_args(argv)


def clear_run_folder(out, overwrite):
    """Refuse (or, with ``overwrite``, remove) a run folder that is not
    empty: a finished run, or one left by a killed run."""
    if not os.path.isdir(out) or not os.listdir(out):
        return
    finished = os.path.exists(os.path.join(out, "report.json"))
    what = "a finished run" if finished else \
        "an unfinished run (no report.json)"
    if not overwrite:
        raise ToolError(f"--out {out} already holds {what}; pass "
                        "--overwrite to replace it, or give another --out")
    if not os.path.isfile(os.path.join(out, "command")):
        raise ToolError(f"--out {out} is not empty and is not a main-job "
                        "run folder (no command file); --overwrite only "
                        "replaces run folders: give another --out")
    shutil.rmtree(out)


@cli(interrupted="the run folder was removed; run the command again")
def main(args):
    out = args.out or os.path.join(
        ROOT, "runs", "main-" + datetime.datetime.now().strftime(
            "%Y%m%d-%H%M%S") + ("-quick" if args.quick else ""))
    out = check_output_dir(out)
    if args.format != "synthetic" and not args.root:
        raise ToolError(f"--format {args.format} needs --root DIR")
    if args.format != "synthetic" and not os.path.isdir(args.root):
        raise ToolError(f"--root {args.root}: no such directory; give the "
                        f"dataset folder in the {args.format} layout")
    clear_run_folder(out, args.overwrite)
    command = " ".join(shlex.quote(a) for a in
                       ["tools/main_job.py"] + sys.argv[1:])
    report = mainjob.run(out, args.format, args.root, args.classes,
                         args.voc_root, args.quick, args.iters, args.seed,
                         command=command, repo_root=ROOT,
                         variant=args.variant, budget=args.budget)
    miou = {k: 100 * v["miou"] for k, v in report["models"].items()}
    print(f"report: {os.path.join(out, 'report.md')}\n"
          f"mean IoU: N-ReNet {miou['nrenet']:.1f}%, "
          f"baseline {miou['baseline']:.1f}%")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
