"""tools/infer.py, tools/time_net.py, tools/visualize_features.py and
scripts/gpu_check.sh without a GPU."""
import json
import os
import subprocess

import numpy as np
import pytest

from hrenet import inference, visual

from _run import run_tool
from _toolnets import MEAN, SCALE


def write_images(root, sizes):
    from PIL import Image
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = os.path.join(root, f"img{i}.png" if i % 2 else f"img{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (h, w, 3)).astype(np.uint8)) \
            .save(path)
        paths.append(path)
    return paths


def test_infer_any_size(caffe, toolsetup, tmp_path, capsys):
    s = toolsetup
    folder = tmp_path / "in"
    folder.mkdir()
    paths = write_images(str(folder), [(33, 41), (20, 64)])
    extra = str(tmp_path / "extra.jpg")
    os.rename(write_images(str(tmp_path), [(50, 30)])[0], extra)
    out = tmp_path / "out"
    rc, err = run_tool("infer", [folder, extra, "--model", s.deploy,
                                 "--weights", s.weights, "--out", out,
                                 "--quiet"], capsys)
    assert rc == 0, err
    from PIL import Image
    net = caffe.Net(s.deploy, s.weights, caffe.TEST)
    summary = json.loads((out / "infer.json").read_text())
    assert [r["image"] for r in summary["images"]] == paths + [extra]
    for path in paths + [extra]:
        stem = os.path.splitext(os.path.basename(path))[0]
        with Image.open(path) as im:
            rgb = np.array(im.convert("RGB"))
        with Image.open(out / (stem + ".png")) as im:
            assert im.mode == "P"
            pred = np.array(im)
        assert pred.shape == rgb.shape[:2]
        # the same prediction computed here
        x = (rgb[..., ::-1].astype(np.float32) - np.array(MEAN, np.float32))
        x *= SCALE
        net.blobs["data"].reshape(1, 3, *pred.shape)
        net.reshape()
        net.blobs["data"].data[0] = x.transpose(2, 0, 1)
        net.forward()
        np.testing.assert_array_equal(
            pred, net.blobs["score"].data[0].argmax(axis=0))
        with Image.open(out / (stem + "_overlay.png")) as im:
            over = np.array(im)
        assert over.shape[0] >= rgb.shape[0]
        assert over.shape[1] > rgb.shape[1]  # the legend to the right
    assert "weights" in summary
    assert summary["scale"] == pytest.approx(SCALE)


def test_infer_unreadable_image(toolsetup, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    out = tmp_path / "out"
    rc, err = run_tool("infer", [bad, "--model", toolsetup.deploy,
                                 "--weights", toolsetup.weights, "--out",
                                 out, "--quiet"], capsys)
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {bad}: not an image file")
    assert not out.exists()
    rc, err = run_tool("infer", [tmp_path / "nope.jpg", "--model",
                                 toolsetup.deploy, "--weights",
                                 toolsetup.weights, "--out", out, "--quiet"],
                       capsys)
    assert rc == 1 and "no such image or folder" in err


def test_transform_from_net_flags_and_default(caffe, toolsetup, tmp_path):
    param = inference.read_net_param(toolsetup.deploy)
    mean, scale = inference.resolve_transform(param)
    assert mean == list(MEAN) and scale == pytest.approx(SCALE)
    assert inference.resolve_transform(param, mean=[1, 2, 3], scale=2.0) \
        == ([1.0, 2.0, 3.0], 2.0)
    bare = tmp_path / "bare.prototxt"
    bare.write_text('layer { name: "data" type: "Input" top: "data" '
                    'input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }')
    warnings = []
    mean, scale = inference.resolve_transform(
        inference.read_net_param(str(bare)), path="bare", warn=warnings.append)
    assert (mean, scale) == ([0.0, 0.0, 0.0], 1.0)
    assert len(warnings) == 1 and "mean 0 and scale 1" in warnings[0]


def test_time_net(toolsetup, tmp_path, capsys):
    s = toolsetup
    out = tmp_path / "t"
    rc, err = run_tool("time_net", [s.deploy, s.deploy_crf, "--names",
                                    "plain", "crf", "--height", 40,
                                    "--width", 48, "--repeats", 2,
                                    "--out", out, "--quiet"], capsys)
    assert rc == 0, err
    report = json.loads((out / "time.json").read_text())
    plain, crf = report["nets"]
    assert (report["height"], report["width"]) == (40, 48)
    assert plain["ratio_to_first"] == 1.0
    assert crf["ratio_to_first"] == pytest.approx(
        crf["total"]["median_ms"] / plain["total"]["median_ms"])
    assert plain["types"]["ReNet"] > 0 and plain["types"]["convolution"] > 0
    assert plain["types"]["DenseCRF"] == 0 and crf["types"]["DenseCRF"] > 0
    assert [layer["type"] for layer in plain["layers"]] == [
        "Input", "Split", "Convolution", "ReLU", "ReNet", "Convolution",
        "Deconvolution", "Crop"]
    t = plain["total"]
    assert t["min_ms"] <= t["median_ms"] <= t["max_ms"] and t["runs"] == 2
    md = (out / "time.md").read_text()
    assert "| plain |" in md and "| crf |" in md and "1.00x" in md


def test_feature_grid_layout():
    f = np.zeros((5, 2, 3), np.float32)
    f[0] = [[0, 1, 2], [3, 4, 5]]
    f[1] = 7.0  # constant -> mid-grey
    g = visual.feature_grid(f, k=4, pad=1)
    assert g.shape == (2 * 2 + 1, 2 * 3 + 1)  # 2 x 2 grid of 2 x 3 tiles
    np.testing.assert_array_equal(g[0:2, 0:3], [[0, 51, 102], [153, 204, 255]])
    assert (g[0:2, 4:7] == 128).all()
    assert (g[2, :] == 255).all() and (g[:, 3] == 255).all()
    assert visual.feature_grid(f, k=2, zoom=2).shape == (4, 2 * 6 + 1)


def test_visualize_features(toolsetup, tmp_path, capsys):
    s = toolsetup
    image = write_images(str(tmp_path), [(32, 40)])[0]
    out = tmp_path / "v"
    rc, err = run_tool("visualize_features", [
        image, "--model", s.deploy, "--weights", s.weights, "--blobs",
        "conv1", "renet1", "--k", 4, "--out", out], capsys)
    assert rc == 0, err
    from PIL import Image
    with Image.open(out / "conv1.png") as im:
        assert im.mode == "L" and im.size == (2 * 40 + 1, 2 * 32 + 1)
    with Image.open(out / "renet1.png") as im:  # 2x2 patches: 16 x 20 maps
        assert im.size == (2 * 20 + 1, 2 * 16 + 1)
    info = json.loads((out / "features.json").read_text())
    assert info["blobs"]["renet1"]["shape"] == [8, 16, 20]
    rc, err = run_tool("visualize_features", [
        image, "--model", s.deploy, "--weights", s.weights, "--blobs",
        "renet3", "--out", tmp_path / "w"], capsys)
    assert rc == 1 and err.count("\n") == 1
    assert "no blob renet3; the net has: data, conv1, renet1, score_lr, " \
        "upscore, score" in err
    assert not (tmp_path / "w").exists()


def test_gpu_check_without_gpu_skips(tmp_path):
    root = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
    fake = tmp_path / "bin"
    fake.mkdir()
    smi = fake / "nvidia-smi"  # a driver that finds no device
    smi.write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 6\n")
    smi.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    r = subprocess.run(["bash", os.path.join(root, "scripts", "gpu_check.sh"),
                        "--out", str(tmp_path / "g")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "SKIPPED build: nvidia-smi found no GPU" in r.stdout
    summary = json.loads((tmp_path / "g" / "gpu_check.json").read_text())
    assert summary["ok"] and summary["gpu"] is None
    assert [s["step"] for s in summary["steps"]] == [
        "build", "gtest-ours", "gtest-upstream", "time_net", "multi_gpu"]
    assert all(s["status"] == "skipped" for s in summary["steps"])


def test_time_net_default_names():
    from _tools import load_tool
    tool = load_tool("time_net")
    assert tool.default_name("prototxt/hrenet/d/deploy.prototxt") == \
        "hrenet/d"
    assert tool.default_name("/x/model/deploy_crf.prototxt") == \
        "model/deploy_crf"
