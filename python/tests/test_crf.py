"""Tests of hrenet.crf (the DenseCRF layer through pycaffe).

The agreement test against pydensecrf needs the optional package
``pydensecrf2`` (``pip install pydensecrf2``; it provides the module
``pydensecrf``); it is skipped with a reason when the package is missing.
"""
import os

import numpy as np
import pytest

from hrenet.crf import DenseCRF, crf_prototxt, dense_crf


def two_colour_case(height=30, width=40, num_labels=3, noise=0.3, seed=0):
    """Left half red, right half blue; scores favour the half's label
    (0 left, 1 right) except at a fraction `noise` of the pixels."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((height, width), np.int64)
    truth[:, width // 2:] = 1
    image = np.zeros((height, width, 3), np.uint8)  # BGR
    image[:, : width // 2] = (30, 30, 220)
    image[:, width // 2:] = (220, 30, 30)
    favoured = truth.copy()
    flip = rng.random((height, width)) < noise
    favoured[flip] = rng.integers(0, num_labels, flip.sum())
    scores = 0.3 * rng.standard_normal((num_labels, height, width))
    np.put_along_axis(scores, favoured[None], 1.0 + np.take_along_axis(
        scores, favoured[None], 0), 0)
    return scores.astype(np.float32), image, truth


def test_shapes_and_marginals(caffe):
    scores, image, _ = two_colour_case()
    q = DenseCRF()(scores, image)
    assert q.shape == scores.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(axis=0), 1.0, atol=1e-5)
    assert (q >= 0).all() and (q <= 1).all()
    batch = np.stack([scores, scores[:, ::-1, :]])
    images = np.stack([image, image[::-1]])
    qb = DenseCRF()(batch, images)
    assert qb.shape == batch.shape
    np.testing.assert_allclose(qb[0], q, atol=1e-6)


def test_cleans_noise_keeps_edge(caffe):
    scores, image, truth = two_colour_case(noise=0.3)
    assert (scores.argmax(0) != truth).mean() > 0.1
    labels = dense_crf(scores, image).argmax(0)
    np.testing.assert_array_equal(labels, truth)


def test_rgb_order_and_prob_input(caffe):
    scores, image, _ = two_colour_case(seed=1)
    crf = DenseCRF(max_iter=3)
    q_bgr = crf(scores, image)
    q_rgb = crf(scores, image[..., ::-1], channel_order="rgb")
    np.testing.assert_array_equal(q_bgr, q_rgb)
    prob = np.exp(scores - scores.max(0))
    prob /= prob.sum(0)
    q_prob = DenseCRF(max_iter=3, unary_type="prob")(prob, image)
    np.testing.assert_allclose(q_prob, q_bgr, atol=1e-4)


def test_thread_count_does_not_change_result(caffe):
    # 38400 pixels: enough for the lattice build to split across 2 threads.
    scores, image, _ = two_colour_case(height=160, width=240, seed=2)
    env = dict(os.environ)
    q1 = DenseCRF(num_threads=1)(scores, image)
    q2 = DenseCRF(num_threads=2)(scores, image)
    np.testing.assert_array_equal(q1, q2)
    # the thread count travels in the net, not through the environment
    assert dict(os.environ) == env
    assert "threads: 2" in crf_prototxt(1, 2, 4, 4, threads=2)


def test_prototxt_names_the_layer():
    text = crf_prototxt(2, 21, 10, 12, max_iter=7, bi_rgb_std=13)
    assert 'type: "DenseCRF"' in text and "max_iter: 7" in text
    assert "bi_rgb_std: 13.0" in text and "dim: 21" in text


@pytest.mark.parametrize("scores_shape, image_shape, dtype, message", [
    ((3, 10, 12), (10, 11, 3), np.uint8, "differ in N, H or W"),
    ((1, 10, 12), (10, 12, 3), np.uint8, "at least 2 labels"),
    ((3, 10, 12), (10, 12, 4), np.uint8, "H x W x 3"),
    ((3, 10, 12), (10, 12, 3), np.float32, "uint8"),
    ((10, 12), (10, 12, 3), np.uint8, "L x H x W"),
])
def test_bad_inputs(scores_shape, image_shape, dtype, message):
    with pytest.raises(ValueError, match=message):
        DenseCRF()(np.zeros(scores_shape, np.float32),
                   np.zeros(image_shape, dtype))


def test_bad_parameters():
    with pytest.raises(ValueError, match="max_iter"):
        DenseCRF(max_iter=0)
    with pytest.raises(ValueError, match="unary_type"):
        DenseCRF(unary_type="softmax")
    with pytest.raises(ValueError, match="channel_order"):
        DenseCRF()(np.zeros((2, 4, 4), np.float32),
                   np.zeros((4, 4, 3), np.uint8), channel_order="hsv")


def smooth_scores(num_labels, height, width, seed=0, amplitude=3.0):
    """Smooth random class scores: a coarse normal grid, bilinearly
    upsampled (the same recipe as bench/crf_bench.py)."""
    from scipy.ndimage import zoom
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((num_labels, 12, 16))
    fine = zoom(coarse, (1, height / 12.0, width / 16.0), order=1)
    return np.ascontiguousarray(amplitude * fine[:, :height, :width],
                                dtype=np.float32)


def test_agrees_with_pydensecrf(caffe):
    dcrf = pytest.importorskip(
        "pydensecrf.densecrf",
        reason="pydensecrf not installed (optional: pip install pydensecrf2)")
    from skimage import data, transform
    rgb = (transform.resize(data.chelsea(), (375, 500), anti_aliasing=True)
           * 255).round().astype(np.uint8)
    height, width, num_labels = 375, 500, 21
    scores = smooth_scores(num_labels, height, width)
    ref = dcrf.DenseCRF2D(width, height, num_labels)
    ref.setUnaryEnergy(np.ascontiguousarray(-scores.reshape(num_labels, -1)))
    ref.addPairwiseGaussian(sxy=3, compat=3)
    ref.addPairwiseBilateral(sxy=80, srgb=3, rgbim=np.ascontiguousarray(rgb),
                             compat=5)
    q_ref = np.array(ref.inference(5)).reshape(num_labels, height, width)
    q = DenseCRF(max_iter=5)(scores, rgb, channel_order="rgb")
    agree = (q.argmax(0) == q_ref.argmax(0)).mean()
    # The CRF changes many labels, so agreement is not trivial.
    assert (scores.argmax(0) != q_ref.argmax(0)).mean() > 0.05
    assert agree >= 0.99, agree
    assert np.abs(q - q_ref).max() < 0.01
