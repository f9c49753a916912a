#!/usr/bin/env python3
"""The main job over the family of synthetic context sets.

Runs the main job (hrenet.mainjob, the same code and defaults as
tools/main_job.py) on each --variants set of hrenet.synthetic.VARIANTS with
its own seed, then tabulates N-ReNet against the local baseline: held-out
mean IoU, the lead, the iterations and training time of each model and why
it stopped. This is how the project knows that its thesis demonstration is
not tuned to one set: the recipe (hrenet.mainjob.settings) was chosen on
band-96x128-k4 with seeds 1-4 (and the first recipe on band-64x80-k4, the
main job's own set), its class weights and patience on seeds 1-2 of
the four kinds of set the first study failed on (corner-80x96-k6,
side-64x80-k8, blob-96x128-k4-many, blob-128x160-k5), and the
classifier's skip on seed 1 of the first and the last; the study draws
other seeds (--seed-base), and its table marks those six kinds of set as
"seen"; the other four played no part in choosing the recipe.

Writes OUT/<variant>-s<seed>/ (each a main-job run folder) and
OUT/results.md, OUT/results.json. Targets: on every variant N-ReNet >= 90%
mean IoU and >= 20 points above the baseline, each model within 5 minutes
of training (on 2 cores, the machine the figures are measured on).

  bench/context_study.py --out runs/context-study            # ~1 hour
  bench/context_study.py --variants side-96x128-k4 --seeds 3 --out DIR
  bench/context_study.py --quick --out DIR                   # smoke run
"""
import json
import os
import statistics
import sys
import time

from hrenet import mainjob, synthetic
from hrenet.cli import (add_budget, add_out, cli, int_range, nonneg_int,
                        parser)
from hrenet.files import write_json, write_text
from hrenet.inference import ToolError


def parse_args(argv=None):
    p = parser(__doc__)
    add_out(p, "study folder")
    p.add_argument("--variants", nargs="+", choices=sorted(
        synthetic.VARIANTS), default=list(synthetic.VARIANTS),
        help="sets of the family (default: all %d)" % len(
            synthetic.VARIANTS))
    p.add_argument("--seeds", type=int_range(1, 10), default=1,
                   help="seeds per variant, 1-10 (default: %(default)s)")
    p.add_argument("--seed-base", type=nonneg_int, default=100,
                   help="the k-th variant's seeds are seed-base + 10 k + "
                   "0, 1, ... (default: %(default)s, apart from the "
                   "recipe's seeds 1-4)")
    add_budget(p, 240.0)
    p.add_argument("--quick", action="store_true",
                   help="the main job's smoke settings (default: off)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs that have a report.json and run the "
                   "rest (default: start again)")
    return p.parse_args(argv)


#: the kinds of set the recipe was chosen on (with seeds 1-4, not the
#: study's)
SEEN = ("band-96x128-k4", "band-64x80-k4", "corner-80x96-k6",
        "side-64x80-k8", "blob-96x128-k4-many", "blob-128x160-k5")
#: the most training time per model the targets allow (seconds)
TARGET_SECONDS = 300


def runs(args):
    """(variant, seed, folder name) of every run of the study."""
    out = []
    for name in args.variants:
        index = list(synthetic.VARIANTS).index(name)
        for j in range(args.seeds):
            seed = args.seed_base + 10 * index + j
            out.append((name, seed, f"{name}-s{seed}"))
    return out


def check_same_settings(folder, args):
    """--resume: a kept run must have been made with this --budget and
    --quick, or the table would mix settings."""
    with open(os.path.join(folder, "details.json")) as f:
        s = json.load(f)["settings"]
    want = mainjob.settings(args.quick, budget=args.budget)
    for key in ("budget", "iters", "num_images"):
        if s.get(key) != want[key]:
            raise ToolError(f"{folder}: made with {key} {s.get(key)}, not "
                            f"{want[key]}; --resume needs the same --budget "
                            "and --quick, or give another --out")


def row_of(name, seed, folder):
    """One result row from a finished main-job run folder."""
    with open(os.path.join(folder, "details.json")) as f:
        d = json.load(f)
    with open(os.path.join(folder, "report.json")) as f:
        r = json.load(f)["models"]
    row = {"variant": name, "seed": seed, "seconds": d["seconds"],
           "images": d["images"]}
    for m in mainjob.MODELS:
        info = d["models"][m]
        best = info.get("best_dev") or {}
        row[m] = {"miou": r[m]["miou"], "params": info["params"],
                  "iterations": info["iterations"], "stop": info["stop"],
                  "train_seconds": info["train_seconds"],
                  "best_dev": best.get("miou")}
    row["gap"] = row["nrenet"]["miou"] - row["baseline"]["miou"]
    row["met"] = bool(row["nrenet"]["miou"] >= mainjob.TARGET_MIOU and
                      row["gap"] >= mainjob.TARGET_GAP and
                      max(row[m]["train_seconds"] for m in mainjob.MODELS)
                      <= TARGET_SECONDS)
    row["seen"] = name in SEEN
    row["settings"] = {k: d["settings"][k] for k in ("budget", "iters")}
    return row


def table(rows, budget):
    """results.md: the rows, the spread, the targets."""
    v = synthetic.VARIANTS
    lines = [
        "| set | size | classes | cue | N-ReNet mean IoU | baseline | "
        "lead | N-ReNet iterations (stop), time | baseline iterations "
        "(stop), time | targets |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        var = v[r["variant"]]
        cells = [f"{r['variant']} (seed {r['seed']})"
                 + (", seen" if r["seen"] else ""),
                 f"{var.height}x{var.width}", str(var.classes),
                 var.style.cue, f"{100 * r['nrenet']['miou']:.1f}%",
                 f"{100 * r['baseline']['miou']:.1f}%",
                 f"{100 * r['gap']:+.1f}"]
        for m in mainjob.MODELS:
            x = r[m]
            cells.append(f"{x['iterations']} ({x['stop']}), "
                         f"{mainjob.clock(x['train_seconds'])}")
        cells.append("met" if r["met"] else "**NOT met**")
        lines.append("| " + " | ".join(cells) + " |")
    n = [r["nrenet"]["miou"] for r in rows]
    b = [r["baseline"]["miou"] for r in rows]
    g = [r["gap"] for r in rows]
    t = [max(r[m]["train_seconds"] for m in mainjob.MODELS) for r in rows]

    def spread(xs, pct=True):
        f = (lambda x: f"{100 * x:.1f}%") if pct else mainjob.clock
        return (f"min {f(min(xs))}, median {f(statistics.median(xs))}, "
                f"max {f(max(xs))}")
    lines += [
        "",
        f"{sum(r['met'] for r in rows)} of {len(rows)} runs meet the "
        f"targets (N-ReNet >= {100 * mainjob.TARGET_MIOU:.0f}% and >= "
        f"{100 * mainjob.TARGET_GAP:.0f} points above the baseline, each "
        f"model trained within {mainjob.clock(TARGET_SECONDS)}). "
        "\"seen\": a kind of set the recipe was chosen on (with other "
        "seeds).",
        f"N-ReNet: {spread(n)}; baseline: {spread(b)}; lead: "
        f"min {100 * min(g):+.1f}, median {100 * statistics.median(g):+.1f},"
        f" max {100 * max(g):+.1f} points.",
        f"Training time of the slower model per run: {spread(t, False)} "
        f"(budget {mainjob.clock(budget)} per model).",
    ]
    return "\n".join(lines) + "\n"


@cli(interrupted="finished runs keep their folders; --resume goes on")
def main(args):
    os.makedirs(args.out, exist_ok=True)
    rows = []
    plan = runs(args)
    t0 = time.monotonic()
    for i, (name, seed, sub) in enumerate(plan):
        folder = os.path.join(args.out, sub)
        done = os.path.isfile(os.path.join(folder, "report.json"))
        if args.resume and done:
            check_same_settings(folder, args)
        else:
            if os.path.isdir(folder):
                import shutil
                shutil.rmtree(folder)
            print(f"[study {i + 1}/{len(plan)}] {sub} (elapsed "
                  f"{mainjob.clock(time.monotonic() - t0)})", flush=True)
            mainjob.run(folder, "synthetic", quick=args.quick, seed=seed,
                        variant=name, budget=args.budget,
                        command="bench/context_study.py " + " ".join(
                            sys.argv[1:]))
        rows.append(row_of(name, seed, folder))
    write_json(os.path.join(args.out, "results.json"),
               {"budget": args.budget, "quick": args.quick, "rows": rows})
    text = table(rows, args.budget)
    write_text(os.path.join(args.out, "results.md"),
               "# The main job over the synthetic family\n\n"
               "Command: `bench/context_study.py "
               + " ".join(sys.argv[1:]) + "`\n\n" + text)
    print(text, end="")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
