"""The main job (scripts/main_job.sh) runs end to end and the net learns."""
import os
import re
import subprocess

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                    os.pardir)


def test_main_job_smoke_run(tmp_path):
    env = dict(os.environ, RUNS_DIR=str(tmp_path))
    out = subprocess.run(
        [os.path.join(ROOT, "scripts", "main_job.sh"), "--iters", "40",
         "--num-images", "16"],
        capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "smoke run ok" in out.stdout
    m = re.search(r"train: loss ([0-9.]+) at iteration 0, (\d+): ([0-9.]+)",
                  out.stdout)
    assert m, out.stdout
    first, last = float(m.group(1)), float(m.group(3))
    # five classes: the untrained loss is about log(5); training lowers it
    assert 1.0 < first < 2.5
    assert last < 0.7 * first
    (run,) = tmp_path.iterdir()
    for name in ("commit", "command", "net.prototxt", "solver.prototxt",
                 "train.log", "time.log"):
        assert (run / name).is_file(), name
    assert (run / "lmdb_train" / "image_lmdb" / "data.mdb").is_file()
