#!/usr/bin/env python3
"""Generate the synthetic context dataset (see python/hrenet/synthetic.py).

1-3 objects per image share one texture; their class (1..K) is given only by
the colour of a band along the top or bottom edge, far from them. Background
is 0, a 1-pixel ring around objects is 255 (ignore). --cue, --objects,
--stripe and --noise vary it; --variant NAME takes a member of the family
that bench/context_study.py runs the main job over (size, classes and
style; any of those flags given as well overrides it). Written in the real
layouts so that tools/build_lmdb.py reads it like the real data:

  voc:          JPEGImages/*.jpg, SegmentationClass/*.png (palette, 255 void),
                ImageSets/Segmentation/{train,val,trainval}.txt (80/20)
  stanford-bg:  images/*.jpg, labels/*.regions.txt (-1 = unknown)

Both also get classes.txt (K+1 names) for build_lmdb.py --classes.

Example:
  make_synthetic.py --out data/synthetic_voc --format voc --num 200
  build_lmdb.py --format voc --root data/synthetic_voc \\
      --classes data/synthetic_voc/classes.txt --split train --shuffle \\
      --out lmdb/syn_train
"""
import dataclasses
import os
import shutil
import sys

from hrenet.cli import (add_count, add_out, add_overwrite, add_quiet, add_seed,
                        add_size, cli, float_range, int_range, parser)
from hrenet import synthetic
from hrenet.files import check_output_dir
from hrenet.inference import ToolError


def parse_args(argv=None):
    p = parser(__doc__)
    add_out(p)
    p.add_argument("--format", default="voc", choices=("voc", "stanford-bg"),
                   help="layout to write (default: %(default)s)")
    add_count(p, "--num", 200, "number of images")
    p.add_argument("--variant", choices=sorted(synthetic.VARIANTS),
                   help="a member of the family: its size, classes and style")
    add_size(p, None, None, 32, 4096,
             default="the variant's, else 96 x 128 (height x width)")
    p.add_argument("--classes", type=int_range(1, 254),
                   help="object classes K, 1-254; labels are 0..K "
                   "(default: the variant's, else 4)")
    p.add_argument("--cue", choices=synthetic.CUES,
                   help="where the class colour is: band (top or bottom), "
                   "side (any edge), corner, ring (a frame), blob (a disc "
                   "near an edge) (default: the variant's, else band)")
    p.add_argument("--objects", type=int_range(1, 12), nargs=2,
                   metavar=("MIN", "MAX"),
                   help="objects per image (default: the variant's, else "
                   "1 3)")
    p.add_argument("--stripe", type=int_range(1, 16),
                   help="width of the texture's stripes in pixels "
                   "(default: the variant's, else 3)")
    p.add_argument("--noise", type=float_range(
        "a number from 0 to 64", lambda v: 0 <= v <= 64),
        help="background noise, standard deviation in grey levels "
        "(default: the variant's, else 12)")
    add_seed(p)
    add_overwrite(p)
    add_quiet(p)
    args = p.parse_args(argv)
    v = synthetic.VARIANTS[args.variant] if args.variant else \
        synthetic.Variant(96, 128, 4)
    style = {k: getattr(args, k) for k in ("cue", "stripe", "noise")
             if getattr(args, k) is not None}
    if args.objects is not None:
        if args.objects[0] > args.objects[1]:
            p.error(f"--objects {args.objects[0]} {args.objects[1]}: MIN "
                    "is more than MAX")
        style["objects"] = tuple(args.objects)
    args.style = dataclasses.replace(v.style, **style)
    for k in ("height", "width", "classes"):
        if getattr(args, k) is None:
            setattr(args, k, getattr(v, k))
    return args


@cli(interrupted="nothing was written to --out")
def main(args):
    out = check_output_dir(args.out)
    if os.path.exists(out) and not args.overwrite:
        raise ToolError(f"{out} already exists; pass --overwrite to replace "
                        "it")
    tmp = f"{out}.tmp-{os.getpid()}"
    from tqdm import tqdm
    bar = tqdm(total=args.num, desc="make_synthetic", unit="img",
               disable=args.quiet, dynamic_ncols=True)

    def samples():
        for s in synthetic.generate(args.num, args.height, args.width,
                                    args.classes, args.seed, args.style):
            bar.update()
            yield s
    try:
        os.makedirs(tmp)
        write = synthetic.write_voc if args.format == "voc" else \
            synthetic.write_stanford_bg
        write(tmp, samples(), args.classes)
        bar.close()
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not args.quiet:
        st = args.style
        print(f"wrote {args.num} {args.height}x{args.width} images, "
              f"{args.classes} object classes, cue {st.cue}, "
              f"{st.objects[0]}-{st.objects[1]} objects, layout "
              f"{args.format}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
