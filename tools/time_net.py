#!/usr/bin/env python3
"""Per-image forward time of deploy nets at one image size (default 375x500,
the paper's Tables 1 and 6), with a breakdown per layer type.

For each net: warm-up passes, then the median and spread (IQR, min-max) of
--repeats whole forward passes, then --repeats layer-by-layer passes whose
per-layer medians are summed by type (ReNet, convolution = Convolution and
Deconvolution, DenseCRF, rest). Ratios are to the first net listed, e.g.
list the FCN first to get H-ReNet / FCN and + DenseCRF / FCN. Weights are
optional (timing does not depend on them). Writes OUT/time.json and
OUT/time.md; CPU unless --gpu N.

Example:
  time_net.py prototxt/fcn/a/deploy.prototxt \\
      prototxt/hrenet/d/deploy.prototxt \\
      prototxt/hrenet/g/deploy.prototxt --gpu 0 --out runs/time
"""
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# _common puts python/ on the path
from _common import (add_device, cli, int_range, nonneg_int,  # noqa: E402
                     parser, positive_int)
from hrenet import inference, timing  # noqa: E402
from hrenet.files import StagedOutput, check_output_dir  # noqa: E402
from hrenet.files import write_json, write_text  # noqa: E402
from hrenet.inference import ToolError  # noqa: E402


SIDE = int_range(1, 8192)


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("models", nargs="+", metavar="DEPLOY",
                   help="deploy prototxts; ratios are to the first")
    p.add_argument("--weights", nargs="*", default=None,
                   help="one .caffemodel per net (default: none, fillers)")
    p.add_argument("--names", nargs="*", default=None,
                   help="names for the table (default: family/variant of "
                   "prototxt/<family>/<variant>/deploy.prototxt, else "
                   "folder/file)")
    p.add_argument("--height", type=SIDE, default=375,
                   help="image height, 1-8192 (default: %(default)s)")
    p.add_argument("--width", type=SIDE, default=500,
                   help="image width, 1-8192 (default: %(default)s)")
    p.add_argument("--warmup", type=nonneg_int, default=1,
                   help="untimed passes first (default: %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed passes (default: %(default)s)")
    p.add_argument("--no-layers", action="store_true",
                   help="skip the per-layer passes (default: off)")
    p.add_argument("--out", default=None,
                   help="directory for time.json and time.md (default: "
                   "print only)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (default: off)")
    add_device(p)
    return p.parse_args(argv)


def default_name(path):
    """family/variant for prototxt/<family>/<variant>/deploy.prototxt,
    else folder/file stem."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem == "deploy":
        return "/".join(parent.split(os.sep)[-2:])
    return f"{os.path.basename(parent)}/{stem}"


@cli(interrupted="nothing was written to --out")
def main(args):
    from tqdm import tqdm
    if args.weights and len(args.weights) != len(args.models):
        raise ToolError(f"{len(args.weights)} --weights for "
                        f"{len(args.models)} nets: give one per net or none")
    if args.names and len(args.names) != len(args.models):
        raise ToolError(f"{len(args.names)} --names for {len(args.models)} "
                        "nets")
    if args.out:
        check_output_dir(args.out)
    for path in args.models:
        inference.read_net_param(path)  # all parse before any time is spent
    device = inference.set_mode(args.gpu)
    results = []
    passes = args.repeats * (1 if args.no_layers else 2)
    bar = tqdm(total=passes * len(args.models), unit="pass", desc="time",
               disable=args.quiet, dynamic_ncols=True, leave=False)
    try:
        for i, path in enumerate(args.models):
            weights = args.weights[i] if args.weights else None
            model = inference.load_model(path, weights, warn=None)
            r = timing.time_forward(model, args.height, args.width,
                                    args.warmup, args.repeats,
                                    not args.no_layers, bar.update)
            r["name"] = args.names[i] if args.names else default_name(path)
            r["model"] = os.path.abspath(path)
            results.append(r)
            del model
    finally:
        bar.close()
    base = results[0]["total"]["median_ms"]
    for r in results:
        r["ratio_to_first"] = r["total"]["median_ms"] / base
    report = {"device": device, "machine": platform.processor() or
              platform.machine(), "cpu_count": os.cpu_count(),
              "height": args.height, "width": args.width,
              "warmup": args.warmup, "repeats": args.repeats,
              "nets": results}
    md = (f"Forward time per {args.height}x{args.width} image on {device} "
          f"(median of {args.repeats} passes after {args.warmup} warm-up; "
          "per-type columns: sums of per-layer medians)\n\n"
          + timing.format_markdown(results))
    print(md, end="")
    if args.out:
        with StagedOutput(last=("time.json",)) as stage:
            out = stage.folder(args.out)
            write_text(os.path.join(out, "time.md"), md)
            write_json(os.path.join(out, "time.json"), report)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
