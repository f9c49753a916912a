"""The authors' trained model runs here: a caffemodel in their fork's exact
layout (hrenet.fixtures.write_hybridnet_caffemodel, random values) is
imported by tools/import_hybridnet.py onto prototxt/hrenet/released, and our
net's forward is compared layer by layer with independent NumPy
implementations of their layers' equations (hybridnet_reference)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import hybridnet_reference as ref
from hrenet import fixtures, hybridnet

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEPLOY = os.path.join(ROOT, hybridnet.RELEASED_DEPLOY)
TOOL = os.path.join(ROOT, "tools", "import_hybridnet.py")
H, W = 64, 80  # a reduced input size: 8 x 10 after the stride-8 trunk


@pytest.fixture(scope="module")
def theirs(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("theirs") / "H_ReNet.caffemodel")
    values = fixtures.write_hybridnet_caffemodel(path, seed=3)
    return path, values


@pytest.fixture(scope="module")
def imported(theirs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ours") / "released.caffemodel")
    proc = subprocess.run([sys.executable, TOOL, "--weights", theirs[0],
                           "--out", out, "--model", DEPLOY],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def _image(seed=0):
    """A picture-like BGR input as their demo feeds it (mean-subtracted
    0-255 values): six flat colour blocks, a stripe texture in one, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    colours = np.array([(230, 30, 30), (20, 200, 40), (30, 40, 220),
                        (250, 250, 240), (10, 10, 10), (200, 180, 20)])
    block = (yy * 2 // H) * 3 + (xx * 3 // W)
    rgb = colours[block].astype(np.float64)
    rgb[block == 4] += 120 * (np.sin(xx / 1.5) > 0)[block == 4][:, None]
    rgb += rng.normal(0, 3, rgb.shape)
    bgr = rgb[..., ::-1].transpose(2, 0, 1)
    return bgr - np.array(hybridnet_mean())[:, None, None]


def hybridnet_mean():
    from hrenet import nets
    return nets.RELEASED_MEAN_BGR


@pytest.fixture(scope="module")
def forward(caffe, imported):
    net = caffe.Net(DEPLOY, imported[0], caffe.TEST)
    net.blobs["data"].reshape(1, 3, H, W)
    net.reshape()
    net.blobs["data"].data[0] = _image()
    net.forward()
    return net


def test_tool_prints_the_table(imported):
    out = imported[1]
    assert "renet_lstm_6_vertical" in out and "ReNetLSTM" in out
    assert "(i, c, o, f) -> (i, f, o, g)" in out
    assert "inference1" in out and "DenseCRFMeanfield" in out
    assert "wrote" in out and "layers with parameters" in out


def test_every_parameter_copied(caffe, theirs, imported):
    """Convolution, BatchNorm and CRF blobs bit for bit; ReNet blobs as the
    documented reordering of theirs."""
    values = theirs[1]
    net = caffe.Net(DEPLOY, imported[0], caffe.TEST)
    for name, arrays in values.items():
        if name.startswith("renet"):
            continue
        for src, dst in zip(arrays, net.params[name]):
            np.testing.assert_array_equal(src.reshape(dst.data.shape),
                                          dst.data)
    d = 160
    for name in ("renet_lstm_6_vertical", "renet_lstm_6_horizontal"):
        blobs = values[name]
        k = blobs[0].shape[1] - d
        for direction in range(2):
            b = blobs[11 * direction:11 * (direction + 1)]
            w, u, bias = [net.params[name][3 * direction + i].data
                          for i in range(3)]
            their = {"i": 0, "c": 1, "o": 2, "f": 3}
            for row, gate in enumerate("ifoc"):
                rows = slice(row * d, (row + 1) * d)
                np.testing.assert_array_equal(w[rows], b[their[gate]][:, :k])
                np.testing.assert_array_equal(u[rows], b[their[gate]][:, k:])
                np.testing.assert_array_equal(bias[rows],
                                              b[7 + their[gate]])


def _close(ours, expected, tol=1e-4):
    diff = np.abs(np.asarray(ours, np.float64) - expected).max()
    assert diff <= tol, "max abs difference %.3g > %.3g" % (diff, tol)


def test_batch_norm_as_theirs(forward, theirs):
    """Their BatchNorm (upstream's, use_global_stats): (x - m/s) /
    sqrt(v/s + eps), then the in-place ReLU."""
    net = forward
    for src in ("pool4", "pool5"):
        mean, var, s = theirs[1][src + "_batch_norm"]
        x = net.blobs[src].data[0].astype(np.float64)
        y = (x - (mean / s[0])[:, None, None]) / np.sqrt(
            (var / s[0])[:, None, None] + 1e-5)
        _close(net.blobs[src + "_batch_norm"].data[0], np.maximum(y, 0))


def test_renet_layers_match_their_equations(forward, theirs):
    net = forward
    x = net.blobs["pool4_pool5_fc7_batch_norm"].data
    v = ref.renet_lstm(x, theirs[1]["renet_lstm_6_vertical"], ref.Y_DIR, 160)
    _close(net.blobs["renet_lstm_6_vertical"].data, v)
    assert np.abs(v).max() > 0.1  # not a saturated or dead layer
    h = ref.renet_lstm(net.blobs["renet_lstm_6_vertical"].data,
                       theirs[1]["renet_lstm_6_horizontal"], ref.X_DIR, 160)
    _close(net.blobs["renet_lstm_6_horizontal"].data, h)


def test_bilinear_interpolation_matches_theirs(forward):
    net = forward
    expected = ref.bilinear_interpolation(net.blobs["conv6"].data, H, W)
    _close(net.blobs["conv6_full_res"].data, expected)


def test_crf_and_labels_match_theirs(forward, theirs):
    net = forward
    w_s, w_b, compat = theirs[1]["inference1"]
    unary = net.blobs["unary"].data[0]
    expected = ref.dense_crf_meanfield(
        unary, net.blobs["Q0"].data[0], net.blobs["data"].data[0],
        float(w_s.ravel()[0]), float(w_b.ravel()[0]), compat)
    _close(net.blobs["inference1"].data[0], expected)
    ours = net.blobs["prob"].data[0].argmax(0)
    np.testing.assert_array_equal(ours, expected.argmax(0))
    # The CRF did something: labels differ from the unary's somewhere.
    assert (ours != unary.argmax(0)).any()


# --------------------------------------------------------------------------
# Bad models: one line naming the layer or the file, nothing written.

def _run(theirs_path, out, *extra):
    return subprocess.run([sys.executable, TOOL, "--weights", theirs_path,
                           "--out", out, "--model", DEPLOY] + list(extra),
                          capture_output=True, text=True)


def _expect_error(tmp_path, words, *extra, **damage):
    path = str(tmp_path / "bad.caffemodel")
    fixtures.write_hybridnet_caffemodel(path, **damage)
    out = str(tmp_path / "out.caffemodel")
    proc = _run(path, out, *extra)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert not os.path.exists(out)
    assert [f for f in os.listdir(tmp_path) if f != "bad.caffemodel"] == []


def test_truncated_file(tmp_path, theirs):
    data = open(theirs[0], "rb").read()
    path = tmp_path / "half.caffemodel"
    path.write_bytes(data[:len(data) // 2])
    out = str(tmp_path / "out.caffemodel")
    proc = _run(str(path), out)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "truncated" in proc.stderr
    assert str(path) in proc.stderr and not os.path.exists(out)


def test_missing_file(tmp_path):
    proc = _run(str(tmp_path / "nope.caffemodel"),
                str(tmp_path / "out.caffemodel"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "nope.caffemodel" in proc.stderr


def test_model_of_another_net(tmp_path, toolsetup):
    proc = _run(str(toolsetup.weights), str(tmp_path / "out.caffemodel"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "has parameters but" in proc.stderr
    assert not os.path.exists(tmp_path / "out.caffemodel")


def test_missing_layer(tmp_path):
    _expect_error(tmp_path, ["conv3_2", "has no layer"], drop=("conv3_2",))


def test_unknown_layer(tmp_path):
    _expect_error(tmp_path, ["fc9", "Convolution", "no layer of that name"],
                  extra_layer=("fc9", "Convolution", (3, 3)))


def test_wrong_blob_count(tmp_path):
    _expect_error(tmp_path, ["conv6", "1 blobs", "expects 2"],
                  blob_count=("conv6", 1))


def test_wrong_blob_shape(tmp_path):
    _expect_error(tmp_path, ["fc7_new", "blob 0", "1024x512x1x1",
                             "1024x1024x1x1"],
                  blob_shape=("fc7_new", 0, (1024, 512, 1, 1)))


def test_wrong_renet_blob_count(tmp_path):
    _expect_error(tmp_path, ["renet_lstm_6_horizontal", "11 per direction"],
                  blob_count=("renet_lstm_6_horizontal", 20))


def test_peepholes_stop_unless_ignored(caffe, tmp_path):
    _expect_error(tmp_path, ["renet_lstm_6_vertical", "peephole: true",
                             "--ignore-peepholes"], peephole=True)
    _expect_error(tmp_path, ["non-zero peephole weights",
                             "--ignore-peepholes"], peephole_scale=0.1)
    # With the flag: their deploy's output (peephole: false) exactly.
    path = str(tmp_path / "bad.caffemodel")
    values = fixtures.write_hybridnet_caffemodel(path, peephole_scale=0.1)
    out = str(tmp_path / "out.caffemodel")
    proc = _run(path, out, "--ignore-peepholes")
    assert proc.returncode == 0, proc.stderr
    assert "peepholes dropped" in proc.stdout
    net = caffe.Net(DEPLOY, out, caffe.TEST)
    net.blobs["data"].reshape(1, 3, 24, 32)  # renet input: 3 x 4
    net.reshape()
    x = np.random.default_rng(1).normal(0, 1, (1, 2048, 3, 4))
    net.blobs["pool4_pool5_fc7_batch_norm"].data[...] = x
    net.forward(start="renet_lstm_6_vertical", end="renet_lstm_6_vertical")
    expected = ref.renet_lstm(x, values["renet_lstm_6_vertical"], ref.Y_DIR,
                              160, peephole=False)
    _close(net.blobs["renet_lstm_6_vertical"].data, expected)
    with_peepholes = ref.renet_lstm(x, values["renet_lstm_6_vertical"],
                                    ref.Y_DIR, 160, peephole=True)
    assert np.abs(with_peepholes - expected).max() > 1e-3


def test_model_without_crf_keeps_their_initial_crf(caffe, tmp_path):
    path = str(tmp_path / "nocrf.caffemodel")
    fixtures.write_hybridnet_caffemodel(path, drop=("inference1",))
    out = str(tmp_path / "out.caffemodel")
    proc = _run(path, out)
    assert proc.returncode == 0, proc.stderr
    assert "not in the model: initial values" in proc.stdout
    net = caffe.Net(DEPLOY, out, caffe.TEST)
    w_s, w_b, compat = [b.data for b in net.params["inference1"]]
    assert w_s.ravel()[0] == 3 and w_b.ravel()[0] == 5
    np.testing.assert_array_equal(compat.reshape(21, 21), -np.eye(21))


def test_reference_lattice_is_a_gaussian_filter():
    """The NumPy lattice approximates the Gaussian it stands for: filtering
    a constant gives a smooth positive field and a narrow kernel leaves a
    signal nearly unchanged."""
    rng = np.random.default_rng(0)
    f = rng.uniform(0, 3, (200, 2))
    ones = ref.permutohedral_filter(f, np.ones((200, 1)))
    assert (ones > 0).all()
    exact = np.exp(-((f[:, None] - f[None]) ** 2).sum(-1) / 2).sum(1)
    # the lattice's kernel is a slightly narrower, truncated Gaussian
    assert np.corrcoef(ones[:, 0], exact)[0, 1] > 0.95


def test_infer_runs_the_imported_model_as_their_demo(caffe, imported,
                                                     tmp_path):
    """tools/infer.py on an image with the imported model gives the labels
    of their demo's preprocessing (RGB -> BGR, x 255, minus 104/117/123)
    and forward: the argmax of ``prob``."""
    from PIL import Image
    bgr = _image(seed=4) + np.array(hybridnet_mean())[:, None, None]
    rgb = np.clip(np.round(bgr[::-1].transpose(1, 2, 0)), 0, 255)
    path = str(tmp_path / "sample.png")
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    out = tmp_path / "infer"
    proc = subprocess.run([sys.executable,
                           os.path.join(ROOT, "tools", "infer.py"),
                           "--model", DEPLOY, "--weights", imported[0], path,
                           "--out", str(out), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    labels = np.array(Image.open(out / "sample.png"))
    net = caffe.Net(DEPLOY, imported[0], caffe.TEST)
    net.blobs["data"].reshape(1, 3, H, W)
    net.reshape()
    demo = rgb[..., ::-1].transpose(2, 0, 1) - \
        np.array([104, 117, 123])[:, None, None]
    net.blobs["data"].data[0] = demo
    net.forward()
    np.testing.assert_array_equal(labels, net.blobs["prob"].data[0].argmax(0))
