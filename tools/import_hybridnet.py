#!/usr/bin/env python3
"""Convert a caffemodel trained with the H-ReNet authors' Caffe fork into
this project's format.

Their fork (stephenyan1231/caffe-hybridnet, branch hybridnet) stores
H-ReNet in layer types of its own (ReNetLSTM, BilinearInterpolation,
DenseCRFMeanfield) with LayerParameter field numbers that collide with
upstream Caffe's. This reads their file, maps every layer with parameters
by name onto prototxt/hrenet/released/deploy.prototxt (their deploy file,
layer for layer, in our layer types), converts the ReNet weights (gate
order, input and recurrent parts), checks every shape, prints what it
converted and writes OUT atomically: a missing, unknown or misshapen
layer stops it with one line and nothing written.

Example (then run tools/infer.py on their sample image; docs/NETS.md):
  import_hybridnet.py --weights H_ReNet_iter_36000.caffemodel \\
      --out runs/hrenet_released.caffemodel
"""
import os
import sys

from hrenet.cli import cli, parser
from hrenet import hybridnet
from hrenet.files import check_output_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(
    os.path.abspath(__file__)), os.pardir))


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--weights", required=True, metavar="THEIRS.caffemodel",
                   help="caffemodel saved by the authors' fork")
    p.add_argument("--out", required=True, metavar="OURS.caffemodel",
                   help="caffemodel to write for our released net")
    p.add_argument("--model", default=None,
                   help="our deploy net the weights are for (default: the "
                   "repository's %s)" % hybridnet.RELEASED_DEPLOY)
    p.add_argument("--ignore-peepholes", action="store_true",
                   help="drop ReNetLSTM peephole weights, as their deploy "
                   "file does (peephole: false); without it a model with "
                   "peepholes stops the import")
    return p.parse_args(argv)


@cli(interrupted="nothing was written to --out")
def main(args):
    check_output_file(args.out)
    model = args.model or os.path.join(ROOT, hybridnet.RELEASED_DEPLOY)
    table = hybridnet.import_model(args.weights, args.out, model,
                                   args.ignore_peepholes)
    width = max(len(row[0]) for row in table)
    for name, theirs, ours, what in table:
        print("  %-*s  %-21s -> %-14s %s" % (width, name, theirs, ours, what))
    print("wrote %s: %d layers with parameters, for %s"
          % (args.out, len(table), model))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
