"""Segmentation metrics from one confusion matrix.

:class:`ConfusionMatrix` accumulates a ``K x K`` matrix of pixel counts with
the ground truth on rows and the prediction on columns, with one
``np.bincount`` of ``K * gt + pred`` over the pixels whose ground truth is not
the ignore label (255). :meth:`ConfusionMatrix.compute` (or
:func:`scores_from_confusion`) gives the usual scores:

``pixel_acc``   sum of the diagonal / all counted pixels
``class_acc``   mean over classes of diag / row sum (per-class recall)
``iou``         per class: diag / (row sum + column sum - diag)
``miou``        mean of the per-class IoU
``fwiou``       per-class IoU weighted by the class's share of the ground
                truth pixels

Classes absent from a split (NaN handling):

* A class with no ground-truth pixel **and** no predicted pixel has IoU NaN
  (0 / 0) and does not count in ``miou``: it says nothing about the model.
* A class with no ground-truth pixel that the model nevertheless predicts has
  IoU 0 (every such pixel is a false positive) and counts in ``miou``.
* A class with no ground-truth pixel has class accuracy NaN and does not count
  in ``class_acc``, whatever was predicted (recall is undefined).
* ``fwiou`` weights by ground-truth frequency, so absent classes weigh 0.
* With no counted pixel at all (an empty or all-ignored split) every score is
  NaN.

The per-class lists keep the NaNs (JSON: ``null``) so that a reader sees which
classes were absent; the means skip them (``np.nanmean``).
"""
import math

import numpy as np

IGNORE_LABEL = 255


class ConfusionMatrix(object):
    """Pixel-count confusion matrix: ``matrix[gt, pred]``, ``int64``."""

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, gt, pred):
        """Add one image (or a batch): ``gt`` and ``pred`` of equal shape.

        ``gt`` holds 0..K-1 or the ignore label; ``pred`` holds 0..K-1.
        Raises ValueError for shapes that differ or values out of range.
        Returns the number of pixels counted.
        """
        gt = np.asarray(gt)
        pred = np.asarray(pred)
        if gt.shape != pred.shape:
            raise ValueError(f"ground truth {gt.shape} and prediction "
                             f"{pred.shape} differ in shape")
        n = self.num_classes
        keep = gt != self.ignore_label
        g = gt[keep].astype(np.int64, copy=False)
        p = pred[keep].astype(np.int64, copy=False)
        if g.size == 0:
            return 0
        if g.min() < 0 or g.max() >= n:
            bad = int(g[(g < 0) | (g >= n)][0])
            raise ValueError(f"ground-truth label {bad} outside [0, {n}) and "
                             f"not the ignore label {self.ignore_label}")
        if p.min() < 0 or p.max() >= n:
            bad = int(p[(p < 0) | (p >= n)][0])
            raise ValueError(f"predicted label {bad} outside [0, {n})")
        self.matrix += np.bincount(n * g + p, minlength=n * n).reshape(n, n)
        return int(g.size)

    def merge(self, other):
        """Add another matrix of the same size (e.g. from another worker)."""
        self.matrix += np.asarray(getattr(other, "matrix", other))
        return self

    def reset(self):
        self.matrix[...] = 0

    def compute(self):
        """The scores of :func:`scores_from_confusion` for this matrix."""
        return scores_from_confusion(self.matrix)


def _nanmean(values):
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def scores_from_confusion(matrix):
    """A dict of scores from a ``K x K`` matrix (rows: ground truth).

    Keys: ``pixel_acc``, ``class_acc``, ``miou``, ``fwiou`` (floats, NaN
    when undefined), ``per_class_acc``, ``iou`` (lists of K floats with NaN
    for absent classes, see the module doc), ``gt_pixels``,
    ``pred_pixels`` (lists of K ints), ``pixels`` (counted pixels),
    ``present`` (K bools: the class occurs in ground truth or prediction).
    """
    m = np.asarray(matrix, np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got {m.shape}")
    diag = np.diag(m)
    gt = m.sum(axis=1)
    pred = m.sum(axis=0)
    total = gt.sum()
    union = gt + pred - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, diag / union, np.nan)
        acc = np.where(gt > 0, diag / gt, np.nan)
    if total > 0:
        pixel_acc = float(diag.sum() / total)
        freq = gt / total
        fwiou = float(np.nansum(freq * np.where(np.isnan(iou), 0.0, iou)))
    else:
        pixel_acc = fwiou = float("nan")
    return {
        "pixel_acc": pixel_acc,
        "class_acc": _nanmean(acc),
        "miou": _nanmean(iou),
        "fwiou": fwiou,
        "per_class_acc": [float(v) for v in acc],
        "iou": [float(v) for v in iou],
        "gt_pixels": [int(v) for v in gt],
        "pred_pixels": [int(v) for v in pred],
        "pixels": int(total),
        "present": [bool(v) for v in union > 0],
    }


def json_safe(value):
    """``value`` with every NaN/inf float replaced by None (JSON null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def pct(value, digits=1):
    """A fraction as a percentage string; NaN/None as 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100.0 * value:.{digits}f}"


def format_markdown(result, class_names, title="model"):
    """Markdown tables of a :func:`scores_from_confusion` result.

    First the paper's Table 7 layout (one row, per-class IoU in % as
    columns, then mean IoU), then the summary scores, then one row per class
    (IoU, accuracy, ground-truth and predicted pixels). Absent classes show
    ``n/a``.
    """
    names = list(class_names)
    lines = ["| method | " + " | ".join(names) + " | mean IoU |",
             "|---|" + "---:|" * (len(names) + 1),
             f"| {title} | " + " | ".join(pct(v) for v in result["iou"])
             + f" | {pct(result['miou'])} |", ""]
    lines += ["| pixel acc. | mean class acc. | mean IoU | f.w. IoU |",
              "|---:|---:|---:|---:|",
              f"| {pct(result['pixel_acc'])} | {pct(result['class_acc'])} | "
              f"{pct(result['miou'])} | {pct(result['fwiou'])} |", ""]
    lines += ["| class | IoU (%) | accuracy (%) | GT pixels | predicted "
              "pixels |", "|---|---:|---:|---:|---:|"]
    for i, name in enumerate(names):
        lines.append(f"| {name} | {pct(result['iou'][i])} | "
                     f"{pct(result['per_class_acc'][i])} | "
                     f"{result['gt_pixels'][i]} | "
                     f"{result['pred_pixels'][i]} |")
    return "\n".join(lines) + "\n"
