#!/usr/bin/env python3
"""The first k channels of named blobs for one image, as grayscale PNG grids
(the paper's Figure 2: renet1 (vertical) and renet3 (horizontal) of
N-ReNet, whose blobs are renet1_v and renet3_h).

Runs the deploy net on the image at its own size and writes one
OUT/<blob>.png per blob: channels laid out row-major, each min-max
normalised on its own, separated by white lines; plus OUT/features.json
(shapes and value ranges). A blob the net lacks is an error that lists the
blobs it has.

Example:
  visualize_features.py --model prototxt/nrenet/fold1/deploy.prototxt \\
      --weights nrenet.caffemodel --blobs renet1_v renet3_h --k 16 \\
      image.jpg --out runs/figure2
"""
import os
import sys

from hrenet.cli import (add_device, add_model, add_out, add_transform, cli,
                        int_range, parser, positive_int, warn)
from hrenet import inference, scoring, visual
from hrenet.files import StagedOutput, check_output_dir
from hrenet.files import write_json
from hrenet.inference import ToolError


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("image", help="input image")
    add_model(p)
    p.add_argument("--blobs", nargs="+", required=True,
                   help="blob names, e.g. renet1_v renet3_h")
    p.add_argument("--k", type=positive_int, default=16,
                   help="channels per blob (default: %(default)s)")
    p.add_argument("--cols", type=positive_int, default=None,
                   help="grid columns (default: ceil(sqrt(k)))")
    p.add_argument("--zoom", type=int_range(1, 64), default=1,
                   help="enlarge each map this many times, 1-64 (default: "
                   "%(default)s)")
    add_out(p)
    add_transform(p, blob=False)
    add_device(p)
    return p.parse_args(argv)


@cli(interrupted="nothing was written to --out")
def main(args):
    from PIL import Image
    check_output_dir(args.out)
    image = scoring.read_image(args.image)
    inference.set_mode(args.gpu)
    model = inference.load_model(args.model, args.weights, mean=args.mean,
                                 scale=args.scale, warn=warn)
    net = model.net
    missing = [b for b in args.blobs if b not in net.blobs]
    if missing:
        raise ToolError(f"--blobs: {args.model} has no blob "
                        f"{', '.join(missing)}; the net has: "
                        f"{', '.join(inference.blob_names(net))}")
    for name in args.blobs:
        if net.blobs[name].data.ndim != 4:
            raise ToolError(f"--blobs {name}: shape "
                            f"{net.blobs[name].data.shape}, not N x C x H x "
                            "W; give a blob of feature maps")
    model.forward(image)
    info = {"image": os.path.abspath(args.image),
            "model": os.path.abspath(args.model), "blobs": {}}
    with StagedOutput(last=("features.json",)) as stage:
        out = stage.folder(args.out)
        for name in args.blobs:
            feats = net.blobs[name].data[0]
            grid = visual.feature_grid(feats, args.k, args.cols,
                                       zoom=args.zoom)
            png = name.replace("/", "_") + ".png"
            Image.fromarray(grid, "L").save(os.path.join(out, png),
                                            format="PNG")
            k = min(args.k, feats.shape[0])
            info["blobs"][name] = {
                "shape": list(feats.shape), "channels_shown": k,
                "png": os.path.join(os.path.abspath(args.out), png),
                "min": [float(feats[c].min()) for c in range(k)],
                "max": [float(feats[c].max()) for c in range(k)]}
        write_json(os.path.join(out, "features.json"), info)
    print(f"wrote {', '.join(args.blobs)} grids to {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
