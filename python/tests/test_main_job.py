"""The main job (scripts/main_job.sh over tools/main_job.py): the --quick
version runs end to end and writes a well-formed report; a missing or empty
dataset root stops with one line and leaves nothing behind."""
import json
import os
import subprocess

import numpy as np
from PIL import Image

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(
    __file__)), os.pardir, os.pardir))
SCRIPT = os.path.join(ROOT, "scripts", "main_job.sh")


def run(*args):
    return subprocess.run([SCRIPT] + list(args), capture_output=True,
                          text=True, timeout=600)


def test_quick_main_job_report(tmp_path):
    out = tmp_path / "run"
    r = run("--quick", "--out", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # progress: every step announced with its ETA
    for step in ("data", "nets", "train N-ReNet", "train baseline", "score",
                 "report"):
        assert f"] {step} (elapsed" in r.stdout
    assert f"report: {out / 'report.md'}" in r.stdout
    assert "mean IoU: N-ReNet" in r.stdout and "baseline" in r.stdout
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"models"}
    assert set(report["models"]) == {"nrenet", "baseline"}
    for m in report["models"].values():
        assert set(m) == {"miou", "pixel_acc", "class_acc"}
        assert all(0.0 <= v <= 1.0 for v in m.values())
    md = (out / "report.md").read_text()
    for needle in ("| N-ReNet (small) |", "| local-context FCN |",
                   "whole image", "26 x 26 px", "Per-class IoU",
                   "![samples](samples.png)", "features_renet1_v.png",
                   "features_renet3_h.png", "forward / image"):
        assert needle in md, needle
    for png in ("samples.png", "confusion_nrenet.png",
                "confusion_baseline.png", "curves_nrenet.png",
                "curves_baseline.png", "features_renet1_v.png",
                "features_renet3_h.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 8 and im.size[1] > 8, png
    # samples: 4 rows of image | ground truth | baseline | N-ReNet
    samples = np.asarray(Image.open(out / "samples.png"))
    assert samples.shape[1] > 3 * samples.shape[0] / 4
    details = json.loads((out / "details.json").read_text())
    assert details["models"]["nrenet"]["receptive_field"] is None
    assert details["models"]["baseline"]["receptive_field"] == 26
    assert details["models"]["nrenet"]["forward_ms"] > 0
    # the schedule: validated on the dev split (every 8th training image)
    assert details["images"]["dev"] == 4 and details["images"]["train"] == 28
    for model in ("nrenet", "baseline"):
        info = details["models"][model]
        assert info["iterations"] == 20 and info["stop"] == "iters"
        assert info["best_dev"]["iter"] in (10, 20)
        assert info["weights"].startswith(f"{model}/train/snapshots/best_")
    assert "| iterations | best val. mean IoU |" in md
    assert ("Warning:" in md) == bool(details["warning"])
    assert ("warning: " in r.stdout) == bool(details["warning"])
    for model in ("nrenet", "baseline"):
        for name in ("train_val.prototxt", "deploy.prototxt",
                     "solver.prototxt", "score/score.json",
                     "score/score.md", "score/confusion.png",
                     "train/log.jsonl", "train/curves.png",
                     "train/summary.json"):
            assert (out / model / name).is_file(), (model, name)
    assert (out / "commit").read_text().strip()
    assert "--quick" in (out / "command").read_text()
    # both losses weigh classes by the square root of median frequency
    # balancing over the train split
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    from hrenet import lmdb_io, nets
    blob = caffe_pb2.BlobProto()
    blob.ParseFromString((out / "class_weights.binaryproto").read_bytes())
    h = np.array(blob.data).reshape(tuple(blob.shape.dim))[0, 0]
    pixels = lmdb_io.read_meta(str(out / "data" / "lmdb_train"))
    np.testing.assert_allclose(
        h, np.diag(nets.median_frequency_weights(pixels["class_pixels"],
                                                 0.5)), rtol=1e-6)
    for model in ("nrenet", "baseline"):
        net = text_format.Merge((out / model / "train_val.prototxt")
                                .read_text(), caffe_pb2.NetParameter())
        loss = [x for x in net.layer if x.name == "loss"][0]
        assert loss.type == "InfogainLoss"
        assert loss.infogain_loss_param.source == str(
            out / "class_weights.binaryproto")
        assert loss.loss_param.ignore_label == 255


def test_missing_root_is_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    out = tmp_path / "run"
    r = run("--format", "voc", "--root", str(missing), "--out", str(out))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(missing) in lines[0]
    assert not out.exists()


def test_empty_root_is_one_line(tmp_path):
    empty = tmp_path / "VOC2012"
    empty.mkdir()
    out = tmp_path / "run"
    r = run("--format", "voc", "--root", str(empty), "--out", str(out))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "ImageSets" in lines[0] or "train" in lines[0]
    assert not out.exists()


def test_warning_when_the_nrenet_is_not_ahead():
    from hrenet import mainjob

    def res(n, b):
        return {"nrenet": {"miou": n}, "baseline": {"miou": b}}
    assert mainjob.warning_line(res(0.95, 0.30)) is None
    assert "not ahead" in mainjob.warning_line(res(0.17, 0.27))
    assert "less than the targets" in mainjob.warning_line(res(0.85, 0.30))
    assert "less than the targets" in mainjob.warning_line(res(0.95, 0.80))
    assert "NOT met" in mainjob.verdict_line(res(0.85, 0.30))
    assert ": met" in mainjob.verdict_line(res(0.95, 0.30))


def test_settings_schedule():
    from hrenet import mainjob, synthetic
    s = mainjob.settings()
    assert s["patience"] > 0 and s["budget"] and s["lr_policy"] == "fixed"
    assert (s["height"], s["width"]) == (64, 80)
    fixed = mainjob.settings(iters=300)
    assert fixed["iters"] == 300 and fixed["patience"] == 0
    assert fixed["budget"] is None and fixed["lr_policy"] == "step"
    v = mainjob.settings(variant="ring-96x128-k3", budget=240)
    assert (v["height"], v["width"], v["classes"]) == (96, 128, 3)
    assert v["style"] == synthetic.VARIANTS["ring-96x128-k3"].style
    assert v["budget"] == 240
