"""ONNX export (hrenet.onnx_export, tools/export_onnx.py), ONNX Runtime
inference (hrenet.onnx_run, tools/infer.py --onnx) and the ONNX Runtime
column of tools/time_net.py."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hrenet import (fixtures, inference, onnx_export,  # noqa: E402
                    onnx_run, renet)

from _run import run_tool  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                    os.pardir)


def nrenet_text(unit, patch, height, width, num=1):
    """A tiny N-ReNet: two ReNet groups (the second with s x 1 patches),
    a 1x1 classifier and the resize to the data's size."""
    filler = ('weight_filler { type: "uniform" min: -0.5 max: 0.5 } '
              'bias_filler { type: "uniform" min: -0.5 max: 0.5 }')
    return f'''name: "tiny_nrenet"
layer {{ name: "data" type: "Input" top: "data"
  transform_param {{ mean_value: 104 mean_value: 117 mean_value: 123
    scale: 0.0078125 }}
  input_param {{ shape {{ dim: {num} dim: 3 dim: {height} dim: {width} }} }} }}
layer {{ name: "renet1_v" type: "ReNet" bottom: "data" top: "renet1_v"
  renet_param {{ num_output: 5 direction: VERTICAL patch_h: {patch}
    patch_w: {patch} unit: {unit} {filler} }} }}
layer {{ name: "renet1_h" type: "ReNet" bottom: "renet1_v" top: "renet1_h"
  renet_param {{ num_output: 5 direction: HORIZONTAL patch_h: {patch}
    patch_w: {patch} unit: {unit} {filler} }} }}
layer {{ name: "renet2_v" type: "ReNet" bottom: "renet1_h" top: "renet2_v"
  renet_param {{ num_output: 4 direction: VERTICAL patch_h: {patch}
    patch_w: 1 unit: {unit} {filler} }} }}
layer {{ name: "renet2_h" type: "ReNet" bottom: "renet2_v" top: "renet2_h"
  renet_param {{ num_output: 4 direction: HORIZONTAL unit: {unit}
    {filler} }} }}
layer {{ name: "classifier" type: "Convolution" bottom: "renet2_h"
  top: "classifier" convolution_param {{ num_output: 4 kernel_size: 1
    weight_filler {{ type: "gaussian" std: 1 }}
    bias_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "score" type: "BilinearResize" bottom: "classifier"
  bottom: "data" top: "score" }}
'''


def write_net(caffe, folder, text, seed=0):
    """prototxt and caffemodel (random weights) in ``folder``."""
    model = os.path.join(folder, "deploy.prototxt")
    with open(model, "w") as f:
        f.write(text)
    net = caffe.Net(model, caffe.TEST)
    fixtures.randomize_weights(net, seed)
    weights = os.path.join(folder, "w.caffemodel")
    net.save(weights)
    return model, weights


def caffe_forward(caffe, model, weights, x, blob="score"):
    net = caffe.Net(model, weights, caffe.TEST)
    net.blobs["data"].reshape(*x.shape)
    net.reshape()
    net.blobs["data"].data[...] = x
    net.forward()
    return np.array(net.blobs[blob].data)


def op_types(path):
    import onnx
    return {n.op_type for n in onnx.load(path).graph.node}


@pytest.mark.parametrize("unit,op", [("LSTM", "LSTM"), ("GRU", "GRU"),
                                     ("IRNN", "RNN")])
@pytest.mark.parametrize("patch", [1, 2])
def test_nrenet_units_and_patches(caffe, tmp_path, capsys, unit, op, patch):
    # 13 x 17: neither divisible by the 2 x 2 (or 2 x 1) patches
    model, weights = write_net(caffe, str(tmp_path),
                               nrenet_text(unit, patch, 13, 17))
    out = tmp_path / "m.onnx"
    rc, err = run_tool("export_onnx", ["--model", model, "--weights",
                                       weights, "--out", out], capsys)
    assert rc == 0, err
    assert op in op_types(str(out))
    # another input than the check's
    x = np.random.default_rng(5).normal(0, 1, (1, 3, 13, 17)) \
        .astype(np.float32)
    got = onnx_run.OnnxModel(str(out)).run(x)["score"]
    ref = caffe_forward(caffe, model, weights, x)
    assert np.abs(got - ref).max() <= 1e-4 * np.ptp(ref)
    assert (got.argmax(1) == ref.argmax(1)).all()


@pytest.mark.parametrize("unit", ["LSTM", "GRU", "IRNN"])
@pytest.mark.parametrize("direction", ["VERTICAL", "HORIZONTAL"])
def test_renet_against_numpy_reference(caffe, unit, direction):
    """One ReNet layer converted from NumPy blobs (no Caffe net) agrees
    with hrenet.renet's float64 reference: gate order and layout."""
    from google.protobuf import text_format
    param = inference.caffe_pb2().NetParameter()
    text_format.Merge(f'''
        layer {{ name: "data" type: "Input" top: "data" }}
        layer {{ name: "r" type: "ReNet" bottom: "data" top: "r"
          renet_param {{ num_output: 3 direction: {direction} patch_h: 2
            patch_w: 3 unit: {unit} }} }}''', param)
    rng = np.random.default_rng(1)
    g, d, k = renet.GATES[unit], 3, 2 * 2 * 3
    blobs = [rng.uniform(-0.5, 0.5, s) for s in
             [(g * d, k), (g * d, d), (g * d)] * 2]
    x = rng.normal(0, 1, (2, 2, 7, 8)).astype(np.float32)
    model, info = onnx_export.convert(
        param, {"r": blobs}, {"data": x.shape, "r": (2, 2 * d, 4, 3)})
    got = onnx_run.OnnxModel(model.SerializeToString()).run(x)["r"]
    ref = renet.renet_forward(x, blobs, unit, direction, 2, 3)
    np.testing.assert_allclose(got, ref, atol=2e-6)


MISC = '''name: "misc"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 19 dim: 23 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_h: 3 kernel_w: 5 pad_h: 1
    pad_w: 2 stride: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1"
  relu_param { negative_slope: 0.1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv1" top: "bn" }
layer { name: "scale" type: "Scale" bottom: "bn" top: "bn"
  scale_param { bias_term: true } }
layer { name: "pool_max" type: "Pooling" bottom: "bn" top: "pool_max"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pool_ave" type: "Pooling" bottom: "bn" top: "pool_ave"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "group" type: "Convolution" bottom: "pool_max" top: "group"
  convolution_param { num_output: 6 kernel_size: 3 pad: 2 dilation: 2
    group: 3 } }
layer { name: "sig" type: "Sigmoid" bottom: "group" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "pool_ave" top: "tanh" }
layer { name: "sum" type: "Eltwise" bottom: "sig" bottom: "tanh" top: "sum"
  eltwise_param { operation: SUM coeff: 0.5 coeff: -2 } }
layer { name: "prod" type: "Eltwise" bottom: "sig" bottom: "tanh"
  top: "prod" eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "sum" bottom: "prod" top: "max"
  eltwise_param { operation: MAX } }
layer { name: "drop" type: "Dropout" bottom: "max" top: "max" }
layer { name: "sumsq" type: "Reduction" bottom: "max" top: "sumsq"
  reduction_param { operation: SUMSQ axis: 1 } }
layer { name: "inv" type: "Power" bottom: "sumsq" top: "inv"
  power_param { power: -0.5 scale: 0.5 shift: 1 } }
layer { name: "l2" type: "Scale" bottom: "max" bottom: "inv" top: "l2"
  scale_param { axis: 0 } }
layer { name: "bias" type: "Bias" bottom: "l2" top: "bias" }
layer { name: "split" type: "Split" bottom: "bias" top: "s1" top: "s2" }
layer { name: "cat" type: "Concat" bottom: "s1" bottom: "s2" bottom: "max"
  top: "cat" }
layer { name: "up" type: "Deconvolution" bottom: "cat" top: "up"
  convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 } }
layer { name: "crop" type: "Crop" bottom: "up" bottom: "data" top: "crop"
  crop_param { axis: 2 offset: 1 } }
layer { name: "zoom" type: "BilinearResize" bottom: "pool_ave" top: "zoom"
  bilinear_resize_param { zoom_factor: 3 } }
layer { name: "fixed" type: "BilinearResize" bottom: "zoom" top: "fixed"
  bilinear_resize_param { height: 17 width: 21 } }
layer { name: "gpool" type: "Pooling" bottom: "fixed" top: "gpool"
  pooling_param { pool: AVE global_pooling: true } }
layer { name: "mean" type: "Reduction" bottom: "fixed" top: "mean"
  reduction_param { operation: MEAN axis: 2 coeff: 3 } }
layer { name: "asum" type: "Reduction" bottom: "fixed" top: "asum"
  reduction_param { operation: ASUM axis: 3 } }
layer { name: "total" type: "Reduction" bottom: "fixed" top: "total"
  reduction_param { operation: SUM axis: 1 } }
layer { name: "score" type: "Softmax" bottom: "crop" top: "score" }
'''


def test_other_layer_types(caffe, tmp_path, capsys):
    """Every converter besides ReNet, with odd sizes (Caffe's ceil-mode
    pooling), non-trivial BatchNorm statistics and in-place layers; every
    open blob is an output, each checked."""
    model, weights = write_net(caffe, str(tmp_path), MISC)
    out = tmp_path / "m.onnx"
    rc, err = run_tool("export_onnx", ["--model", model, "--weights",
                                       weights, "--out", out], capsys)
    assert rc == 0, err
    runner = onnx_run.OnnxModel(str(out))
    assert set(runner.outputs) == {"gpool", "mean", "asum", "total",
                                   "score"}
    ops = op_types(str(out))
    for op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool",
               "GlobalAveragePool", "LeakyRelu", "BatchNormalization",
               "Sigmoid", "Tanh", "Sum", "Max", "ReduceSumSquare",
               "ReduceMean", "ReduceL1", "ReduceSum", "Pow", "Concat",
               "Slice", "Resize", "Softmax"):
        assert op in ops, op


def vgg_net(caffe, variant, height=64, width=80, seed=0):
    model = inference.load_model(
        os.path.join(ROOT, "prototxt", variant, "deploy.prototxt"), None)
    fixtures.randomize_weights(model.net, seed)
    model.net.blobs["data"].reshape(1, 3, height, width)
    model.net.reshape()
    return model


@pytest.mark.parametrize("variant,ops", [
    ("fcn/a", {"Conv", "MaxPool", "Resize"}),
    ("hrenet/b", {"LSTM", "Resize"}),
    ("hrenet/d", {"LSTM", "BatchNormalization", "Concat"}),
])
def test_paper_deploy_nets(caffe, variant, ops):
    """The generated deploy nets at a reduced size, random weights."""
    m = vgg_net(caffe, variant)
    onnx_model, info = onnx_export.convert_net(m.net, m.param, mean=m.mean,
                                               scale=m.scale)
    assert ops <= {n.op_type for n in onnx_model.graph.node}
    assert list(info["outputs"]) == ["score"] and info["crf"] is None
    runner = onnx_run.OnnxModel(onnx_model.SerializeToString())
    assert runner.mean == pytest.approx(m.mean) and runner.num_classes == 21
    records = onnx_export.check_parity(m.net, runner, [(64, 80)], m.mean,
                                       m.scale)
    assert len(records) == 2 and onnx_export.parity_passed(records), \
        onnx_export.format_parity(records)


def test_released_net_crf_tail(caffe):
    """hrenet/released: the graph ends at the CRF's input, the CRF (its
    options and learned blobs) runs from the metadata, as the net does."""
    m = vgg_net(caffe, "hrenet/released", 48, 64, seed=1)
    onnx_model, info = onnx_export.convert_net(m.net, m.param, mean=m.mean,
                                               scale=m.scale)
    assert "DenseCRF" not in {n.op_type for n in onnx_model.graph.node}
    assert list(info["outputs"]) == ["conv6_full_res"]
    crf = info["crf"]
    assert crf["inputs"] == {"unary": "conv6_full_res",
                             "Q0": "conv6_full_res", "data": "data"}
    assert crf["output"] == "prob" and list(crf["blobs"]) == ["inference1"]
    assert "feature_source: DATA" in crf["prototxt"]
    runner = onnx_run.OnnxModel(onnx_model.SerializeToString())
    assert runner.blob == "prob" and runner.mean == [104, 117, 123]
    records = onnx_export.check_parity(m.net, runner, [(48, 64)], m.mean,
                                       m.scale)
    assert onnx_export.parity_passed(records), \
        onnx_export.format_parity(records)
    own = [r for r in records if "CRF on Caffe's" in r["output"]]
    assert len(own) == 2 and all(r["max_abs_diff"] < 1e-6 for r in own)


def test_dynamic_size(caffe, tmp_path, capsys):
    model, weights = write_net(caffe, str(tmp_path),
                               nrenet_text("LSTM", 2, 16, 20))
    out = tmp_path / "m.onnx"
    rc, err = run_tool("export_onnx", ["--model", model, "--weights",
                                       weights, "--out", out, "--dynamic"],
                       capsys)
    assert rc == 0, err
    runner = onnx_run.OnnxModel(str(out))
    assert runner.input_shape == ["batch", 3, "height", "width"]
    rng = np.random.default_rng(2)
    for shape in [(1, 3, 21, 30), (2, 3, 9, 14)]:
        x = rng.normal(0, 1, shape).astype(np.float32)
        got = runner.run(x)["score"]
        ref = caffe_forward(caffe, model, weights, x)
        assert got.shape == ref.shape == (shape[0], 4) + shape[2:]
        assert np.abs(got - ref).max() <= 1e-4 * np.ptp(ref)


def test_static_size_is_enforced(caffe, tmp_path, capsys):
    model, weights = write_net(caffe, str(tmp_path),
                               nrenet_text("GRU", 1, 10, 12))
    out = tmp_path / "m.onnx"
    assert run_tool("export_onnx", ["--model", model, "--weights", weights,
                                    "--out", out, "--height", 11,
                                    "--width", 9, "--quiet"], capsys)[0] == 0
    runner = onnx_run.OnnxModel(str(out))
    assert runner.input_shape == [1, 3, 11, 9]
    with pytest.raises(inference.ToolError, match="--dynamic"):
        runner.run(np.zeros((1, 3, 10, 12), np.float32))


def test_unsupported_layer(caffe, tmp_path, capsys):
    text = nrenet_text("LSTM", 1, 8, 8).replace(
        'layer { name: "score"',
        'layer { name: "norm1" type: "LRN" bottom: "classifier" '
        'top: "norm1" }\nlayer { name: "score"')
    model = tmp_path / "deploy.prototxt"
    model.write_text(text)
    out = tmp_path / "out" / "m.onnx"
    rc, err = run_tool("export_onnx", ["--model", model, "--weights",
                                       tmp_path / "none.caffemodel", "--out",
                                       out], capsys)
    assert rc == 1
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "'norm1'" in err and "'LRN'" in err
    assert not (tmp_path / "out").exists()


def test_failed_check_writes_nothing(caffe, tmp_path, capsys, monkeypatch):
    model, weights = write_net(caffe, str(tmp_path),
                               nrenet_text("LSTM", 1, 8, 8))
    monkeypatch.setattr(onnx_export, "parity_passed", lambda records: False)
    out = tmp_path / "m.onnx"
    rc, err = run_tool("export_onnx", ["--model", model, "--weights",
                                       weights, "--out", out], capsys)
    assert rc == 1 and "nothing written" in err and not out.exists()
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    rc, err = run_tool("export_onnx", ["--model", model, "--weights",
                                       weights, "--out", out, "--no-check",
                                       "--quiet"], capsys)
    assert rc == 0 and out.exists()


def test_infer_onnx_matches_caffe(caffe, toolsetup, tmp_path, capsys):
    """infer.py --onnx gives infer.py's labels, with the CRF net's DenseCRF
    run from the metadata (any image size: dynamic export)."""
    from PIL import Image
    s = toolsetup
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate([(33, 41), (24, 30)]):
        images.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)) \
            .save(images[-1])
    for deploy in (s.deploy, s.deploy_crf):
        stem = os.path.splitext(os.path.basename(deploy))[0]
        onnx_path = tmp_path / f"{stem}.onnx"
        rc, err = run_tool("export_onnx", ["--model", deploy, "--weights",
                                           s.weights, "--out", onnx_path,
                                           "--dynamic", "--quiet"], capsys)
        assert rc == 0, err
        preds = {}
        for how, flags in (("caffe", ["--model", deploy, "--weights",
                                      s.weights]),
                           ("onnx", ["--onnx", onnx_path])):
            out = tmp_path / f"{stem}_{how}"
            rc, err = run_tool("infer", images + flags +
                               ["--out", out, "--quiet"], capsys)
            assert rc == 0, err
            summary = json.loads((out / "infer.json").read_text())
            assert summary["runtime"] == ("onnxruntime" if how == "onnx"
                                          else "caffe")
            assert summary["crf"] == (deploy == s.deploy_crf)
            preds[how] = [np.array(Image.open(out / f"img{i}.png"))
                          for i in range(len(images))]
        for a, b in zip(preds["caffe"], preds["onnx"]):
            assert a.shape == b.shape and (a == b).mean() >= 0.9999


def test_infer_onnx_flags(toolsetup, tmp_path, capsys):
    s = toolsetup
    rc, err = run_tool("infer", ["x.jpg", "--out", tmp_path / "o"], capsys)
    assert rc == 1 and "--model and --weights" in err
    rc, err = run_tool("infer", ["x.jpg", "--onnx", "m.onnx", "--model",
                                 s.deploy, "--out", tmp_path / "o"], capsys)
    assert rc == 1 and "leave out --model" in err


def test_time_net_onnx_column(toolsetup, tmp_path, capsys):
    s = toolsetup
    out = tmp_path / "t"
    rc, err = run_tool("time_net", [s.deploy, s.deploy_crf, "--names",
                                    "plain", "crf", "--height", 24,
                                    "--width", 32, "--repeats", 1,
                                    "--no-layers", "--out", out, "--quiet"],
                       capsys)
    assert rc == 0, err
    report = json.loads((out / "time.json").read_text())
    assert report["onnx"] is True
    assert [n["onnx"]["crf"] for n in report["nets"]] == [False, True]
    assert all(n["onnx"]["median_ms"] > 0 for n in report["nets"])
    assert "ONNX Runtime ms" in (out / "time.md").read_text()
    rc, err = run_tool("time_net", [s.deploy, "--height", 24, "--width", 32,
                                    "--repeats", 1, "--no-layers",
                                    "--no-onnx", "--out", out, "--quiet"],
                       capsys)
    assert rc == 0, err
    report = json.loads((out / "time.json").read_text())
    assert "onnx" not in report["nets"][0]
    assert "ONNX" not in (out / "time.md").read_text()
