#!/usr/bin/env python3
"""Generate the synthetic context dataset (see python/hrenet/synthetic.py).

1-3 objects per image share one texture; their class (1..K) is given only by
the colour of a band along the top or bottom edge, far from them. Background
is 0, a 1-pixel ring around objects is 255 (ignore). Written in the real
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
import os
import shutil
import sys

from hrenet.cli import (add_count, add_out, add_overwrite, add_quiet, add_seed,
                        add_size, cli, int_range, parser)
from hrenet import synthetic
from hrenet.files import check_output_dir
from hrenet.inference import ToolError

#: image sides: objects must fit far from the band (synthetic.make_sample)


def parse_args(argv=None):
    p = parser(__doc__)
    add_out(p)
    p.add_argument("--format", default="voc", choices=("voc", "stanford-bg"),
                   help="layout to write (default: %(default)s)")
    add_count(p, "--num", 200, "number of images")
    add_size(p, 96, 128, 32, 4096)
    p.add_argument("--classes", type=int_range(1, 254), default=4,
                   help="object classes K, 1-254; labels are 0..K "
                   "(default: %(default)s)")
    add_seed(p)
    add_overwrite(p)
    add_quiet(p)
    return p.parse_args(argv)


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
                                    args.classes, args.seed):
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
        print(f"wrote {args.num} {args.height}x{args.width} images, "
              f"{args.classes} object classes, layout {args.format}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
