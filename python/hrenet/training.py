"""Training through pycaffe with a JSON-lines log, curves and clean stops.

:func:`train` runs a Caffe solver one iteration at a time (``solver.step``)
so that it can log, validate and stop between iterations:

* ``OUT/log.jsonl``, one record per line:
  ``{"type": "train", "iter", "loss", "lr", "wall"}`` every ``display``
  iterations (loss: mean over those iterations of the train net's loss
  outputs; lr: :func:`learning_rate`; wall: seconds of training, counted
  across resumes), ``{"type": "val", "iter", "miou", "pixel_acc",
  "class_acc", "fwiou", "wall"}`` after validation, ``{"type": "best",
  "iter", "caffemodel", "miou"}`` when a validation is the best so far
  (its weights saved as ``OUT/snapshots/best_iter_N.caffemodel``, the
  previous best's removed), ``{"type": "lr", "iter", "drop", "base_lr"}``
  when a plateau lowers the learning rate, and ``{"type": "snapshot",
  "iter", "caffemodel", "solverstate"}``.
* ``OUT/curves.png`` (:func:`hrenet.plots.plot_curves`), redrawn after each
  validation and at the end.
* ``OUT/solver.prototxt``: the solver as run (net path made absolute,
  snapshots redirected to ``OUT/snapshots/``, ``max_iter`` as overridden).

The schedule (:class:`hrenet.experiment.Schedule`) stops the run at its last
iteration, on a plateau of the validation mean IoU (after its learning-rate
drops) or when its time budget is spent; the summary's ``stop`` says which.

Validation (``val_every`` > 0) copies the current weights by layer name into
the deploy net and scores the validation split with
:func:`hrenet.scoring.score_split`. By default the deploy net is
``deploy.prototxt`` beside the solver's net file and the split is the
``source`` of the net's TEST-phase ``SegData`` layer.

A stop request (``should_stop()`` true, e.g. after SIGINT/SIGTERM) takes a
snapshot after the running iteration and returns; passing its
``.solverstate`` (or any periodic one, from the solver's ``snapshot``
setting: the log records them too) as ``snapshot`` resumes, and the log
continues (records after the snapshot's iteration are dropped). Resuming is
exact: Caffe writes the data layers' state (``X.datastate``, the SegData
stream's position and generators) beside each ``X.solverstate`` and reads it
back, so the resumed run trains on the batches the uninterrupted run would
have, and its losses and weights are the same to the last bit (CPU); only
the logged mean loss of the display window that the stop cut holds just
its iterations after the resume.

:func:`parse_caffe_log` turns a ``caffe train`` log into the same records.
"""
import math
import os
import re
import shutil
import time

import numpy as np

from hrenet.files import read_json_lines, write_json_lines
from hrenet.inference import ToolError

LOG = "log.jsonl"
CURVES = "curves.png"


# ---------------------------------------------------------------------------
# Learning rate (Caffe's SGDSolver::GetLearningRate)

def learning_rate(param, it):
    """The learning rate Caffe's SGD solvers use at iteration ``it``."""
    policy = param.lr_policy or "fixed"
    base = param.base_lr
    if policy == "fixed":
        return base
    if policy == "step":
        return base * param.gamma ** (it // param.stepsize)
    if policy == "exp":
        return base * param.gamma ** it
    if policy == "inv":
        return base * (1 + param.gamma * it) ** (-param.power)
    if policy == "multistep":
        step = sum(1 for s in param.stepvalue if it >= s)
        return base * param.gamma ** step
    if policy == "poly":
        return base * (1 - it / float(param.max_iter)) ** param.power
    if policy == "sigmoid":
        return base / (1 + math.exp(-param.gamma * (it - param.stepsize)))
    raise ToolError(f"unknown lr_policy {policy!r}")


# ---------------------------------------------------------------------------
# Files of a solver

def net_path(solver_param, solver_path):
    """The solver's train net file (``net:`` or ``train_net:``)."""
    path = solver_param.net or solver_param.train_net
    if not path:
        raise ToolError(f"{solver_path}: the solver names no net file "
                        "(net: or train_net:); inline nets are not supported")
    return path


def seg_data_sources(net_param, phase):
    """``source`` of the SegData layers included in ``phase`` (0 TRAIN,
    1 TEST)."""
    return [layer.seg_data_param.source
            for layer in seg_data_layers(net_param, phase)]


def seg_data_layers(net_param, phase):
    out = []
    for layer in net_param.layer:
        if layer.type != "SegData":
            continue
        phases = [r.phase for r in layer.include if r.HasField("phase")]
        if phases and phase not in phases:
            continue
        if not phases and layer.HasField("phase") and layer.phase != phase:
            continue
        out.append(layer)
    return out


def validation_transform(deploy_param, train_param):
    """(mean, scale) for validation: None, None when the deploy net records
    its own (transform_param), else those of the train net's TEST-phase
    SegData layer (None, None without one)."""
    from hrenet.inference import read_transform
    if read_transform(deploy_param) != (None, None):
        return None, None
    layers = seg_data_layers(train_param, 1)
    if not layers:
        return None, None
    p = layers[0].seg_data_param
    mean = list(p.mean_value) or None
    if mean is not None and len(mean) == 1:
        mean = mean * 3
    return mean, p.scale


def check_sources(net_param, path, phase):
    from hrenet import lmdb_io
    from hrenet.datasets import DataError
    for source in seg_data_sources(net_param, phase):
        if not os.path.isdir(os.path.join(source, "image_lmdb")):
            raise ToolError(f"{path}: SegData source {source!r} is not a "
                            "directory written by tools/build_lmdb.py "
                            "(relative paths are taken from the current "
                            "directory)")
        try:  # a truncated LMDB would kill Caffe's reader with SIGBUS
            lmdb_io.check_dataset(source)
        except DataError as e:
            raise ToolError(f"{path}: SegData source: {e}") from e


def check_solverstate_file(path):
    """Refuse a file that is not a binary ``.solverstate`` (a
    ``.caffemodel``, say) before Caffe's Restore aborts on it."""
    from hrenet import inference
    inference.require_file(path, "snapshot (.solverstate)",
                           "give the .solverstate that --snapshot names")
    if path.endswith(".h5"):
        return  # HDF5 snapshots: left to Caffe
    pb2 = inference.caffe_pb2()
    with open(path, "rb") as f:
        data = f.read()
    base = os.path.splitext(path)[0]
    weights = pb2.NetParameter()
    try:
        weights.ParseFromString(data)
        is_weights = bool(len(weights.layer) or len(weights.layers))
    except Exception:
        is_weights = False
    if is_weights:
        raise ToolError(f"--snapshot {path}: a .caffemodel (weights), not a "
                        "solver state; pass the .solverstate saved beside "
                        f"it ({base}.solverstate) to resume, or this file "
                        "as --weights to start from its weights")
    state = pb2.SolverState()
    try:
        state.ParseFromString(data)
        ok = state.HasField("iter")  # Caffe always writes it
    except Exception:
        ok = False
    if not ok:
        raise ToolError(f"--snapshot {path}: not a binary .solverstate "
                        "written by Caffe; give a <prefix>_iter_N.solverstate "
                        "from a run's snapshots/ folder")


def solver_type(param):
    """The solver's type name (``type``, else the legacy ``solver_type``
    enum, else SGD)."""
    if param.HasField("type") or not param.HasField("solver_type"):
        return param.type or "SGD"
    return {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp",
            4: "AdaDelta", 5: "Adam"}.get(param.solver_type, "SGD")


def learnable_shapes(net):
    """Shapes of the net's learnable parameter blobs in Caffe's order,
    each shared blob once (shared parameters share their memory)."""
    seen, shapes = set(), []
    for layer in net.layers:
        for blob in layer.blobs:
            ptr = blob.data.ctypes.data
            if ptr not in seen:
                seen.add(ptr)
                shapes.append(tuple(blob.data.shape))
    return shapes


def check_history(net, state, path, solver_type):
    """The solver state's history blobs against the train net: Caffe's
    Restore aborts on a count or shape that differs."""
    from hrenet import inference
    shapes = learnable_shapes(net)
    copies = 2 if solver_type in ("Adam", "AdaDelta") else 1
    if len(state.history) != copies * len(shapes):
        raise ToolError(
            f"--snapshot {path}: holds {len(state.history)} history blobs "
            f"but the {solver_type} solver on this net keeps "
            f"{copies * len(shapes)}; it was saved by another solver type "
            "or net: resume with the solver and net that wrote it")
    for i, blob in enumerate(state.history):
        want = shapes[i % len(shapes)]
        got, legacy = inference._proto_shape(blob)
        if not inference._shape_equal(want, got, legacy):
            raise ToolError(
                f"--snapshot {path}: history blob {i} has shape "
                f"{'x'.join(map(str, got))} but the net's parameter has "
                f"{'x'.join(map(str, want))}; it was saved for another "
                "net: resume with the net that wrote it")


def check_snapshot(net, path, solver_type=None):
    """Check a binary ``.solverstate`` and the weights it names against the
    train net before Caffe's Restore (which aborts on a mismatch)."""
    from hrenet import inference
    if path.endswith(".h5"):
        return  # HDF5 snapshots: left to Caffe
    state = inference.caffe_pb2().SolverState()
    try:
        with open(path, "rb") as f:
            state.ParseFromString(f.read())
    except Exception as e:
        raise ToolError(f"{path}: not a binary .solverstate ({e})") from e
    if state.learned_net:
        inference.require_file(state.learned_net,
                               f"weights file named by {path}",
                               "snapshots keep the .caffemodel beside the "
                               ".solverstate")
        inference.check_weights(net, inference.read_weights(
            state.learned_net), state.learned_net)
    if solver_type is not None:
        check_history(net, state, path, solver_type)


def snapshot_files(prefix, it):
    return (f"{prefix}_iter_{it}.caffemodel",
            f"{prefix}_iter_{it}.solverstate")


def loss_blobs(net):
    """Top blobs of the train net's loss layers (type ending in Loss)."""
    names = list(net.blobs.keys())
    out = []
    for i, layer in enumerate(net.layers):
        if layer.type.endswith("Loss"):
            out += [names[j] for j in net._top_ids(i)]
    return out or [b for b in net.outputs if net.blobs[b].count == 1]


def copy_params(src, dst, names=None):
    """Copy parameter blobs by layer name from net ``src`` into ``dst``."""
    for name in names if names is not None else dst.params:
        for a, b in zip(src.params[name], dst.params[name]):
            b.data[...] = a.data


def check_copy(src, dst, dst_path):
    """Layer names whose params :func:`copy_params` copies; ToolError if a
    deploy layer with parameters has no counterpart of the same shapes."""
    names = []
    for name, blobs in dst.params.items():
        if name not in src.params:
            raise ToolError(f"{dst_path}: layer {name!r} has parameters but "
                            "the train net has no layer of that name")
        a = [tuple(b.data.shape) for b in src.params[name]]
        b = [tuple(b.data.shape) for b in blobs]
        if a != b:
            raise ToolError(f"{dst_path}: layer {name!r} has parameter "
                            f"shapes {b} but the train net's has {a}")
        names.append(name)
    return names


# ---------------------------------------------------------------------------
# The loop

def train(run, progress=True, should_stop=lambda: False, warn=None,
          overwrite=False, info=None):
    """Train ``run`` (:class:`hrenet.experiment.Run`: solver, out, weights
    or snapshot, gpu, validation net and split, schedule); returns a summary
    dict (``status`` "done" or "interrupted", ``iter``, ``start``,
    ``snapshot`` paths of the last snapshot, ``last_val``, ``wall``). Use
    it through :func:`hrenet.experiment.train`, which also writes the
    run's summary."""
    from hrenet import inference
    inference.set_mode(run.gpu)  # a bad --gpu stops before anything is
    out = os.path.abspath(run.out)  # written
    created = not os.path.exists(out)
    before = set() if created else set(os.listdir(out))
    try:
        solver, val = _set_up(run, out, overwrite, info)
    except BaseException:
        if created:  # a start-up failure leaves nothing behind
            shutil.rmtree(out, ignore_errors=True)
        elif os.path.isdir(out):
            for name in set(os.listdir(out)) - before:
                path = os.path.join(out, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
        raise
    return _loop(solver, val, out, run.snapshot, run.schedule, progress,
                 should_stop)


def _set_up(run, out, overwrite, info):
    """Check the inputs, write OUT/solver.prototxt, build the solver (and
    the validation net and split)."""
    solver_path, weights, snapshot, gpu = (run.solver, run.weights,
                                           run.snapshot, run.gpu)
    deploy, val_source = run.deploy, run.val_source
    val_every, iters = run.schedule.val_every, run.schedule.iters
    from google.protobuf import text_format

    from hrenet import inference, scoring
    from hrenet.files import write_text
    caffe = inference.import_caffe()
    sp = inference.read_solver_param(solver_path)
    train_path = net_path(sp, solver_path)
    train_param = inference.read_net_param(train_path)
    check_sources(train_param, train_path, 0)
    if snapshot:
        check_solverstate_file(snapshot)
    weights_param = inference.read_weights(weights) if weights else None
    log_path = os.path.join(out, LOG)
    if os.path.exists(log_path) and not snapshot and not overwrite:
        raise ToolError(f"{log_path} exists: pass --snapshot to resume that "
                        "run, --overwrite to start it again, or another "
                        "--out")
    if val_every:
        deploy = deploy or os.path.join(os.path.dirname(train_path),
                                        "deploy.prototxt")
        inference.require_file(deploy, "deploy prototxt for --val-every",
                               "give --deploy")
        if not val_source:
            sources = seg_data_sources(train_param, 1)
            if not sources:
                raise ToolError(f"{train_path}: no TEST-phase SegData layer "
                                "to take the validation split from; give "
                                "--val-source")
            val_source = sources[0]
    os.makedirs(os.path.join(out, "snapshots"), exist_ok=True)

    # the solver as run
    ran = type(sp)()
    ran.CopyFrom(sp)
    if ran.net:
        ran.net = os.path.abspath(train_path)
    else:
        ran.train_net = os.path.abspath(train_path)
    prefix = os.path.basename(sp.snapshot_prefix or "") or "snapshot"
    ran.snapshot_prefix = os.path.join(out, "snapshots", prefix)
    if iters is not None:
        ran.max_iter = int(iters)
    ran.solver_mode = ran.CPU if gpu is None else ran.GPU
    if gpu is not None:
        ran.device_id = gpu
    run_solver = os.path.join(out, "solver.prototxt")
    write_text(run_solver, text_format.MessageToString(ran))

    solver = caffe.get_solver(run_solver)
    if weights_param is not None:
        matched, _ = inference.check_weights(solver.net, weights_param,
                                             weights)
        solver.net.copy_from(weights)
        if info is not None:
            info(f"copied {len(matched)} layer(s) with parameters from "
                 f"{weights}")
    if snapshot:
        check_snapshot(solver.net, snapshot, solver_type(sp))
        solver.restore(snapshot)
    val = None
    if val_every:
        mean, scale = validation_transform(
            inference.read_net_param(deploy), train_param)
        model = inference.load_model(deploy, None, mean=mean, scale=scale,
                                     warn=None)
        names = check_copy(solver.net, model.net, deploy)
        val = (model, names, scoring.lmdb_split(val_source))
    return (solver, sp, ran), val


class _Plateau(object):
    """The validation-driven part of a schedule: the best validation so
    far, how many validations have not beaten it, the learning-rate drops
    taken. Rebuilt from a log's records when a run resumes."""

    def __init__(self, schedule, records=()):
        self.schedule = schedule
        self.best = None      # the best val record
        self.best_file = None  # its weights
        self.since = 0        # validations since the best
        self.drops = 0
        for r in records:
            if r.get("type") == "val":
                self.update(r)
            elif r.get("type") == "best":
                self.best_file = r["caffemodel"]
            elif r.get("type") == "lr":
                self.drops, self.since = r["drop"], 0

    @property
    def lr_scale(self):
        return self.schedule.lr_factor ** self.drops

    def update(self, rec):
        """Takes a val record; returns True when it is a new best."""
        if self.best is None or \
                rec["miou"] > self.best["miou"] + self.schedule.min_delta:
            self.best, self.since = rec, 0
            return True
        if rec["iter"] > self.schedule.min_iters:
            self.since += 1  # no plateau before min_iters
        return False

    def verdict(self):
        """None (go on), "drop" (lower the learning rate) or "stop"."""
        s = self.schedule
        if not s.patience or self.since < s.patience:
            return None
        return "drop" if self.drops < s.lr_drops else "stop"


def _loop(solvers, val, out, snapshot, schedule, progress, should_stop):
    from hrenet import plots, scoring
    solver, sp, run = solvers
    net = solver.net
    log_path = os.path.join(out, LOG)
    start = solver.iter
    records = []
    if snapshot:
        records = [r for r in read_json_lines(log_path)
                   if r.get("iter", 0) < start or
                   (r.get("type") != "train" and r.get("iter", 0) <= start)]
    write_json_lines(log_path, records)
    # best weights from the part of the log that a resume dropped
    best_prefix = os.path.join(out, "snapshots", "best_iter_")
    for name in os.listdir(os.path.join(out, "snapshots")):
        path = os.path.join(out, "snapshots", name)
        m = re.match(r"best_iter_(\d+)\.caffemodel$", name)
        if m and int(m.group(1)) > start:
            os.remove(path)
    plateau = _Plateau(schedule, records)
    if plateau.best_file and not os.path.exists(plateau.best_file):
        plateau.best_file = None  # removed by a later best, now dropped
    if plateau.drops:
        solver.param.base_lr = sp.base_lr * plateau.lr_scale
    wall0 = max([r.get("wall", 0.0) for r in records] + [0.0])
    display = int(schedule.display or sp.display or 20)
    val_every, budget = schedule.val_every, schedule.budget
    max_iter = run.max_iter
    losses = loss_blobs(net)
    t0 = time.perf_counter()
    log = open(log_path, "a")

    def wall():
        return wall0 + time.perf_counter() - t0

    def emit(record):
        records.append(record)
        import json
        from hrenet.metrics import json_safe
        log.write(json.dumps(json_safe(record)) + "\n")
        log.flush()

    def validate():
        model, names, split = val
        copy_params(net, model.net, names)
        r = scoring.score_split(model, split, limit=schedule.val_limit)
        rec = {"type": "val", "iter": int(solver.iter), "miou": r["miou"],
               "pixel_acc": r["pixel_acc"], "class_acc": r["class_acc"],
               "fwiou": r["fwiou"], "images": r["images"], "wall": wall()}
        emit(rec)
        if plateau.update(rec) and schedule.keep_best:
            path = f"{best_prefix}{solver.iter}.caffemodel"
            net.save(path)
            if plateau.best_file and plateau.best_file != path and \
                    os.path.exists(plateau.best_file):
                os.remove(plateau.best_file)
            plateau.best_file = path
            emit({"type": "best", "iter": int(solver.iter),
                  "caffemodel": path, "miou": rec["miou"], "wall": wall()})
        plots.plot_curves(records, os.path.join(out, CURVES))
        return rec

    def take_snapshot():
        solver.snapshot()
        model, state = snapshot_files(run.snapshot_prefix, solver.iter)
        emit({"type": "snapshot", "iter": int(solver.iter),
              "caffemodel": model, "solverstate": state, "wall": wall()})
        return model, state

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=max_iter, initial=start, unit="it", desc="train",
                   dynamic_ncols=True, leave=False)
    status, stop, last_val, snap = "done", "iters", None, None
    periodic = None  # the iteration of Caffe's last periodic snapshot
    window = []
    try:
        while solver.iter < max_iter:
            if should_stop():
                status = stop = "interrupted"
                break
            it = solver.iter
            solver.step(1)
            loss = float(sum(net.blobs[b].data.sum() for b in losses))
            if not np.isfinite(loss):
                raise ToolError(
                    f"the loss is {loss} at iteration {it}: the training "
                    "diverged; lower base_lr or set clip_gradients in "
                    "the solver")
            window.append(loss)
            if sp.snapshot and solver.iter % sp.snapshot == 0:
                # Caffe wrote a periodic snapshot inside step(): record it
                model, state = snapshot_files(run.snapshot_prefix,
                                              solver.iter)
                emit({"type": "snapshot", "iter": int(solver.iter),
                      "caffemodel": model, "solverstate": state,
                      "wall": wall()})
                periodic = (model, state), int(solver.iter)
            if bar is not None:
                bar.update(1)
            over_budget = budget is not None and wall() >= budget
            if it % display == 0 or solver.iter >= max_iter or over_budget:
                emit({"type": "train", "iter": it,
                      "loss": float(np.mean(window)),
                      "lr": learning_rate(sp, it) * plateau.lr_scale,
                      "wall": wall()})
                if bar is not None:
                    bar.set_postfix_str(f"loss {np.mean(window):.4g}")
                window = []
            if val_every and (solver.iter % val_every == 0
                              or solver.iter >= max_iter or over_budget):
                last_val = validate()
                if bar is not None:
                    bar.write(f"iteration {solver.iter}: val mean IoU "
                              f"{100 * last_val['miou']:.2f}%")
                verdict = plateau.verdict()
                if verdict == "stop":
                    stop = "plateau"
                    break
                if verdict == "drop":
                    plateau.drops += 1
                    plateau.since = 0
                    solver.param.base_lr = sp.base_lr * plateau.lr_scale
                    emit({"type": "lr", "iter": int(solver.iter),
                          "drop": plateau.drops,
                          "base_lr": float(solver.param.base_lr),
                          "wall": wall()})
            if over_budget:
                stop = "budget"
                break
        if periodic and periodic[1] == solver.iter:
            snap = periodic[0]  # a stop right after Caffe's own snapshot
        elif status == "interrupted" or sp.snapshot_after_train or \
                solver.iter > start:
            snap = take_snapshot()
        plots.plot_curves(records, os.path.join(out, CURVES))
    finally:
        if bar is not None:
            bar.close()
        log.close()
    vals = [r for r in records if r.get("type") == "val"]
    return {"status": status, "stop": stop, "iter": int(solver.iter),
            "start": start, "snapshot": snap,
            "last_val": last_val or (vals[-1] if vals else None),
            "best_val": plateau.best, "best": plateau.best_file,
            "out": out, "log": log_path, "curves": os.path.join(out, CURVES),
            "wall": wall()}


# ---------------------------------------------------------------------------
# Plain `caffe train` logs

# glog's prefix: I1201 10:00:00.000000, or with the year, I20261201 ...
_GLOG = re.compile(r"^[IWEF](\d{4})?(\d{2})(\d{2}) "
                   r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?")
_ITER_LOSS = re.compile(r"Iteration (\d+) \(.*?\), loss = ([-+.\deEinfa]+)")
_ITER_LOSS_OLD = re.compile(r"Iteration (\d+), loss = ([-+.\deEinfa]+)")
_LR = re.compile(r"Iteration (\d+), lr = ([-+.\deE]+)")
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_TEST_OUT = re.compile(r"Test net output #\d+: (\S+) = ([-+.\deEinfa]+)")


def _seconds(m):
    import datetime
    year = int(m.group(1) or 2000)  # without a year: any leap year
    t = datetime.datetime(year, int(m.group(2)), int(m.group(3)),
                          int(m.group(4)), int(m.group(5)), int(m.group(6)))
    return t.timestamp() + float(m.group(7) or 0)


def parse_caffe_log(lines):
    """Records (as :func:`train` writes them) from a ``caffe train`` log.

    Train records from ``Iteration N (...), loss = L`` with the lr of the
    matching ``Iteration N, lr = ...`` line; val records from the test
    outputs after ``Iteration N, Testing net (#0)`` (named as the net names
    them: a net with an output ``miou`` gets the mean-IoU curve). ``wall``
    from the glog timestamps, seconds since the first line.
    """
    records, pending, test = [], {}, None
    first = None
    now = 0.0
    for line in lines:
        m = _GLOG.match(line)
        if m:
            t = _seconds(m)
            first = t if first is None else first
            now = t - first
        m = _ITER_LOSS.search(line) or _ITER_LOSS_OLD.search(line)
        if m:
            rec = {"type": "train", "iter": int(m.group(1)),
                   "loss": float(m.group(2)), "lr": None, "wall": now}
            records.append(rec)
            pending[rec["iter"]] = rec
            continue
        m = _LR.search(line)
        if m:
            rec = pending.pop(int(m.group(1)), None)
            if rec is not None:
                rec["lr"] = float(m.group(2))
            continue
        m = _TESTING.search(line)
        if m:
            test = None
            if m.group(2) == "0":
                test = {"type": "val", "iter": int(m.group(1)), "wall": now}
                records.append(test)
            continue
        m = _TEST_OUT.search(line)
        if m and test is not None:
            test[m.group(1)] = float(m.group(2))
            test["wall"] = now
    return records
