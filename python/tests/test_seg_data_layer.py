"""The SegData layer through pycaffe, on an LMDB that tools/build_lmdb.py
built from a synthetic dataset that tools/make_synthetic.py wrote."""

import numpy as np
import pytest

from hrenet import lmdb_io

from _tools import load_tool  # noqa: E402
H, W = 40, 48


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segdata")
    syn = tmp / "syn"
    make = load_tool("make_synthetic")
    assert make.main(make.parse_args(
        ["--out", str(syn), "--num", "5", "--height", str(H), "--width",
         str(W), "--classes", "3", "--quiet"])) == 0
    build = load_tool("build_lmdb")
    out = tmp / "lmdb"
    assert build.main(build.parse_args(
        ["--format", "voc", "--root", str(syn), "--split", "trainval",
         "--classes", str(syn / "classes.txt"), "--out", str(out),
         "--quiet"])) == 0
    return str(out)


@pytest.fixture(scope="module")
def pairs(source):
    return list(lmdb_io.read_dataset(source))


def net_text(source, batch=1, crop=(0, 0), mirror=False, shuffle=False,
             seed=1, extra=""):
    return f"""
layer {{ name: "data" type: "SegData" top: "data" top: "label"
  seg_data_param {{ source: "{source}" batch_size: {batch}
    crop_h: {crop[0]} crop_w: {crop[1]} mirror: {str(mirror).lower()}
    shuffle: {str(shuffle).lower()} seed: {seed} prefetch: 2 {extra} }} }}
"""


def find_window(full, window):
    """(y0, x0, mirrored) where ``window`` (C x h x w) sits in ``full``."""
    _, h, w = window.shape
    hits = []
    for mirrored in (False, True):
        target = window[:, :, ::-1] if mirrored else window
        for y0 in range(full.shape[1] - h + 1):
            for x0 in range(full.shape[2] - w + 1):
                if np.array_equal(full[:, y0:y0 + h, x0:x0 + w], target):
                    hits.append((y0, x0, mirrored))
    return hits


def test_whole_image_test_phase(caffe, net_from_string, source, pairs):
    net = net_from_string(net_text(
        source, extra="mean_value: 10 mean_value: 20 mean_value: 30 "
        "scale: 0.5"), phase=caffe.TEST)
    for key, image, label in pairs + pairs[:2]:  # wraps around
        net.forward()
        data = net.blobs["data"].data
        assert data.shape == (1, 3, H, W)
        assert net.blobs["label"].data.shape == (1, 1, H, W)
        bgr = image.transpose(2, 0, 1).astype(np.float32)
        mean = np.array([10, 20, 30], np.float32)[:, None, None]
        np.testing.assert_array_equal(data[0], (bgr - mean) * 0.5)
        np.testing.assert_array_equal(net.blobs["label"].data[0, 0], label)


def test_train_crop_and_mirror_in_sync(caffe, net_from_string, source, pairs):
    crop = (24, 30)
    net = net_from_string(net_text(source, batch=2, crop=crop, mirror=True,
                                   seed=3), phase=caffe.TRAIN)
    seen_mirror = set()
    for it in range(5):
        net.forward()
        data, labels = net.blobs["data"].data, net.blobs["label"].data
        assert data.shape == (2, 3) + crop
        for n in range(2):
            _, image, label = pairs[(2 * it + n) % len(pairs)]
            full = image.transpose(2, 0, 1).astype(np.float32)
            hits = find_window(full, data[n])
            assert hits, "the crop is not a window of its image"
            # the label window at the same place, flipped the same way
            ok = False
            for y0, x0, mirrored in hits:
                want = label[y0:y0 + crop[0], x0:x0 + crop[1]]
                want = want[:, ::-1] if mirrored else want
                ok |= np.array_equal(labels[n, 0], want)
                seen_mirror.add(mirrored)
            assert ok, "label window does not match the image window"
    assert seen_mirror == {False, True}


def test_image_smaller_than_crop_is_reflection_padded(caffe, net_from_string,
                                                      source, pairs):
    crop = (H + 6, W + 9)  # pad 3/3 rows, 4/5 columns
    net = net_from_string(net_text(source, crop=crop), phase=caffe.TRAIN)
    for _, image, label in pairs[:2]:
        net.forward()
        want = np.pad(image, ((3, 3), (4, 5), (0, 0)), mode="reflect")
        np.testing.assert_array_equal(net.blobs["data"].data[0],
                                      want.transpose(2, 0, 1))
        want_label = np.pad(label, ((3, 3), (4, 5)), constant_values=255)
        np.testing.assert_array_equal(net.blobs["label"].data[0, 0],
                                      want_label)


def test_test_phase_centre_crop(caffe, net_from_string, source, pairs):
    net = net_from_string(net_text(source, crop=(20, 30), mirror=True),
                          phase=caffe.TEST)
    _, image, label = pairs[0]
    net.forward()
    y0, x0 = (H - 20) // 2, (W - 30) // 2
    np.testing.assert_array_equal(
        net.blobs["data"].data[0],
        image[y0:y0 + 20, x0:x0 + 30].transpose(2, 0, 1))
    np.testing.assert_array_equal(net.blobs["label"].data[0, 0],
                                  label[y0:y0 + 20, x0:x0 + 30])


def test_shuffle_is_seeded_per_epoch(caffe, net_from_string, source, pairs):
    def order(seed):
        net = net_from_string(net_text(source, shuffle=True, seed=seed),
                              phase=caffe.TEST)
        seq = []
        for _ in range(3 * len(pairs)):
            net.forward()
            seq.append(next(i for i, (_, image, _) in enumerate(pairs)
                            if np.array_equal(
                                net.blobs["data"].data[0],
                                image.transpose(2, 0, 1))))
        return seq
    a, b = order(11), order(11)
    assert a == b
    n = len(pairs)
    epochs = [a[i * n:(i + 1) * n] for i in range(3)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1


def test_feeds_a_segmentation_loss(caffe, net_from_string, source):
    caffe.set_random_seed(5)
    text = net_text(source, batch=2, crop=(32, 32), mirror=True,
                    extra="mean_value: 128 scale: 0.0078125") + """
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score"
  bottom: "label" top: "loss" loss_param { ignore_label: 255 } }
"""
    net = net_from_string(text, phase=caffe.TRAIN)
    out = net.forward()
    data = net.blobs["data"].data
    assert np.abs(data).max() <= 1.0 and data.std() > 0.05
    # inputs in [-1, 1], small weights: the loss is close to log(4)
    assert abs(float(out["loss"]) - np.log(4)) < 0.2
    net.backward()
    assert np.abs(net.params["score"][0].diff).sum() > 0
