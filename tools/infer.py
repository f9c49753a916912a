#!/usr/bin/env python3
"""Segment images with a deploy net through pycaffe.

For every image (files, or the .jpg/.jpeg/.png files of folders), at its own
size: OUT/<name>.png, the prediction as a palette PNG (class index per pixel),
and OUT/<name>_overlay.png, the image blended with the class colours and a
legend of the classes present. The net's mean/scale come from its Input
layer's transform_param unless --mean/--scale are given; --crf adds (or uses)
the DenseCRF layer. A summary goes to OUT/infer.json.

--onnx MODEL.onnx (instead of --model/--weights) runs a model written by
tools/export_onnx.py with ONNX Runtime; the mean/scale come from its
metadata, and a model exported from a net with a DenseCRF runs that CRF
(its settings and learned blobs, from the metadata) through pycaffe after
ONNX Runtime; --crf appends our DenseCRF to a model without one.

Example:
  infer.py --model prototxt/hrenet/g/deploy.prototxt --weights g.caffemodel \\
      photos/ street.jpg --out runs/infer
  infer.py --onnx hrenet_g.onnx photos/ --out runs/infer_onnx
"""
import os
import sys

from hrenet.cli import (add_classes, add_crf, add_device, add_model, add_out,
                        add_quiet, add_transform, cli, crf_params, fraction,
                        nonneg_int, parser, warn)
from hrenet import datasets as ds
from hrenet import inference, scoring, visual
from hrenet.files import StagedOutput, check_output_dir
from hrenet.files import write_json
from hrenet.inference import ToolError

MAX_SIDE = 1024


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files or folders of images")
    add_model(p, required=False, note=" (required unless --onnx)")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="run an exported model with ONNX Runtime instead "
                   "(default: none)")
    add_out(p)
    add_classes(p, "the legend's; default: VOC's for 21 classes, Stanford "
                "Background's for 8, else numbers")
    p.add_argument("--palette", default="auto",
                   choices=("auto", "voc", "stanford-bg"),
                   help="colours (default: %(default)s: Stanford Background's "
                   "for 8 classes, else VOC's)")
    p.add_argument("--alpha", type=fraction, default=0.5,
                   help="weight of the label colours in the overlay, 0-1 "
                   "(default: %(default)s)")
    p.add_argument("--max-side", type=nonneg_int, default=MAX_SIDE,
                   metavar="PIXELS",
                   help="run the net on images whose longer side exceeds "
                   "this scaled down to it, and upsample the prediction to "
                   "the full size: memory and time grow with the pixels "
                   "(a 5000x5000 photo needs about 12 GB at full size even "
                   "on a tiny net); 0: always full size (default: "
                   "%(default)s)")
    add_quiet(p)
    add_device(p)
    add_transform(p)
    add_crf(p)
    return p.parse_args(argv)


def gigabytes(n):
    return f"{n / 2.0 ** 30:.1f} GB"


@cli(interrupted="nothing was written to --out")
def main(args):
    import numpy as np
    from PIL import Image
    from tqdm import tqdm
    if args.onnx and (args.model or args.weights):
        raise ToolError("--onnx runs an exported model: leave out --model "
                        "and --weights")
    if not args.onnx and not (args.model and args.weights):
        raise ToolError("give --model and --weights (or --onnx MODEL.onnx)")
    if args.onnx and args.gpu is not None:
        raise ToolError("--gpu is for pycaffe; --onnx runs on ONNX "
                        "Runtime's CPU provider")
    check_output_dir(args.out)
    paths = scoring.iter_images(args.images)
    sizes = [scoring.image_size(path) for path in paths]  # all readable
    if args.classes:
        ds.read_class_names(args.classes)
    if args.onnx:
        from hrenet.onnx_run import OnnxModel
        model = OnnxModel(args.onnx, mean=args.mean, scale=args.scale,
                          blob=args.blob,
                          crf_params=crf_params(args) if args.crf else None)
        if model.tail is not None or args.crf:
            inference.set_mode(None)
    else:
        inference.set_mode(args.gpu)
        model = inference.load_model(
            args.model, args.weights, crf=args.crf,
            crf_params=crf_params(args), mean=args.mean, scale=args.scale,
            blob=args.blob, warn=warn)
    k = model.num_classes
    if args.classes:
        names = ds.read_class_names(args.classes)
        if len(names) != k:
            raise ToolError(f"{args.classes}: {len(names)} class names but "
                            f"the net outputs {k} classes; give a file with "
                            f"{k} names")
    else:
        names = visual.default_class_names(k)
    fmt = args.palette
    if fmt == "auto":
        fmt = "stanford-bg" if k == 8 and not args.classes else "voc"
    palette = visual.palette_for(fmt, k)
    per_pixel = model.bytes_per_pixel()
    for path, (h, w) in zip(paths, sizes):
        full = gigabytes(per_pixel * h * w)
        if args.max_side and max(h, w) > args.max_side:
            warn(f"{path} is {h}x{w}: the net runs on it scaled to a longer "
                 f"side of {args.max_side} pixels (--max-side) and the "
                 f"prediction is upsampled; at full size its blobs alone "
                 f"would need about {full} (--max-side 0)")
        elif per_pixel * h * w > 2 ** 30:
            warn(f"{path} is {h}x{w}: the net's blobs alone need about "
                 f"{full} at this size; --max-side N runs it smaller")
    out = os.path.abspath(args.out)
    stems = {}
    results = []
    with StagedOutput(last=("infer.json",)) as stage:
        tmp = stage.folder(out)
        for path in tqdm(paths, unit="img", desc="infer", disable=args.quiet,
                         dynamic_ncols=True, leave=False):
            image = scoring.read_image(path)
            label, seconds, ran = model.predict_label(image, args.max_side)
            stem = os.path.splitext(os.path.basename(path))[0]
            n = stems.get(stem, 0)
            stems[stem] = n + 1
            if n:
                stem = f"{stem}_{n}"
            visual.save_palette_png(os.path.join(tmp, stem + ".png"), label,
                                    palette)
            over = visual.overlay(image[..., ::-1], label, palette, names,
                                  alpha=args.alpha, ignore_label=None)
            Image.fromarray(over).save(
                os.path.join(tmp, stem + "_overlay.png"), format="PNG")
            counts = np.bincount(label.ravel(), minlength=k)
            results.append({
                "image": os.path.abspath(path),
                "prediction": os.path.join(out, stem + ".png"),
                "overlay": os.path.join(out, stem + "_overlay.png"),
                "height": int(label.shape[0]),
                "width": int(label.shape[1]),
                "net_height": int(ran[0]), "net_width": int(ran[1]),
                "forward_ms": 1000.0 * seconds,
                "classes": {names[c]: int(counts[c])
                            for c in np.nonzero(counts)[0]},
            })
        if args.onnx:  # did a DenseCRF run: the net's own, or --crf's
            ran_crf = model.tail is not None or model.extra_crf is not None
        else:
            ran_crf = bool(inference.crf_layers(model.param))
        write_json(os.path.join(tmp, "infer.json"), {
            "model": os.path.abspath(args.onnx or args.model),
            "weights": None if args.onnx else os.path.abspath(args.weights),
            "runtime": "onnxruntime" if args.onnx else "caffe",
            "crf": ran_crf, "blob": model.blob, "mean": model.mean,
            "scale": model.scale, "max_side": args.max_side,
            "classes": names, "images": results})
    if not args.quiet:
        ms = sum(r["forward_ms"] for r in results) / len(results)
        print(f"{len(results)} images, net {ms:.1f} ms per image; wrote "
              f"{args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
