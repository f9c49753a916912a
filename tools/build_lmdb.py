#!/usr/bin/env python3
"""Build the image/label LMDB pair that the SegData layer reads.

Reads a dataset in its published layout (stanford-bg, voc, sbd, coco or a
generic folder), validates every image/label pair (readable, same size, label
values in [0, num_classes) or 255) and writes OUT/image_lmdb and
OUT/label_lmdb (identical keys %08d_<name>, caffe Datums holding the encoded
image and a lossless PNG label) plus OUT/meta.json. The build is atomic: it
writes OUT.tmp-<pid> and renames it when complete. A bad pair stops the build
with a message naming the file; --skip-bad skips and lists bad pairs instead.

Examples:
  build_lmdb.py --format voc --root VOCdevkit/VOC2012 --split val \\
      --out lmdb/voc_val
  build_lmdb.py --format sbd --root benchmark_RELEASE --split aug \\
      --voc-root VOCdevkit/VOC2012 --shuffle --out lmdb/voc_aug
  build_lmdb.py --format stanford-bg --root iccv09Data \\
      --list data/stanford_bg/folds/fold0_train.txt --shuffle \\
      --out lmdb/sbg_f0_train
  build_lmdb.py --format coco --root train2014 \\
      --annotations annotations/instances_train2014.json --out lmdb/coco_train
"""
import os
import sys

from hrenet.cli import (add_classes, add_dataset, add_out, add_overwrite,
                        add_quiet, add_seed, cli, int_range, nonneg_int,
                        parser)
from hrenet import datasets as ds
from hrenet import lmdb_io
from hrenet.files import check_output_dir
from hrenet.inference import ToolError

DEFAULT_SPLIT = {"stanford-bg": "all", "voc": "train", "sbd": "train",
                 "coco": None, "folder": "all"}
DEFAULT_CLASSES = {"stanford-bg": ds.STANFORD_BG_CLASSES,
                   "voc": ds.VOC_CLASSES, "sbd": ds.VOC_CLASSES,
                   "coco": ds.VOC_CLASSES, "folder": None}


def parse_args(argv=None):
    p = parser(__doc__)
    add_dataset(p, required=True, split_help="split name: voc "
                "train|val|trainval, sbd train|val|aug; stanford-bg and "
                "folder: all (default: %s)" % ", ".join(
                    f"{k} {v}" for k, v in DEFAULT_SPLIT.items() if v),
                root_help="dataset directory (coco: the image directory)")
    add_out(p, "output directory (image_lmdb, label_lmdb, meta.json)")
    add_classes(p, "sets the number of classes; default: the format's "
                "own classes")
    p.add_argument("--num-classes", type=int_range(1, 255), default=None,
                   help="number of classes when there is no --classes file "
                   "(1-255: label values 0..N-1, 255 = ignore; required for "
                   "folder; default: %(default)s)")
    p.add_argument("--min-foreground", type=nonneg_int, default=None,
                   help="keep only images with more than this many pixels of "
                   "classes 1..K-1 (default: coco %d, others off)"
                   % ds.COCO_MIN_VOC_PIXELS)
    p.add_argument("--shuffle", action="store_true",
                   help="write the pairs in a random order (default: off)")
    add_seed(p, "seed of --shuffle")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad pairs and list them in meta.json instead "
                   "of stopping (default: off)")
    add_overwrite(p)
    add_quiet(p, "no progress bar or summary")
    return p.parse_args(argv)


def class_names_for(args):
    if args.classes:
        names = ds.read_class_names(args.classes)
        if args.num_classes is not None and args.num_classes != len(names):
            raise ToolError(f"--num-classes {args.num_classes} but "
                            f"{args.classes} has {len(names)} names; give "
                            "one of the two")
        if len(names) > 255:
            raise ToolError(f"{args.classes}: {len(names)} class names; "
                            "labels hold at most 255 classes (0..254, 255 "
                            "= ignore)")
        return names
    names = DEFAULT_CLASSES[args.format]
    if args.num_classes is not None:
        if names is not None and args.num_classes != len(names):
            names = None
        return names or [str(i) for i in range(args.num_classes)]
    if names is None:
        raise ToolError(f"--format {args.format} needs --classes FILE or "
                        "--num-classes N")
    return list(names)


def samples_for(args):
    names = ds.read_list(args.list) if args.list else None
    split = args.split or DEFAULT_SPLIT[args.format]
    if args.format in ("stanford-bg", "folder") and names is None \
            and split != "all":
        raise ToolError(f"--format {args.format} has no split {split!r}: "
                        "use --split all or --list FILE")
    if args.format == "stanford-bg":
        return ds.stanford_bg_samples(args.root, names)
    if args.format == "voc":
        return ds.voc_samples(args.root, split, names)
    if args.format == "sbd":
        return ds.sbd_samples(args.root, split, names, args.voc_root)
    if args.format == "folder":
        return ds.folder_samples(args.root, names)
    if args.annotations is None:
        raise ToolError("--format coco needs --annotations JSON")
    samples = ds.coco_samples(args.root, args.annotations)
    if names is not None:
        keep = set(names)
        samples = [s for s in samples if s.name in keep]
    return samples


@cli(interrupted="nothing was written to --out")
def main(args):
    check_output_dir(args.out)
    names = class_names_for(args)
    samples = samples_for(args)
    min_fg = args.min_foreground
    if min_fg is None and args.format == "coco":
        min_fg = ds.COCO_MIN_VOC_PIXELS
    try:
        meta = lmdb_io.build_dataset(
            samples, args.out, len(names), names, args.format,
            shuffle=args.shuffle, seed=args.seed, skip_bad=args.skip_bad,
            overwrite=args.overwrite, min_foreground=min_fg,
            progress=not args.quiet,
            extra_meta={"source": os.path.abspath(args.root),
                        "split": args.list or args.split
                        or DEFAULT_SPLIT[args.format]})
    except lmdb_io.BadSample as e:
        raise ToolError(f"{e.path}: {e.problem}. Fix or remove this file, or "
                        "pass --skip-bad to skip bad pairs (they are listed "
                        f"in meta.json); nothing was written to {args.out}.")
    except FileExistsError as e:
        raise ToolError(str(e)) from e
    if not args.quiet:
        print(f"wrote {args.out}")
        print(lmdb_io.format_summary(meta))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
