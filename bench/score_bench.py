#!/usr/bin/env python3
"""Where tools/score.py spends its time: the net against the bookkeeping.

Writes the synthetic context dataset (tools/make_synthetic.py, --num images
of --height x --width), builds its LMDB, writes an N-ReNet-like deploy net
(ReNet groups, each a vertical then a horizontal bidirectional LSTM layer;
the first on 2x2 patches; a 1x1 convolution to the classes; bilinear
upsampling x2; a crop to the input) with filler weights, and scores the
split with hrenet.scoring.score_split, writing palette PNGs as
`score.py --save-png` does. Reports, per image: the net (preprocessing and
forward), and the bookkeeping: LMDB read and decode, argmax, confusion
update, PNG writing and the loop itself. Prints a Markdown table; --json
writes the numbers.
"""
import json
import os
import platform
import sys
import tempfile

from hrenet.cli import add_count, add_size, parser

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def parse_args(argv=None):
    p = parser(__doc__)
    add_size(p, 96, 128)
    add_count(p, "--num", 50, "images")
    p.add_argument("--classes", type=int, default=4,
                   help="object classes K, labels 0..K (default: "
                   "%(default)s)")
    p.add_argument("--units", type=int, nargs="+", default=[50, 100, 100],
                   help="hidden units per ReNet group (default: "
                   "%(default)s)")
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args(argv)


def deploy_text(height, width, k, units):
    layers = [f'''name: "nrenet_like"
layer {{ name: "data" type: "Input" top: "data"
  input_param {{ shape {{ dim: 1 dim: 3 dim: {height} dim: {width} }} }}
  transform_param {{ mean_value: 104 mean_value: 117 mean_value: 123
    scale: 0.0078125 }} }}''']
    bottom = "data"
    for g, d in enumerate(units, 1):
        patch = 2 if g == 1 else 1
        for direction in ("VERTICAL", "HORIZONTAL"):
            top = f"renet{g}_{direction[0].lower()}"
            p = f"patch_h: {patch} patch_w: {patch} " \
                if direction == "VERTICAL" else ""
            layers.append(
                f'layer {{ name: "{top}" type: "ReNet" bottom: "{bottom}" '
                f'top: "{top}" renet_param {{ num_output: {d} '
                f'direction: {direction} {p}}} }}')
            bottom = top
    layers.append(
        f'layer {{ name: "score_lr" type: "Convolution" bottom: "{bottom}" '
        f'top: "score_lr" convolution_param {{ num_output: {k} '
        'kernel_size: 1 weight_filler { type: "xavier" } } }')
    layers.append(
        'layer { name: "upscore" type: "Deconvolution" bottom: "score_lr" '
        f'top: "upscore" convolution_param {{ num_output: {k} group: {k} '
        'kernel_size: 4 stride: 2 pad: 1 bias_term: false '
        'weight_filler { type: "bilinear" } } }')
    layers.append(
        'layer { name: "score" type: "Crop" bottom: "upscore" '
        'bottom: "data" top: "score" crop_param { axis: 2 offset: 0 } }')
    return "\n".join(layers) + "\n"


def run(args):
    os.environ.setdefault("GLOG_minloglevel", "2")
    import importlib.util

    def tool(name):
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(ROOT, "tools", name + ".py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    from hrenet import inference, scoring
    caffe = inference.import_caffe()
    caffe.set_mode_cpu()
    k = args.classes + 1
    with tempfile.TemporaryDirectory(prefix="score_bench_") as tmp:
        syn, lmdb = os.path.join(tmp, "syn"), os.path.join(tmp, "lmdb")
        make = tool("make_synthetic")
        assert make.main(make.parse_args(
            ["--out", syn, "--num", str(args.num), "--height",
             str(args.height), "--width", str(args.width), "--classes",
             str(args.classes), "--quiet"])) == 0
        build = tool("build_lmdb")
        assert build.main(build.parse_args(
            ["--format", "voc", "--root", syn, "--split", "trainval",
             "--classes", os.path.join(syn, "classes.txt"), "--out", lmdb,
             "--quiet"])) == 0
        deploy = os.path.join(tmp, "deploy.prototxt")
        with open(deploy, "w") as f:
            f.write(deploy_text(args.height, args.width, k, args.units))
        weights = os.path.join(tmp, "w.caffemodel")
        caffe.set_random_seed(1)
        caffe.Net(deploy, caffe.TEST).save(weights)
        model = inference.load_model(deploy, weights)
        warm = scoring.lmdb_split(lmdb)
        scoring.score_split(model, warm, k, limit=2)  # warm-up
        r = scoring.score_split(model, scoring.lmdb_split(lmdb), k,
                                save_png=os.path.join(tmp, "png"),
                                progress=True)
    parts = r["parts_ms"]
    loop = r["total_ms"] - sum(parts.values())
    rows = [("net (preprocessing + forward)", parts["forward"]),
            ("LMDB read + JPEG/PNG decode", parts["decode"]),
            ("argmax", parts["argmax"]),
            ("confusion update", parts["confusion"]),
            ("palette PNG writing", parts["png"]),
            ("loop and progress bar", loop)]
    print(f"{r['images']} synthetic {args.height}x{args.width} images, "
          f"ReNet groups {args.units}, {k} classes, CPU "
          f"({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs)\n")
    print("| per image | ms | share |\n|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {100 * ms / r['total_ms']:.1f}% |")
    print(f"| total | {r['total_ms']:.2f} | 100% |")
    print(f"\nbookkeeping (all but the net): {r['bookkeeping_ms']:.2f} ms, "
          f"{100 * r['bookkeeping_fraction']:.1f}% of the total")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "parts_ms": parts,
                       "loop_ms": loop, "total_ms": r["total_ms"],
                       "bookkeeping_ms": r["bookkeeping_ms"],
                       "bookkeeping_fraction": r["bookkeeping_fraction"],
                       "images": r["images"]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(run(parse_args()))
