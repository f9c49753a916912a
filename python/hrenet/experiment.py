"""One way to run an experiment: a net and its solver, trained on its data
with a schedule into a run folder, then scored on a held-out split.

Every caller goes through these functions, in-process: ``tools/train.py``
and ``tools/score.py``, the main job (:mod:`hrenet.mainjob`) and every study
of the paper (:mod:`hrenet.studies`, ``tools/run_study.py``). They write the
same files, so a run folder reads the same whoever made it:

``OUT/log.jsonl``, ``OUT/curves.png``, ``OUT/solver.prototxt``,
``OUT/snapshots/``          training (:func:`hrenet.training.train`)
``OUT/summary.{json,md}``   the training summary (:func:`write_summary`)
``SCORE/score.{json,md}``, ``SCORE/confusion.png``
                            a scored split (:func:`write_score`)

A :class:`Run` says what to train (the solver file, whose net reads its
LMDBs; optional starting weights or a snapshot to resume; a device) and
where; its :class:`Schedule` says for how long and how to validate on the
way. :func:`train` trains, :func:`score` scores the deploy net on an LMDB
split.
"""
import dataclasses
import os
import sys
from typing import Optional

from hrenet.files import StagedOutput, write_json, write_text


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run trains and when it stops.

    ``iters``: the iteration to train to at the most (default: the
    solver's ``max_iter``); ``display``: log the loss every N iterations
    (default: the solver's); ``val_every``: score the validation split
    every N iterations (0: never), at most ``val_limit`` images.

    Validation-driven stops (they need ``val_every``): a validation whose
    mean IoU beats the best so far by more than ``min_delta`` is the new
    best, and with ``keep_best`` its weights are saved as
    ``OUT/snapshots/best_iter_N.caffemodel``. After ``patience``
    validations in a row without a new best (0: never; validations up to
    iteration ``min_iters`` do not count, so a slow start is no plateau)
    the run is on a plateau: it multiplies the learning rate by
    ``lr_factor`` and goes on, ``lr_drops`` times, then stops.
    ``budget``: stop once training has taken this many seconds (counted
    across resumes; validation included). Every stop
    takes a snapshot, so a stopped run can be resumed with a larger
    ``iters`` or ``budget`` (one that stopped on a plateau needs a larger
    ``lr_drops`` or ``patience`` as well: its plateau state is restored).
    """
    iters: Optional[int] = None
    display: Optional[int] = None
    val_every: int = 0
    val_limit: Optional[int] = None
    patience: int = 0
    min_delta: float = 0.0
    lr_drops: int = 0
    lr_factor: float = 0.1
    min_iters: int = 0
    budget: Optional[float] = None
    keep_best: bool = True

    def __post_init__(self):
        if (self.patience or self.lr_drops) and not self.val_every:
            raise ValueError("patience and lr_drops need val_every > 0 "
                             "(the plateau is seen on the validation "
                             "split)")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"lr_factor {self.lr_factor}: use a number "
                             "between 0 and 1")
        if self.budget is not None and self.budget <= 0:
            raise ValueError(f"budget {self.budget}: use a positive number "
                             "of seconds")


@dataclasses.dataclass(frozen=True)
class Run:
    """A training run: ``solver`` (a solver prototxt whose net reads its
    data) trained into ``out``, from ``weights`` (a .caffemodel, layers
    copied by name) or resuming ``snapshot`` (a .solverstate), on GPU
    ``gpu`` (None: the CPU). Validation (``schedule.val_every``) scores
    ``deploy`` (default: deploy.prototxt beside the net) on ``val_source``
    (default: the net's TEST-phase SegData source)."""
    solver: str
    out: str
    weights: Optional[str] = None
    snapshot: Optional[str] = None
    gpu: Optional[int] = None
    deploy: Optional[str] = None
    val_source: Optional[str] = None
    schedule: Schedule = Schedule()


def train(run, progress=True, should_stop=None, warn=None, overwrite=False,
          info=None):
    """Train ``run`` (:func:`hrenet.training.train`); returns its summary
    dict (``status``, ``stop``: why it ended, ``iter``, ``start``,
    ``snapshot``, ``last_val``, ``best_val``, ``best``: the best
    validation's weights, ``wall``, ...) and writes ``summary.{json,md}``
    into ``run.out``.

    ``should_stop()`` is polled between iterations (a stop request takes a
    snapshot); ``warn`` and ``info`` receive one-line messages;
    ``overwrite`` lets a run start again in a folder that holds one.
    """
    from hrenet import training
    summary = training.train(
        run, progress=progress,
        should_stop=should_stop or (lambda: False), warn=warn,
        overwrite=overwrite, info=info)
    summary["command"] = list(sys.argv)
    write_summary(run, summary)
    return summary


#: why a run ended (the summary's ``stop``)
STOPS = {"iters": "the last iteration", "plateau": "no better validation "
         "after the last learning-rate drop", "budget": "the time budget",
         "interrupted": "a stop request (resume from the snapshot)"}


def write_summary(run, summary):
    """``summary.json`` and ``summary.md`` of a training run in run.out."""
    from hrenet.metrics import pct
    write_json(os.path.join(run.out, "summary.json"), summary)
    val = summary.get("last_val")
    lines = [f"# Training run {run.out}", "",
             f"- solver: {os.path.abspath(run.solver)}",
             f"- status: {summary['status']} at iteration {summary['iter']} "
             f"(started at {summary['start']}), {summary['wall']:.0f} s; "
             f"stopped: {STOPS[summary['stop']]}",
             f"- last snapshot: {(summary['snapshot'] or ['none'])[-1]}"]
    for what, v in (("last", val), ("best", summary.get("best_val"))):
        if v:
            lines.append(f"- {what} validation (iteration {v['iter']}): "
                         f"mean IoU {pct(v['miou'])}%, pixel acc. "
                         f"{pct(v['pixel_acc'])}%, mean class acc. "
                         f"{pct(v['class_acc'])}%")
    if summary.get("best"):
        lines.append(f"- best weights: {summary['best']}")
    lines += ["", "![curves](curves.png)", ""]
    write_text(os.path.join(run.out, "summary.md"), "\n".join(lines))


def score(deploy, weights, source, out=None, crf=False, crf_params=None,
          gpu=None, limit=None, progress=False, title=None):
    """Score ``deploy`` with ``weights`` on the LMDB split ``source``
    (:func:`hrenet.scoring.score`); with ``out``, write the report there
    (:func:`write_score`). Returns the scores dict."""
    from hrenet import scoring
    result = scoring.score(deploy, weights, source, crf=crf,
                           crf_params=crf_params, gpu=gpu, limit=limit,
                           progress=progress)
    result.update({"model": os.path.abspath(deploy),
                   "weights": os.path.abspath(weights),
                   "split": os.path.abspath(source), "crf": bool(crf),
                   "device": "cpu" if gpu is None else f"gpu{gpu}"})
    if out is not None:
        with StagedOutput(last=("score.json",)) as stage:
            write_score(stage.folder(out), result, result["classes"],
                        title or os.path.basename(weights))
    return result


def write_score(folder, result, names, title):
    """The report of a scored split into ``folder``: ``score.md`` (the
    metrics and the per-class table), ``confusion.png`` and, last,
    ``score.json`` (the whole result dict)."""
    from hrenet import metrics
    from hrenet.plots import plot_confusion
    md = (f"# Scores: {title}\n\n{result['images']} images of "
          f"{result['split']}; "
          f"{'with' if result.get('crf') else 'without'} DenseCRF; "
          f"{result.get('device', 'cpu')}; net {result['forward_ms']:.1f} "
          f"ms per image, other work {result['bookkeeping_ms']:.1f} ms "
          f"({100 * result['bookkeeping_fraction']:.1f}% of the total)."
          "\n\nn/a: the class occurs in neither the ground truth nor "
          "the predictions (IoU) or not in the ground truth (accuracy); "
          "it does not count in the means.\n\n"
          + metrics.format_markdown(result, names, title))
    plot_confusion(result["confusion"], names,
                   os.path.join(folder, "confusion.png"),
                   title=f"{title} (mean IoU {metrics.pct(result['miou'])}%)")
    write_text(os.path.join(folder, "score.md"), md)
    write_json(os.path.join(folder, "score.json"), result)
