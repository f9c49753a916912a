"""Score a deploy net on a split: one confusion matrix at full label size.

A split is an iterable of ``(name, BGR uint8 image, uint8 label)``:
:func:`lmdb_split` reads the LMDB pair that tools/build_lmdb.py wrote,
:func:`dataset_split` a dataset root in its published layout (the readers of
:mod:`hrenet.datasets`). :func:`score_split` runs a
:class:`hrenet.inference.Model` over it and returns the scores of
:mod:`hrenet.metrics` plus timings::

    model = inference.load_model("deploy.prototxt", "x.caffemodel")
    result = score_split(model, lmdb_split("lmdb/voc_val"), 21)
    result["miou"], result["iou"], result["confusion"]

Predictions are compared with the label at the label's full resolution (a
net whose output differs in size is resized bilinearly to it first); label
255 is ignored.
"""
import os
import time

import numpy as np

from hrenet import datasets as ds
from hrenet.inference import ToolError, argmax_channels, device_sync
from hrenet.metrics import ConfusionMatrix


class Split(object):
    """An iterable split with a length (for progress) and class names."""

    def __init__(self, items, count, class_names=None, fmt=None, where=""):
        self._items, self.count = items, count
        self.class_names, self.format, self.where = class_names, fmt, where

    def __iter__(self):
        return iter(self._items())

    def __len__(self):
        return self.count


def lmdb_split(source):
    """The split in ``source`` (``image_lmdb``, ``label_lmdb``,
    ``meta.json``), checked at once (:func:`hrenet.lmdb_io.check_dataset`:
    both LMDBs whole, so a truncated file is an error, not a SIGBUS) and
    record by record as it is read (:func:`hrenet.lmdb_io.read_dataset`)."""
    from hrenet import lmdb_io
    try:
        count = lmdb_io.check_dataset(source)
        meta = lmdb_io.read_meta(source) if os.path.isfile(
            os.path.join(source, lmdb_io.META)) else {}
    except ds.DataError as e:
        raise ToolError(str(e)) from e

    def items():
        for key, image, label in lmdb_io.read_dataset(source):
            name = key.split("_", 1)[-1]
            if label.shape != image.shape[:2]:
                raise ds.DataError(source, f"entry {key}: label "
                                   f"{label.shape} and image "
                                   f"{image.shape[:2]} differ in size")
            yield name, image, label
    return Split(items, count or None, meta.get("classes"),
                 meta.get("format"), source)


def dataset_split(samples, num_classes, fmt=None, where=""):
    """A split over :class:`hrenet.datasets.Sample` s (validated pairs)."""
    samples = list(samples)

    def items():
        for sample in samples:
            _, image, label = ds.load_pair(sample, num_classes)
            yield sample.name, image, label
    return Split(items, len(samples), None, fmt, where)


def score_split(model, split, num_classes=None, save_png=None, palette=None,
                progress=False, limit=None):
    """Run ``model`` over ``split`` and score it.

    ``save_png``: directory for the predictions as palette PNGs
    (``<name>.png``, ``palette`` 256 x 3 RGB). ``limit``: at most that many
    images. Returns a dict: everything of
    :func:`hrenet.metrics.scores_from_confusion` (``miou``, ``pixel_acc``,
    ``class_acc``, ``fwiou``, per-class ``iou`` ...), ``confusion`` (K x K
    list, ground truth on rows), ``images``, and timings in ms per image:
    ``forward_ms`` (preprocessing and the net, device synchronised),
    ``bookkeeping_ms`` (everything else: decode, argmax, confusion update,
    PNG writing, the loop), ``total_ms``, ``bookkeeping_fraction``, and
    ``parts_ms`` (decode, forward, argmax, confusion, png).
    """
    from hrenet.visual import palette_for, save_palette_png
    num_classes = int(num_classes or model.num_classes)
    if model.num_classes != num_classes:
        raise ToolError(f"{model.path}: the net's output {model.blob!r} has "
                        f"{model.num_classes} channels but the split has "
                        f"{num_classes} classes")
    cm = ConfusionMatrix(num_classes)
    if save_png:
        os.makedirs(save_png, exist_ok=True)
        palette = palette_for() if palette is None else palette
    total = len(split) if split.count else None
    if limit is not None:
        total = min(limit, total) if total else limit
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="img", desc="score", leave=False,
                   dynamic_ncols=True)
    parts = dict.fromkeys(("decode", "forward", "argmax", "confusion",
                           "png"), 0.0)
    images = 0
    clock = time.perf_counter
    t_start = clock()
    items = iter(split)
    try:
        while limit is None or images < limit:
            t0 = clock()
            try:
                name, image, label = next(items)
            except StopIteration:
                break
            t1 = clock()
            scores = model.forward(image, copy=False)
            device_sync()
            t2 = clock()
            pred = argmax_channels(scores)
            t3 = clock()
            if label.shape != pred.shape:
                raise ToolError(f"{split.where}: {name}: label {label.shape} "
                                f"and image {image.shape[:2]} differ in size")
            try:
                cm.update(label, pred)
            except ValueError as e:
                raise ToolError(f"{split.where}: {name}: {e}") from e
            t4 = clock()
            if save_png:
                save_palette_png(os.path.join(save_png, name + ".png"), pred,
                                 palette)
            t5 = clock()
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3,
                                       t5 - t4)):
                parts[key] += dt
            images += 1
            if bar is not None:
                bar.update()
                bar.set_postfix_str(
                    f"net {1000 * parts['forward'] / images:.0f} ms",
                    refresh=False)
    except ds.DataError as e:
        raise ToolError(str(e)) from e
    finally:
        if bar is not None:
            bar.close()
    elapsed = clock() - t_start
    if images == 0:
        raise ToolError(f"{split.where}: the split holds no images")
    result = cm.compute()
    result["confusion"] = cm.matrix.tolist()
    result["images"] = images
    result["forward_ms"] = 1000.0 * parts["forward"] / images
    result["parts_ms"] = {k: 1000.0 * v / images for k, v in parts.items()}
    result["total_ms"] = 1000.0 * elapsed / images
    result["bookkeeping_ms"] = result["total_ms"] - result["forward_ms"]
    result["bookkeeping_fraction"] = (result["bookkeeping_ms"] /
                                      result["total_ms"])
    return result


def score(model, weights, source, crf=False, crf_params=None, gpu=None,
          limit=None, progress=False, save_png=None):
    """One call for reports: load the deploy net ``model`` with ``weights``
    (:func:`hrenet.inference.load_model`), score the LMDB split ``source``
    and return the dict of :func:`score_split` plus ``classes`` (from the
    split's meta.json when it has names for every output)."""
    from hrenet import inference
    from hrenet.visual import default_class_names, palette_for
    inference.set_mode(gpu)
    m = inference.load_model(model, weights, crf=crf, crf_params=crf_params)
    split = lmdb_split(source)
    result = score_split(m, split, m.num_classes, save_png=save_png,
                         palette=palette_for(split.format), progress=progress,
                         limit=limit)
    names = split.class_names
    if not names or len(names) != m.num_classes:
        names = default_class_names(m.num_classes, split.format)
    result["classes"] = list(names)
    return result


def iter_images(paths):
    """Expand files and folders (their .jpg/.jpeg/.png files, sorted) into
    image paths; a path that does not exist raises ToolError."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(ds.IMAGE_EXTENSIONS))
            if not found:
                raise ToolError(f"{path}: folder holds no .jpg/.jpeg/.png "
                                "images")
            out += found
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise ToolError(f"{path}: no such image or folder")
    return out


FIX_IMAGE = "replace it or leave it out"


def image_size(path):
    """(height, width) of an image file from its header, without decoding
    it; ToolError naming the file if it is not a readable image."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Image.DecompressionBombError as e:
        raise ToolError(f"{path}: {e}; scale it down first") from e
    except (OSError, ValueError) as e:
        what = ("not an image file" if "identify" in str(e) else
                f"cannot read the image ({e})")
        raise ToolError(f"{path}: {what}; {FIX_IMAGE}") from e
    return h, w


def read_image(path):
    """BGR uint8 image of a file; ToolError if it cannot be decoded."""
    try:
        _, image = ds.decode_image(path)
    except ds.DataError as e:
        raise ToolError(f"{e}; {FIX_IMAGE}") from e
    return image


def mean_std(values):
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std())
