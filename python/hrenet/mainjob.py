"""The main job: the paper's thesis on a machine without a GPU, in minutes.

On the synthetic context dataset (:mod:`hrenet.synthetic`) an object's class
is told only by a coloured band far from it. A small N-ReNet (the N-ReNet
generator of :mod:`hrenet.nets` with smaller widths) carries the band's
colour across the image; a local-context baseline (:func:`hrenet.nets.
local_fcn`, a fully convolutional net of comparable parameter count whose
receptive field is far smaller than the image) cannot. Both are trained
with pycaffe and scored on the held-out split through the experiment API
(:func:`hrenet.experiment.train`, :func:`hrenet.experiment.score`) and
compared in ``report.md`` /
``report.json``.

Settings (:func:`settings`): 400 synthetic images of 64 x 80 (280 train,
40 to validate on during training, 80 held out), 4 object classes; N-ReNet
widths 16, 16, 16, its classifier reading all three layer groups' outputs
(47,845 parameters) against a baseline of 47,709; Adam,
lr 0.001, gradients clipped at 10, batch 8, a class-weighted loss (the
square root of median frequency balancing over the training split: the
background, most of every image, weighs about 0.5, each object class
about 4); each model trains until its validation score stops improving
(a learning-rate drop, then a stop), at most 8,000 iterations or 2
minutes, and its best weights are scored. The small N-ReNet departs from
the paper's initialisation: its narrow ReNet layers start from Xavier
weights, and half the units of every LSTM with a forget-gate bias of 1 (a
short memory: the local texture), half with 5 (a long one: the cue's
colour across the image). docs/MAIN_JOB.md has the experiments behind that
recipe.

:func:`run` does it all into one run folder; ``tools/main_job.py`` (and
``scripts/main_job.sh``) is the command line.
"""
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from hrenet import datasets as ds
from hrenet.inference import ToolError

MODELS = ("nrenet", "baseline")
TITLES = {"nrenet": "N-ReNet (small)", "baseline": "local-context FCN"}
SPLITS = ("train", "val")
#: every DEV_EVERY-th training image (sorted by name) is left out of
#: training to validate on during it (the schedule's split); the held-out
#: val split is scored only at the end
DEV_EVERY = 8
FORMATS = ("synthetic", "voc", "sbd", "stanford-bg", "folder")


#: the synthetic set the job generates unless told otherwise
DEFAULT_VARIANT = "band-64x80-k4"


def settings(quick=False, iters=None, seed=0, variant=DEFAULT_VARIANT,
             budget=None):
    """The job's settings; ``quick`` is the seconds-long smoke version
    the tests run (fewer, smaller images and a few iterations).

    Each model trains until its validation mean IoU (on the dev split,
    :data:`DEV_EVERY`) stops improving: validated every ``val_every``
    iterations, a plateau is ``patience`` validations without a gain of
    ``min_delta``; the first plateau divides the learning rate by 10, the
    second stops the run, as does ``iters`` (the most iterations) or
    ``budget`` (seconds of training per model). The best validation's
    weights are scored. ``iters`` set: exactly that many iterations, no
    early stop, the learning rate x0.1 at 3/4 (the best validation's
    weights are still the ones scored).
    """
    from hrenet import synthetic
    v = synthetic.VARIANTS[variant]
    s = dict(
        num_images=40 if quick else 400, height=v.height, width=v.width,
        classes=v.classes, style=v.style, variant=variant,
        nrenet_widths=(8, 8, 8) if quick else (16, 16, 16),
        baseline_widths=(8, 8, 8) if quick else (24, 40, 48),
        nrenet_forget_bias=1.0, nrenet_forget_bias_long=5.0,
        nrenet_skip=True,
        batch_size=4 if quick else 8,
        iters=20 if quick else 8000, val_every=10 if quick else 100,
        patience=0 if quick else 10, min_delta=0.002, lr_drops=1,
        min_iters=1500,
        budget=budget if budget is not None else (None if quick else 120.0),
        base_lr=0.001, solver_type="Adam", clip_gradients=10.0,
        class_weight_power=0.5,
        scale=1.0 / 128, seed=seed, samples=4, feature_channels=4,
        time_repeats=2 if quick else 5)
    s["lr_policy"] = "fixed"  # drops come from the plateaus
    if iters is not None:
        s.update(iters=int(iters), patience=0, budget=budget,
                 lr_policy="step")  # x0.1 at 3/4
    return s


class Steps(object):
    """Prints ``[main job i/n] step ... (elapsed, ETA)`` lines.

    The ETA is the elapsed time scaled by the remaining share of the
    steps' expected weights (training dominates).
    """

    def __init__(self, weights, stream=None):
        self.weights = weights
        self.total = float(sum(w for _, w in weights))
        self.done = 0.0
        self.index = 0
        self.start = time.monotonic()
        self.stream = stream or sys.stdout

    def next(self):
        name, weight = self.weights[self.index]
        elapsed = time.monotonic() - self.start
        if self.done > 0:
            eta = elapsed * (self.total - self.done) / self.done
            eta_s = "ETA %s" % clock(eta)
        else:
            eta_s = "ETA --"
        self.index += 1
        print("[main job %d/%d] %s (elapsed %s, %s)" % (
            self.index, len(self.weights), name, clock(elapsed), eta_s),
            file=self.stream, flush=True)
        return weight

    def finish(self, weight):
        self.done += weight


def clock(seconds):
    """M:SS of a duration in seconds."""
    m, s = divmod(int(round(seconds)), 60)
    return "%d:%02d" % (m, s)


def git_commit(root):
    try:
        return subprocess.run(["git", "-C", root, "rev-parse", "HEAD"],
                              capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --------------------------------------------------------------------------
# Data

def make_synthetic(out, s):
    """Write the synthetic dataset (VOC layout) and return its root."""
    from hrenet import synthetic
    root = os.path.join(out, "synthetic")
    synthetic.write_voc(root, synthetic.generate(
        s["num_images"], s["height"], s["width"], s["classes"], s["seed"],
        s.get("style", synthetic.DEFAULT_STYLE)), s["classes"])
    return root


def dataset_samples(fmt, root, split, voc_root=None):
    """Samples of ``split`` (train|val) of a dataset in a layout that
    tools/build_lmdb.py reads. Formats without splits (stanford-bg,
    folder) hold out every fifth image (sorted by name) as val."""
    if not root or not os.path.isdir(root):
        raise ToolError(f"--root {root!r} is not a directory; give the "
                        f"dataset folder in the {fmt} layout")
    if fmt in ("voc", "synthetic"):
        return ds.voc_samples(root, split)
    if fmt == "sbd":
        return ds.sbd_samples(root, split, voc_root=voc_root)
    if fmt == "stanford-bg":
        samples = ds.stanford_bg_samples(root)
    elif fmt == "folder":
        samples = ds.folder_samples(root)
    else:
        raise ToolError(f"--format {fmt}: the main job reads "
                        + ", ".join(FORMATS))
    samples = sorted(samples, key=lambda x: x.name)
    return [x for i, x in enumerate(samples)
            if (i % 5 == 4) == (split == "val")]


def class_names_of(fmt, root, classes_file=None):
    if classes_file:
        return ds.read_class_names(classes_file)
    local = os.path.join(root, "classes.txt")
    if fmt == "synthetic" or (fmt == "voc" and os.path.isfile(local)):
        return ds.read_class_names(local)
    if fmt in ("voc", "sbd"):
        return list(ds.VOC_CLASSES)
    if fmt == "stanford-bg":
        return list(ds.STANFORD_BG_CLASSES)
    raise ToolError(f"--format {fmt} needs --classes FILE (one class name "
                    "per line)")


def build_lmdbs(fmt, root, out, names, voc_root=None):
    """{split: LMDB folder} for train, dev and val: dev is every
    :data:`DEV_EVERY`-th image of the dataset's train split (the
    validation split of the schedule), train the rest; val is the
    dataset's val split, held out until the end. A missing or empty split
    stops with one line naming it."""
    from hrenet import lmdb_io
    dirs = {}
    for split in SPLITS:
        try:
            samples = list(dataset_samples(fmt, root, split, voc_root))
        except ds.DataError as e:
            raise ToolError(f"{e.path}: {e.problem}") from e
        if not samples or (split == "train" and len(samples) < 2):
            raise ToolError(f"{root}: the {split} split has "
                            f"{len(samples) or 'no'} images; give a dataset "
                            f"root with {fmt} {split} data (train needs at "
                            "least 2: one is kept to validate on)")
        parts = {split: samples}
        if split == "train":
            samples = sorted(samples, key=lambda x: x.name)
            parts = {"dev": samples[DEV_EVERY - 1::DEV_EVERY] or samples[-1:],
                     "train": [x for i, x in enumerate(samples)
                               if i % DEV_EVERY != DEV_EVERY - 1]}
            if len(samples) < DEV_EVERY:
                parts["train"] = samples[:-1]
        for name, part in parts.items():
            path = os.path.join(out, "lmdb_" + name)
            try:
                lmdb_io.build_dataset(part, path, len(names), names,
                                      "voc" if fmt == "synthetic" else fmt,
                                      progress=False)
            except ds.DataError as e:
                raise ToolError(f"{e.path}: {e.problem}") from e
            dirs[name] = path
    return dirs


# --------------------------------------------------------------------------
# Nets

def write_nets(out, lmdbs, num_classes, s, crop):
    """Write both models' train_val/deploy/solver; returns their paths."""
    from hrenet import lmdb_io, nets
    from google.protobuf import text_format
    weights = None
    if s.get("class_weight_power"):
        pixels = lmdb_io.read_meta(lmdbs["train"])["class_pixels"]
        weights = nets.write_class_weights(
            os.path.join(out, "class_weights.binaryproto"),
            nets.median_frequency_weights(pixels[:num_classes],
                                          s["class_weight_power"]))
    data = nets.data_config((lmdbs["train"], ""), (lmdbs["val"], ""), crop,
                            s["batch_size"], nets.VGG_MEAN_BGR, s["scale"],
                            crop, class_weights=weights)
    builders = {
        "nrenet": lambda mode: nets.nrenet(
            mode, data, num_classes, s["nrenet_widths"],
            unit=s.get("nrenet_unit", "LSTM"),
            forget_bias=s["nrenet_forget_bias"],
            forget_bias_long=s.get("nrenet_forget_bias_long"),
            classifier_filler=dict(type="xavier"),
            renet_filler=s.get("nrenet_filler", dict(type="xavier")),
            norm=s.get("nrenet_norm"), skip=s.get("nrenet_skip", False),
            name="nrenet_small"),
        "baseline": lambda mode: nets.local_fcn(
            mode, data, num_classes, s["baseline_widths"],
            name="local_baseline"),
    }
    paths = {}
    for model, build in builders.items():
        folder = os.path.join(out, model)
        os.makedirs(folder, exist_ok=True)
        tv, dep = build("train_val"), build("deploy")
        for name, proto in (("train_val", tv), ("deploy", dep)):
            with open(os.path.join(folder, name + ".prototxt"), "w") as f:
                f.write(text_format.MessageToString(proto))
        sol = nets.solver(os.path.join(folder, "train_val.prototxt"),
                          s["iters"], os.path.join(folder, "snap"),
                          base_lr=s["base_lr"],
                          stepsize=max(1, int(s["iters"] * 0.75)),
                          iter_size=1, solver_type=s["solver_type"],
                          weight_decay=0.0005, snapshot=0,
                          display=max(1, min(20, s["iters"] // 10)),
                          random_seed=s["seed"] + 1,
                          clip_gradients=s.get("clip_gradients"))
        if s["lr_policy"] == "fixed":
            sol.lr_policy = "fixed"
            sol.ClearField("stepsize")
            sol.ClearField("gamma")
        sol.ClearField("test_iter")
        sol.ClearField("test_interval")
        sol.ClearField("test_initialization")
        with open(os.path.join(folder, "solver.prototxt"), "w") as f:
            f.write(text_format.MessageToString(sol))
        paths[model] = dict(folder=folder,
                            solver=os.path.join(folder, "solver.prototxt"),
                            deploy=os.path.join(folder, "deploy.prototxt"),
                            rf=nets.receptive_field(dep, "classifier"))
    return paths


# --------------------------------------------------------------------------
# Report

def _stack(tiles, pad=2):
    h = max(t.shape[0] for t in tiles)
    w = sum(t.shape[1] for t in tiles) + pad * (len(tiles) - 1)
    out = np.full((h, w, 3), 255, np.uint8)
    x = 0
    for t in tiles:
        out[:t.shape[0], x:x + t.shape[1]] = t
        x += t.shape[1] + pad
    return out


def sample_grid(rows):
    """Rows of RGB tiles -> one RGB image (white gaps)."""
    lines = [_stack(r) for r in rows]
    w = max(line.shape[1] for line in lines)
    pad = 2
    out = np.full((sum(line.shape[0] for line in lines)
                   + pad * (len(lines) - 1), w, 3), 255, np.uint8)
    y = 0
    for line in lines:
        out[y:y + line.shape[0], :line.shape[1]] = line
        y += line.shape[0] + pad
    return out


def _save_rgb(path, rgb, zoom=1):
    from PIL import Image
    im = Image.fromarray(rgb)
    if zoom > 1:
        im = im.resize((im.width * zoom, im.height * zoom), Image.NEAREST)
    im.save(path)


#: the thesis demonstration's targets: N-ReNet's held-out mean IoU, and
#: its lead over the local baseline
TARGET_MIOU, TARGET_GAP = 0.90, 0.20
STOP_WORDS = {"iters": "all", "plateau": "plateau", "budget": "budget",
              "interrupted": "interrupted"}


def verdict_line(results):
    """N-ReNet's lead over the baseline and whether the targets are met."""
    gap = results["nrenet"]["miou"] - results["baseline"]["miou"]
    met = results["nrenet"]["miou"] >= TARGET_MIOU and gap >= TARGET_GAP
    return ("N-ReNet minus baseline: %+.1f points of mean IoU (target: "
            "N-ReNet >= %d%% and >= %d points above the baseline: %s)."
            % (100 * gap, 100 * TARGET_MIOU, 100 * TARGET_GAP,
               "met" if met else "NOT met"))


def warning_line(results):
    """A warning when the N-ReNet is not ahead by the target, else None."""
    n, b = results["nrenet"]["miou"], results["baseline"]["miou"]
    if n <= b:
        return ("the N-ReNet (%.1f%%) is not ahead of the local baseline "
                "(%.1f%%): on this data it did not learn to use the "
                "context; see the training curves below" % (100 * n, 100 * b))
    if n < TARGET_MIOU or n - b < TARGET_GAP:
        return ("the N-ReNet (%.1f%%) leads the baseline (%.1f%%) by less "
                "than the targets (%d%%, +%d points); see the training "
                "curves below" % (100 * n, 100 * b, 100 * TARGET_MIOU,
                                  100 * TARGET_GAP))
    return None


def write_report(out, results, details, images):
    """report.json (the required shape), details.json and report.md."""
    from hrenet.files import write_json, write_text
    report = {"models": {m: {k: float(results[m][k])
                             for k in ("miou", "pixel_acc", "class_acc")}
                         for m in MODELS}}
    write_json(os.path.join(out, "report.json"), report)
    write_json(os.path.join(out, "details.json"), details)
    d, st = details, details["settings"]
    lines = [
        "# Main job: context across the image matters",
        "",
        "Dataset: %s (%s), %d training, %d validation (for the schedule) "
        "and %d held-out images, %d classes (%s)." % (
            d["dataset"] + (" " + st["variant"] if d["dataset"] ==
                            "synthetic" else ""), d["root"],
            d["images"]["train"], d["images"]["dev"], d["images"]["val"],
            len(d["classes"]), ", ".join(d["classes"])),
        "On the synthetic sets an object's class is told only by a coloured "
        "cue at least an eighth of the image away from it; locally all "
        "objects look alike.",
        "",
        "| model | parameters | receptive field | mean IoU | pixel acc. | "
        "class acc. | iterations | best val. mean IoU | forward / image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in MODELS:
        r, info = results[m], d["models"][m]
        rf = "whole image" if info["receptive_field"] is None else \
            "%d x %d px" % (info["receptive_field"], info["receptive_field"])
        best = info.get("best_dev")
        lines.append("| %s | %d | %s | %.1f%% | %.1f%% | %.1f%% | %d (%s) | "
                     "%s | %.1f ms |"
                     % (TITLES[m], info["params"], rf, 100 * r["miou"],
                        100 * r["pixel_acc"], 100 * r["class_acc"],
                        info["iterations"], STOP_WORDS[info["stop"]],
                        "%.1f%% at %d" % (100 * best["miou"], best["iter"])
                        if best else "–", info["forward_ms"]))
    lines += ["", verdict_line(results)]
    warning = warning_line(results)
    if warning:
        lines += ["", "**Warning:** " + warning]
    if st["patience"]:
        how = ("each until its validation mean IoU stopped improving (every "
               "%d iterations; %d validations without a gain: learning "
               "rate x0.1, then stop), at most %d iterations%s; the best "
               "validation's weights scored" % (
                   st["val_every"], st["patience"], st["iters"],
                   " or %s of training" % clock(st["budget"])
                   if st["budget"] else ""))
    else:
        how = ("%d iterations each, the best validation's weights scored"
               % st["iters"])
    lines += [
        "",
        "Trained %s (batch %d, %s lr %g%s) on %s crops, scored on whole "
        "held-out images; times on %s, %d threads. Whole job: %s." % (
            how, st["batch_size"], st["solver_type"], st["base_lr"],
            ", classes weighed by median frequency balancing to the power "
            "%g" % st["class_weight_power"]
            if st.get("class_weight_power") else "",
            "x".join(str(v) for v in d["crop"]), d["machine"],
            d["threads"], clock(d["seconds"])),
        "",
        "## Per-class IoU",
        "",
        "| class | " + " | ".join(TITLES[m] for m in MODELS) + " |",
        "|---|" + "---|" * len(MODELS),
    ]
    for c, name in enumerate(d["classes"]):
        cells = []
        for m in MODELS:
            v = results[m]["iou"][c]
            cells.append("–" if v is None or not np.isfinite(v)
                         else "%.1f%%" % (100 * v))
        lines.append("| %s | %s |" % (name, " | ".join(cells)))
    lines += ["", "## Pictures", "",
              "Held-out images: image, ground truth, baseline, N-ReNet "
              "(VOC palette; pale beige: ignored pixels).", "",
              "![samples](%s)" % images["samples"], ""]
    for m in MODELS:
        lines += ["%s: confusion (rows: ground truth) and training curve."
                  % TITLES[m], "",
                  "![confusion %s](%s) ![curves %s](%s)" % (
                      m, images["confusion_" + m], m, images["curves_" + m]),
                  ""]
    lines += ["N-ReNet feature maps in the style of the paper's Figure 2 "
              "(first %d channels of renet1_v and renet3_h for the first "
              "sample; each channel min-max scaled):"
              % d["settings"]["feature_channels"], "",
              "![renet1_v](%s) ![renet3_h](%s)" % (images["renet1_v"],
                                                   images["renet3_h"]),
              "", "Files: `report.json` (metrics), `details.json` "
              "(everything above), `<model>/` (prototxts, training log "
              "`log.jsonl`, snapshots, `score/`), `commit`, "
              "`command`."]
    write_text(os.path.join(out, "report.md"), "\n".join(lines) + "\n")
    return report


def pictures(out, models, val_source, s):
    """Sample predictions, feature maps; returns {key: file name}."""
    from hrenet import lmdb_io, visual
    palette = visual.palette_for("voc")
    rows, first = [], None
    for i, (_, image, label) in enumerate(lmdb_io.read_dataset(val_source)):
        if i >= s["samples"]:
            break
        if first is None:
            first = image
        rgb = image[:, :, ::-1]
        tiles = [rgb, visual.colorize(label, palette)]
        for m in ("baseline", "nrenet"):
            pred, _, _ = models[m].predict(image)
            tiles.append(visual.colorize(pred, palette))
        rows.append(tiles)
    files = {"samples": "samples.png"}
    _save_rgb(os.path.join(out, files["samples"]), sample_grid(rows), 2)
    net = models["nrenet"]
    net.forward(first)
    for blob in ("renet1_v", "renet3_h"):
        grid = visual.feature_grid(net.net.blobs[blob].data[0],
                                   k=s["feature_channels"], zoom=4)
        files[blob] = "features_%s.png" % blob
        from PIL import Image
        Image.fromarray(grid).save(os.path.join(out, files[blob]))
    return files


# --------------------------------------------------------------------------
# The job

def run(out, *args, **kwargs):
    """Run the whole job into the folder ``out``; returns the report dict.

    Raises :class:`hrenet.inference.ToolError` with one line on bad input
    (a missing or empty ``root``, a split without images). On any failure,
    Ctrl-C included, the run folder is removed if this call created it (or
    found it empty), so nothing half-written stays. See :func:`_run` for
    the arguments.
    """
    existed = os.path.isdir(out)
    fresh = not existed or not os.listdir(out)
    try:
        return _run(out, *args, **kwargs)
    except BaseException:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        elif fresh:  # empty before: empty again
            for name in os.listdir(out):
                path = os.path.join(out, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
        raise


def _run(out, fmt="synthetic", root=None, classes_file=None, voc_root=None,
         quick=False, iters=None, seed=0, crop=None, command="",
         repo_root=None, stream=None, variant=DEFAULT_VARIANT, budget=None,
         overrides=None):
    """The job (see :func:`run`): ``fmt``/``root`` the dataset
    (synthetic: the ``variant`` of :data:`hrenet.synthetic.VARIANTS`,
    generated into the run folder), ``quick``, ``iters`` and ``budget``
    the size of the run (:func:`settings`; ``overrides`` replaces
    settings by name), ``crop`` the training crop (default: the smallest
    training image, at most 128 x 160)."""
    from hrenet import experiment, inference, plots, timing
    stream = stream or sys.stdout
    s = settings(quick, iters, seed, variant, budget)
    s.update(overrides or {})
    t0 = time.monotonic()
    if fmt != "synthetic" and not root:
        raise ToolError(f"--format {fmt} needs --root DIR")
    if fmt != "synthetic" and not os.path.isdir(root):
        raise ToolError(f"--root {root}: no such directory; give the "
                        f"dataset folder in the {fmt} layout")
    # Expected shares of the time (measured on 2 cores), for the ETA.
    steps = Steps([("data", 0.3), ("nets", 0.05), ("train N-ReNet", 4),
                   ("train baseline", 7), ("score", 0.3), ("report", 0.3)],
                  stream)
    os.makedirs(out, exist_ok=True)
    repo_root = repo_root or os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
    with open(os.path.join(out, "commit"), "w") as f:
        f.write(git_commit(repo_root) + "\n")
    with open(os.path.join(out, "command"), "w") as f:
        f.write(command + "\n")

    w = steps.next()
    if fmt == "synthetic":
        root = make_synthetic(os.path.join(out, "data"), s)
    names = class_names_of(fmt, root, classes_file)
    lmdbs = build_lmdbs(fmt, root, os.path.join(out, "data"), names,
                        voc_root)
    from hrenet import lmdb_io
    metas = {k: lmdb_io.read_meta(v) for k, v in lmdbs.items()}
    if crop is None:
        sz = metas["train"]["sizes"]
        crop = (min(sz["min_height"], 128), min(sz["min_width"], 160))
    steps.finish(w)

    w = steps.next()
    paths = write_nets(out, lmdbs, len(names), s, crop)
    steps.finish(w)

    inference.set_mode(None)
    weights, trained = {}, {}
    schedule = experiment.Schedule(
        iters=s["iters"], val_every=s["val_every"], patience=s["patience"],
        min_delta=s["min_delta"], lr_drops=s["lr_drops"],
        min_iters=s["min_iters"], budget=s["budget"])
    for m in MODELS:
        w = steps.next()
        summary = experiment.train(experiment.Run(
            paths[m]["solver"], os.path.join(paths[m]["folder"], "train"),
            deploy=paths[m]["deploy"], val_source=lmdbs["dev"],
            schedule=schedule), progress=True)
        weights[m] = summary["best"] or summary["snapshot"][0]
        trained[m] = summary
        steps.finish(w)

    w = steps.next()
    results, models = {}, {}
    for m in MODELS:
        results[m] = experiment.score(
            paths[m]["deploy"], weights[m], lmdbs["val"],
            out=os.path.join(paths[m]["folder"], "score"), title=TITLES[m])
        models[m] = inference.load_model(paths[m]["deploy"], weights[m])
    steps.finish(w)

    w = steps.next()
    images = pictures(out, models, lmdbs["val"], s)
    details = {"dataset": fmt, "root": os.path.abspath(root),
               "classes": list(names), "crop": list(crop),
               "images": {k: metas[k]["count"] for k in metas},
               "settings": _jsonable(s),
               "machine": _machine(), "threads": os.cpu_count(),
               "models": {}}
    h, wd = s["height"], s["width"]
    if fmt != "synthetic":
        h, wd = crop
    for m in MODELS:
        net = models[m].net
        t = timing.time_forward(models[m], h, wd, warmup=1,
                                repeats=s["time_repeats"], per_layer=False)
        plots.plot_confusion(np.array(results[m]["confusion"]), names,
                             os.path.join(out, "confusion_%s.png" % m),
                             title=TITLES[m])
        images["confusion_" + m] = "confusion_%s.png" % m
        curves = os.path.join(paths[m]["folder"], "train", "curves.png")
        shutil.copyfile(curves, os.path.join(out, "curves_%s.png" % m))
        images["curves_" + m] = "curves_%s.png" % m
        details["models"][m] = {
            "params": int(sum(b.data.size for blobs in net.params.values()
                              for b in blobs)),
            "receptive_field": paths[m]["rf"],
            "forward_ms": float(t["total"]["median_ms"]),
            "forward_size": [h, wd],
            "train_seconds": trained[m]["wall"],
            "iterations": trained[m]["iter"],
            "stop": trained[m]["stop"],
            "best_dev": trained[m]["best_val"],
            "weights": os.path.relpath(weights[m], out),
            "iou": results[m]["iou"],
            "fwiou": results[m]["fwiou"]}
    details["seconds"] = time.monotonic() - t0
    details["warning"] = warning_line(results)
    report = write_report(out, results, details, images)
    steps.finish(w)
    for m in MODELS:
        info = details["models"][m]
        print("%s: %d iterations in %s (stopped: %s)" % (
            TITLES[m], info["iterations"], clock(info["train_seconds"]),
            STOP_WORDS[info["stop"]]), file=stream)
    if details["warning"]:
        print("warning: " + details["warning"], file=stream)
    return report


def _jsonable(s):
    """The settings as JSON values (the style as a dict, tuples as
    lists)."""
    import dataclasses
    out = {}
    for k, v in s.items():
        if dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _machine():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
