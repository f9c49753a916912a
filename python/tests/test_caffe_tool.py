"""The `caffe` command on bad inputs and signals (patch 0013 with
caffe/util/tool_checks), and exact resume (patches 0015/0016, SegData's
state): every mistake a user can make gets one `error:` line naming the
file or flag and exit status 1, never an abort; SIGINT and SIGTERM stop
with a snapshot and 130 / 143; a run resumed from a snapshot ends with the
same weights, bit for bit, as the uninterrupted run."""
import os
import shutil
import signal
import subprocess
import time

import pytest

import _toolnets

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir,
                                     os.pardir))
CAFFE = os.path.join(ROOT, os.environ.get("BUILD_DIR", "build"),
                     "caffe-build", "tools", "caffe")


def run(args, cwd, quiet=True, **kw):
    env = dict(os.environ, GLOG_minloglevel="1" if quiet else "0")
    return subprocess.run([CAFFE] + args, cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def one_error(proc, *words):
    """Exit status 1, no signal, stderr exactly one `error:` line (at
    warning level; at the default level it is the last line)."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Check failure" not in proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def setup(toolsetup, tmp_path):
    """A private copy of the tiny model folder (solver, train/val net)
    whose LMDBs can be damaged."""
    for name in ("lmdb_train", "lmdb_val"):
        shutil.copytree(os.path.join(toolsetup.root, name), tmp_path / name)
    (tmp_path / "train_val.prototxt").write_text(_toolnets.train_val_text(
        str(tmp_path / "lmdb_train"), str(tmp_path / "lmdb_val")))
    (tmp_path / "solver.prototxt").write_text(
        _toolnets.solver_text("train_val.prototxt", max_iter=6)
        .replace('snapshot_prefix: "tiny"', 'snapshot_prefix: "snap/tiny"'))
    (tmp_path / "snap").mkdir()
    return tmp_path


def test_unknown_command(tmp_path):
    one_error(run(["trian"], tmp_path), "unknown command 'trian'", "train")


def test_missing_solver(tmp_path):
    one_error(run(["train", "-solver", "nope.prototxt"], tmp_path),
              "-solver nope.prototxt: no such file", str(tmp_path))
    one_error(run(["train"], tmp_path), "pass -solver")


def test_garbled_solver(setup):
    (setup / "bad.prototxt").write_text("net: \"train_val.prototxt\"\n"
                                        "base_lr: 0.01 {\n")
    one_error(run(["train", "-solver", "bad.prototxt"], setup),
              "-solver bad.prototxt is not a valid solver prototxt",
              "line 2")


def test_solver_with_missing_or_garbled_net(setup):
    (setup / "s1.prototxt").write_text('net: "missing.prototxt"\n')
    one_error(run(["train", "-solver", "s1.prototxt"], setup),
              "missing.prototxt: no such file")
    (setup / "garbled.prototxt").write_text("layer { name: \n")
    (setup / "s2.prototxt").write_text('net: "garbled.prototxt"\n')
    one_error(run(["train", "-solver", "s2.prototxt"], setup),
              "garbled.prototxt is not a valid net prototxt")


def test_gpu_on_a_cpu_build(setup):
    if "CPU_ONLY:BOOL=ON" not in open(os.path.join(
            ROOT, os.environ.get("BUILD_DIR", "build"),
            "CMakeCache.txt")).read():
        pytest.skip("a CUDA build")
    one_error(run(["train", "-solver", "solver.prototxt", "-gpu", "0"],
                  setup), "-gpu 0", "without CUDA", "drop -gpu")
    text = (setup / "solver.prototxt").read_text() + "solver_mode: GPU\n"
    (setup / "gpu_solver.prototxt").write_text(text)
    one_error(run(["train", "-solver", "gpu_solver.prototxt"], setup),
              "solver_mode: GPU", "without CUDA")
    one_error(run(["time", "-model", "train_val.prototxt", "-gpu", "1"],
                  setup), "-gpu 1")


def test_missing_lmdb(setup):
    shutil.rmtree(setup / "lmdb_train")
    one_error(run(["train", "-solver", "solver.prototxt"], setup),
              "LMDB folder", "lmdb_train' does not exist")


def test_truncated_lmdb(setup):
    data = setup / "lmdb_train" / "image_lmdb" / "data.mdb"
    os.truncate(data, os.path.getsize(data) // 2)
    proc = run(["train", "-solver", "solver.prototxt"], setup)
    assert proc.returncode != -signal.SIGBUS
    one_error(proc, "data.mdb is truncated", "rebuild it")


def test_lmdb_with_a_label_record_deleted(caffe, setup):
    import lmdb
    env = lmdb.open(str(setup / "lmdb_train" / "label_lmdb"))
    with env.begin(write=True) as txn:
        key = next(iter(txn.cursor()))[0]
        txn.delete(key)
    env.close()
    one_error(run(["train", "-solver", "solver.prototxt"], setup),
              "a record is missing", "rebuild")
    # pycaffe: the same sentence as a Python exception, the process lives
    with pytest.raises(RuntimeError, match="a record is missing"):
        caffe.Net(str(setup / "train_val.prototxt"), caffe.TRAIN)


def _train(setup, *extra, quiet=True):
    proc = run(["train", "-solver", "solver.prototxt"] + list(extra), setup,
               quiet=quiet)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_snapshot_problems(setup, caffe):
    _train(setup)
    snap = setup / "snap"
    state = snap / "tiny_iter_6.solverstate"
    model = snap / "tiny_iter_6.caffemodel"
    assert state.exists() and model.exists()
    assert (snap / "tiny_iter_6.datastate").exists()
    assert not [f for f in os.listdir(snap) if ".tmp-" in f]
    one_error(run(["train", "-solver", "solver.prototxt", "-snapshot",
                   "snap/nope.solverstate"], setup), "no such file")
    one_error(run(["train", "-solver", "solver.prototxt", "-snapshot",
                   str(model)], setup),
              "is not a .solverstate", "-weights")
    data = state.read_bytes()
    (snap / "cut.solverstate").write_bytes(data[:len(data) // 2])
    one_error(run(["train", "-solver", "solver.prototxt", "-snapshot",
                   "snap/cut.solverstate"], setup),
              "snap/cut.solverstate is not a complete .solverstate")
    one_error(run(["train", "-solver", "solver.prototxt", "-snapshot",
                   str(state), "-weights", str(model)], setup), "not both")


def test_weights_of_another_net(setup, caffe):
    # Same layer names, other shapes (conv1 with 16 outputs instead of 8).
    other = setup / "other.prototxt"
    other.write_text(_toolnets.DEPLOY_HEAD + _toolnets.body(c1=16))
    net = caffe.Net(str(other), caffe.TEST)
    net.save(str(setup / "other.caffemodel"))
    one_error(run(["train", "-solver", "solver.prototxt", "-weights",
                   "other.caffemodel"], setup),
              "-weights other.caffemodel: layer conv1 blob 0 is 16x3x3x3",
              "8x3x3x3", "another net")
    # No layer in common.
    lone = setup / "lone.prototxt"
    lone.write_text('layer { name: "data" type: "Input" top: "data" '
                    'input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }'
                    '\nlayer { name: "zzz" type: "Convolution" bottom: "data"'
                    ' top: "zzz" convolution_param { num_output: 2 '
                    'kernel_size: 1 } }\n')
    caffe.Net(str(lone), caffe.TEST).save(str(setup / "lone.caffemodel"))
    one_error(run(["train", "-solver", "solver.prototxt", "-weights",
                   "lone.caffemodel"], setup), "shares no layer")
    one_error(run(["train", "-solver", "solver.prototxt", "-weights",
                   "nope.caffemodel"], setup), "-weights nope.caffemodel")
    one_error(run(["test", "-model", "train_val.prototxt", "-weights",
                   "other.caffemodel"], setup), "layer conv1 blob 0")


def _wait_for(path, proc, timeout=120):
    start = time.time()
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() - start < timeout
        time.sleep(0.05)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143),
                                      (signal.SIGINT, 130)])
def test_signal_stops_with_a_snapshot(setup, sig, code):
    text = (setup / "solver.prototxt").read_text()
    (setup / "long.prototxt").write_text(
        text.replace("max_iter: 6", "max_iter: 100000")
        .replace("display: 5", "display: 1"))
    env = dict(os.environ, GLOG_minloglevel="0")
    proc = subprocess.Popen([CAFFE, "train", "-solver", "long.prototxt"],
                            cwd=str(setup), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # wait until it trains (the log says so), then signal it
        start = time.time()
        log = ""
        while "Iteration 3" not in log:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, log
            log += line
            assert time.time() - start < 120
        proc.send_signal(sig)
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, rest[-2000:]
    assert "Check failure" not in rest and "*** " not in rest
    assert "Stopped by %s" % ("SIGTERM" if sig == signal.SIGTERM
                              else "SIGINT") in rest
    states = [f for f in os.listdir(setup / "snap")
              if f.endswith(".solverstate")]
    assert len(states) == 1, os.listdir(setup / "snap")
    datastate = states[0].replace(".solverstate", ".datastate")
    assert os.path.exists(setup / "snap" / datastate)


def test_resume_is_exact(setup):
    """10 iterations with a snapshot at 4, then a resume from it to 10: the
    final weights and solver state equal the uninterrupted run's bit for
    bit (shuffled epochs, random crops and flips, Adam's history)."""
    text = (setup / "solver.prototxt").read_text()
    for name, prefix in (("whole", "snap/whole"), ("part", "snap/part")):
        (setup / f"{name}.prototxt").write_text(
            text.replace("max_iter: 6", "max_iter: 10")
            .replace("snapshot: 0", "snapshot: 4")
            .replace('"snap/tiny"', f'"{prefix}"'))
    run_ok = lambda *a: _check_ok(run(list(a), setup))  # noqa: E731
    run_ok("train", "-solver", "whole.prototxt")
    # "part": killed after its snapshot at 4 (a run of 4 iterations stands
    # in for the kill), then resumed from that snapshot.
    (setup / "part4.prototxt").write_text(
        (setup / "part.prototxt").read_text().replace("max_iter: 10",
                                                      "max_iter: 4"))
    run_ok("train", "-solver", "part4.prototxt")
    run_ok("train", "-solver", "part.prototxt", "-snapshot",
           "snap/part_iter_4.solverstate")
    snap = setup / "snap"
    assert (snap / "whole_iter_10.caffemodel").read_bytes() == \
        (snap / "part_iter_10.caffemodel").read_bytes()
    # Without the data state the stream starts anew and the run differs
    # (the check above is not vacuous).
    os.remove(snap / "part_iter_4.datastate")
    proc = run(["train", "-solver", "part.prototxt", "-snapshot",
                "snap/part_iter_4.solverstate"], setup)
    _check_ok(proc)
    assert "No data state" in proc.stderr
    assert (snap / "whole_iter_10.caffemodel").read_bytes() != \
        (snap / "part_iter_10.caffemodel").read_bytes()


def _check_ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_pycaffe_resume_is_exact(setup, caffe):
    """The same through pycaffe's solver (what tools/train.py uses):
    snapshot() writes the data state, restore() reads it."""
    text = (setup / "solver.prototxt").read_text().replace(
        "max_iter: 6", "max_iter: 10")
    (setup / "py.prototxt").write_text(text.replace('"snap/tiny"',
                                                    '"snap/py"'))
    cwd = os.getcwd()
    os.chdir(setup)
    try:
        whole = caffe.get_solver("py.prototxt")
        whole.step(4)
        whole.snapshot()
        whole.step(6)
        expected = {k: [b.data.copy() for b in v]
                    for k, v in whole.net.params.items()}
        part = caffe.get_solver("py.prototxt")
        part.step(1)  # some batches read before the restore
        part.restore("snap/py_iter_4.solverstate")
        part.step(6)
        for name, blobs in expected.items():
            for a, b in zip(blobs, part.net.params[name]):
                assert (a == b.data).all(), name
    finally:
        os.chdir(cwd)
