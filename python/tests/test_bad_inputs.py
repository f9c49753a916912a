"""Bad and unusual inputs to the Python tools (issue 23, "No crash on any
input"): every case runs the tool as a user would (a subprocess) and must
exit with a status (never a signal such as SIGBUS), print exactly one line
on stderr, ``error: ...``, that names the file or flag at fault, and leave
no partial output behind. Ctrl-C cases interrupt a tool once it has begun
writing and expect exit status 130, one line and nothing written.

Exit statuses: 2 for a malformed command line (a number out of range is
refused when the flags are parsed), 1 for any other user error, 130 after
Ctrl-C.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hrenet import fixtures

from _tools import TOOLS

ROOT = os.path.normpath(os.path.join(TOOLS, os.pardir))
PYTHON_DIR = os.path.join(ROOT, "python")


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(
        [PYTHON_DIR] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep)
                        if p])
    e.setdefault("GLOG_minloglevel", "2")
    e.pop("HRENET_TRACEBACK", None)
    return e


def command(tool, args):
    return [sys.executable, os.path.join(TOOLS, tool + ".py")] + \
        [str(a) for a in args]


def run(tool, *args, cwd=None):
    return subprocess.run(command(tool, args), capture_output=True,
                          text=True, env=env(), cwd=cwd, timeout=300)


def one_error(r, *parts, status=1):
    """The process exited (no signal) with ``status`` and one stderr line
    ``error: ...`` holding every one of ``parts``; returns that line."""
    assert r.returncode >= 0, f"killed by signal {-r.returncode}"
    assert r.returncode == status, (r.returncode, r.stderr[-3000:])
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in r.stderr
    for part in parts:
        assert str(part) in lines[0], (part, lines[0])
    return lines[0]


def usage_error(r, flag):
    """A flag refused at parse time: status 2, one line naming it."""
    return one_error(r, f"argument {flag}", status=2)


def nothing_at(*paths):
    """None of ``paths`` exists, nor a temporary folder beside them."""
    for path in paths:
        path = str(path)
        assert not os.path.exists(path), f"{path} was left behind"
        parent, name = os.path.split(path)
        if os.path.isdir(parent):
            left = [n for n in os.listdir(parent)
                    if ".tmp-" in n and name in n]
            assert not left, f"temporary files left: {left}"


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "FILE"
    path.write_text("not a folder\n")
    return path


def truncate(folder, db="image_lmdb"):
    data = os.path.join(folder, db, "data.mdb")
    os.truncate(data, os.path.getsize(data) // 2)


@pytest.fixture
def truncated(toolsetup, tmp_path):
    """A copy of the train LMDBs whose image data.mdb is cut in half."""
    path = str(tmp_path / "truncated")
    shutil.copytree(toolsetup.train, path)
    truncate(path)
    return path


@pytest.fixture
def garbled(toolsetup, tmp_path):
    """A copy of the val LMDBs whose first image record is cut short."""
    import lmdb
    path = str(tmp_path / "garbled")
    shutil.copytree(toolsetup.val, path)
    env_ = lmdb.open(os.path.join(path, "image_lmdb"))
    with env_.begin(write=True) as txn:
        key, value = next(iter(txn.cursor()))
        txn.put(key, value[:len(value) // 2])
    env_.close()
    return path, key.decode()


def model_args(s):
    return ["--model", s.deploy, "--weights", s.weights]


# ---------------------------------------------------------------------------
# A truncated LMDB (data.mdb cut in half) killed the readers with SIGBUS;
# a short or garbled record must name its key and folder.

def test_merge_lmdb_truncated_source(toolsetup, truncated, tmp_path):
    out = tmp_path / "merged"
    r = run("merge_lmdb", truncated, toolsetup.val, "--out", out)
    one_error(r, truncated, "truncated", "build_lmdb.py")
    nothing_at(out)


def test_score_truncated_source(toolsetup, truncated, tmp_path):
    out = tmp_path / "score"
    r = run("score", *model_args(toolsetup), "--source", truncated,
            "--out", out, "--quiet")
    one_error(r, truncated, "truncated")
    nothing_at(out)


def test_score_truncated_label_lmdb(toolsetup, tmp_path):
    src = str(tmp_path / "labels_cut")
    shutil.copytree(toolsetup.val, src)
    truncate(src, "label_lmdb")
    out = tmp_path / "score"
    r = run("score", *model_args(toolsetup), "--source", src, "--out", out,
            "--quiet")
    one_error(r, os.path.join(src, "label_lmdb"), "truncated")
    nothing_at(out)


def test_train_truncated_train_source(toolsetup, truncated, tmp_path):
    import _toolnets
    model = tmp_path / "m"
    model.mkdir()
    (model / "train_val.prototxt").write_text(
        _toolnets.train_val_text(truncated, toolsetup.val))
    (model / "solver.prototxt").write_text(
        _toolnets.solver_text(str(model / "train_val.prototxt")))
    out = tmp_path / "run"
    r = run("train", "--solver", model / "solver.prototxt", "--out", out,
            "--quiet")
    one_error(r, truncated, "truncated")
    nothing_at(out)


def test_train_truncated_val_source(toolsetup, truncated, tmp_path):
    out = tmp_path / "run"
    r = run("train", "--solver", toolsetup.solver, "--out", out,
            "--val-every", 2, "--val-source", truncated, "--iters", 4,
            "--quiet")
    one_error(r, truncated, "truncated")
    nothing_at(out)


def test_score_garbled_record(toolsetup, garbled, tmp_path):
    path, key = garbled
    out, png = tmp_path / "score", tmp_path / "png"
    r = run("score", *model_args(toolsetup), "--source", path, "--out", out,
            "--save-png", png, "--quiet")
    one_error(r, os.path.join(path, "image_lmdb"), key, "garbled")
    nothing_at(out, png)


def test_merge_lmdb_garbled_record(toolsetup, garbled, tmp_path):
    path, key = garbled
    out = tmp_path / "merged"
    r = run("merge_lmdb", toolsetup.train, path, "--out", out)
    one_error(r, os.path.join(path, "image_lmdb"), key)
    nothing_at(out)


def test_score_lmdb_not_an_lmdb(toolsetup, tmp_path):
    src = str(tmp_path / "junk")
    shutil.copytree(toolsetup.val, src)
    with open(os.path.join(src, "image_lmdb", "data.mdb"), "wb") as f:
        f.write(b"this is not an LMDB file")
    out = tmp_path / "score"
    r = run("score", *model_args(toolsetup), "--source", src, "--out", out,
            "--quiet")
    one_error(r, os.path.join(src, "image_lmdb"), "build_lmdb.py")
    nothing_at(out)


# ---------------------------------------------------------------------------
# Tracebacks before

def test_build_lmdb_missing_classes_file(toolsetup, tmp_path):
    out = tmp_path / "lmdb"
    r = run("build_lmdb", "--format", "voc", "--root", toolsetup.syn,
            "--classes", tmp_path / "missing.txt", "--out", out)
    one_error(r, "missing.txt", "does not exist")
    nothing_at(out)


def test_build_lmdb_out_unwritable(toolsetup):
    r = run("build_lmdb", "--format", "voc", "--root", toolsetup.syn,
            "--classes", toolsetup.classes, "--out", "/proc/x")
    one_error(r, "--out /proc/x", "cannot create files in /proc")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_build_lmdb_out_in_read_only_folder(toolsetup, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        r = run("build_lmdb", "--format", "voc", "--root", toolsetup.syn,
                "--classes", toolsetup.classes, "--out", locked / "x")
        one_error(r, "--out", "permission denied")
    finally:
        locked.chmod(0o755)


def test_infer_crf_iter_negative(toolsetup, tmp_path):
    r = run("infer", *model_args(toolsetup), toolsetup.syn, "--out",
            tmp_path / "o", "--crf", "--crf-iter", -1)
    usage_error(r, "--crf-iter")
    nothing_at(tmp_path / "o")


def test_make_nets_out_is_a_file(a_file):
    r = run("make_nets", "--out", a_file, "--family", "hrenet", "--variant",
            "d")
    one_error(r, f"--out {a_file}", "a file")
    assert a_file.read_text() == "not a folder\n"


def test_merge_lmdb_same_source_twice(toolsetup, tmp_path):
    out = tmp_path / "merged"
    r = run("merge_lmdb", toolsetup.val, toolsetup.val, "--out", out)
    one_error(r, toolsetup.val, "twice")
    nothing_at(out)


def interrupt_when(proc, ready, timeout=60):
    """Send SIGINT to ``proc`` once ``ready()`` holds; False if the process
    ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGINT)
            return True
        time.sleep(0.005)
    return False


def interrupted(proc, ready):
    """Interrupt ``proc`` once ``ready()``; its CompletedProcess-like
    result (skips the test if the tool finished before)."""
    try:
        sent = interrupt_when(proc, ready)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # never ready, or stuck: no stray child
            proc.kill()
            proc.communicate()
    if not sent or proc.returncode == 0:
        pytest.skip("the tool finished before Ctrl-C arrived")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def started(parent, name, inside=None):
    """A ``ready`` test: a temporary folder ``name``*.tmp-* exists in
    ``parent`` (and holds files under ``inside``)."""
    def ready():
        for n in os.listdir(parent):
            if name in n and ".tmp-" in n:
                if inside is None:
                    return True
                folder = os.path.join(parent, n, inside)
                if os.path.isdir(folder) and os.listdir(folder):
                    return True
        return False
    return ready


def popen(tool, *args):
    return subprocess.Popen(command(tool, args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())


def test_make_synthetic_ctrl_c(tmp_path):
    out = tmp_path / "syn"
    proc = popen("make_synthetic", "--out", out, "--num", 100000,
                 "--height", 32, "--width", 32, "--quiet")
    r = interrupted(proc, started(tmp_path, "syn", "JPEGImages"))
    one_error(r, "interrupted", status=130)
    nothing_at(out)


def big_lmdb(path, count, toolsetup):
    """A dataset of ``count`` records (copies of one record of the tiny
    set), written directly: large enough that a merge takes seconds."""
    import lmdb
    from hrenet import lmdb_io
    src = [lmdb_io.open_lmdb(os.path.join(toolsetup.val, db))
           for db in (lmdb_io.IMAGE_DB, lmdb_io.LABEL_DB)]
    os.makedirs(path)
    for env_, db in zip(src, (lmdb_io.IMAGE_DB, lmdb_io.LABEL_DB)):
        with env_.begin() as txn:
            value = next(iter(txn.cursor()))[1]
        env_.close()
        out = lmdb.open(os.path.join(path, db), map_size=1 << 30)
        with out.begin(write=True) as txn:
            for i in range(count):
                txn.put(lmdb_io.make_key(i, f"x{i}"), value)
        out.close()
    meta = lmdb_io.read_meta(toolsetup.val)
    meta["count"] = count
    with open(os.path.join(path, lmdb_io.META), "w") as f:
        import json
        json.dump(meta, f)
    return path


def test_merge_lmdb_ctrl_c(toolsetup, tmp_path):
    a = big_lmdb(str(tmp_path / "a"), 60000, toolsetup)
    out = tmp_path / "merged"
    proc = popen("merge_lmdb", a, toolsetup.val, "--out", out)
    r = interrupted(proc, started(tmp_path, "merged"))
    one_error(r, "interrupted", status=130)
    nothing_at(out)


# ---------------------------------------------------------------------------
# Numbers accepted silently before: refused when the flags are parsed

def test_train_negative_iters(toolsetup, tmp_path):
    r = run("train", "--solver", toolsetup.solver, "--out", tmp_path / "r",
            "--iters", -5)
    usage_error(r, "--iters")
    nothing_at(tmp_path / "r")


@pytest.mark.parametrize("iters", [-5, 0])
def test_main_job_iters_not_positive(iters, tmp_path):
    r = run("main_job", "--quick", "--iters", iters, "--out",
            tmp_path / "run")
    usage_error(r, "--iters")
    nothing_at(tmp_path / "run")


def test_infer_alpha_out_of_range(toolsetup, tmp_path):
    r = run("infer", *model_args(toolsetup), toolsetup.syn, "--out",
            tmp_path / "o", "--alpha", 7)
    usage_error(r, "--alpha")
    nothing_at(tmp_path / "o")


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_infer_scale_not_finite(toolsetup, tmp_path, value):
    r = run("infer", *model_args(toolsetup), toolsetup.syn, "--out",
            tmp_path / "o", "--scale", value)
    usage_error(r, "--scale")
    nothing_at(tmp_path / "o")


def test_infer_mean_not_finite(toolsetup, tmp_path):
    r = run("infer", *model_args(toolsetup), toolsetup.syn, "--out",
            tmp_path / "o", "--mean", 1, 2, "nan")
    usage_error(r, "--mean")


def test_train_negative_val_every(toolsetup, tmp_path):
    r = run("train", "--solver", toolsetup.solver, "--out", tmp_path / "r",
            "--val-every", -2)
    usage_error(r, "--val-every")
    nothing_at(tmp_path / "r")


def test_run_study_negative_iters(tmp_path):
    r = run("run_study", "table4", "--dataset", "synthetic", "--iters", -1,
            "--out", tmp_path / "study")
    usage_error(r, "--iters")
    nothing_at(tmp_path / "study")


@pytest.mark.parametrize("tool, args, flag", [
    ("build_lmdb", ["--format", "folder", "--root", "r", "--out", "o",
                    "--num-classes", -3], "--num-classes"),
    ("build_lmdb", ["--format", "folder", "--root", "r", "--out", "o",
                    "--num-classes", 256], "--num-classes"),
    ("score", ["--model", "m", "--weights", "w", "--source", "s", "--out",
               "o", "--limit", 0], "--limit"),
    ("score", ["--model", "m", "--weights", "w", "--source", "s", "--out",
               "o", "--crf-bi-xy-std", 0], "--crf-bi-xy-std"),
    ("train", ["--solver", "s", "--out", "o", "--gpu", -1], "--gpu"),
    ("train", ["--solver", "s", "--out", "o", "--display", 0], "--display"),
    ("make_synthetic", ["--out", "o", "--num", 0], "--num"),
    ("make_synthetic", ["--out", "o", "--height", 8], "--height"),
    ("make_folds", ["--root", "r", "--out", "o", "--folds", 1], "--folds"),
    ("merge_lmdb", ["a", "--out", "o", "--seed", -1], "--seed"),
    ("time_net", ["d.prototxt", "--repeats", 0], "--repeats"),
    ("visualize_features", ["i.jpg", "--model", "m", "--weights", "w",
                            "--blobs", "b", "--out", "o", "--k", 0], "--k"),
    ("infer", ["i.jpg", "--model", "m", "--weights", "w", "--out", "o",
               "--max-side", -1], "--max-side"),
])
def test_numeric_flags_checked_at_parse_time(tool, args, flag, tmp_path):
    r = run(tool, *args, cwd=tmp_path)
    usage_error(r, flag)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# Poor messages before: an --out that is a file or cannot be written

@pytest.mark.parametrize("tool, args", [
    ("infer", ["IMAGE", "--model", "DEPLOY", "--weights", "WEIGHTS"]),
    ("score", ["--model", "DEPLOY", "--weights", "WEIGHTS", "--source",
               "VAL"]),
    ("train", ["--solver", "SOLVER", "--iters", 2]),
    ("time_net", ["DEPLOY", "--repeats", 1]),
    ("visualize_features", ["IMAGE", "--model", "DEPLOY", "--weights",
                            "WEIGHTS", "--blobs", "renet1"]),
    ("plot_log", ["LOG"]),
    ("make_folds", ["--root", "ROOT"]),
    ("main_job", ["--quick"]),
    ("run_study", ["table4", "--dataset", "synthetic", "--iters", 2]),
])
def test_out_is_a_file(tool, args, toolsetup, a_file, tmp_path):
    log = tmp_path / "train.log"
    log.write_text("I1201 10:00:00.000000 1 solver.cpp:218] Iteration 0 "
                   "(0 iter/s, 0s/0 iters), loss = 1.5\n")
    image = os.path.join(toolsetup.syn, "JPEGImages",
                         sorted(os.listdir(os.path.join(
                             toolsetup.syn, "JPEGImages")))[0])
    names = {"IMAGE": image, "DEPLOY": toolsetup.deploy,
             "WEIGHTS": toolsetup.weights, "VAL": toolsetup.val,
             "SOLVER": toolsetup.solver, "LOG": log, "ROOT": toolsetup.syn}
    args = [names.get(a, a) if isinstance(a, str) else a for a in args]
    r = run(tool, *args, "--out", a_file)
    one_error(r, f"--out {a_file}", "a file of that name exists")
    assert a_file.read_text() == "not a folder\n"


@pytest.mark.parametrize("tool", ["build_lmdb", "make_synthetic",
                                  "merge_lmdb", "import_hybridnet"])
def test_out_under_a_file(tool, toolsetup, a_file):
    out = a_file / "x"
    args = {"build_lmdb": ["--format", "voc", "--root", toolsetup.syn,
                           "--classes", toolsetup.classes],
            "make_synthetic": ["--num", 3],
            "merge_lmdb": [toolsetup.train, toolsetup.val],
            "import_hybridnet": ["--weights", toolsetup.weights]}[tool]
    r = run(tool, *args, "--out", out)
    one_error(r, f"--out {out}", f"{a_file} is a file, not a folder")
    assert a_file.read_text() == "not a folder\n"


def test_score_save_png_is_a_file(toolsetup, a_file, tmp_path):
    r = run("score", *model_args(toolsetup), "--source", toolsetup.val,
            "--out", tmp_path / "o", "--save-png", a_file)
    one_error(r, f"--save-png {a_file}", "a file")
    nothing_at(tmp_path / "o")


def test_build_lmdb_num_classes_negative_message(tmp_path):
    r = run("build_lmdb", "--format", "voc", "--root", tmp_path,
            "--num-classes", -3, "--out", tmp_path / "o")
    line = usage_error(r, "--num-classes")
    assert "from 1 to 255" in line and "[0, 0)" not in line


def test_score_limit_zero_message(toolsetup, tmp_path):
    r = run("score", *model_args(toolsetup), "--source", toolsetup.val,
            "--out", tmp_path / "o", "--limit", 0)
    line = usage_error(r, "--limit")
    assert "holds no images" not in line


def test_main_job_unfinished_run_folder(tmp_path):
    """A run folder left by a killed job: the message names --overwrite,
    which exists and replaces it."""
    run_dir = tmp_path / "run"
    (run_dir / "data" / "lmdb_train").mkdir(parents=True)
    (run_dir / "command").write_text("tools/main_job.py --quick\n")
    r = run("main_job", "--quick", "--out", run_dir)
    one_error(r, f"--out {run_dir}", "unfinished run", "--overwrite")
    assert (run_dir / "command").exists()  # untouched
    r = run("main_job", "--quick", "--out", run_dir, "--overwrite")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run_dir / "report.json").is_file()


def test_main_job_overwrite_refuses_other_folders(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me\n")
    r = run("main_job", "--quick", "--out", folder, "--overwrite")
    one_error(r, f"--out {folder}", "not a main-job run folder")
    assert (folder / "notes.txt").read_text() == "keep me\n"


# ---------------------------------------------------------------------------
# Half-written output before

def other_weights(caffe, tmp_path):
    """Weights of the tiny net with conv1 of 5 channels (not 8)."""
    import _toolnets
    deploy = tmp_path / "deploy5.prototxt"
    deploy.write_text(_toolnets.DEPLOY_HEAD + _toolnets.body(c1=5))
    return _toolnets.save_weights(caffe, str(deploy),
                                  str(tmp_path / "c5.caffemodel"))


def test_train_start_up_failure_leaves_new_out_absent(caffe, toolsetup,
                                                      tmp_path):
    out = tmp_path / "run"
    r = run("train", "--solver", toolsetup.solver, "--out", out,
            "--weights", other_weights(caffe, tmp_path), "--quiet")
    one_error(r, "c5.caffemodel", "conv1")
    nothing_at(out)


def test_train_start_up_failure_cleans_existing_out(caffe, toolsetup,
                                                    tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    r = run("train", "--solver", toolsetup.solver, "--out", out,
            "--weights", other_weights(caffe, tmp_path), "--quiet")
    one_error(r, "c5.caffemodel")
    assert sorted(os.listdir(out)) == ["notes.txt"]  # no snapshots/, ...


def test_infer_good_and_bad_image(toolsetup, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a JPEG")
    good = os.path.join(toolsetup.syn, "JPEGImages", "syn_000000.jpg")
    out = tmp_path / "out"
    r = run("infer", *model_args(toolsetup), good, bad, "--out", out,
            "--quiet")
    one_error(r, bad, "not an image")
    nothing_at(out)


def test_infer_truncated_image_alone(toolsetup, tmp_path):
    src = os.path.join(toolsetup.syn, "JPEGImages", "syn_000000.jpg")
    bad = tmp_path / "cut.jpg"
    data = open(src, "rb").read()
    bad.write_bytes(data[:len(data) // 2])
    out = tmp_path / "out"
    r = run("infer", *model_args(toolsetup), bad, "--out", out, "--quiet")
    one_error(r, bad, "corrupt or truncated")
    nothing_at(out)


def test_infer_bad_image_keeps_existing_out(toolsetup, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.png").write_bytes(b"old")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    r = run("infer", *model_args(toolsetup), bad, "--out", out, "--quiet")
    one_error(r, bad)
    assert os.listdir(out) == ["old.png"]


def many_images(folder, count, toolsetup):
    """``count`` hard links of one image of the tiny set."""
    os.makedirs(folder)
    src = os.path.join(toolsetup.syn, "JPEGImages", "syn_000000.jpg")
    for i in range(count):
        os.link(src, os.path.join(folder, f"im{i:04d}.jpg"))
    return folder


def test_infer_ctrl_c(toolsetup, tmp_path):
    images = many_images(str(tmp_path / "images"), 2000, toolsetup)
    out = tmp_path / "out"
    proc = popen("infer", *model_args(toolsetup), images, "--out", out,
                 "--quiet")
    r = interrupted(proc, started(tmp_path, ".out.tmp-", ""))
    one_error(r, "interrupted", status=130)
    nothing_at(out)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_score_save_png_ctrl_c(toolsetup, tmp_path):
    root = tmp_path / "folder"
    fixtures.make_folder(root, ["a"], size=(32, 40), num_classes=4)
    for i in range(2000):
        os.link(root / "images" / "a.png", root / "images" / f"b{i}.png")
        os.link(root / "labels" / "a.png", root / "labels" / f"b{i}.png")
    out, png = tmp_path / "score", tmp_path / "png"
    proc = popen("score", *model_args(toolsetup), "--format", "folder",
                 "--root", root, "--out", out, "--save-png", png, "--quiet")
    r = interrupted(proc, started(tmp_path, ".png.tmp-", ""))
    one_error(r, "interrupted", status=130)
    nothing_at(out, png)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


# ---------------------------------------------------------------------------
# --snapshot given a weights file (Caffe aborted on state.history_size())

def test_train_snapshot_is_a_caffemodel(toolsetup, tmp_path):
    out = tmp_path / "run"
    r = run("train", "--solver", toolsetup.solver, "--out", out,
            "--snapshot", toolsetup.weights, "--quiet")
    one_error(r, f"--snapshot {toolsetup.weights}", ".caffemodel",
              "tiny.solverstate", "--weights")
    nothing_at(out)


def test_train_snapshot_is_not_a_solverstate(toolsetup, tmp_path):
    junk = tmp_path / "x.solverstate"
    junk.write_text("hello\n")
    out = tmp_path / "run"
    r = run("train", "--solver", toolsetup.solver, "--out", out,
            "--snapshot", junk, "--quiet")
    one_error(r, f"--snapshot {junk}", "not a binary .solverstate")
    nothing_at(out)


def test_train_snapshot_of_another_solver_type(toolsetup, tmp_path):
    """An Adam state (2 history blobs per parameter) given to an SGD
    solver: Caffe aborted on the history count."""
    first = tmp_path / "adam"
    r = run("train", "--solver", toolsetup.solver, "--out", first,
            "--iters", 2, "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    state = os.path.join(first, "snapshots", "tiny_iter_2.solverstate")
    sgd = tmp_path / "sgd.prototxt"
    sgd.write_text(open(toolsetup.solver).read().replace("Adam", "SGD"))
    out = tmp_path / "run"
    r = run("train", "--solver", sgd, "--out", out, "--snapshot", state,
            "--quiet")
    one_error(r, f"--snapshot {state}", "history blobs", "SGD")
    nothing_at(out)


# ---------------------------------------------------------------------------
# Big images: infer --max-side

def test_infer_big_image_runs_scaled_down(toolsetup, tmp_path):
    import json
    import cv2
    import numpy as np
    big = str(tmp_path / "wide.png")
    cv2.imwrite(big, np.random.RandomState(0).randint(
        0, 255, (60, 900, 3)).astype(np.uint8))
    out = tmp_path / "out"
    r = run("infer", *model_args(toolsetup), big, "--out", out,
            "--max-side", 300, "--quiet")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ")
    assert "--max-side" in lines[0] and "GB" in lines[0]
    info = json.load(open(out / "infer.json"))["images"][0]
    assert (info["height"], info["width"]) == (60, 900)
    assert (info["net_height"], info["net_width"]) == (20, 300)
    from PIL import Image
    with Image.open(out / "wide.png") as im:
        assert im.size == (900, 60)


def test_upsample_argmax_matches_full_resize():
    import numpy as np
    from hrenet import inference
    scores = np.random.RandomState(1).rand(5, 7, 11).astype(np.float32)
    full = inference.resize_scores(scores, 50, 90).argmax(axis=0)
    banded = inference.upsample_argmax(scores, 50, 90, band=8)
    assert (banded == full).mean() > 0.995  # ties and rounding aside


# ---------------------------------------------------------------------------
# More of the same kind

def test_visualize_features_unknown_blob(toolsetup, tmp_path):
    image = os.path.join(toolsetup.syn, "JPEGImages", "syn_000000.jpg")
    out = tmp_path / "o"
    r = run("visualize_features", image, *model_args(toolsetup), "--blobs",
            "renet3", "--out", out)
    one_error(r, "--blobs", "renet3", "the net has: data, conv1, renet1")
    nothing_at(out)


def test_run_study_relative_out_is_the_callers(tmp_path):
    """--out is taken from the current folder, not the repository root
    (the study chdirs there): a file of that name here is refused."""
    (tmp_path / "FILE").write_text("x\n")
    r = run("run_study", "table4", "--dataset", "synthetic", "--iters", 2,
            "--out", "FILE", cwd=tmp_path)
    one_error(r, "--out", "a file of that name exists")
    assert not os.path.exists(os.path.join(ROOT, "FILE"))


def test_make_nets_unknown_variant_names_flag(tmp_path):
    r = run("make_nets", "--out", tmp_path / "n", "--family", "hrenet",
            "--variant", "zz")
    one_error(r, "--variant zz", "valid: b, c, d", status=2)
    nothing_at(tmp_path / "n")


def test_make_folds_more_folds_than_images(tmp_path):
    root = tmp_path / "iccv09Data"
    fixtures.make_stanford_bg(root, ["a", "b", "c"])
    out = tmp_path / "folds"
    r = run("make_folds", "--root", root, "--out", out, "--folds", 5)
    one_error(r, "--folds 5", "3 images")
    nothing_at(out)


def test_plot_log_missing_log(tmp_path):
    out = tmp_path / "o"
    r = run("plot_log", tmp_path / "nope.log", "--out", out)
    one_error(r, "nope.log", "does not exist")
    nothing_at(out)


def test_unknown_flag_is_one_line(tmp_path):
    r = run("infer", "x.jpg", "--model", "m", "--weights", "w", "--out",
            tmp_path / "o", "--bogus")
    one_error(r, "unrecognized arguments: --bogus", "--help", status=2)


def test_missing_required_flag_is_one_line():
    r = run("train", "--solver", "s.prototxt")
    one_error(r, "required", "--out", "--help", status=2)


def test_infer_layer_parameter_error_from_caffe(toolsetup, tmp_path):
    """A layer's UserError (here a ReNet with num_output 0) reaches the tool
    as pycaffe's RuntimeError: its one sentence, exit 1, no traceback."""
    bad = tmp_path / "bad_deploy.prototxt"
    bad.write_text(open(toolsetup.deploy).read().replace("num_output: 4",
                                                         "num_output: 0"))
    image = os.path.join(toolsetup.syn, "JPEGImages")
    r = run("infer", "--model", bad, "--weights", toolsetup.weights, image,
            "--out", tmp_path / "o")
    one_error(r, "ReNet layer 'renet1'", "num_output is 0")
    nothing_at(tmp_path / "o")
