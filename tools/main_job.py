#!/usr/bin/env python3
"""The main job: show on a CPU that context across the whole image matters.

Generates the synthetic context dataset (or reads --format/--root), builds
its LMDBs, trains a small N-ReNet and a local-context baseline with pycaffe,
scores both on the held-out split and writes RUN/report.md (with PNGs) and
RUN/report.json ({"models": {"nrenet": {"miou", "pixel_acc", "class_acc"},
"baseline": {...}}}). The run folder also keeps the prototxts, the training
logs, the git commit and the command line.

Examples:
  main_job.py                              # synthetic, 2-4 min on 2 cores
  main_job.py --quick                      # the one-minute version
  main_job.py --format voc --root VOCdevkit/VOC2012 --iters 2000
"""
import argparse
import datetime
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cli  # noqa: E402 (puts python/ on sys.path)

from hrenet import mainjob  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(
    os.path.abspath(__file__)), os.pardir))


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", default="synthetic", choices=mainjob.FORMATS,
                   help="dataset layout (default: %(default)s, generated)")
    p.add_argument("--root", default=None,
                   help="dataset folder for --format other than synthetic")
    p.add_argument("--voc-root", default=None,
                   help="sbd: the VOC2012 folder (default: %(default)s)")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="class names, one per line (default: the format's)")
    p.add_argument("--iters", type=int, default=None,
                   help="training iterations of each model (default: %d; "
                   "--quick: %d)" % (mainjob.settings()["iters"],
                                     mainjob.settings(True)["iters"]))
    p.add_argument("--seed", type=int, default=0,
                   help="data and solver seed (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="one-minute version: fewer, smaller images and a "
                   "few iterations (default: off)")
    p.add_argument("--out", default=None,
                   help="run folder (default: runs/main-<date>-<time>)")
    return p.parse_args(argv)


@cli
def main(args):
    out = args.out or os.path.join(
        ROOT, "runs", "main-" + datetime.datetime.now().strftime(
            "%Y%m%d-%H%M%S") + ("-quick" if args.quick else ""))
    if os.path.exists(os.path.join(out, "report.json")):
        raise mainjob.ToolError(f"{out} already holds a report; give "
                                "another --out")
    command = " ".join(shlex.quote(a) for a in
                       ["tools/main_job.py"] + sys.argv[1:])
    report = mainjob.run(out, args.format, args.root, args.classes,
                         args.voc_root, args.quick, args.iters, args.seed,
                         command=command, repo_root=ROOT)
    m = report["models"]
    print(f"report: {os.path.join(out, 'report.md')}")
    print(f"mean IoU: N-ReNet {100 * m['nrenet']['miou']:.1f}%, "
          f"baseline {100 * m['baseline']['miou']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
