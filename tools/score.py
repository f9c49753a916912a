#!/usr/bin/env python3
"""Score a deploy net on a split: pixel accuracy, mean class accuracy,
per-class IoU, mean IoU and frequency-weighted IoU.

Runs the net on every image at its original size, accumulates one confusion
matrix (ground truth on rows, label 255 ignored, predictions compared at the
label's full resolution) and writes OUT/score.json, OUT/score.md (the
paper's Table 7 layout plus the summary scores) and OUT/confusion.png, with
the mean forward time per image. A class absent from both the ground truth
and the predictions has IoU n/a and does not count in the means
(python/hrenet/metrics.py).

Images come from the LMDBs that tools/build_lmdb.py wrote (--source) or from
a dataset root in its published layout (--format/--root/--split or --list,
as build_lmdb.py takes them).

Examples:
  score.py --model prototxt/hrenet/d/deploy.prototxt --weights d.caffemodel \\
      --source lmdb/voc_val --out runs/score_d
  score.py --model deploy.prototxt --weights x.caffemodel --crf \\
      --format voc --root VOCdevkit/VOC2012 --split val --out runs/score_crf \\
      --save-png runs/score_crf/pred
"""
import os
import sys

from hrenet.cli import (add_classes, add_crf, add_dataset, add_device,
                        add_model, add_out, add_quiet, add_transform, cli,
                        crf_params, parser, positive_int, warn)
from hrenet import datasets as ds
from hrenet import experiment, inference, metrics, scoring, visual
from hrenet.files import StagedOutput, check_output_dir
from hrenet.inference import ToolError


def parse_args(argv=None):
    p = parser(__doc__)
    add_model(p)
    add_out(p, "output directory (score.json, score.md, confusion.png)")
    src = p.add_argument_group("split (one of --source or --format/--root)")
    src.add_argument("--source", default=None, metavar="DIR",
                     help="LMDB directory written by tools/build_lmdb.py")
    add_dataset(p, group=src, split_help="split name as for build_lmdb.py "
                "(default: voc val, sbd val, stanford-bg and folder all)")
    add_classes(p, "default: meta.json's, the format's, or numbers")
    p.add_argument("--save-png", default=None, metavar="DIR",
                   help="write each prediction as a palette PNG here (VOC "
                   "palette for VOC, the dataset's own colours otherwise)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="score only the first N images (default: all)")
    p.add_argument("--title", default=None,
                   help="row name in the Markdown table (default: the "
                   "weights file's name)")
    add_quiet(p, "no progress bar or summary")
    add_device(p)
    add_transform(p)
    add_crf(p)
    return p.parse_args(argv)


DEFAULT_SPLIT = {"voc": "val", "sbd": "val", "stanford-bg": "all",
                 "folder": "all", "coco": None}


def make_split(args, num_classes):
    """The split and its format from --source or --format/--root."""
    if args.source and (args.format or args.root):
        raise ToolError("give either --source or --format/--root, not both")
    if args.source:
        return scoring.lmdb_split(args.source)
    if not (args.format and args.root):
        raise ToolError("no split: give --source LMDB_DIR or --format and "
                        "--root")
    names = ds.read_list(args.list) if args.list else None
    split = args.split or DEFAULT_SPLIT[args.format]
    fmt = args.format
    if fmt == "voc":
        samples = ds.voc_samples(args.root, split, names)
    elif fmt == "sbd":
        samples = ds.sbd_samples(args.root, split, names, args.voc_root)
    elif fmt in ("stanford-bg", "folder"):
        if names is None and split != "all":
            raise ToolError(f"--format {fmt} has no split {split!r}: use "
                            "--split all or --list FILE")
        samples = (ds.stanford_bg_samples if fmt == "stanford-bg"
                   else ds.folder_samples)(args.root, names)
    else:
        if not args.annotations:
            raise ToolError("--format coco needs --annotations JSON")
        samples = ds.coco_samples(args.root, args.annotations)
        if names is not None:
            keep = set(names)
            samples = [s for s in samples if s.name in keep]
    if not samples:
        raise ToolError(f"{args.root}: the split holds no images")
    return scoring.dataset_split(samples, num_classes, fmt, args.root)


def class_names(args, split, num_classes):
    if args.classes:
        names = ds.read_class_names(args.classes)
        where = args.classes
    elif split.class_names:
        names, where = list(split.class_names), f"{split.where}/meta.json"
    else:
        return visual.default_class_names(num_classes, split.format)
    if len(names) != num_classes:
        raise ToolError(f"{where}: {len(names)} class names but the net "
                        f"outputs {num_classes} classes")
    return names


@cli(interrupted="nothing was written to --out or --save-png")
def main(args):
    check_output_dir(args.out)
    if args.save_png:
        check_output_dir(args.save_png, "--save-png")
    if args.classes:
        ds.read_class_names(args.classes)
    if args.source and (args.format or args.root):
        raise ToolError("give either --source or --format/--root, not both")
    if args.source:  # a missing or truncated LMDB stops before the net loads
        scoring.lmdb_split(args.source)
    elif not (args.format and args.root):
        raise ToolError("no split: give --source LMDB_DIR or --format and "
                        "--root")
    inference.set_mode(args.gpu)
    model = inference.load_model(
        args.model, args.weights, crf=args.crf, crf_params=crf_params(args),
        mean=args.mean, scale=args.scale, blob=args.blob, warn=warn)
    k = model.num_classes
    split = make_split(args, k)
    names = class_names(args, split, k)
    palette = visual.palette_for(split.format, k)
    with StagedOutput(last=("score.json",)) as stage:
        out = stage.folder(args.out)
        png = stage.folder(args.save_png) if args.save_png else None
        result = scoring.score_split(model, split, k, save_png=png,
                                     palette=palette,
                                     progress=not args.quiet,
                                     limit=args.limit)
        title = args.title or os.path.basename(args.weights)
        result.update({
            "model": os.path.abspath(args.model),
            "weights": os.path.abspath(args.weights),
            "split": os.path.abspath(args.source or args.root),
            "crf": bool(args.crf), "blob": model.blob, "classes": names,
            "mean": model.mean, "scale": model.scale,
            "device": "cpu" if args.gpu is None else f"gpu{args.gpu}",
        })
        if args.save_png:
            result["save_png"] = os.path.abspath(args.save_png)
        experiment.write_score(out, result, names, title)
    if not args.quiet:
        print(f"{result['images']} images: mean IoU "
              f"{metrics.pct(result['miou'])}%, pixel acc. "
              f"{metrics.pct(result['pixel_acc'])}%, mean class acc. "
              f"{metrics.pct(result['class_acc'])}%, f.w. IoU "
              f"{metrics.pct(result['fwiou'])}%; net "
              f"{result['forward_ms']:.1f} ms/image; wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
