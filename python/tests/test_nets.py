"""The paper's nets (python/hrenet/nets.py, tools/make_nets.py): committed
prototxts up to date, every net runs on small inputs, stride and output size,
parameter counts by hand, VGG-16 weights copied by name, frozen conv1/conv2,
iter_size accumulation, DenseCRF deploy nets on odd sizes."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from hrenet import fixtures, nets

from _tools import load_tool

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir,
                                     os.pardir))
TRAIN_HW = (80, 96)   # stored training images
CROP = (72, 88)       # training crops (2 x 3 x 72 x 88 batches)
VAL_HW = (61, 83)     # odd-sized whole images in TEST


def _folder_dataset(root, names, hw, num_classes, seed, ignore_fraction):
    rng = np.random.default_rng(seed)
    for name in names:
        fixtures.write_jpeg(os.path.join(root, "images", name + ".jpg"),
                            fixtures.random_image(rng, *hw))
        fixtures.write_index_png(
            os.path.join(root, "labels", name + ".png"),
            fixtures.random_label(rng, *hw, num_classes,
                                  ignore_fraction=ignore_fraction),
            palette=False)


def _build(root, out, num_classes):
    build = load_tool("build_lmdb")
    assert build.main(build.parse_args(
        ["--format", "folder", "--root", str(root), "--num-classes",
         str(num_classes), "--out", str(out), "--quiet"])) == 0
    return str(out)


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    """{num_classes: (train, val, train_no_ignore)} tiny LMDBs."""
    tmp = tmp_path_factory.mktemp("nets_data")
    out = {}
    for k in (21, 8):
        _folder_dataset(tmp / f"train{k}", ["a", "b", "c"], TRAIN_HW, k, 1,
                        0.1)
        _folder_dataset(tmp / f"val{k}", ["v"], VAL_HW, k, 2, 0.1)
        _folder_dataset(tmp / f"exact{k}", ["p", "q"], CROP, k, 3, 0.0)
        out[k] = tuple(_build(tmp / f"{s}{k}", tmp / f"lmdb_{s}{k}", k)
                       for s in ("train", "val", "exact"))
    return out


def small_data(v, lmdbs, batch=2, crop=CROP, which=0):
    k = 8 if v.family == "nrenet" else 21
    train = lmdbs[k][which]
    return nets.data_config((train, "build it"), (lmdbs[k][1], "build it"),
                            crop, batch, v.data["mean"], v.data["scale"],
                            VAL_HW)


def unique_variants(mode):
    """One variant per distinct net (folds and crop sizes share a net)."""
    seen, out = set(), []
    for v in nets.VARIANTS.values():
        if mode == "train_val" and not v.trains:
            continue
        net = dict(v.net)
        if mode == "train_val":
            net.pop("crf", None)
        key = (v.builder, repr(sorted(net.items())))
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def write_net(tmp_path, v, mode, data, name=None):
    path = tmp_path / (name or f"{v.family}_{v.name}_{mode}.prototxt")
    path.write_text(str(nets.build(v, mode, data)))
    return str(path)


def classifier_of(v):
    if v.builder == "released":
        return "conv6"
    return "classifier" if v.family == "nrenet" else "conv8"


def score_of(v):
    return "conv6_full_res" if v.builder == "released" else "score"


def stride_of(v):
    return 4 if v.family == "nrenet" else 8


def test_committed_prototxts_are_current():
    make = load_tool("make_nets")
    stale = make.compare(os.path.join(ROOT, "prototxt"))
    assert stale == [], "regenerate with tools/make_nets.py: %s" % stale


@pytest.mark.parametrize("v", unique_variants("train_val"),
                         ids=lambda v: f"{v.family}/{v.name}")
def test_train_val_forward_backward(caffe, tmp_path, lmdbs, v):
    path = write_net(tmp_path, v, "train_val", small_data(v, lmdbs))
    k = 8 if v.family == "nrenet" else 21
    s = stride_of(v)
    for phase, shape in ((caffe.TRAIN, (2, 3) + CROP),
                         (caffe.TEST, (1, 3) + VAL_HW)):
        net = caffe.Net(path, phase)
        net.forward()
        net.backward()
        assert net.blobs["data"].data.shape == shape
        n, _, h, w = shape
        assert net.blobs[classifier_of(v)].data.shape == \
            (n, k, math.ceil(h / s), math.ceil(w / s))
        assert net.blobs[score_of(v)].data.shape == (n, k, h, w)
        loss = float(net.blobs["loss"].data)
        assert np.isfinite(loss) and loss > 0
        if phase == caffe.TRAIN:  # gradients reach the classifier
            assert np.abs(net.params[classifier_of(v)][0].diff).sum() > 0


@pytest.mark.parametrize("v", unique_variants("deploy"),
                         ids=lambda v: f"{v.family}/{v.name}")
def test_deploy_on_odd_size(caffe, tmp_path, v):
    path = write_net(tmp_path, v, "deploy", None)
    net = caffe.Net(path, caffe.TEST)
    h, w = VAL_HW
    net.blobs["data"].reshape(1, 3, h, w)
    net.reshape()
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.uniform(-100, 100, (1, 3, h, w))
    out = net.forward()
    k = 8 if v.family == "nrenet" else 21
    crf = "crf" in v.net or v.builder == "released"
    final = "prob" if v.builder == "released" else "crf_prob"
    assert list(out) == [final if crf else "score"]
    assert net.blobs[score_of(v)].data.shape == (1, k, h, w)
    if crf:
        prob = out[final]
        assert prob.shape == (1, k, h, w)
        np.testing.assert_allclose(prob.sum(axis=1), 1, atol=1e-4)
    # The data layer's preprocessing travels with the deploy net.
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    proto = text_format.Parse(open(path).read(), caffe_pb2.NetParameter())
    assert proto.layer[0].type == "Input"
    assert list(proto.layer[0].transform_param.mean_value) == \
        pytest.approx(v.data["mean"])


def _params(net, layer):
    return sum(b.data.size for b in net.params[layer])


def test_parameter_counts_by_hand(caffe, tmp_path):
    # H-ReNet (b): renet1 = V over conv7 (1024 ch) + H over 240 ch, d = 120,
    # LSTM: per direction 4d x (C + d) weights + 4d biases, two directions.
    net = caffe.Net(write_net(tmp_path, nets.variant("hrenet", "b"),
                              "deploy", None), caffe.TEST)
    assert _params(net, "renet1_v") == 2 * (480 * 1024 + 480 * 120 + 480)
    assert _params(net, "renet1_v") == 1099200
    assert _params(net, "renet1_h") == 2 * (480 * 240 + 480 * 120 + 480)
    assert net.blobs["renet1_h"].channels == 240
    assert _params(net, "conv1_1") == 3 * 64 * 9 + 64
    assert _params(net, "conv5_3") == 512 * 512 * 9 + 512
    assert _params(net, "conv6") == 512 * 1024 * 9 + 1024
    assert _params(net, "conv7") == 1024 * 1024 * 9 + 1024
    assert _params(net, "conv8") == 240 * 21 + 21
    # The upsampling (BilinearResize) has no parameters.
    assert "conv8" in net.params and "score" not in net.params
    assert net.layers[list(net._layer_names).index("score")].type == \
        "BilinearResize"
    # The baseline FCN: conv8 reads conv7's 1024 channels.
    fcn = caffe.Net(write_net(tmp_path, nets.variant("fcn", "a"), "deploy",
                              None), caffe.TEST)
    assert _params(fcn, "conv8") == 1024 * 21 + 21
    assert not any(name.startswith("renet") for name in fcn.params)
    # (d): renet1_v reads pool4 + pool5 + conv7 = 512 + 512 + 1024 channels.
    d = caffe.Net(write_net(tmp_path, nets.variant("hrenet", "d"), "deploy",
                            None), caffe.TEST)
    assert _params(d, "renet1_v") == 2 * 480 * (2048 + 120 + 1)
    # IRNN with the LSTM group's parameter count (c: 1024 input channels):
    # 2(e(1024 + e + 1)) + 2(e(2e + e + 1)) = 8e^2 + 2052e ~ 1,445,760.
    lstm = 1099200 + 346560
    assert nets.matching_irnn_width(1024, 120) == 316
    irnn = caffe.Net(write_net(tmp_path, nets.variant("hrenet", "c_irnn"),
                               "deploy", None), caffe.TEST)
    got = _params(irnn, "renet1_v") + _params(irnn, "renet1_h")
    assert got == 8 * 316 ** 2 + 2052 * 316
    assert abs(got - lstm) < abs(8 * 315 ** 2 + 2052 * 315 - lstm)
    # N-ReNet: group 1 on 2x2 patches of the 3-channel image.
    w1, w2, w3 = nets.NRENET_WIDTHS
    nr = caffe.Net(write_net(tmp_path, nets.variant("nrenet", "fold0"),
                             "deploy", None), caffe.TEST)
    assert _params(nr, "renet1_v") == 2 * 4 * w1 * (3 * 4 + w1 + 1)
    assert _params(nr, "renet1_h") == 2 * 4 * w1 * (2 * w1 * 4 + w1 + 1)
    assert _params(nr, "renet2_v") == 2 * 4 * w2 * (2 * w1 + w2 + 1)
    assert _params(nr, "classifier") == 2 * w3 * 8 + 8


def _vgg16_caffemodel(caffe, tmp_path):
    """VGG-16's conv1_1..conv5_3 with their real shapes and random values,
    plus small fc6/fc7/fc8 stand-ins (their names match no layer of ours)."""
    L = caffe.layers
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 32, 32]))
    x = n.data
    for block, convs, nout in [(1, 2, 64), (2, 2, 128), (3, 3, 256),
                               (4, 3, 512), (5, 3, 512)]:
        for i in range(1, convs + 1):
            name = f"conv{block}_{i}"
            setattr(n, name, L.Convolution(x, num_output=nout, kernel_size=3,
                                           pad=1, weight_filler=dict(
                                               type="gaussian", std=0.01),
                                           bias_filler=dict(
                                               type="gaussian", std=0.01)))
            x = getattr(n, name)
    for name in ("fc6", "fc7", "fc8"):
        setattr(n, name, L.InnerProduct(x, num_output=7, weight_filler=dict(
            type="gaussian", std=0.01)))
        x = getattr(n, name)
    proto = tmp_path / "vgg16_like.prototxt"
    proto.write_text(str(n.to_proto()))
    net = caffe.Net(str(proto), caffe.TEST)
    path = str(tmp_path / "vgg16_like.caffemodel")
    net.save(path)
    return net, path


def test_vgg16_weights_copy_by_name(caffe, tmp_path, lmdbs):
    vgg, weights = _vgg16_caffemodel(caffe, tmp_path)
    v = nets.variant("hrenet", "d")
    path = write_net(tmp_path, v, "train_val", small_data(v, lmdbs))
    caffe.set_random_seed(7)
    fresh = caffe.Net(path, caffe.TRAIN)
    caffe.set_random_seed(7)
    net = caffe.Net(path, caffe.TRAIN)
    net.copy_from(weights)
    copied = [n for n in net.params if n.startswith("conv") and
              int(n[4]) <= 5]
    assert len(copied) == 13
    for name in copied:
        for mine, theirs in zip(net.params[name], vgg.params[name]):
            assert np.array_equal(mine.data, theirs.data), name
    untouched = [n for n in net.params if n not in copied]
    assert {"conv6", "conv7", "conv8", "renet1_v", "renet1_h"} <= \
        set(untouched)
    for name in untouched:
        for mine, init in zip(net.params[name], fresh.params[name]):
            assert np.array_equal(mine.data, init.data), name


def _solver(caffe, tmp_path, net_path, iter_size, name):
    s = nets.solver(net_path, max_iter=10, snapshot_prefix=str(
        tmp_path / name), iter_size=iter_size, snapshot=0, display=0,
        random_seed=3)
    path = tmp_path / f"{name}_solver.prototxt"
    path.write_text(str(s))
    return caffe.get_solver(str(path))


def _snapshot(net):
    return {name: [b.data.copy() for b in blobs]
            for name, blobs in net.params.items()}


def test_frozen_conv1_conv2_and_one_step(caffe, tmp_path, lmdbs):
    v = nets.variant("hrenet", "d")
    path = write_net(tmp_path, v, "train_val", small_data(v, lmdbs))
    solver = _solver(caffe, tmp_path, path, 1, "step")
    before = _snapshot(solver.net)
    solver.step(1)
    after = _snapshot(solver.net)
    frozen = {n for n in before if n[:5] in ("conv1", "conv2")}
    assert frozen == {"conv1_1", "conv1_2", "conv2_1", "conv2_2"}
    for name in before:
        changed = [not np.array_equal(a, b)
                   for a, b in zip(before[name], after[name])]
        if name in frozen:
            assert not any(changed), name
        else:
            assert changed[0], name  # weights (BN: the running mean)
    # Caffe skips their backward pass: no gradient is even computed.
    net = solver.net
    for name in frozen:
        assert not np.any(net.params[name][0].diff), name


def _update(caffe, tmp_path, v, lmdbs, batch, iter_size):
    data = small_data(v, lmdbs, batch=batch, crop=CROP, which=2)
    proto = nets.build(v, "train_val", data)
    p = proto.layer[0].seg_data_param
    p.mirror = False
    p.shuffle = False
    path = tmp_path / f"acc_{batch}_{iter_size}.prototxt"
    path.write_text(str(proto))
    caffe.set_random_seed(11)
    solver = _solver(caffe, tmp_path, str(path), iter_size,
                     f"acc_{batch}_{iter_size}")
    before = _snapshot(solver.net)
    solver.step(1)
    after = _snapshot(solver.net)
    return {name: [a - b for a, b in zip(after[name], before[name])]
            for name in before}


@pytest.mark.parametrize("family,name", [("hrenet", "b"), ("nrenet",
                                                           "fold0")])
def test_iter_size_accumulates_like_a_batch(caffe, tmp_path, lmdbs, family,
                                            name):
    v = nets.variant(family, name)
    batch2 = _update(caffe, tmp_path, v, lmdbs, batch=2, iter_size=1)
    iter2 = _update(caffe, tmp_path, v, lmdbs, batch=1, iter_size=2)
    assert any(n.startswith("renet") for n in batch2)
    for layer in batch2:
        for a, b in zip(batch2[layer], iter2[layer]):
            scale = max(np.abs(a).max(), 1e-12)
            np.testing.assert_allclose(b, a, rtol=0, atol=2e-3 * scale,
                                       err_msg=layer)
            if layer.startswith("renet"):
                assert np.abs(a).max() > 0


def test_headline_solver_paths_resolve_from_the_root(caffe):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    solver = text_format.Parse(
        open(os.path.join(ROOT, "prototxt", "hrenet_solver.prototxt")).read(),
        caffe_pb2.SolverParameter())
    assert solver.net == "prototxt/hrenet/d/train_val.prototxt"
    assert os.path.isfile(os.path.join(ROOT, solver.net))
    assert solver.base_lr == pytest.approx(0.001)
    assert solver.max_iter == 40000 and solver.stepsize == 20000
    assert solver.iter_size == 10
    assert solver.snapshot_prefix.startswith("runs/")
    assert os.path.isdir(os.path.join(ROOT, "runs"))
    net = text_format.Parse(open(os.path.join(ROOT, solver.net)).read(),
                            caffe_pb2.NetParameter())
    sources = [layer.seg_data_param.source for layer in net.layer
               if layer.type == "SegData"]
    assert sources == ["data/voc/lmdb/train_aug", "data/voc/lmdb/val"]
    train = net.layer[0].seg_data_param
    assert (train.crop_h, train.crop_w, train.batch_size) == (400, 500, 1)
    assert train.mirror and train.shuffle


def test_variant_metadata():
    fams = {f for f, _ in nets.VARIANTS}
    assert fams == {"nrenet", "fcn", "hrenet"}
    t4 = {v.name: v.paper["miou"] for v in nets.VARIANTS.values()
          if v.study == "Table 4"}
    assert t4 == {"a": 63.4, "b": 70.0, "c": 70.4, "d": 71.1, "e": 67.5,
                  "f": 71.9, "g": 72.6}
    for name, crf in (("e", "a"), ("f", "c"), ("g", "d")):
        fam = "fcn" if name == "e" else "hrenet"
        v = nets.variant(fam, name)
        assert not v.trains and v.weights_from == crf
        assert v.net.get("crf") == nets.CRF_PAPER
        base = nets.variant(fam, crf)
        assert {k: x for k, x in v.net.items() if k != "crf"} == base.net
    assert [nets.variant("fcn", "a").iters,
            nets.variant("hrenet", "c").iters,
            nets.variant("hrenet", "d").iters] == [12000, 30000, 40000]


def test_make_nets_bad_names(tmp_path):
    tool = os.path.join(ROOT, "tools", "make_nets.py")
    for args, valid in ((["--family", "hrenet", "--variant", "zz"],
                         "valid: b, c, d"),
                        (["--family", "resnet"], "valid: nrenet, fcn")):
        r = subprocess.run([sys.executable, tool, "--out", str(tmp_path)]
                           + args, capture_output=True, text=True)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert valid in lines[0]
    assert not os.listdir(tmp_path)


def test_make_nets_writes_a_selection(tmp_path):
    make = load_tool("make_nets")
    assert make.main(make.parse_args(["--out", str(tmp_path), "--family",
                                      "hrenet", "--variant", "g"])) == 0
    assert sorted(os.listdir(tmp_path / "hrenet" / "g")) == \
        ["deploy.prototxt", "variant.json"]
    assert (tmp_path / "hrenet_solver.prototxt").exists()


def test_merge_lmdb(tmp_path, lmdbs):
    from hrenet import lmdb_io
    train, val, _ = lmdbs[21]
    merge = load_tool("merge_lmdb")
    out = tmp_path / "merged"
    assert merge.main(merge.parse_args(
        [train, val, "--out", str(out)])) == 0
    got = list(lmdb_io.read_dataset(str(out)))
    want = list(lmdb_io.read_dataset(train)) + \
        list(lmdb_io.read_dataset(val))
    assert [k.split("_", 1)[1] for k, _, _ in got] == \
        [k.split("_", 1)[1] for k, _, _ in want]
    for (_, im1, lb1), (_, im2, lb2) in zip(got, want):
        assert np.array_equal(im1, im2) and np.array_equal(lb1, lb2)
    assert lmdb_io.read_meta(str(out))["count"] == 4
    # Different class lists do not merge, and nothing is left behind.
    bad = merge.main(merge.parse_args([train, lmdbs[8][0], "--out",
                                       str(tmp_path / "bad")]))
    assert bad == 1 and not (tmp_path / "bad").exists()
    assert [p for p in os.listdir(tmp_path) if ".tmp-" in p] == []


def test_headline_without_lmdbs_fails_at_once():
    """`caffe train -solver prototxt/hrenet_solver.prototxt` from the root,
    before the LMDBs exist: one line naming the folder and its build
    command, exit status 1, no stack trace, no training started."""
    if os.path.exists(os.path.join(ROOT, "data", "voc", "lmdb",
                                   "train_aug")):
        pytest.skip("data/voc/lmdb/train_aug exists here: it would train")
    caffe_bin = os.path.join(ROOT, ".venv", "bin", "caffe")
    r = subprocess.run([caffe_bin, "train", "-solver",
                        "prototxt/hrenet_solver.prototxt"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines()
             if "does not exist" in line]
    assert len(lines) == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == lines[0]  # the last word
    want = nets.DATA_SOURCES["voc_train_aug"][1]
    assert "'data/voc/lmdb/train_aug'" in lines[0] and want in lines[0]
    assert "stack trace" not in r.stderr and "Check failed" not in r.stderr
    assert "Starting Optimization" not in r.stderr
    assert not [p for p in os.listdir(os.path.join(ROOT, "runs"))
                if p.startswith("hrenet_d")]


def test_weights_of_the_deconvolution_upsampling_still_load(caffe, tmp_path):
    """Nets used to upsample with a fixed bilinear Deconvolution
    (``upsample``, lr_mult 0) + Crop: a caffemodel saved from such a net
    loads into today's nets (the old layer's fixed kernel is ignored by
    name; nothing learned is lost)."""
    v = nets.variant("fcn", "a")
    new = nets.build(v, "deploy")
    old = type(new)()
    old.CopyFrom(new)
    score = [layer for layer in old.layer if layer.name == "score"][0]
    up = old.layer.add()
    up.CopyFrom(score)
    score.Clear()
    score.name, score.type = "score", "Crop"
    score.bottom.extend(["upsample", "data"])
    score.top.append("score")
    score.crop_param.axis = 2
    score.crop_param.offset.append(0)
    up.name, up.type = "upsample", "Deconvolution"
    del up.bottom[1:]
    del up.top[:]
    up.top.append("upsample")
    up.param.add(lr_mult=0, decay_mult=0)
    c = up.convolution_param
    c.num_output, c.group, c.bias_term = 21, 21, False
    c.kernel_size.append(16)
    c.stride.append(8)
    c.pad.append(4)
    c.weight_filler.type = "bilinear"
    # Caffe needs the Deconvolution before the Crop that reads it.
    layers = list(old.layer)
    i, j = layers.index(score), layers.index(up)
    layers[i], layers[j] = layers[j], layers[i]
    del old.layer[:]
    old.layer.extend(layers)
    for name, proto in (("old", old), ("new", new)):
        (tmp_path / f"{name}.prototxt").write_text(str(proto))
    old_net = caffe.Net(str(tmp_path / "old.prototxt"), caffe.TEST)
    assert "upsample" in old_net.params
    old_net.save(str(tmp_path / "old.caffemodel"))
    net = caffe.Net(str(tmp_path / "new.prototxt"),
                    str(tmp_path / "old.caffemodel"), caffe.TEST)
    for name in net.params:
        for a, b in zip(net.params[name], old_net.params[name]):
            assert np.array_equal(a.data, b.data), name


# The authors' deploy file (their H_ReNet_densecrf_deploy.prototxt), layer
# by layer: (name, their type); ours must have the same names in the same
# order, their types mapped to ours.
def _their_deploy():
    out = [("conv1_1", "Convolution"), ("Relu1_1", "ReLU"),
           ("conv1_2", "Convolution"), ("Relu1_2", "ReLU"),
           ("pool1", "Pooling"), ("conv2_1", "Convolution"),
           ("Relu2_1", "ReLU"), ("conv2_2", "Convolution"),
           ("Relu2_2", "ReLU"), ("pool2", "Pooling")]
    for b in (3, 4, 5):
        for i in (1, 2, 3):
            out.append((f"conv{b}_{i}", "Convolution"))
            if (b, i) != (5, 3):  # no ReLU after conv5_3
                out.append((f"Relu{b}_{i}", "ReLU"))
        out.append((f"pool{b}", "Pooling"))
    out += [("fc6_new", "Convolution"), ("Relu6", "ReLU"),
            ("drop6", "Dropout"), ("fc7_new", "Convolution"),
            ("pool4_batch_norm", "BatchNorm"), ("Relu7", "ReLU"),
            ("pool5_batch_norm", "BatchNorm"), ("Relu7", "ReLU"),
            ("fc7_new_batch_norm", "BatchNorm"), ("Relu7", "ReLU"),
            ("pool4_pool5_fc7_batch_norm", "Concat"),
            ("renet_lstm_6_vertical", "ReNetLSTM"),
            ("renet_lstm_6_horizontal", "ReNetLSTM"),
            ("conv6", "Convolution"),
            ("bilinear_interpolation", "BilinearInterpolation"),
            ("splitting", "Split"), ("inference1", "DenseCRFMeanfield"),
            ("prob", "Softmax")]
    return out


def test_released_mirrors_their_deploy_file():
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    from hrenet.hybridnet import TYPE_MAP
    path = os.path.join(ROOT, "prototxt", "hrenet", "released",
                        "deploy.prototxt")
    net = text_format.Parse(open(path).read(), caffe_pb2.NetParameter())
    ours = [(layer.name, layer.type) for layer in net.layer[1:]]
    assert ours == [(n, TYPE_MAP.get(t, t)) for n, t in _their_deploy()]
    layers = {layer.name: layer for layer in net.layer}
    assert list(net.layer[0].transform_param.mean_value) == [104, 117, 123]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 400, 500]
    for name, direction in (("renet_lstm_6_vertical", 0),
                            ("renet_lstm_6_horizontal", 1)):
        p = layers[name].renet_param
        assert (p.num_output, p.direction, p.patch_h, p.patch_w,
                p.forget_bias) == (160, direction, 1, 1, 2.0)
        assert p.bias_filler.value == 0
        assert p.weight_filler.max == pytest.approx(0.2)
    fc6 = layers["fc6_new"].convolution_param
    assert (fc6.num_output, fc6.dilation[0], fc6.pad[0]) == (1024, 12, 12)
    assert fc6.weight_filler.std == pytest.approx(0.01)
    assert layers["conv6"].convolution_param.weight_filler.std == \
        pytest.approx(0.1)
    assert list(layers["bilinear_interpolation"].bottom) == ["conv6", "data"]
    assert list(layers["splitting"].top) == ["unary", "Q0"]
    crf = layers["inference1"]
    assert list(crf.bottom) == ["unary", "Q0", "data"]
    p = crf.dense_crf_param
    assert (p.max_iter, p.bi_xy_std, p.bi_rgb_std, p.pos_xy_std, p.bi_w,
            p.pos_w) == (5, 80, 3, 3, 5, 3)
    assert p.normalization == p.ROW and p.feature_source == p.DATA
    assert p.output == p.LOGITS and p.param_blobs
    for pool in ("pool4", "pool5"):
        q = layers[pool].pooling_param
        assert (q.kernel_size, q.stride, q.pad) == (3, 1, 1)
    for conv in ("conv5_1", "conv5_2", "conv5_3"):
        assert layers[conv].convolution_param.dilation[0] == 2


def test_median_frequency_weights():
    w = nets.median_frequency_weights([700, 100, 200, 0])
    f = np.array([0.7, 0.1, 0.2, 0.0])
    raw = np.array([0.2 / 0.7, 0.2 / 0.1, 0.2 / 0.2, 0.0])
    np.testing.assert_allclose(w, raw / (raw * f).sum())
    assert abs((w * f).sum() - 1) < 1e-12  # the average pixel weighs 1
    w = nets.median_frequency_weights([700, 100, 200, 0], 0.5)
    np.testing.assert_allclose(w, raw ** 0.5 / (raw ** 0.5 * f).sum())
    for bad in ([], [0, 0], [3, -1], [[1, 2]]):
        with pytest.raises(ValueError, match="class pixel counts"):
            nets.median_frequency_weights(bad)


def test_class_weighted_loss_is_weighted_cross_entropy(net_from_string,
                                                       tmp_path):
    """The train nets' loss with class weights: -w_l log p_l averaged over
    the pixels whose label is not 255, and its gradient."""
    weights = np.array([0.5, 2.0, 1.5], np.float32)
    path = nets.write_class_weights(str(tmp_path / "h.binaryproto"), weights)
    net = net_from_string(f"""
force_backward: true
layer {{ name: "in" type: "Input" top: "score" top: "label"
  input_param {{ shape {{ dim: 2 dim: 3 dim: 2 dim: 3 }}
                 shape {{ dim: 2 dim: 1 dim: 2 dim: 3 }} }} }}
layer {{ name: "loss" type: "InfogainLoss" bottom: "score" bottom: "label"
  top: "loss" loss_param {{ ignore_label: 255 }}
  infogain_loss_param {{ source: "{path}" axis: 1 }} }}
""")
    rng = np.random.RandomState(0)
    score = rng.normal(0, 2, (2, 3, 2, 3)).astype(np.float32)
    label = rng.randint(0, 3, (2, 1, 2, 3)).astype(np.float32)
    label[0, 0, 1, 2] = 255
    net.blobs["score"].data[...] = score
    net.blobs["label"].data[...] = label
    loss = float(net.forward()["loss"])
    p = np.exp(score - score.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    lab = label[:, 0].astype(int)
    valid = lab != 255
    n, y, x = np.nonzero(valid)
    k = lab[valid]
    want = -(weights[k] * np.log(p[n, k, y, x])).sum() / valid.sum()
    assert abs(loss - want) < 1e-5 * max(1, abs(want))
    net.backward()
    grad = p * weights[np.where(valid, lab, 0)][:, None]
    onehot = np.zeros_like(p)
    onehot[n, k, y, x] = 1
    grad -= onehot * weights[np.where(valid, lab, 0)][:, None]
    grad *= valid[:, None] / valid.sum()
    np.testing.assert_allclose(net.blobs["score"].diff, grad, atol=1e-6)


def test_class_weights_reach_every_train_net(tmp_path):
    data = nets.data_config(("train_lmdb", ""), ("val_lmdb", ""), (32, 32),
                            2, nets.VGG_MEAN_BGR, 1.0, (32, 32),
                            class_weights="w.binaryproto")
    for proto in (nets.nrenet("train_val", data, 4, (4, 4, 4)),
                  nets.local_fcn("train_val", data, 4, (4, 4, 4))):
        loss = [x for x in proto.layer if x.name == "loss"][0]
        assert loss.type == "InfogainLoss"
        assert loss.infogain_loss_param.source == "w.binaryproto"
        assert loss.infogain_loss_param.axis == 1
    plain = dict(data, class_weights=None)
    loss = [x for x in nets.nrenet("train_val", plain, 4, (4, 4, 4)).layer
            if x.name == "loss"][0]
    assert loss.type == "SoftmaxWithLoss"


def test_nrenet_skip_reads_every_group(caffe, tmp_path):
    """skip: the classifier reads the three groups' tops concatenated, and
    the loss's gradient reaches group 1 through that path alone when the
    later groups pass none back (their parameters frozen at zero)."""
    data = nets.data_config(("train_lmdb", ""), ("val_lmdb", ""), (16, 20),
                            1, nets.VGG_MEAN_BGR, 1.0, (16, 20))
    widths = (3, 4, 5)
    plain = nets.nrenet("deploy", data, 4, widths)
    assert not [x for x in plain.layer if x.type == "Concat"]
    proto = nets.nrenet("deploy", data, 4, widths, skip=True)
    concat = [x for x in proto.layer if x.type == "Concat"]
    assert [x.name for x in concat] == ["groups"]
    assert list(concat[0].bottom) == ["renet1_h", "renet2_h", "renet3_h"]
    # A deploy net has no loss: force_backward makes pycaffe's backward run.
    proto.force_backward = plain.force_backward = True
    path = tmp_path / "skip.prototxt"
    path.write_text(str(proto))
    net = caffe.Net(str(path), caffe.TEST)
    assert net.blobs["groups"].data.shape == (1, 2 * sum(widths), 4, 5)
    assert net.params["classifier"][0].data.shape == (4, 2 * sum(widths),
                                                      1, 1)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.uniform(-1, 1, (1, 3, 16, 20))
    for layer in ("renet2_v", "renet2_h", "renet3_v", "renet3_h"):
        for p in net.params[layer]:
            p.data[...] = 0
    net.forward()
    net.blobs["score"].diff[...] = rng.standard_normal(
        net.blobs["score"].data.shape)
    net.backward()
    assert np.abs(net.params["renet1_v"][0].diff).sum() > 0
    # Without the skip the same zeroed groups pass nothing back.
    path = tmp_path / "plain.prototxt"
    path.write_text(str(plain))
    net = caffe.Net(str(path), caffe.TEST)
    for layer in ("renet2_v", "renet2_h", "renet3_v", "renet3_h"):
        for p in net.params[layer]:
            p.data[...] = 0
    net.blobs["data"].data[...] = rng.uniform(-1, 1, (1, 3, 16, 20))
    net.forward()
    net.blobs["score"].diff[...] = 1
    net.backward()
    assert np.abs(net.params["renet1_v"][0].diff).sum() == 0
