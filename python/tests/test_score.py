"""tools/score.py end to end on the tiny set-up, and its bad inputs."""
import json
import os

import numpy as np
import pytest

from hrenet import lmdb_io
from hrenet.metrics import ConfusionMatrix

from _run import run_tool
from _toolnets import K, MEAN, SCALE


def reference_confusion(caffe, deploy, weights, source, crf=False):
    """The confusion matrix computed here, independently of the tool."""
    net = caffe.Net(deploy, weights, caffe.TEST)
    cm = ConfusionMatrix(K)
    preds = {}
    for key, image, label in lmdb_io.read_dataset(source):
        x = (image.astype(np.float32) - np.array(MEAN, np.float32)) * SCALE
        net.blobs["data"].reshape(1, 3, *image.shape[:2])
        net.reshape()
        net.blobs["data"].data[0] = x.transpose(2, 0, 1)
        net.forward()
        out = net.blobs["crf_prob" if crf else "score"].data[0]
        pred = out.argmax(axis=0)
        cm.update(label, pred)
        preds[key.split("_", 1)[1]] = pred
    return cm.matrix, preds


def test_score_lmdb(caffe, toolsetup, tmp_path, capsys):
    s = toolsetup
    out = tmp_path / "score"
    png = tmp_path / "png"
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--source", s.val, "--out", out,
                                 "--save-png", png, "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads((out / "score.json").read_text())
    ref, preds = reference_confusion(caffe, s.deploy, s.weights, s.val)
    np.testing.assert_array_equal(result["confusion"], ref)
    assert result["images"] == lmdb_io.read_meta(s.val)["count"] == 2
    m = np.array(ref, np.float64)
    assert result["pixel_acc"] == pytest.approx(np.trace(m) / m.sum())
    assert result["classes"] == ["background", "class_1", "class_2",
                                 "class_3"]
    assert result["mean"] == list(MEAN)
    assert result["scale"] == pytest.approx(SCALE)
    assert result["forward_ms"] > 0 and 0 <= result["bookkeeping_fraction"] < 1
    md = (out / "score.md").read_text()
    assert "| method | background | class_1 | class_2 | class_3 | mean IoU |" \
        in md
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    for name, pred in preds.items():
        with Image.open(png / (name + ".png")) as im:
            assert im.mode == "P"
            np.testing.assert_array_equal(np.array(im), pred)
            assert im.getpalette()[3:6] == [128, 0, 0]  # VOC colour of 1


def test_score_dataset_root_matches_lmdb(toolsetup, tmp_path, capsys):
    s = toolsetup
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                              "--source", s.val, "--out", a, "--quiet"],
                    capsys)[0] == 0
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--format", "voc", "--root", s.syn,
                                 "--split", "val", "--classes", s.classes,
                                 "--out", b, "--quiet"], capsys)
    assert rc == 0, err
    ja = json.loads((a / "score.json").read_text())
    jb = json.loads((b / "score.json").read_text())
    assert ja["confusion"] == jb["confusion"]


def test_score_crf_appends_layer(caffe, toolsetup, tmp_path, capsys):
    s = toolsetup
    out = tmp_path / "crf"
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--source", s.val, "--out", out, "--crf",
                                 "--crf-iter", 2, "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads((out / "score.json").read_text())
    assert result["crf"] and result["blob"] == "crf_prob"
    # same as the deploy net with the CRF layer written in (same parameters)
    ref, _ = reference_confusion(caffe, s.deploy_crf, s.weights, s.val,
                                 crf=True)
    np.testing.assert_array_equal(result["confusion"], ref)


# --- bad inputs: one line, exit status 1, nothing written ------------------

def assert_one_line_error(rc, err, *parts):
    assert rc == 1
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, err


def test_missing_weights(toolsetup, tmp_path, capsys):
    s = toolsetup
    out = tmp_path / "o"
    rc, err = run_tool("score", ["--model", s.deploy, "--weights",
                                 tmp_path / "nope.caffemodel", "--source",
                                 s.val, "--out", out, "--quiet"], capsys)
    assert_one_line_error(rc, err, "nope.caffemodel: weights file does not "
                          "exist")
    assert not out.exists()


def test_weights_of_another_shape(caffe, toolsetup, tmp_path, capsys):
    import _toolnets
    s = toolsetup
    other = tmp_path / "other.prototxt"
    other.write_text(_toolnets.DEPLOY_HEAD + _toolnets.body(c1=5))
    weights = _toolnets.save_weights(caffe, str(other),
                                     tmp_path / "other.caffemodel")
    out = tmp_path / "o"
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", weights,
                                 "--source", s.val, "--out", out, "--quiet"],
                       capsys)
    assert_one_line_error(rc, err, "layer 'conv1' blob 0 has shape 5x3x3x3 "
                          "but the net expects 8x3x3x3")
    assert not out.exists()


def test_corrupt_weights(toolsetup, tmp_path, capsys):
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\x0a\xff\xff garbage")
    rc, err = run_tool("score", ["--model", toolsetup.deploy, "--weights",
                                 bad, "--source", toolsetup.val, "--out",
                                 tmp_path / "o", "--quiet"], capsys)
    assert_one_line_error(rc, err, "bad.caffemodel")


def test_missing_blob_lists_blobs(toolsetup, tmp_path, capsys):
    s = toolsetup
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--source", s.val, "--out", tmp_path / "o",
                                 "--blob", "prob", "--quiet"], capsys)
    assert_one_line_error(rc, err, "no blob 'prob'", "data, conv1, renet1")


def test_unreadable_image(toolsetup, tmp_path, capsys):
    import shutil
    s = toolsetup
    root = tmp_path / "voc"
    shutil.copytree(s.syn, root)
    val = (root / "ImageSets" / "Segmentation" / "val.txt").read_text()
    name = val.split()[1]
    bad = root / "JPEGImages" / (name + ".jpg")
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    out = tmp_path / "o"
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--format", "voc", "--root", root,
                                 "--split", "val", "--classes", s.classes,
                                 "--out", out, "--quiet"], capsys)
    assert_one_line_error(rc, err, str(bad), "cannot decode image")
    assert not (out / "score.json").exists()


def test_split_with_no_images(toolsetup, tmp_path, capsys):
    s = toolsetup
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--format", "voc", "--root", s.syn,
                                 "--list", empty, "--out", tmp_path / "o",
                                 "--quiet"], capsys)
    assert_one_line_error(rc, err, "split list is empty")
    (tmp_path / "f" / "images").mkdir(parents=True)
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--format", "folder", "--root",
                                 tmp_path / "f", "--out", tmp_path / "o",
                                 "--quiet"], capsys)
    assert_one_line_error(rc, err, "no .jpg/.jpeg/.png images found")
    assert not (tmp_path / "o").exists()


def test_not_an_lmdb(toolsetup, tmp_path, capsys):
    s = toolsetup
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--source", tmp_path, "--out",
                                 tmp_path / "o", "--quiet"], capsys)
    assert_one_line_error(rc, err, "no image_lmdb/")


def test_gpu_on_cpu_only_build(caffe, toolsetup, tmp_path, capsys):
    from hrenet import inference
    if inference.cuda_build():
        pytest.skip("this pycaffe is a CUDA build")
    s = toolsetup
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--source", s.val, "--out", tmp_path / "o",
                                 "--gpu", 0, "--quiet"], capsys)
    assert_one_line_error(rc, err, "--gpu 0: this pycaffe",
                          "is a CPU-only build")
    assert not (tmp_path / "o").exists()


def test_bad_prototxt(toolsetup, tmp_path, capsys):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer { name: "data" type: "Input" top: "data" \n'
                   'layer { oops }\n')
    rc, err = run_tool("score", ["--model", bad, "--weights",
                                 toolsetup.weights, "--source",
                                 toolsetup.val, "--out", tmp_path / "o",
                                 "--quiet"], capsys)
    assert_one_line_error(rc, err,
                          "bad.prototxt: cannot parse the net prototxt")
    bad.write_text('layer { name: "data" type: "Inptu" top: "data" }\n')
    rc, err = run_tool("score", ["--model", bad, "--weights",
                                 toolsetup.weights, "--source",
                                 toolsetup.val, "--out", tmp_path / "o",
                                 "--quiet"], capsys)
    assert_one_line_error(rc, err, "type 'Inptu'")


def test_help_shows_defaults():
    import subprocess
    import sys
    from _tools import TOOLS
    for tool in ("score", "infer", "train", "time_net", "visualize_features",
                 "plot_log", "export_onnx"):
        r = subprocess.run([sys.executable, os.path.join(TOOLS, tool + ".py"),
                            "--help"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert "usage:" in r.stdout and "default" in r.stdout


def test_score_function_for_reports(toolsetup):
    from hrenet import scoring
    s = toolsetup
    r = scoring.score(s.deploy, s.weights, s.val)
    assert set(r) >= {"miou", "pixel_acc", "class_acc", "fwiou", "iou",
                      "confusion", "classes", "forward_ms"}
    assert r["classes"][0] == "background" and len(r["iou"]) == 4
    assert np.array(r["confusion"]).sum() == r["pixels"]


def test_check_weights_reads_v1_caffemodels(caffe, toolsetup, tmp_path):
    """Old model-zoo weights (VGG-16) use V1 'layers' with legacy
    num/channels/height/width blob dims; they are checked like Caffe does
    and loaded."""
    from hrenet import inference
    pb2 = inference.caffe_pb2()
    net = caffe.Net(toolsetup.deploy, caffe.TEST)
    old = pb2.NetParameter()
    layer = old.layers.add()
    layer.name = "conv1"
    w, b = layer.blobs.add(), layer.blobs.add()
    w.num, w.channels, w.height, w.width = 8, 3, 3, 3
    w.data.extend(np.arange(216, dtype=np.float32) / 216)
    b.num, b.channels, b.height, b.width = 1, 1, 1, 8
    b.data.extend(np.ones(8, np.float32))
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(old.SerializeToString())
    matched, missing = inference.load_weights(net, str(path))
    assert matched == ["conv1"] and "renet1" in missing
    np.testing.assert_allclose(net.params["conv1"][0].data.ravel(),
                               np.arange(216) / 216, rtol=1e-6)
    assert (net.params["conv1"][1].data == 1).all()
    b.channels, b.width = 2, 4  # 1x2x1x4: 8 values, but not the shape 8
    path.write_bytes(old.SerializeToString())
    with pytest.raises(inference.ToolError, match="blob 1 has shape "
                       "1x2x1x4 but the net expects 8"):
        inference.load_weights(net, str(path))


def test_output_smaller_than_the_image_is_resized(toolsetup, tmp_path,
                                                  capsys):
    """A blob below the input resolution (score_lr: half size) is resized
    bilinearly to the label's size before the argmax."""
    s = toolsetup
    out = tmp_path / "lr"
    rc, err = run_tool("score", ["--model", s.deploy, "--weights", s.weights,
                                 "--source", s.val, "--out", out, "--blob",
                                 "score_lr", "--quiet"], capsys)
    assert rc == 0, err
    result = json.loads((out / "score.json").read_text())
    labels = [label for _, _, label in lmdb_io.read_dataset(s.val)]
    assert result["pixels"] == sum(int((lab != 255).sum()) for lab in labels)
    from hrenet.inference import resize_scores
    x = np.zeros((2, 2, 3), np.float32)
    x[0] = 1.0
    x[1] = [0.0, 1.0, 2.0]  # a ramp along the width
    y = resize_scores(x, 4, 6)
    assert y.shape == (2, 4, 6)
    np.testing.assert_allclose(y[0], 1.0)
    assert (np.diff(y[1], axis=1) >= 0).all() and (y[1] == y[1][0]).all()
    assert y[1].min() == 0.0 and y[1].max() == 2.0
