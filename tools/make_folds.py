#!/usr/bin/env python3
"""Write the Stanford Background 5-fold cross-validation lists.

The paper splits the 715 images randomly and evenly into 5 sets. This lists
iccv09Data/images/*.jpg, permutes the names with --seed and writes
fold{i}_train.txt / fold{i}_val.txt (fold i validates on part i). Use them
with build_lmdb.py --format stanford-bg --list OUT/fold0_train.txt.

Example:
  make_folds.py --root iccv09Data --out data/stanford_bg/folds
"""
import os
import sys

from hrenet.cli import add_seed, cli, int_range, parser
from hrenet import datasets as ds
from hrenet.files import check_output_dir
from hrenet.inference import ToolError

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           os.pardir, "data", "stanford_bg", "folds")


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--root", required=True,
                   help="the iccv09Data directory (holds images/)")
    p.add_argument("--out", default=os.path.normpath(DEFAULT_OUT),
                   help="directory of the fold lists (default: %(default)s)")
    p.add_argument("--folds", type=int_range(2), default=5,
                   help="number of folds (default: %(default)s)")
    add_seed(p, "permutation seed")
    return p.parse_args(argv)


@cli(interrupted="the lists written so far are complete; run the command "
     "again")
def main(args):
    check_output_dir(args.out)
    names = [s.name for s in ds.stanford_bg_samples(args.root)]
    if len(names) < args.folds:
        raise ToolError(f"--folds {args.folds}: {args.root} holds only "
                        f"{len(names)} images; give at most {len(names)}")
    folds = ds.make_folds(names, args.folds, args.seed)
    paths = ds.write_folds(args.out, folds)
    sizes = ", ".join(str(len(val)) for _, val in folds)
    print(f"{len(names)} images in {args.folds} folds (val sizes {sizes}); "
          f"wrote {len(paths)} lists to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
