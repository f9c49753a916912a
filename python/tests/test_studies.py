"""The ablation scripts (scripts/ablations/*.sh over tools/run_study.py):
every study's dry run lists every variant with the paper's schedule, and a
tiny real run on synthetic images writes a table with every row."""
import json
import os
import subprocess

import pytest

from hrenet import nets, studies

from _tools import load_tool

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir,
                                     os.pardir))
SCRIPTS = os.path.join(ROOT, "scripts", "ablations")


def run_script(study, *args):
    return subprocess.run([os.path.join(SCRIPTS, study + ".sh")] +
                          list(args), capture_output=True, text=True,
                          timeout=900)


@pytest.mark.parametrize("study", list(studies.STUDIES))
def test_dry_run_lists_every_variant(study, tmp_path):
    r = run_script(study, "--dry-run", "--gpu", "0", "--out",
                   str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for row in studies.STUDIES[study]["rows"]:
        v = nets.variant(row.family, row.variant)
        assert f"--model prototxt/{v.family}/{v.name}/deploy.prototxt" in out
        src = nets.variant(v.family, v.weights_from or v.name)
        step = src.iters // 2 if src.name != "d_coco_pretrain" else 50000
        assert (f"# {src.family}/{src.name}: {src.iters} iterations, lr "
                f"x0.1 every {step}") in out
    assert "--gpu 0" in out
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_dry_run_schedule_follows_iters(tmp_path):
    r = run_script("table4", "--dry-run", "--iters", "100", "--weights",
                   "vgg.caffemodel", "--out", str(tmp_path / "r"))
    assert r.returncode == 0
    assert "# hrenet/d: 100 iterations, lr x0.1 every 50, iter_size 10" \
        in r.stdout
    # trainings; a relative path is the caller's, made absolute (the
    # commands run from the repository root)
    weights = os.path.abspath("vgg.caffemodel")
    assert r.stdout.count(f"--weights {weights}") == 4


def test_real_data_missing_is_one_line(tmp_path):
    r = run_script("lstm_vs_irnn", "--out", str(tmp_path / "r"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "data/voc/lmdb/train_aug does not exist" \
        in lines[0] and "tools/build_lmdb.py --format sbd" in lines[0]
    assert not (tmp_path / "r").exists()


def test_bad_dataset_for_study(tmp_path):
    r = run_script("nrenet_cv", "--dataset", "voc", "--dry-run")
    assert r.returncode == 1 and "stanford-bg or synthetic" in r.stderr


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(studies.SYN, "num_images", 10)
    monkeypatch.setitem(studies.SYN, "height", 32)
    monkeypatch.setitem(studies.SYN, "width", 40)
    monkeypatch.setattr(studies, "SYN_CROP_SCALE", 0.08)


@pytest.mark.parametrize("study", list(studies.STUDIES))
def test_tiny_synthetic_run(study, tmp_path, tiny, caffe):
    tool = load_tool("run_study")
    run = tmp_path / "run"
    args = [study, "--dataset", "synthetic", "--iters", "2", "--out",
            str(run)]
    assert tool.main(tool.parse_args(args)) == 0
    table = json.loads((run / "results.json").read_text())
    rows = studies.STUDIES[study]["rows"]
    assert [(r["family"], r["variant"]) for r in table["rows"]] == \
        [(r.family, r.variant) for r in rows]
    for r in table["rows"]:
        assert r["ours"] is not None and 0 <= r["ours"]["pixel_acc"] <= 1
    md = (run / "results.md").read_text()
    body = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(body) == len(rows) + (2 if study == "nrenet_cv" else 0)
    if study == "nrenet_cv":
        assert "mean ± std" in md and "80.4" in md
        assert table["summary"]["folds"] == 5
    else:
        assert "IoU % (paper)" in md
    # --resume skips everything that is done.
    assert tool.main(tool.parse_args(args + ["--resume"])) == 0
    # A second run without --resume refuses to overwrite the results.
    assert tool.main(tool.parse_args(args)) == 1
