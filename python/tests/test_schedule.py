"""Validation-driven schedules (hrenet.experiment.Schedule): the best
validation's weights kept, learning-rate drops and the stop on a plateau,
the stop on a time budget, and an exact resume through all of them."""
import json
import os

import pytest

from hrenet import experiment, training
from hrenet.files import read_json_lines

from _run import run_tool


def records(out, kind=None):
    return [r for r in read_json_lines(os.path.join(out, "log.jsonl"))
            if kind is None or r["type"] == kind]


def run_of(setup, out, **schedule):
    return experiment.Run(setup.solver, str(out),
                          schedule=experiment.Schedule(**schedule))


def test_plateau_drops_the_rate_then_stops(toolsetup, tmp_path):
    """min_delta 1 (no validation can gain a whole mean IoU): the first
    validation is the best, each later one is a plateau of patience 1."""
    out = tmp_path / "run"
    summary = experiment.train(run_of(
        toolsetup, out, iters=1000, display=1, val_every=3, patience=1,
        min_delta=1.0, lr_drops=1, lr_factor=0.5), progress=False)
    assert summary["stop"] == "plateau" and summary["status"] == "done"
    assert summary["iter"] == 9
    assert [r["iter"] for r in records(out, "val")] == [3, 6, 9]
    drops = records(out, "lr")
    assert [(r["iter"], r["drop"]) for r in drops] == [(6, 1)]
    assert drops[0]["base_lr"] == pytest.approx(0.005)
    # the logged rate halves after the drop (solver: base 0.01, step 10)
    lr = {r["iter"]: r["lr"] for r in records(out, "train")}
    assert [lr[i] for i in range(9)] == pytest.approx([0.01] * 6 +
                                                      [0.005] * 3)
    best = records(out, "best")
    assert [r["iter"] for r in best] == [3]
    assert summary["best"] == best[0]["caffemodel"]
    assert summary["best"].endswith(os.path.join("snapshots",
                                                 "best_iter_3.caffemodel"))
    assert os.path.isfile(summary["best"])
    assert summary["best_val"]["iter"] == 3
    assert records(out, "snapshot")[-1]["iter"] == 9
    md = (out / "summary.md").read_text()
    assert "stopped: no better validation after the last learning-rate " \
        "drop" in md and "best validation (iteration 3)" in md


def test_no_plateau_before_min_iters(toolsetup, tmp_path):
    """The same plateau as above, but validations up to iteration 9 do
    not count: the drop comes at 12 and the stop at 15."""
    out = tmp_path / "run"
    summary = experiment.train(run_of(
        toolsetup, out, iters=1000, display=1, val_every=3, patience=1,
        min_delta=1.0, lr_drops=1, lr_factor=0.5, min_iters=9),
        progress=False)
    assert summary["stop"] == "plateau" and summary["iter"] == 15
    assert [r["iter"] for r in records(out, "lr")] == [12]


def test_best_weights_are_the_best_validation(toolsetup, tmp_path, capsys):
    out = tmp_path / "run"
    summary = experiment.train(run_of(toolsetup, out, iters=24,
                                      val_every=2), progress=False)
    assert summary["stop"] == "iters"
    vals = records(out, "val")
    best = max(vals, key=lambda r: r["miou"])
    first_best = next(r for r in vals if r["miou"] == best["miou"])
    assert summary["best_val"]["iter"] == first_best["iter"]
    # one best file only: each new best removes the one before
    kept = [n for n in os.listdir(out / "snapshots") if n.startswith("best")]
    assert kept == [f"best_iter_{first_best['iter']}.caffemodel"]
    rc, err = run_tool("score", ["--model", toolsetup.deploy, "--weights",
                                 summary["best"], "--source", toolsetup.val,
                                 "--out", tmp_path / "score", "--quiet"],
                       capsys)
    assert rc == 0, err
    scored = json.loads((tmp_path / "score" / "score.json").read_text())
    assert scored["miou"] == pytest.approx(best["miou"])


def test_budget_stops_and_validates_there(toolsetup, tmp_path):
    out = tmp_path / "run"
    summary = experiment.train(run_of(toolsetup, out, iters=10 ** 6,
                                      val_every=10 ** 5, budget=1.0),
                               progress=False)
    assert summary["stop"] == "budget" and summary["status"] == "done"
    assert 0 < summary["iter"] < 10 ** 6
    assert summary["wall"] >= 1.0
    # a validation at the stop, and a snapshot to go on from
    assert records(out, "val")[-1]["iter"] == summary["iter"]
    assert records(out, "snapshot")[-1]["iter"] == summary["iter"]


def test_resume_keeps_the_plateau_state(toolsetup, tmp_path):
    """Interrupted after the learning-rate drop and resumed: the same
    losses, validations, drop and stop as the run that was not."""
    plateau = dict(iters=1000, display=1, val_every=3, patience=1,
                   min_delta=1.0, lr_drops=1, lr_factor=0.5)
    whole = tmp_path / "whole"
    experiment.train(run_of(toolsetup, whole, **plateau), progress=False)
    part = tmp_path / "part"

    def stop_at_7():  # after iteration 6's record: solver.iter is 7
        logged = records(part, "train")
        return bool(logged) and logged[-1]["iter"] >= 6

    first = experiment.train(run_of(toolsetup, part, **plateau),
                             should_stop=stop_at_7, progress=False)
    assert first["stop"] == "interrupted" and first["iter"] == 7
    state = first["snapshot"][1]
    second = experiment.train(dataclass_replace(
        run_of(toolsetup, part, **plateau), snapshot=state), progress=False)
    assert second["stop"] == "plateau" and second["iter"] == 9

    def essential(out):
        return [(r["type"], r["iter"], r.get("loss"), r.get("miou"),
                 r.get("lr"), r.get("base_lr"))
                for r in records(out) if r["type"] in ("train", "val", "lr",
                                                       "best")]
    assert essential(part) == essential(whole)
    assert second["best"] == str(part / "snapshots" / "best_iter_3"
                                 ".caffemodel")


def dataclass_replace(run, **changes):
    import dataclasses
    return dataclasses.replace(run, **changes)


def test_a_resume_drops_best_weights_from_the_future(toolsetup, tmp_path):
    """Resuming from an earlier snapshot removes best weights saved after
    it, drops their records, and keeps one best file that the log and the
    summary name."""
    solver = tmp_path / "solver.prototxt"
    solver.write_text(open(toolsetup.solver).read().replace(
        "snapshot: 0", "snapshot: 2"))
    out = tmp_path / "run"

    def run(**kw):
        return experiment.Run(str(solver), str(out), **kw)
    experiment.train(run(schedule=experiment.Schedule(iters=8, val_every=2)),
                     progress=False)
    early = next(r for r in records(out, "snapshot") if r["iter"] == 2)
    future = out / "snapshots" / "best_iter_99.caffemodel"
    future.write_bytes(b"x")
    summary = experiment.train(run(
        snapshot=early["solverstate"],
        schedule=experiment.Schedule(iters=3, val_every=2)), progress=False)
    assert not future.exists()
    best = records(out, "best")
    assert all(r["iter"] <= 3 for r in best)
    kept = sorted(n for n in os.listdir(out / "snapshots")
                  if n.startswith("best"))
    assert kept == [os.path.basename(best[-1]["caffemodel"])]
    assert summary["best"] == best[-1]["caffemodel"]


def test_plateau_bookkeeping():
    sched = experiment.Schedule(val_every=1, patience=2, lr_drops=1,
                                min_delta=0.01)
    p = training._Plateau(sched)
    seq = [0.5, 0.505, 0.52, 0.52, 0.515, 0.6, 0.59, 0.58]
    verdicts = []
    for i, m in enumerate(seq):
        new = p.update({"iter": i, "miou": m})
        v = p.verdict()
        verdicts.append((new, v))
        if v == "drop":
            p.drops, p.since = p.drops + 1, 0
    assert verdicts == [(True, None), (False, None), (True, None),
                        (False, None), (False, "drop"), (True, None),
                        (False, None), (False, "stop")]
    # rebuilt from the log's records: the same state
    recs = [{"type": "val", "iter": i, "miou": m}
            for i, m in enumerate(seq[:5])]
    recs.append({"type": "lr", "iter": 4, "drop": 1, "base_lr": 0.1})
    q = training._Plateau(sched, recs)
    assert (q.best["iter"], q.since, q.drops) == (2, 0, 1)
    assert q.lr_scale == pytest.approx(0.1)
    # min_iters: validations up to it never count towards a plateau
    late = training._Plateau(experiment.Schedule(
        val_every=1, patience=1, min_iters=3))
    counted = [(late.update({"iter": i, "miou": 0.5}), late.since)[1]
               for i in range(6)]
    assert counted == [0, 0, 0, 0, 1, 2]


@pytest.mark.parametrize("bad", [dict(patience=3), dict(lr_drops=1),
                                 dict(lr_factor=1.0), dict(budget=0)])
def test_schedule_rejects_what_cannot_work(bad):
    with pytest.raises(ValueError):
        experiment.Schedule(**bad)


def test_train_cli_budget_and_patience(toolsetup, tmp_path, capsys):
    out = tmp_path / "run"
    rc, err = run_tool("train", ["--solver", toolsetup.solver, "--out", out,
                                 "--iters", 30, "--val-every", 3,
                                 "--patience", 1, "--min-delta", 1,
                                 "--budget", "10m", "--quiet"], capsys)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop"] == "plateau" and summary["iter"] == 6
    with pytest.raises(SystemExit) as e:
        run_tool("train", ["--solver", toolsetup.solver, "--out",
                           tmp_path / "b", "--patience", 2], capsys)
    assert e.value.code == 2
    assert "need --val-every" in capsys.readouterr().err


@pytest.mark.parametrize("text,seconds", [("300", 300), ("90s", 90),
                                          ("5m", 300), ("1h30m", 5400),
                                          ("2.5m", 150)])
def test_durations(text, seconds):
    from hrenet.cli import parse_duration
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m5", "", "1h 30m", "-3"])
def test_bad_durations(text):
    from hrenet.cli import parse_duration
    assert parse_duration(text) is None
