"""The paper's studies (Tables 1, 4 and 5, the training-size study, LSTM vs
IRNN, L2 vs BN) as plans of commands, and their results tables.

A study is a list of rows, each a variant of :data:`hrenet.nets.VARIANTS`
with the paper's columns for it. :func:`plan` turns a study into the
commands that train every model the rows need (``tools/train.py``) and score
every row (``tools/score.py``), in one run folder:

``<run>/<family>_<variant>/train/``  training log, curves, snapshots
``<run>/<family>_<variant>/score/``  score.json, score.md, confusion.png
``<run>/results.{md,json}``          the table: the paper's figure beside ours

Datasets: ``voc`` and ``stanford-bg`` use the committed prototxts and the
LMDBs under ``data/`` that they name; ``synthetic`` generates the synthetic
context dataset into the run folder and writes each variant's nets there,
pointed at it (same builders and arguments, small crops, ``iter_size`` 1,
the synthetic classes), so that every study runs on a CPU in minutes.
"""
import collections
import json
import os
import shlex

from hrenet import nets
from hrenet.inference import ToolError

Row = collections.namedtuple("Row", ["family", "variant", "label", "cells"])

# Columns of each study: (title, study rows). cells: the paper's own
# columns (check marks, the input layer, the crop) in the table's order.
STUDIES = collections.OrderedDict([
    ("table4", dict(
        title="Table 4: the baseline FCN and H-ReNet on VOC12 val",
        columns=["variant", "BN", "MLFB", "DenseCRF"], metric="miou",
        rows=[Row("fcn", "a", "(a) baseline", ["", "", ""]),
              Row("hrenet", "b", "(b) H-ReNet", ["", "", ""]),
              Row("hrenet", "c", "(c) H-ReNet", ["X", "", ""]),
              Row("hrenet", "d", "(d) H-ReNet", ["X", "X", ""]),
              Row("fcn", "e", "(e) baseline", ["", "", "X"]),
              Row("hrenet", "f", "(f) H-ReNet", ["X", "", "X"]),
              Row("hrenet", "g", "(g) H-ReNet", ["X", "X", "X"])])),
    ("table5", dict(
        title="Table 5: renet1's input (left) and feature combination "
              "(right)",
        columns=["side", "conv7", "pool5", "pool4"], metric="miou",
        rows=[Row("hrenet", "t5_pool4", "pool4", ["left", "", "", "X"]),
              Row("hrenet", "t5_pool5", "pool5", ["left", "", "X", ""]),
              Row("hrenet", "c", "conv7", ["left", "X", "", ""]),
              Row("hrenet", "c", "conv7", ["right", "X", "", ""]),
              Row("hrenet", "t5_conv7_pool5", "conv7 + pool5",
                  ["right", "X", "X", ""]),
              Row("hrenet", "d", "conv7 + pool5 + pool4",
                  ["right", "X", "X", "X"])])),
    ("crop_size", dict(
        title="Training-size study: (H_min, W_min) of the training crops",
        columns=["model", "crop"], metric="miou",
        rows=[Row("fcn", "crop256x320", "FCN", ["FCN", "256x320"]),
              Row("fcn", "crop320x400", "FCN", ["FCN", "320x400"]),
              Row("fcn", "a", "FCN", ["FCN", "400x500"]),
              Row("hrenet", "d_crop256x320", "H-ReNet",
                  ["H-ReNet (d)", "256x320"]),
              Row("hrenet", "d_crop320x400", "H-ReNet",
                  ["H-ReNet (d)", "320x400"]),
              Row("hrenet", "d", "H-ReNet", ["H-ReNet (d)", "400x500"])])),
    ("lstm_vs_irnn", dict(
        title="LSTM vs IRNN units in renet1 (variant (c))",
        columns=["unit", "width"], metric="miou",
        rows=[Row("hrenet", "c", "LSTM", ["LSTM", "120"]),
              Row("hrenet", "c_irnn", "IRNN",
                  ["IRNN", str(nets.matching_irnn_width(1024, 120))])])),
    ("l2_vs_bn", dict(
        title="L2 normalisation (lambda) vs batch normalisation in (d)",
        columns=["normalisation"], metric="miou",
        rows=[Row("hrenet", "d", "BN", ["BN"])] + [
            Row("hrenet", "d_l2_%d" % lam, "L2", ["L2, lambda %d" % lam])
            for lam in nets.L2_LAMBDAS])),
    ("nrenet_cv", dict(
        title="Table 1: N-ReNet, 5-fold cross-validation on Stanford "
              "Background",
        columns=["fold"], metric="pixel_acc",
        rows=[Row("nrenet", "fold%d" % k, "fold %d" % k, [str(k)])
              for k in range(nets.NUM_FOLDS)])),
])
DATASETS = ("voc", "stanford-bg", "synthetic")
STUDY_DATASET = {"nrenet_cv": "stanford-bg"}  # the real data of each study

# The synthetic stand-in: image size, classes, crops scaled to it.
SYN = dict(num_images=60, height=96, width=128, classes=4)
SYN_CROP_SCALE = 0.25
# Without VGG-16's weights the trunk is random (MSRA): the paper's N(0, 0.1)
# for conv6-conv8 (fan-in 4608 and 9216) then gives logits of about 1e3-1e4
# and the first SGD steps overflow to NaN. The stand-in starts those layers
# from MSRA weights and zero biases instead (the paper's setting, with VGG
# weights, is unchanged in the committed prototxts).
SYN_CONV_FILLERS = dict(conv_filler=dict(type="msra"),
                        conv_bias_filler=dict(type="constant", value=0))
# ... and, with no trunk trained on 0-255 inputs, the pixels are scaled to
# about [-1, 1] (as the paper does for Stanford Background) so that the
# random trunk's activations start near 1 rather than near 100.
SYN_SCALE = 1.0 / 128


def study(name):
    if name not in STUDIES:
        raise ToolError("unknown study %r; valid: %s"
                        % (name, ", ".join(STUDIES)))
    return STUDIES[name]


def default_dataset(name):
    return STUDY_DATASET.get(name, "voc")


def check_dataset(name, dataset):
    real = default_dataset(name)
    if dataset not in (real, "synthetic"):
        raise ToolError("study %s runs on --dataset %s or synthetic, not %s"
                        % (name, real, dataset))


def trained_variants(name):
    """The variants whose weights the study's rows need, in order."""
    out = []
    for row in study(name)["rows"]:
        v = nets.variant(row.family, row.variant)
        src = nets.variant(v.family, v.weights_from) if v.weights_from \
            else v
        if src not in out:
            out.append(src)
    return out


def scored_variants(name):
    out = []
    for row in study(name)["rows"]:
        v = nets.variant(row.family, row.variant)
        if v not in out:
            out.append(v)
    return out


def model_dir(run, v):
    return os.path.join(run, "%s_%s" % (v.family, v.name))


def schedule(v, iters=None, iter_size=None):
    """(max_iter, stepsize, iter_size) of variant ``v``'s solver."""
    s = nets.build_solver(v, "prototxt/%s/%s" % (v.family, v.name))
    max_iter = int(iters) if iters else s.max_iter
    stepsize = s.stepsize if not iters else max(1, max_iter // 2)
    return max_iter, stepsize, iter_size or s.iter_size


def synthetic_data(v, lmdbs):
    """Variant ``v``'s data settings pointed at the synthetic LMDBs."""
    crop = tuple(max(8, int(round(c * SYN_CROP_SCALE / 8.0)) * 8)
                 for c in v.data["crop"])
    return nets.data_config((lmdbs["train"], ""), (lmdbs["val"], ""), crop,
                            1, v.data["mean"], SYN_SCALE,
                            (SYN["height"], SYN["width"]))


def write_variant_nets(v, folder, data, num_classes):
    """Write ``v``'s train_val/deploy into ``folder`` with ``data`` and
    ``num_classes`` (the synthetic stand-in)."""
    from google.protobuf import text_format
    os.makedirs(folder, exist_ok=True)
    for mode in ("train_val", "deploy"):
        kw = dict(v.net)
        if mode == "train_val":
            kw.pop("crf", None)
        if v.builder in ("fcn", "hrenet"):
            kw.update(SYN_CONV_FILLERS)
        proto = nets.BUILDERS[v.builder](mode, data, num_classes=num_classes,
                                         name="%s_%s" % (v.family, v.name),
                                         **kw)
        with open(os.path.join(folder, mode + ".prototxt"), "w") as f:
            f.write(text_format.MessageToString(proto))


def write_solver(v, folder, net, max_iter, stepsize, iter_size, test=True):
    """``v``'s solver with the run's schedule into ``folder``; the net
    path as given (relative to the repository root for committed nets)."""
    from google.protobuf import text_format
    s = nets.build_solver(v, "prototxt/%s/%s" % (v.family, v.name))
    s.net = net
    s.max_iter, s.stepsize, s.iter_size = max_iter, stepsize, iter_size
    s.snapshot = 0
    if s.test_iter and test:
        s.test_interval = max_iter
    else:
        s.ClearField("test_iter")
        s.ClearField("test_interval")
        s.ClearField("test_initialization")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "solver.prototxt")
    with open(path, "w") as f:
        f.write(text_format.MessageToString(s))
    return path


# One step of a study: ``what`` ("train fcn/a", "score hrenet/f"),
# ``train``: the :class:`hrenet.experiment.Run` to train, or ``score``: the
# arguments of :func:`hrenet.experiment.score`; ``done``: the file whose
# existence means the step finished (``--resume`` skips it).
Step = collections.namedtuple("Step", ["what", "train", "score", "done"])
Solver = collections.namedtuple("Solver", ["variant", "folder", "max_iter",
                                           "stepsize", "iter_size"])


def weights_path(run, v, max_iter):
    """The caffemodel training leaves for ``v`` in the run."""
    return os.path.join(model_dir(run, v), "train", "snapshots",
                        "%s_%s_iter_%d.caffemodel"
                        % (v.family, v.name, max_iter))


def plan(name, dataset, run, iters=None, gpu=None, weights=None,
         val_source=None):
    """The solvers to write and the steps of study ``name``.

    Returns ([Solver], [Step]). Every trained model gets its solver in
    ``<run>/<family>_<variant>/`` (the committed one with the run's
    schedule: ``iters`` iterations, lr x0.1 half-way, or the paper's);
    synthetic runs use ``iter_size`` 1 and score on ``val_source`` (a
    path, or {(family, variant): path}). :func:`execute` runs a step
    in-process through :mod:`hrenet.experiment`; :func:`command` is the
    same step as a tools/ command line.
    """
    from hrenet import experiment
    solvers, steps = [], []
    final = {}
    for v in trained_variants(name):
        d = model_dir(run, v)
        max_iter, stepsize, iter_size = schedule(
            v, iters, 1 if dataset == "synthetic" else None)
        solvers.append(Solver(v, d, max_iter, stepsize, iter_size))
        start = weights if weights and v.family != "nrenet" and \
            dataset != "synthetic" else None
        train = experiment.Run(os.path.join(d, "solver.prototxt"),
                               os.path.join(d, "train"), weights=start,
                               gpu=gpu)
        final[(v.family, v.name)] = weights_path(run, v, max_iter)
        steps.append(Step("train %s/%s" % (v.family, v.name), train, None,
                          final[(v.family, v.name)]))
    for v in scored_variants(name):
        src = nets.variant(v.family, v.weights_from) if v.weights_from \
            else v
        d = model_dir(run, v)
        if dataset == "synthetic":
            deploy = os.path.join(d, "deploy.prototxt")
            val = val_source[(v.family, v.name)] \
                if isinstance(val_source, dict) else val_source
        else:
            deploy = "prototxt/%s/%s/deploy.prototxt" % (v.family, v.name)
            val = v.data["test_source"][0]
        score = dict(deploy=deploy, weights=final[(src.family, src.name)],
                     source=val, out=os.path.join(d, "score"), gpu=gpu)
        steps.append(Step("score %s/%s" % (v.family, v.name), None, score,
                          os.path.join(d, "score", "score.json")))
    return solvers, steps


def command(step, python="python"):
    """The tools/ command line that does what ``step`` does (for a dry run
    and the logs; :func:`execute` runs the step in-process)."""
    if step.train is not None:
        r = step.train
        argv = [python, "tools/train.py", "--solver", r.solver, "--out",
                r.out, "--overwrite", "--quiet"]
        if r.weights:
            argv += ["--weights", r.weights]
        gpu = r.gpu
    else:
        sc = step.score
        argv = [python, "tools/score.py", "--model", sc["deploy"],
                "--weights", sc["weights"], "--source", sc["source"],
                "--out", sc["out"], "--quiet"]
        gpu = sc["gpu"]
    if gpu is not None:
        argv += ["--gpu", str(gpu)]
    return argv


def execute(step, log):
    """Run ``step`` through :mod:`hrenet.experiment`, its messages and any
    progress in the file ``log``. Raises ToolError if it fails."""
    import contextlib
    from hrenet import experiment
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "w") as f, contextlib.redirect_stdout(f), \
            contextlib.redirect_stderr(f):
        print(format_command(command(step)), flush=True)
        try:
            if step.train is not None:
                summary = experiment.train(
                    step.train, progress=False, overwrite=True,
                    warn=lambda m: print("warning: " + m),
                    info=lambda m: print(m))
                print("trained to iteration %d" % summary["iter"])
            else:
                sc = step.score
                r = experiment.score(sc["deploy"], sc["weights"],
                                     sc["source"], out=sc["out"],
                                     gpu=sc["gpu"])
                print("mean IoU %.4f" % r["miou"])
        except (ToolError, RuntimeError, OSError) as e:
            print("error: %s" % e)
            raise ToolError("%s failed (%s); its log is %s; fix and rerun "
                            "with --resume" % (step.what, e, log)) from e


def format_command(argv):
    return " ".join(shlex.quote(a) for a in argv)


def results_table(name, run, dataset):
    """(markdown, json) of the study's table from the score.json files."""
    st = study(name)
    metric = st["metric"]
    rows = []
    for row in st["rows"]:
        v = nets.variant(row.family, row.variant)
        path = os.path.join(model_dir(run, v), "score", "score.json")
        ours = None
        if os.path.isfile(path):
            with open(path) as f:
                ours = json.load(f)
        rows.append(dict(family=row.family, variant=row.variant,
                         label=row.label, cells=row.cells,
                         paper=dict(v.paper),
                         ours=None if ours is None else
                         {k: ours.get(k) for k in
                          ("miou", "pixel_acc", "class_acc", "fwiou")}))
    table = dict(study=name, title=st["title"], dataset=dataset,
                 columns=st["columns"], metric=metric, rows=rows)

    def pct(x):
        return "–" if x is None else "%.1f" % (100 * x)

    if name == "nrenet_cv":
        head = ["fold", "pixel acc. (ours)", "class acc. (ours)"]
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        pix, cls = [], []
        for r in rows:
            o = r["ours"] or {}
            lines.append("| %s | %s | %s |" % (
                r["cells"][0], pct(o.get("pixel_acc")),
                pct(o.get("class_acc"))))
            if o:
                pix.append(o["pixel_acc"])
                cls.append(o["class_acc"])
        import numpy as np
        summary = {}
        if pix:
            summary = dict(pixel_acc_mean=float(np.mean(pix)),
                           pixel_acc_std=float(np.std(pix)),
                           class_acc_mean=float(np.mean(cls)),
                           class_acc_std=float(np.std(cls)), folds=len(pix))
            lines.append("| mean ± std | %.1f ± %.1f | %.1f ± %.1f |" % (
                100 * summary["pixel_acc_mean"],
                100 * summary["pixel_acc_std"],
                100 * summary["class_acc_mean"],
                100 * summary["class_acc_std"]))
        lines.append("| paper (Table 1) | 80.4 | 71.8 |")
        table["summary"] = summary
    else:
        head = st["columns"] + ["IoU % (paper)", "IoU % (ours)"]
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        for r in rows:
            cells = ([r["label"]] if st["columns"][0] == "variant" else []) \
                + r["cells"]
            paper = r["paper"].get("miou")
            lines.append("| " + " | ".join(cells + [
                "–" if paper is None else "%.1f" % paper,
                pct((r["ours"] or {}).get("miou"))]) + " |")
    md = "# %s\n\nDataset: %s. Run folder: `%s`.\n\n%s\n" % (
        st["title"], dataset, run, "\n".join(lines))
    if dataset == "synthetic":
        md += ("\nOn the synthetic stand-in the paper's figures are not "
               "expected: the column is there to show the table's shape.\n")
    return md, table
