#!/usr/bin/env python3
"""Concatenate LMDB datasets written by build_lmdb.py into one.

The SegData layer reads one folder; the paper's COCO setting trains on VOC12
and COCO train+val together. This copies the records of every SOURCE (no
decoding), renumbers the keys, optionally shuffles them, and writes
OUT/{image_lmdb,label_lmdb,meta.json} atomically. All sources must share one
class list (build COCO with its VOC mapping, the default of build_lmdb.py).

Example:
  merge_lmdb.py --shuffle --out data/coco_voc/lmdb/trainval \\
      data/coco/lmdb/train2014 data/coco/lmdb/val2014 \\
      data/voc/lmdb/trainval_aug
"""
import sys

from hrenet.cli import add_out, add_overwrite, add_seed, cli, parser
from hrenet import lmdb_io
from hrenet.files import check_output_dir


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="dataset folders written by build_lmdb.py")
    add_out(p, "output dataset folder")
    p.add_argument("--shuffle", action="store_true",
                   help="write the records in a random order (default: "
                   "off: the sources one after the other)")
    add_seed(p, "seed of --shuffle")
    add_overwrite(p)
    return p.parse_args(argv)


@cli(interrupted="nothing was written to --out")
def main(args):
    check_output_dir(args.out)
    meta = lmdb_io.merge_datasets(args.sources, args.out, args.shuffle,
                                  args.seed, args.overwrite)
    print(f"wrote {args.out}: {meta['count']} images from "
          f"{len(args.sources)} datasets")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
