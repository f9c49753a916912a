"""tools/train.py and tools/plot_log.py end to end; the interrupt test."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hrenet import training
from hrenet.files import read_json_lines

from _run import run_tool
from _tools import TOOLS


def records(out, kind):
    return [r for r in read_json_lines(os.path.join(out, "log.jsonl"))
            if r["type"] == kind]


def test_train_logs_validates_and_snapshots(toolsetup, tmp_path, capsys):
    s = toolsetup
    out = tmp_path / "run"
    rc, err = run_tool("train", ["--solver", s.solver, "--out", out,
                                 "--iters", 12, "--val-every", 6,
                                 "--display", 3, "--quiet"], capsys)
    assert rc == 0, err
    train = records(out, "train")
    assert [r["iter"] for r in train] == [0, 3, 6, 9, 11]
    # step policy: base 0.01, gamma 0.5, stepsize 10
    assert [r["lr"] for r in train] == pytest.approx(
        [0.01, 0.01, 0.01, 0.01, 0.005])
    assert all(r["loss"] > 0 for r in train)
    walls = [r["wall"] for r in train]
    assert walls == sorted(walls)
    val = records(out, "val")
    assert [r["iter"] for r in val] == [6, 12]
    assert all(0 <= r["miou"] <= 1 and r["images"] == 2 for r in val)
    snap = records(out, "snapshot")[-1]
    assert snap["iter"] == 12
    assert os.path.isfile(snap["solverstate"])
    assert os.path.isfile(snap["caffemodel"])
    assert snap["caffemodel"].startswith(str(out / "snapshots" / "tiny_iter"))
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "done" and summary["iter"] == 12
    assert "mean IoU" in (out / "summary.md").read_text()
    # the snapshot loads into the deploy net: score it
    rc, err = run_tool("score", ["--model", s.deploy, "--weights",
                                 snap["caffemodel"], "--source", s.val,
                                 "--out", tmp_path / "score", "--quiet"],
                       capsys)
    assert rc == 0, err
    scored = json.loads((tmp_path / "score" / "score.json").read_text())
    assert scored["miou"] == pytest.approx(val[-1]["miou"])


def test_refuses_to_overwrite_a_run(toolsetup, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text('{"type": "train", "iter": 0}\n')
    rc, err = run_tool("train", ["--solver", toolsetup.solver, "--out", out,
                                 "--iters", 1, "--quiet"], capsys)
    assert rc == 1 and "pass --snapshot to resume" in err
    assert err.count("\n") == 1


def test_train_weights_errors(caffe, toolsetup, tmp_path, capsys):
    import _toolnets
    s = toolsetup
    rc, err = run_tool("train", ["--solver", s.solver, "--out",
                                 tmp_path / "a", "--weights",
                                 tmp_path / "missing.caffemodel", "--quiet"],
                       capsys)
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert "missing.caffemodel: weights file does not exist" in err
    other = tmp_path / "other.prototxt"
    other.write_text(_toolnets.DEPLOY_HEAD + _toolnets.body(c1=6))
    w = _toolnets.save_weights(caffe, str(other), tmp_path / "o.caffemodel")
    rc, err = run_tool("train", ["--solver", s.solver, "--out",
                                 tmp_path / "b", "--weights", w, "--quiet"],
                       capsys)
    assert rc == 1 and err.count("\n") == 1
    assert "layer 'conv1' blob 0 has shape 6x3x3x3 but the net expects " \
        "8x3x3x3" in err
    # matching weights (the deploy net's) are copied by name
    rc, err = run_tool("train", ["--solver", s.solver, "--out",
                                 tmp_path / "c", "--weights", s.weights,
                                 "--iters", 1, "--quiet"], capsys)
    assert rc == 0 and "copied 4 layer(s)" in err


def test_gpu_on_cpu_only_build(caffe, toolsetup, tmp_path, capsys):
    from hrenet import inference
    if inference.cuda_build():
        pytest.skip("this pycaffe is a CUDA build")
    rc, err = run_tool("train", ["--solver", toolsetup.solver, "--out",
                                 tmp_path / "g", "--gpu", 0, "--quiet"],
                       capsys)
    assert rc == 1 and err.count("\n") == 1 and "CPU-only build" in err


def test_sigint_snapshots_and_resume_continues(toolsetup, tmp_path):
    s = toolsetup
    out = tmp_path / "run"
    env = dict(os.environ, GLOG_minloglevel="2",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [sys.executable, os.path.join(TOOLS, "train.py"), "--solver",
           s.solver, "--out", str(out), "--iters", "100000", "--display",
           "1", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if len(records(out, "train")) >= 4 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at iteration" in err and "--snapshot" in err
    snap = records(out, "snapshot")[-1]
    stopped = snap["iter"]
    assert stopped >= 4
    assert os.path.isfile(snap["solverstate"])
    assert [r["iter"] for r in records(out, "train")] == list(range(stopped))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    # resume: the log continues where the snapshot left off
    rc = subprocess.run(cmd[:-5] + ["--iters", str(stopped + 3), "--display",
                                    "1", "--snapshot", snap["solverstate"],
                                    "--val-every", "100", "--quiet"],
                        env=env, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    train = records(out, "train")
    assert [r["iter"] for r in train] == list(range(stopped + 3))
    walls = [r["wall"] for r in train]
    assert walls == sorted(walls)
    assert records(out, "val")[-1]["iter"] == stopped + 3
    assert records(out, "snapshot")[-1]["iter"] == stopped + 3


def test_learning_rate_policies(caffe):
    from hrenet.inference import caffe_pb2
    p = caffe_pb2().SolverParameter(base_lr=0.1, gamma=0.5, stepsize=10,
                                    power=2.0, max_iter=100)
    for policy, it, want in (("fixed", 55, 0.1), ("step", 25, 0.025),
                             ("exp", 2, 0.025), ("inv", 2, 0.1 / 4),
                             ("poly", 50, 0.025)):
        p.lr_policy = policy
        assert training.learning_rate(p, it) == pytest.approx(want), policy
    p.lr_policy = "multistep"
    p.stepvalue.extend([10, 30])
    assert [training.learning_rate(p, i) for i in (9, 10, 29, 30)] == \
        pytest.approx([0.1, 0.05, 0.05, 0.025])


CAFFE_LOG = """\
I1201 10:00:00.000000  123 solver.cpp:60] Solving tiny
I1201 10:00:00.500000  123 solver.cpp:330] Iteration 0, Testing net (#0)
I1201 10:00:01.000000  123 solver.cpp:397]     Test net output #0: accuracy = 0.25
I1201 10:00:01.000000  123 solver.cpp:397]     Test net output #1: miou = 0.125
I1201 10:00:01.500000  123 solver.cpp:218] Iteration 0 (0 iter/s, 1.5s/10 iters), loss = 1.386
I1201 10:00:01.500000  123 solver.cpp:237]     Train net output #0: loss = 1.386 (* 1 = 1.386 loss)
I1201 10:00:01.500000  123 sgd_solver.cpp:105] Iteration 0, lr = 0.01
I1201 10:00:03.500000  123 solver.cpp:218] Iteration 10 (5 iter/s, 2s/10 iters), loss = 0.9
I1201 10:00:03.500000  123 sgd_solver.cpp:105] Iteration 10, lr = 0.005
I1201 10:00:04.000000  123 solver.cpp:330] Iteration 10, Testing net (#0)
I1201 10:00:04.250000  123 solver.cpp:397]     Test net output #0: accuracy = 0.5
I1201 10:00:04.250000  123 solver.cpp:397]     Test net output #1: miou = 0.375
"""  # noqa: E501 (caffe's log lines, verbatim)


def test_parse_caffe_log_and_plot_log(tmp_path, capsys):
    recs = training.parse_caffe_log(CAFFE_LOG.splitlines())
    assert recs == [
        {"type": "val", "iter": 0, "wall": 1.0, "accuracy": 0.25,
         "miou": 0.125},
        {"type": "train", "iter": 0, "loss": 1.386, "lr": 0.01,
         "wall": 1.5},
        {"type": "train", "iter": 10, "loss": 0.9, "lr": 0.005,
         "wall": 3.5},
        {"type": "val", "iter": 10, "wall": 4.25, "accuracy": 0.5,
         "miou": 0.375}]
    # newer glog writes the year too; the day changes at midnight
    with_year = CAFFE_LOG.replace("I1201 10:00:0", "I20261231 23:59:5")
    assert [r["wall"] for r in training.parse_caffe_log(
        with_year.splitlines())] == [1.0, 1.5, 3.5, 4.25]
    midnight = with_year.replace("I20261231 23:59:53.5",
                                 "I20270101 00:00:03.5")
    assert training.parse_caffe_log(midnight.splitlines())[2]["wall"] == 13.5
    log = tmp_path / "train.log"
    log.write_text(CAFFE_LOG)
    rc, err = run_tool("plot_log", [log, "--out", tmp_path / "p"], capsys)
    assert rc == 0, err
    assert read_json_lines(str(tmp_path / "p" / "log.jsonl")) == recs
    assert (tmp_path / "p" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    log.write_text("nothing here\n")
    rc, err = run_tool("plot_log", [log, "--out", tmp_path / "q"], capsys)
    assert rc == 1 and "no 'Iteration N (...), loss = L' lines" in err
    assert not (tmp_path / "q").exists()


def test_sigterm_also_snapshots(toolsetup, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, GLOG_minloglevel="2",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(TOOLS, "train.py"), "--solver",
         toolsetup.solver, "--out", str(out), "--iters", "100000",
         "--display", "1", "--quiet"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not records(out, "train") \
                and proc.poll() is None:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    snap = records(out, "snapshot")[-1]
    assert os.path.isfile(snap["solverstate"]) and snap["iter"] >= 1


def test_validation_preprocessing_falls_back_to_the_data_layer(toolsetup,
                                                               tmp_path):
    """A deploy net without transform_param is validated with the TEST
    SegData layer's mean and scale."""
    from hrenet import inference
    s = toolsetup
    text = open(s.deploy).read()
    start = text.index("  transform_param")
    end = text.index("}", text.index("scale:")) + 1
    bare = tmp_path / "deploy.prototxt"
    bare.write_text(text[:start] + text[end:])
    train_param = inference.read_net_param(s.train_val)
    mean, scale = training.validation_transform(
        inference.read_net_param(str(bare)), train_param)
    assert mean == [104.0, 117.0, 123.0] and scale == pytest.approx(0.017)
    assert training.validation_transform(
        inference.read_net_param(s.deploy), train_param) == (None, None)
    from hrenet import experiment
    run = experiment.Run(s.solver, str(tmp_path / "run"), deploy=str(bare),
                         schedule=experiment.Schedule(iters=2, val_every=2))
    summary = experiment.train(run, progress=False)
    assert summary["last_val"]["iter"] == 2
    assert (tmp_path / "run" / "summary.json").is_file()


def test_snapshot_of_another_net(caffe, toolsetup, tmp_path, capsys):
    """Resuming from a snapshot whose weights do not fit: one line, not
    Caffe's abort."""
    import _toolnets
    s = toolsetup
    model = tmp_path / "m"
    model.mkdir()
    (model / "train_val.prototxt").write_text(
        _toolnets.train_val_text(s.train, s.val, c1=5))
    (model / "solver.prototxt").write_text(
        _toolnets.solver_text(str(model / "train_val.prototxt")))
    rc, err = run_tool("train", ["--solver", model / "solver.prototxt",
                                 "--out", tmp_path / "a", "--iters", 2,
                                 "--quiet"], capsys)
    assert rc == 0, err
    state = records(tmp_path / "a", "snapshot")[-1]["solverstate"]
    rc, err = run_tool("train", ["--solver", s.solver, "--out",
                                 tmp_path / "b", "--snapshot", state,
                                 "--quiet"], capsys)
    assert rc == 1 and err.count("\n") == 1
    assert "layer 'conv1' blob 0 has shape 5x3x3x3 but the net expects " \
        "8x3x3x3" in err
    assert not (tmp_path / "b").exists()


def test_diverging_training_stops_with_one_line(toolsetup, tmp_path,
                                                capsys):
    """A loss that overflows stops the run at once with the fix, instead
    of training on NaN weights (which Caffe's max pooling turns into
    writes outside its buffers)."""
    net = open(toolsetup.solver).read().split('net: "')[1].split('"')[0]
    irnn = tmp_path / "irnn.prototxt"  # ReLU units: nothing saturates
    irnn.write_text(open(net).read().replace("direction: VERTICAL",
                                             "direction: VERTICAL unit: IRNN"))
    solver = tmp_path / "hot_solver.prototxt"
    solver.write_text(f'net: "{irnn}"\ntype: "SGD"\nbase_lr: 1e30\n'
                      'lr_policy: "fixed"\nmax_iter: 20\ndisplay: 1\n'
                      'snapshot: 0\nsnapshot_prefix: "hot"\n')
    rc, err = run_tool("train", ["--solver", solver, "--out",
                                 tmp_path / "run", "--quiet"], capsys)
    assert rc == 1 and err.count("\n") == 1
    assert "the training diverged; lower base_lr or set clip_gradients" \
        in err


def test_killed_and_resumed_run_equals_the_uninterrupted_one(
        toolsetup, tmp_path):
    """kill -9 after a periodic snapshot, resume from it: the loss curve
    and the final weights equal the uninterrupted run's to the last bit
    (the data layer's stream position and generators are in the
    snapshot's .datastate)."""
    s = toolsetup
    solver = tmp_path / "solver.prototxt"
    solver.write_text(open(s.solver).read().replace("snapshot: 0",
                                                    "snapshot: 5"))
    env = dict(os.environ, GLOG_minloglevel="2",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    base = [sys.executable, os.path.join(TOOLS, "train.py"), "--solver",
            str(solver), "--display", "1", "--quiet"]
    whole = tmp_path / "whole"
    rc = subprocess.run(base + ["--out", str(whole), "--iters", "14"],
                        env=env, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    part = tmp_path / "part"
    proc = subprocess.Popen(base + ["--out", str(part), "--iters", "100000"],
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if len(records(part, "train")) >= 8:  # past the snapshot at 5
                break
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no chance to clean up
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    snaps = records(part, "snapshot")
    assert [r["iter"] for r in snaps][:1] == [5]  # periodic, logged
    state = snaps[0]["solverstate"]
    assert os.path.isfile(state.replace(".solverstate", ".datastate"))
    rc = subprocess.run(base + ["--out", str(part), "--iters", "14",
                                "--snapshot", state],
                        env=env, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    a = [r["loss"] for r in records(whole, "train")]
    b = [r["loss"] for r in records(part, "train")]
    assert len(a) == len(b) == 14
    assert a == b  # bit for bit
    last = "tiny_iter_14.caffemodel"
    assert (whole / "snapshots" / last).read_bytes() == \
        (part / "snapshots" / last).read_bytes()
