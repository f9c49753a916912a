#!/usr/bin/env python3
"""Export every committed deploy net (prototxt/<family>/<variant>/
deploy.prototxt) to ONNX and check it against pycaffe, with random weights.

For each net: its parameters filled by hrenet.fixtures.randomize_weights
(activations at a trained net's scale; --fillers keeps the prototxt's own
fillers instead), the export at --height x --width (and, with --dynamic, a
dynamic export checked at that size and a second one), then
hrenet.onnx_export.check_parity on uniform noise and a photograph. Prints
one Markdown row per net (worst relative difference, worst label
agreement, differing labels over all inputs and how many of them are ties
within the score tolerance, pass) and writes the records to --json. Exit
status 1 if a net fails.
"""
import glob
import os
import platform
import sys
import time

from hrenet.cli import add_seed, add_size, parser

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("nets", nargs="*", metavar="FAMILY/VARIANT",
                   help="nets to check (default: every committed one)")
    add_size(p, 64, 80)
    p.add_argument("--dynamic", action="store_true",
                   help="export with free sizes, checked at two (default: "
                   "fixed)")
    p.add_argument("--fillers", action="store_true",
                   help="the prototxt's own fillers instead of "
                   "randomize_weights (default: off)")
    add_seed(p, "seed of the weights")
    p.add_argument("--json", default=None,
                   help="write the records here (default: none)")
    return p.parse_args(argv)


def main(args):
    import caffe
    from hrenet import fixtures, inference, onnx_export, onnx_run
    from hrenet.files import write_json
    from hrenet.onnx_export import check_sizes
    caffe.set_mode_cpu()
    names = args.nets or sorted(
        os.path.relpath(os.path.dirname(p), os.path.join(ROOT, "prototxt"))
        for p in glob.glob(os.path.join(ROOT, "prototxt", "*", "*",
                                        "deploy.prototxt")))
    print("| net | ONNX nodes | MiB | worst max abs diff / range | "
          "worst labels identical | differing labels (ties) | CRF after "
          "ONNX: labels | pass |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    rows, failed = [], 0
    for name in names:
        t0 = time.perf_counter()
        path = os.path.join(ROOT, "prototxt", name, "deploy.prototxt")
        caffe.set_random_seed(args.seed)
        m = inference.load_model(path, None)
        if not args.fillers:
            fixtures.randomize_weights(m.net, args.seed)
        m.net.blobs["data"].reshape(1, 3, args.height, args.width)
        m.net.reshape()
        model, info = onnx_export.convert_net(
            m.net, m.param, dynamic=args.dynamic, mean=m.mean,
            scale=m.scale, source=name)
        blob = model.SerializeToString()
        runner = onnx_run.OnnxModel(blob)
        records = onnx_export.check_parity(
            m.net, runner, check_sizes(args.height, args.width,
                                       args.dynamic), m.mean, m.scale)
        ok = onnx_export.parity_passed(records)
        failed += not ok
        logits = [r for r in records if r["gate"] == "logits"]
        crf = [r for r in records if r["gate"] == "labels"]
        row = {"net": name, "nodes": len(model.graph.node),
               "mib": len(blob) / 2 ** 20,
               "rel_diff": max(r["rel_diff"] for r in logits),
               "labels": min(r["labels"] for r in logits),
               "crf_labels": min(r["labels"] for r in crf) if crf else None,
               "passed": ok, "seconds": time.perf_counter() - t0,
               "records": records}
        rows.append(row)
        row["flipped"] = sum(r["flipped"] for r in logits)
        row["ties"] = sum(r["ties"] for r in logits)
        crf_cell = (f"{100 * row['crf_labels']:.4f}%" if crf else "-")
        print(f"| {name} | {row['nodes']} | {row['mib']:.0f} | "
              f"{row['rel_diff']:.1e} | {100 * row['labels']:.4f}% | "
              f"{row['flipped']} ({row['ties']}) | {crf_cell} | "
              f"{'yes' if ok else 'NO'} |", flush=True)
        del m, model, runner, blob
    if args.json:
        write_json(args.json, {
            "height": args.height, "width": args.width,
            "dynamic": args.dynamic, "fillers": args.fillers,
            "seed": args.seed, "machine": platform.processor()
            or platform.machine(), "nets": rows})
    print(f"{len(rows) - failed} of {len(rows)} nets pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
