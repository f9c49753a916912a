#!/usr/bin/env python3
"""Export a deploy net and its weights to an ONNX model, checked against
pycaffe.

Every layer of the net is mapped by its type (python/hrenet/onnx_export.py
lists them): a ReNet layer becomes patch reshapes around one bidirectional
ONNX LSTM, GRU or RNN (ReLU), BilinearResize an align-corners Resize. A
DenseCRF has no ONNX operator: the model ends where the CRF begins, and the
CRF layer (with whatever follows it and its learned blobs) is stored in the
model's metadata, so that `tools/infer.py --onnx` runs it after ONNX Runtime
through pycaffe. The metadata also holds the net's BGR mean and scale.

The input size is fixed (--height/--width, default: the deploy net's Input
shape) unless --dynamic, which leaves batch, height and width free.

The parity check (on unless --no-check) feeds uniform noise and a
photograph to pycaffe and ONNX Runtime, prints the max abs difference of
every output (and of the CRF net's final output) and the fraction of
identical argmax labels, and fails (exit status 1, nothing written) when
a difference exceeds 1e-4 of the output's range or fewer than 99.99% of
the labels agree, counting as a tie a pixel whose two best Caffe scores are
closer than that score tolerance (differing labels are listed with the
largest such gap). --dynamic models are checked at two sizes. For a CRF
net, the CRF run on the ONNX outputs is held to the label tolerance.

Example:
  export_onnx.py --model prototxt/hrenet/d/deploy.prototxt \\
      --weights runs/hrenet_d_iter_40000.caffemodel --out hrenet_d.onnx \\
      --height 375 --width 500
"""
import argparse
import os
import sys

from hrenet.cli import (add_model, add_out, add_quiet, add_seed, add_size, cli,
                        parser, warn)
from hrenet import inference
from hrenet.files import atomic_path
from hrenet.inference import ToolError


def parse_args(argv=None):
    p = parser(__doc__)
    add_model(p)
    add_out(p, "the .onnx file to write")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--dynamic", action="store_true",
                      help="batch, height and width left free (default: "
                      "fixed)")
    add_size(p, None, None, group=size)
    p.add_argument("--check", action=argparse.BooleanOptionalAction,
                   default=True,
                   help="compare with pycaffe before writing (default: "
                   "%(default)s)")
    add_seed(p, "seed of the check's noise image")
    add_quiet(p, "print only errors")
    return p.parse_args(argv)


@cli
def main(args):
    from hrenet import onnx_export, onnx_run
    from hrenet.onnx_export import check_sizes
    if args.dynamic and args.width is not None:
        raise ToolError("--width goes with --height; --dynamic leaves both "
                        "free")
    if (args.height is None) != (args.width is None):
        raise ToolError("give --height and --width together")
    say = (lambda *a, **k: None) if args.quiet else print
    try:  # an unsupported layer stops the export before anything loads
        onnx_export.split_at_crf(inference.read_net_param(args.model))
    except onnx_export.UnsupportedLayer as e:
        raise ToolError(f"{args.model}: {e}") from e
    inference.set_mode(None)
    model = inference.load_model(args.model, args.weights, warn=warn)
    net, param = model.net, model.param
    data = net.blobs["data"]
    shape = list(data.data.shape)
    if len(shape) != 4:
        raise ToolError(f"{args.model}: the Input 'data' is "
                        f"{len(shape)}-D; the export needs N x 3 x H x W")
    height = args.height if args.height is not None else shape[2]
    width = args.width if args.width is not None else shape[3]
    if height < 1 or width < 1:
        raise ToolError(f"--height {height} --width {width}: sizes must be "
                        ">= 1")
    if [height, width] != shape[2:]:
        data.reshape(shape[0], shape[1], height, width)
        net.reshape()
    onnx_model, info = onnx_export.convert_net(
        net, param, dynamic=args.dynamic, mean=model.mean,
        scale=model.scale, source=param.name or args.model)
    blob = onnx_model.SerializeToString()
    size = "dynamic" if args.dynamic else f"{height}x{width}"
    say(f"{args.model}: {len(onnx_export.deploy_layers(param))} layers -> "
        f"{len(onnx_model.graph.node)} ONNX nodes (opset "
        f"{onnx_export.OPSET}), {len(blob) / 2**20:.1f} MiB, input "
        f"{info['inputs'][0]} ({size}), outputs "
        + ", ".join(info["outputs"]))
    if info["crf"] is not None:
        crf = info["crf"]
        say("outside the graph (metadata hrenet.crf, run by pycaffe): the "
            "layers from the DenseCRF on, fed by "
            + ", ".join(f"{k} <- {v}" for k, v in crf["inputs"].items())
            + f"; prediction: {crf['output']}")
    if args.check:
        runner = onnx_run.OnnxModel(blob)
        records = onnx_export.check_parity(
            net, runner, check_sizes(height, width, args.dynamic),
            model.mean, model.scale, seed=args.seed)
        say(onnx_export.format_parity(records), end="")
        if not onnx_export.parity_passed(records):
            bad = [r for r in records
                   if not onnx_export.record_passed(r)] or records
            r = bad[0]
            raise ToolError(
                f"{args.model}: the ONNX model differs from pycaffe beyond "
                f"tolerance ({r['output']}, {r['input']} input: max |diff| "
                f"{r['max_abs_diff']:.3g}, {r['rel_diff']:.2g} of the "
                f"range; {100 * r['labels']:.4f}% identical labels, "
                f"{r.get('ties', 0)} ties); nothing written (--no-check "
                "writes it unchecked)")
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            f.write(blob)
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
