#!/usr/bin/env python3
"""Write the paper's nets and solvers (python/hrenet/nets.py) as prototxts.

Writes <out>/<family>/<variant>/{train_val,deploy,solver}.prototxt and
variant.json for every variant (or the selected ones) and the headline solver
<out>/hrenet_solver.prototxt. The committed prototxt/ folder is exactly what
this writes with the defaults; a test fails if the two differ.

Examples:
  make_nets.py                         # regenerate prototxt/
  make_nets.py --list                  # families, variants, paper figures
  make_nets.py --family hrenet --variant d g --out /tmp/nets
  make_nets.py --check                 # exit 1 if prototxt/ is stale
"""
import os
import sys
import tempfile

from hrenet.cli import USAGE_ERROR, add_switch, cli, parser
from hrenet import nets
from hrenet.files import check_output_dir
from hrenet.inference import ToolError

ROOT = os.path.normpath(os.path.join(os.path.dirname(
    os.path.abspath(__file__)), os.pardir))


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--out", default=os.path.join(ROOT, "prototxt"),
                   help="output folder (default: the repository's prototxt/)")
    p.add_argument("--family", default=None,
                   help="only this family (%s; default: all)"
                   % ", ".join(nets.FAMILIES))
    p.add_argument("--variant", nargs="+", default=None,
                   help="only these variants of --family (default: all)")
    add_switch(p, "--list", "list the variants and exit")
    add_switch(p, "--check", "compare --out with a fresh generation; exit 1 "
               "and list the differing files if they differ")
    return p.parse_args(argv)


def selection(args):
    """Set of (family, variant) to write, or None for all."""
    if args.variant and not args.family:
        raise ValueError("--variant needs --family")
    if not args.family:
        return None
    if args.family not in nets.FAMILIES:
        raise ValueError("--family %s: no such family; valid: %s"
                         % (args.family, ", ".join(nets.FAMILIES)))
    names = args.variant or [v for f, v in nets.VARIANTS if f == args.family]
    for name in names:
        try:
            nets.variant(args.family, name)
        except ValueError as e:  # it names the valid ones
            raise ValueError("--variant %s: %s" % (name, e)) from e
    return {(args.family, name) for name in names}


def list_variants():
    for v in nets.VARIANTS.values():
        paper = ", ".join("%s %s" % kv for kv in sorted(v.paper.items()))
        print("%-7s %-16s %-13s %-22s %s" % (
            v.family, v.name, v.study, paper or "-", v.description))


def compare(out):
    """Paths under ``out`` that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        nets.write_all(tmp)
        stale = []
        for dirpath, _, files in os.walk(tmp):
            for name in files:
                fresh = os.path.join(dirpath, name)
                rel = os.path.relpath(fresh, tmp)
                old = os.path.join(out, rel)
                if not os.path.exists(old) or \
                        open(old).read() != open(fresh).read():
                    stale.append(rel)
        return sorted(stale)


@cli(interrupted="the files written so far are complete; run the "
     "command again for the rest")
def main(args):
    if args.list:
        list_variants()
        return 0
    try:
        selected = selection(args)
    except ValueError as e:  # a name that is not a family or variant
        print("error: %s" % e, file=sys.stderr)
        return USAGE_ERROR
    if args.check:
        out = os.path.abspath(args.out)
        if not os.path.isdir(out):
            raise ToolError("--out %s: no such folder to check; run "
                            "tools/make_nets.py to write it" % args.out)
        stale = compare(out)
        for rel in stale:
            print("stale or missing: %s" % os.path.join(args.out, rel))
        if stale:
            raise ToolError("%d generated files differ; run "
                            "tools/make_nets.py" % len(stale))
        print("%s is up to date" % args.out)
        return 0
    out = check_output_dir(args.out)
    written = nets.write_all(out, selected)
    print("wrote %d files under %s" % (len(written), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
