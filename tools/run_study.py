#!/usr/bin/env python3
"""Run one of the paper's studies: train and score every variant it covers
and write its results table beside the paper's figures.

Studies: table4 (variants a-g), table5 (renet1's input; feature
combination), crop_size (training crops, FCN and H-ReNet), lstm_vs_irnn,
l2_vs_bn (L2 lambda grid against BN), nrenet_cv (N-ReNet 5-fold
cross-validation, Table 1). Each model is trained and scored in this
process through the experiment API (hrenet.experiment, what tools/train.py
and tools/score.py run) into RUN/<family>_<variant>/{train,score}/, with a
log per step beside them; the table goes to RUN/results.md and
RUN/results.json. --dry-run prints the schedule and each step as the
equivalent tools/ command.

--dataset voc (stanford-bg for nrenet_cv) uses the committed prototxts and
the LMDBs they name (docs/NETS.md), with the paper's schedule
unless --iters; --dataset synthetic generates the synthetic context dataset
into RUN and trains the same nets, pointed at it, on a CPU in minutes.

Examples:
  run_study.py table4 --dry-run
  run_study.py table4 --gpu 0 --weights VGG_ILSVRC_16_layers.caffemodel
  run_study.py table5 --dataset synthetic --iters 20
  run_study.py nrenet_cv --gpu 0 --resume
"""
import os
import shlex
import sys
import time

from hrenet.cli import add_device, add_switch, cli, parser, positive_int

from hrenet import nets, studies
from hrenet.files import check_output_dir
from hrenet.inference import ToolError
from hrenet.mainjob import clock, git_commit

ROOT = os.path.normpath(os.path.join(os.path.dirname(
    os.path.abspath(__file__)), os.pardir))


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("study", choices=list(studies.STUDIES),
                   help="which study")
    p.add_argument("--dataset", choices=studies.DATASETS, default=None,
                   help="voc (stanford-bg for nrenet_cv) or synthetic "
                   "(default: the study's real dataset)")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="training iterations of every model, lr x0.1 "
                   "half-way (default: the paper's schedule)")
    add_device(p)
    p.add_argument("--weights", default=None,
                   help="VGG-16 caffemodel for conv1-conv5 (real datasets; "
                   "default: none, random initialisation)")
    p.add_argument("--out", default=None,
                   help="run folder (default: runs/<study>-<dataset> in the "
                   "repository)")
    add_switch(p, "--dry-run", "print the schedule and every step's command; "
               "run nothing")
    add_switch(p, "--resume", "skip the steps whose results exist in the "
               "run folder; off: the folder must be new")
    return p.parse_args(argv)


def prepare_synthetic(run, name, dry):
    """LMDBs of the synthetic stand-in; {(family, variant): {train, val}}."""
    from hrenet import lmdb_io, synthetic
    from hrenet import datasets as ds
    data = os.path.join(run, "data")
    k = studies.SYN["classes"]
    variants = studies.scored_variants(name) + studies.trained_variants(name)
    folds = name == "nrenet_cv"
    splits = {}
    for v in variants:
        tag = v.name if folds else "all"
        splits[(v.family, v.name)] = {
            s: os.path.join(data, "lmdb_%s_%s" % (tag, s))
            for s in ("train", "val")}
    if dry:
        return splits, k + 1
    root = os.path.join(data, "synthetic")
    if not os.path.isdir(root):
        synthetic.write_voc(root, synthetic.generate(
            studies.SYN["num_images"], studies.SYN["height"],
            studies.SYN["width"], k, 0), k)
    names = ds.read_class_names(os.path.join(root, "classes.txt"))
    samples = sorted(list(ds.voc_samples(root, "trainval")),
                     key=lambda x: x.name)
    for key, dirs in splits.items():
        fold = int(key[1][4:]) if folds else 4
        for split, path in dirs.items():
            if os.path.isdir(path):
                continue
            pick = [x for i, x in enumerate(samples)
                    if (i % 5 == fold) == (split == "val")]
            lmdb_io.build_dataset(pick, path, len(names), names, "voc",
                                  progress=False)
    return splits, len(names)


def check_real_data(name):
    """One line naming the first missing LMDB and how to build it."""
    for v in studies.trained_variants(name) + studies.scored_variants(name):
        for folder, command in nets.missing_hints(v).items():
            if not os.path.isdir(os.path.join(ROOT, folder)):
                raise ToolError(f"{folder} does not exist; build it with: "
                                f"{command}")


@cli(interrupted="the steps that finished are kept; rerun with --resume "
     "to continue")
def main(args):
    # paths the user gave are relative to the current folder, not ROOT
    if args.weights:
        args.weights = os.path.abspath(args.weights)
    if args.out:
        args.out = os.path.abspath(args.out)
    os.chdir(ROOT)  # the committed nets' paths are relative to the root
    name = args.study
    dataset = args.dataset or studies.default_dataset(name)
    studies.check_dataset(name, dataset)
    if args.weights and not args.dry_run and \
            not os.path.isfile(args.weights):
        raise ToolError(f"--weights {args.weights}: no such file; give "
                        "VGG-16's caffemodel or leave --weights out")
    run = os.path.abspath(args.out or os.path.join(
        "runs", f"{name}-{dataset}"))
    if not args.dry_run:
        check_output_dir(run)
    if os.path.isfile(os.path.join(run, "results.json")) and \
            not args.resume and not args.dry_run:
        raise ToolError(f"{run} already holds results; pass --resume to "
                        "continue it or --out for a new run")
    if dataset != "synthetic" and not args.dry_run:
        check_real_data(name)
    val = None
    if dataset == "synthetic":
        splits, num_classes = prepare_synthetic(run, name, args.dry_run)
        val = {k: v["val"] for k, v in splits.items()}
    solvers, cmds = studies.plan(name, dataset, run, args.iters, args.gpu,
                                 args.weights, val)
    print(f"# study {name} on {dataset}: {len(solvers)} models to train, "
          f"{sum(c.what.startswith('score') for c in cmds)} rows to score;"
          f" run folder {run}")
    for s in solvers:
        print(f"# {s.variant.family}/{s.variant.name}: {s.max_iter} "
              f"iterations, lr x0.1 every {s.stepsize}, iter_size "
              f"{s.iter_size} -> {s.folder}/solver.prototxt")
    for c in cmds:
        print(studies.format_command(studies.command(c, sys.executable)))
    if args.dry_run:
        return 0
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "command"), "w") as f:
        f.write(" ".join(shlex.quote(a) for a in
                         ["tools/run_study.py"] + sys.argv[1:]) + "\n")
    with open(os.path.join(run, "commit"), "w") as f:
        f.write(git_commit(ROOT) + "\n")
    for s in solvers:
        v = s.variant
        if dataset == "synthetic":
            data = studies.synthetic_data(v, splits[(v.family, v.name)])
            studies.write_variant_nets(v, s.folder, data, num_classes)
            net = os.path.join(s.folder, "train_val.prototxt")
        else:
            net = f"prototxt/{v.family}/{v.name}/train_val.prototxt"
        studies.write_solver(v, s.folder, net, s.max_iter, s.stepsize,
                             s.iter_size, test=False)
    if dataset == "synthetic":  # deploy-only rows (DenseCRF variants)
        for v in studies.scored_variants(name):
            if not v.trains:
                data = studies.synthetic_data(v, splits[(v.family, v.name)])
                studies.write_variant_nets(v, studies.model_dir(run, v),
                                           data, num_classes)
    t0 = time.monotonic()
    ran = 0  # steps run by this call (skipped ones take no time)
    for i, c in enumerate(cmds):
        if args.resume and os.path.exists(c.done):
            print(f"[{name} {i + 1}/{len(cmds)}] {c.what}: done, skipped")
            continue
        elapsed = time.monotonic() - t0
        eta = "--" if ran == 0 else clock(elapsed / ran * (len(cmds) - i))
        ran += 1
        print(f"[{name} {i + 1}/{len(cmds)}] {c.what} (elapsed "
              f"{clock(elapsed)}, ETA {eta})", flush=True)
        out = c.train.out if c.train is not None else c.score["out"]
        log = os.path.join(os.path.dirname(out), c.what.split()[0] + ".log")
        studies.execute(c, log)
        if not os.path.exists(c.done):
            raise ToolError(f"{c.what} finished but did not write {c.done};"
                            f" its log is {log}; fix and rerun with "
                            "--resume")
    md, table = studies.results_table(name, run, dataset)
    from hrenet.files import write_json, write_text
    write_text(os.path.join(run, "results.md"), md)
    write_json(os.path.join(run, "results.json"), table)
    print(md)
    print(f"results: {os.path.join(run, 'results.md')}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(main(parse_args()))
