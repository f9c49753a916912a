"""Training on several GPUs, and what `caffe train` says at start-up, through
the built caffe tool (no GPU needed):

- scripts/gpu_multi_check.sh: its skip path with fewer than two GPUs, its
  checks on the log of a `-gpu all` run (a stand-in caffe writes the log),
  and its CPU dry run (the same data, net and checks on one real solver);
- a SegData source folder that does not exist: one line on stderr with the
  hint, exit status 1, no stack trace, also while another SegData layer's
  prefetch thread already runs;
- patch 0013: `caffe train` logs when it starts from random initialisation.
"""
import os
import re
import stat
import subprocess
import sys

import pytest

from _tools import load_tool

ROOT = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
# scripts/run_tests.sh exports BUILD_DIR (relative to the root).
CAFFE_BIN = os.path.join(ROOT, os.environ.get("BUILD_DIR", "build"),
                         "caffe-build", "tools", "caffe")
CHECK = os.path.join(ROOT, "scripts", "gpu_multi_check.sh")
RANDOM_INIT = ("No -weights or -snapshot given (and no weights in the "
               "solver): training from random initialisation.")


def write_exe(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def fake_nvidia_smi(bindir, gpus, fail=False):
    """An nvidia-smi whose -L lists `gpus` GPUs (or fails like a machine
    whose driver is not loaded)."""
    bindir.mkdir(exist_ok=True)
    if fail:
        body = ("echo \"NVIDIA-SMI has failed because it couldn't "
                "communicate with the NVIDIA driver.\"; exit 9\n")
    else:
        body = "".join(f"echo 'GPU {i}: NVIDIA H100 (UUID: GPU-{i})'\n"
                       for i in range(gpus))
    write_exe(bindir / "nvidia-smi", "#!/bin/sh\n" + body)


def run_check(args, tmp_path, env_extra=None, cwd=None, timeout=300):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.update(env_extra or {})
    return subprocess.run([CHECK] + args, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def path_with(bindir):
    return f"{bindir}:{os.environ['PATH']}"


@pytest.mark.parametrize("gpus,fail,visible,why", [
    (0, False, None, "0 GPU(s) found"),
    (1, False, None, "1 GPU(s) found"),
    (0, True, None, "nvidia-smi -L failed (NVIDIA-SMI has failed"),
    (4, False, "2", "1 GPU(s) found"),    # CUDA_VISIBLE_DEVICES shows one
    (2, False, "", "0 GPU(s) found"),     # ... or none
])
def test_check_skips_below_two_gpus(tmp_path, gpus, fail, visible, why):
    bindir = tmp_path / "bin"
    fake_nvidia_smi(bindir, gpus, fail)
    env = {"PATH": path_with(bindir)}
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    # a caffe that must not be run: skipping decides before any work
    out = run_check(["--caffe", "/nonexistent/caffe"], tmp_path, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gpu_multi_check: SKIPPED: " in out.stdout
    assert why in out.stdout
    assert list(tmp_path.glob("gpu_multi_check.*")) == []


def test_check_skips_without_nvidia_smi(tmp_path):
    # PATH with the shell's tools but no nvidia-smi anywhere
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "dirname", "sed", "grep", "tr", "cat"):
        os.symlink(subprocess.check_output(["which", tool], text=True).strip(),
                   bindir / tool)
    out = run_check([], tmp_path, {"PATH": str(bindir)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SKIPPED: nvidia-smi not found" in out.stdout


def test_check_usage_errors(tmp_path):
    assert run_check(["--iters", "x"], tmp_path).returncode == 2
    assert run_check(["--iters", "5"], tmp_path).returncode == 2
    assert run_check(["--bogus"], tmp_path).returncode == 2


# What `caffe train -gpu all` logs on two GPUs, as far as the check reads it
# (the stand-in caffe below prints it and records its arguments).
GPU_LOG = """\
I1201 10:00:00.0  1 caffe.cpp:218] Using GPUs 0, 1
{ranks}I1201 10:00:01.0  1 solver.cpp:239] Iteration 0 (0 iter/s, 0.1s/10 \
iters), loss = 1.62
I1201 10:00:02.0  1 solver.cpp:239] Iteration 10 (9 iter/s, 1.1s/10 iters), \
loss = {loss}
I1201 10:00:03.0  1 solver.cpp:347] Iteration 20, Testing net (#0)
I1201 10:00:03.0  1 solver.cpp:414]     Test net output #0: loss = 0.9 (* 1 \
= 0.9 loss)
"""
RANK_LINE = ("I1201 10:00:00.5  {r} seg_data_layer.cpp:250] SegData layer "
             "data: solver rank {r} of 2 reads items {r}, {r2}, ... of the "
             "epochs' common sequence\n")


@pytest.mark.parametrize("ranks,loss,ok,why", [
    ((0, 1), "0.7", True, "OK: 2 solver(s), loss 1.62 at iteration 0 -> 0.7 "
     "at iteration 10; test loss 0.9"),
    ((0,), "0.7", False, "no SegData share line for rank 1 of 2"),
    ((), "0.7", False, "SegData reported 'no' solver(s), not 2"),
    ((0, 1), "1.5", False, "the loss did not fall: 1.62 at iteration 0, 1.5"),
])
def test_check_reads_a_two_gpu_log(tmp_path, ranks, loss, ok, why):
    bindir = tmp_path / "bin"
    fake_nvidia_smi(bindir, 2)
    log = GPU_LOG.format(loss=loss, ranks="".join(
        RANK_LINE.format(r=r, r2=r + 2) for r in ranks))
    (tmp_path / "log.txt").write_text(log)
    fake_caffe = write_exe(
        tmp_path / "caffe",
        f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\ncat {tmp_path}/log.txt\n")
    keep = tmp_path / "work"
    out = run_check(["--caffe", fake_caffe, "--python", sys.executable,
                     "--iters", "20", "--keep", str(keep)], tmp_path,
                    {"PATH": path_with(bindir)})
    assert (tmp_path / "args").read_text().split() == [
        "train", "-solver", "solver.prototxt", "-gpu", "all"]
    assert why in out.stdout, out.stdout + out.stderr
    assert out.returncode == (0 if ok else 1)
    # the run folder holds what it used
    solver = (keep / "solver.prototxt").read_text()
    assert "solver_mode: GPU" in solver and "max_iter: 20" in solver
    for name in ("net.prototxt", "commit", "command", "train.log"):
        assert (keep / name).is_file(), name
    assert (keep / "lmdb_train" / "image_lmdb" / "data.mdb").is_file()


def test_check_cpu_dry_run_trains_the_net(tmp_path):
    keep = tmp_path / "work"
    # a relative --caffe works: the script makes it absolute before it
    # changes to its work folder
    out = run_check(["--cpu-dry", "--caffe", os.path.relpath(CAFFE_BIN, ROOT),
                     "--python", sys.executable, "--iters", "40", "--keep",
                     str(keep)], tmp_path, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr + \
        (keep / "train.log").read_text()[-3000:]
    m = re.search(r"OK: 1 solver\(s\), loss ([0-9.]+) at iteration 0 -> "
                  r"([0-9.]+) at iteration (\d+); test loss ([0-9.]+)",
                  out.stdout)
    assert m, out.stdout
    first, last, test_loss = float(m.group(1)), float(m.group(2)), \
        float(m.group(4))
    assert 1.0 < first < 2.5  # five classes: about log(5) untrained
    assert last < 0.8 * first
    assert test_loss < first
    log = (keep / "train.log").read_text()
    assert "Use CPU." in log
    assert RANDOM_INIT in log
    # the TEST net (whole 96x128 images) went through Crop to the label size
    assert re.search(r"Top shape: 1 5 96 128", log), "test net crop shape"


# ---- A missing LMDB folder -------------------------------------------------

@pytest.fixture(scope="module")
def small_lmdb(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multi_gpu_lmdb")
    make = load_tool("make_synthetic")
    assert make.main(make.parse_args(
        ["--out", str(tmp / "syn"), "--num", "5", "--height", "32",
         "--width", "32", "--classes", "2", "--quiet"])) == 0
    build = load_tool("build_lmdb")
    assert build.main(build.parse_args(
        ["--format", "voc", "--root", str(tmp / "syn"), "--split",
         "trainval", "--classes", str(tmp / "syn" / "classes.txt"),
         "--out", str(tmp / "lmdb"), "--quiet"])) == 0
    return str(tmp / "lmdb")


def seg_net(train_source, test_source, hint):
    def data(phase, source):
        return f"""
layer {{ name: "data" type: "SegData" top: "data" top: "label"
  include {{ phase: {phase} }}
  seg_data_param {{ source: "{source}" batch_size: 1 crop_h: 16 crop_w: 16
    missing_hint: "{hint}" }} }}"""
    return data("TRAIN", train_source) + data("TEST", test_source) + """
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 3 kernel_size: 1
    weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label"
  top: "loss" loss_param { ignore_label: 255 } }
"""


def caffe_train(cwd, args, minloglevel="0"):
    env = dict(os.environ, GLOG_minloglevel=minloglevel)
    return subprocess.run([CAFFE_BIN, "train"] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("missing", ["train", "test"])
@pytest.mark.parametrize("minloglevel", ["0", "2", "3"])
def test_missing_lmdb_folder_one_line_exit_1(tmp_path, small_lmdb, missing,
                                             minloglevel):
    folder = "data/voc/lmdb/train_aug"
    hint = ("Build it with: python tools/build_lmdb.py --format sbd --split "
            f"aug --voc-root VOC2012 --root SBD --out {folder}")
    train, test = (folder, small_lmdb) if missing == "train" \
        else (small_lmdb, folder)
    # With the TEST source missing, the TRAIN net's prefetch thread already
    # runs when the layer stops the program.
    (tmp_path / "net.prototxt").write_text(seg_net(train, test, hint))
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n'
        'max_iter: 1\ntest_iter: 1\n'
        'test_interval: 1\nsnapshot_after_train: false\n'
        'snapshot_prefix: "x"\nsolver_mode: CPU\n')
    out = caffe_train(tmp_path, ["-solver", "solver.prototxt"], minloglevel)
    cwd = os.path.realpath(tmp_path)
    want = (f"SegData layer 'data': LMDB folder '{folder}' does not exist "
            f"(cwd: {cwd}). {hint}")
    assert out.returncode == 1, out.stderr[-3000:]
    assert out.stderr.count(want) == 1, out.stderr[-3000:]
    assert out.stderr.count("does not exist") == 1
    assert "stack trace" not in out.stderr
    assert "Check failed" not in out.stderr
    assert "core dumped" not in out.stderr
    assert not list(tmp_path.glob("core*"))
    if minloglevel != "0":  # no INFO lines: the error line alone
        assert out.stderr.strip() == "error: " + want


def test_incomplete_lmdb_folder_default_hint(tmp_path):
    (tmp_path / "lmdb" / "image_lmdb").mkdir(parents=True)
    (tmp_path / "net.prototxt").write_text(
        seg_net("lmdb", "lmdb", "").replace('missing_hint: ""', ""))
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 1\n'
        'snapshot_prefix: "x"\nsolver_mode: CPU\n')
    out = caffe_train(tmp_path, ["-solver", "solver.prototxt"], "2")
    assert out.returncode == 1
    assert ("SegData layer 'data': LMDB folder 'lmdb' has no "
            "image_lmdb/data.mdb, so it is not a folder written by "
            "tools/build_lmdb.py --out (cwd: ") in out.stderr
    assert ("Build it with tools/build_lmdb.py --out lmdb (see "
            "docs/DATA.md).") in out.stderr
    assert "stack trace" not in out.stderr


# ---- Patch 0013: training from random initialisation is logged --------------

TINY_NET = """
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 }
    shape { dim: 2 dim: 1 dim: 4 dim: 4 }
    data_filler { type: "gaussian" } data_filler { type: "constant" } } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 2 kernel_size: 1
    weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label"
  top: "loss" }
"""
TINY_SOLVER = ('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n'
               'max_iter: 2\n'
               'snapshot_prefix: "tiny"\nsolver_mode: CPU\n')


def test_train_logs_random_initialisation(tmp_path):
    (tmp_path / "net.prototxt").write_text(TINY_NET)
    (tmp_path / "solver.prototxt").write_text(TINY_SOLVER)
    (tmp_path / "solver_weights.prototxt").write_text(
        TINY_SOLVER + 'weights: "tiny_iter_2.caffemodel"\n')
    fresh = caffe_train(tmp_path, ["-solver", "solver.prototxt"])
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert fresh.stderr.count(RANDOM_INIT) == 1
    # the line comes just before the optimisation starts
    lines = fresh.stderr.splitlines()
    at = [i for i, line in enumerate(lines) if RANDOM_INIT in line][0]
    assert "Starting Optimization" in lines[at + 1]
    assert (tmp_path / "tiny_iter_2.caffemodel").is_file()
    for args in (["-solver", "solver.prototxt", "-weights",
                  "tiny_iter_2.caffemodel"],
                 ["-solver", "solver.prototxt", "-snapshot",
                  "tiny_iter_2.solverstate"],
                 ["-solver", "solver_weights.prototxt"]):
        out = caffe_train(tmp_path, args)
        assert out.returncode == 0, (args, out.stderr[-3000:])
        assert "training from random initialisation" not in out.stderr, args
        assert "Optimization Done." in out.stderr
