#!/usr/bin/env python3
"""Turn a plain `caffe train` log into the JSON lines and curves.png that
tools/train.py writes, so that runs of the C++ tool get the same pictures.

Reads the glog output of `caffe train` (GLOG_minloglevel=0, e.g.
`caffe train -solver s.prototxt 2>&1 | tee train.log`): the loss of every
displayed iteration, its lr, the TEST net's outputs (a net output named miou
gives the validation mean-IoU curve; other outputs are drawn as they are),
wall time from the timestamps.

Example:
  plot_log.py runs/smoke/train.log --out runs/smoke
"""
import os
import sys

from hrenet.cli import add_out, cli, parser
from hrenet import plots, training
from hrenet.files import StagedOutput, check_output_dir
from hrenet.files import write_json_lines
from hrenet.inference import ToolError


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("log", help="caffe train log file")
    add_out(p, "directory for log.jsonl and curves.png")
    p.add_argument("--title", default=None,
                   help="figure title (default: the log's file name)")
    return p.parse_args(argv)


@cli(interrupted="nothing was written to --out")
def main(args):
    check_output_dir(args.out)
    if not os.path.isfile(args.log):
        raise ToolError(f"{args.log}: log file does not exist; give the "
                        "file that caffe train's output went to")
    with open(args.log, errors="replace") as f:
        records = training.parse_caffe_log(f)
    if not any(r["type"] == "train" for r in records):
        raise ToolError(f"{args.log}: no 'Iteration N (...), loss = L' "
                        "lines; is it a caffe train log written with "
                        "GLOG_minloglevel=0?")
    with StagedOutput(last=(training.LOG,)) as stage:
        out = stage.folder(args.out)
        plots.plot_curves(records, os.path.join(out, training.CURVES),
                          title=args.title or os.path.basename(args.log))
        write_json_lines(os.path.join(out, training.LOG), records)
    n = sum(r["type"] == "train" for r in records)
    print(f"{n} training records, {len(records) - n} validation records; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
