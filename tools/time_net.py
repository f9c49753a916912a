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

ONNX Runtime column (on the CPU, when onnx and onnxruntime are installed;
--no-onnx leaves it out): each net is exported in memory as
tools/export_onnx.py does and --repeats passes of ONNX Runtime are timed
on the same image (for CRF nets with the DenseCRF after it, run by
pycaffe as tools/infer.py --onnx does). Skipped with --gpu.

Example:
  time_net.py prototxt/fcn/a/deploy.prototxt \\
      prototxt/hrenet/d/deploy.prototxt \\
      prototxt/hrenet/g/deploy.prototxt --gpu 0 --out runs/time
"""
import os
import platform
import sys
from argparse import BooleanOptionalAction

from hrenet.cli import (add_device, add_out, add_quiet, add_size, add_timing,
                        cli, nonneg_int, parser, warn)
from hrenet import inference, timing
from hrenet.files import StagedOutput, check_output_dir
from hrenet.files import write_json, write_text
from hrenet.inference import ToolError


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
    add_size(p, 375, 500)
    add_timing(p)
    p.add_argument("--no-layers", action="store_true",
                   help="skip the per-layer passes (default: off)")
    p.add_argument("--onnx", action=BooleanOptionalAction,
                   default=True,
                   help="time ONNX Runtime too, when installed (default: "
                   "%(default)s)")
    p.add_argument("--onnx-threads", type=nonneg_int, default=0,
                   help="ONNX Runtime intra-op threads (default: "
                   "%(default)s, its own choice: the physical cores)")
    add_out(p, "directory for time.json and time.md", required=False)
    add_quiet(p)
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
    onnx = args.onnx
    onnx_note = None
    if onnx and args.gpu is not None:
        onnx, onnx_note = False, "ONNX Runtime runs on the CPU only here"
    elif onnx and timing.onnx_available():
        onnx, onnx_note = False, ("onnx/onnxruntime not installed ("
                                  + timing.onnx_available() + ")")
    if onnx_note:
        warn(f"no ONNX Runtime column: {onnx_note}")
    results = []
    passes = args.repeats * (1 if args.no_layers else 2) + \
        (args.repeats if onnx else 0)
    bar = tqdm(total=passes * len(args.models), unit="pass", desc="time",
               disable=args.quiet, dynamic_ncols=True, leave=False)
    try:
        for i, path in enumerate(args.models):
            weights = args.weights[i] if args.weights else None
            model = inference.load_model(path, weights, warn=None)
            r = timing.time_forward(model, args.height, args.width,
                                    args.warmup, args.repeats,
                                    not args.no_layers, bar.update)
            if onnx:
                try:
                    r["onnx"] = timing.time_onnx(
                        model, args.height, args.width, args.warmup,
                        args.repeats, bar.update, args.onnx_threads)
                except ToolError as e:  # a layer the export cannot map
                    warn(f"{path}: no ONNX Runtime time: {e}")
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
              "onnx": onnx, "onnx_note": onnx_note, "nets": results}
    md = (f"Forward time per {args.height}x{args.width} image on {device} "
          f"(median of {args.repeats} passes after {args.warmup} warm-up; "
          "per-type columns: sums of per-layer medians"
          + ("; ONNX Runtime: the exported net on the CPU, CRF nets with "
             "their DenseCRF through pycaffe after it" if onnx else "")
          + ")\n\n" + timing.format_markdown(results))
    print(md, end="")
    if args.out:
        with StagedOutput(last=("time.json",)) as stage:
            out = stage.folder(args.out)
            write_text(os.path.join(out, "time.md"), md)
            write_json(os.path.join(out, "time.json"), report)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
