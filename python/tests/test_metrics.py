"""hrenet.metrics on hand-checked confusion matrices."""
import json
import math

import numpy as np
import pytest

from hrenet.metrics import (ConfusionMatrix, format_markdown, json_safe,
                            scores_from_confusion)


def test_update_counts_gt_on_rows_and_ignores_255():
    cm = ConfusionMatrix(3)
    gt = np.array([[0, 0, 1], [2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1], [0, 2, 2]], np.uint8)
    assert cm.update(gt, pred) == 5
    # gt 0 -> pred 0, 1; gt 1 -> pred 1, 2; gt 2 -> pred 0; the 255 is dropped
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0],
                                              [0, 1, 1],
                                              [1, 0, 0]])


def test_hand_checked_scores():
    # rows: ground truth, columns: prediction
    m = np.array([[50, 10, 0],
                  [5, 20, 5],
                  [0, 0, 10]])
    r = scores_from_confusion(m)
    assert r["pixels"] == 100
    assert r["pixel_acc"] == pytest.approx(0.80)
    # recall: 50/60, 20/30, 10/10
    assert r["per_class_acc"] == pytest.approx([5 / 6, 2 / 3, 1.0])
    assert r["class_acc"] == pytest.approx((5 / 6 + 2 / 3 + 1) / 3)
    # IoU: 50/(60+55-50), 20/(30+30-20), 10/(10+15-10)
    iou = [50 / 65, 20 / 40, 10 / 15]
    assert r["iou"] == pytest.approx(iou)
    assert r["miou"] == pytest.approx(sum(iou) / 3)
    assert r["fwiou"] == pytest.approx(0.6 * iou[0] + 0.3 * iou[1]
                                       + 0.1 * iou[2])
    assert r["gt_pixels"] == [60, 30, 10]
    assert r["pred_pixels"] == [55, 30, 15]


def test_absent_class_not_counted_in_means():
    # class 2: no ground truth and never predicted -> NaN, left out
    m = np.array([[8, 2, 0],
                  [2, 8, 0],
                  [0, 0, 0]])
    r = scores_from_confusion(m)
    assert math.isnan(r["iou"][2]) and math.isnan(r["per_class_acc"][2])
    assert r["present"] == [True, True, False]
    assert r["miou"] == pytest.approx((8 / 12 + 8 / 12) / 2)
    assert r["class_acc"] == pytest.approx(0.8)


def test_class_absent_from_gt_but_predicted_counts_as_zero_iou():
    m = np.array([[8, 0, 2],
                  [0, 10, 0],
                  [0, 0, 0]])
    r = scores_from_confusion(m)
    assert r["iou"][2] == 0.0  # false positives only
    assert math.isnan(r["per_class_acc"][2])  # recall undefined
    assert r["miou"] == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    assert r["class_acc"] == pytest.approx((0.8 + 1.0) / 2)


def test_all_ignored_image_adds_nothing():
    cm = ConfusionMatrix(4)
    gt = np.full((5, 6), 255, np.uint8)
    pred = np.random.default_rng(0).integers(0, 4, (5, 6))
    assert cm.update(gt, pred) == 0
    assert cm.matrix.sum() == 0
    r = cm.compute()
    assert all(math.isnan(r[k]) for k in ("pixel_acc", "class_acc", "miou",
                                          "fwiou"))
    # then a real image: the ignored one changed nothing
    cm.update(np.array([[1, 2]]), np.array([[1, 1]]))
    r = cm.compute()
    assert r["pixel_acc"] == 0.5 and r["iou"][1] == 0.5 and r["iou"][2] == 0


def test_bincount_matches_a_loop():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 5, (37, 41)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 5, gt.shape)
    cm = ConfusionMatrix(5)
    cm.update(gt, pred)
    ref = np.zeros((5, 5), np.int64)
    for g, p in zip(gt.ravel(), pred.ravel()):
        if g != 255:
            ref[g, p] += 1
    np.testing.assert_array_equal(cm.matrix, ref)


def test_bad_values_and_shapes():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="ground-truth label 7 outside"):
        cm.update(np.array([7]), np.array([0]))
    with pytest.raises(ValueError, match="predicted label 3 outside"):
        cm.update(np.array([0]), np.array([3]))
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_json_and_markdown_show_absent_classes():
    r = scores_from_confusion(np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]]))
    text = json.dumps(json_safe(r))
    assert json.loads(text)["iou"][2] is None
    md = format_markdown(r, ["bg", "cat", "dog"], "net")
    assert md.splitlines()[0] == "| method | bg | cat | dog | mean IoU |"
    assert md.splitlines()[2] == "| net | 75.0 | 80.0 | n/a | 77.5 |"
    assert "| dog | n/a | n/a | 0 | 0 |" in md


def test_argmax_channels_matches_numpy_with_ties():
    from hrenet.inference import argmax_channels
    rng = np.random.default_rng(2)
    s = rng.standard_normal((21, 17, 23)).astype(np.float32)
    s[:, :4, :4] = 1.5  # ties: the lowest class wins, as with argmax
    s[7, 10, 10] = 9.0
    got = argmax_channels(s)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, s.argmax(axis=0))
    assert (got[:4, :4] == 0).all() and got[10, 10] == 7
