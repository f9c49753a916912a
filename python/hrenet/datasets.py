"""Readers for the segmentation datasets, in their published on-disk formats.

Every reader returns a list of :class:`Sample` s: a name, the image path and a
zero-argument callable that loads the label as an ``H x W`` uint8 array of
class indices with 255 = ignore. Labels load lazily so that one bad file is
reported (or skipped) on its own; :func:`load_pair` reads and validates a
sample. Nothing here writes files except :func:`write_folds`.

Formats (``root`` is the directory the dataset unpacks to):

``stanford-bg``  ``iccv09Data/``: ``images/<name>.jpg``,
                 ``labels/<name>.regions.txt`` (integer matrix, one image row
                 per line; negative = unknown -> 255). 8 classes.
``voc``          ``VOCdevkit/VOC2012/``: ``JPEGImages/<name>.jpg``,
                 palette-indexed ``SegmentationClass/<name>.png`` (255 = void),
                 ``ImageSets/Segmentation/{train,val,trainval}.txt``;
                 21 classes.
``sbd``          ``benchmark_RELEASE/dataset/``: ``img/<name>.jpg``,
                 ``cls/<name>.mat`` (``GTcls.Segmentation``), ``train.txt``,
                 ``val.txt``. Split ``aug`` is the paper's augmented training
                 set, see :func:`sbd_aug_names`.
``coco``         an image directory plus an instances JSON; see
                 :func:`coco_samples`.
``folder``       ``images/<name>.{jpg,jpeg,png}`` and ``labels/<name>.png``
                 (single-channel class indices, 255 = ignore).
"""
import functools
import io
import os
import warnings
from collections import namedtuple

import numpy as np

IGNORE_LABEL = 255

STANFORD_BG_CLASSES = ("sky", "tree", "road", "grass", "water", "building",
                       "mountain", "foreground")

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle",
               "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
               "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")

# COCO category ids of the 20 VOC classes, in VOC order (index 1..20).
COCO_VOC_IDS = (5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20,
                63, 7, 72)
COCO_TO_VOC = {cid: i + 1 for i, cid in enumerate(COCO_VOC_IDS)}

# The paper keeps COCO images with more than this many VOC-class pixels.
COCO_MIN_VOC_PIXELS = 900

FORMATS = ("stanford-bg", "voc", "sbd", "coco", "folder")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

Sample = namedtuple("Sample", "name image_path label_path load_label")
Sample.__doc__ = """One image/label pair.

name:        unique name (the image file's stem)
image_path:  path of the encoded image (JPEG or PNG)
label_path:  the file the label comes from (for messages)
load_label:  callable() -> H x W uint8 class-index array (255 = ignore)
"""


class DataError(ValueError):
    """A bad input file: ``path`` names it, ``problem`` says what is wrong."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


# ---------------------------------------------------------------------------
# Palettes and class files

def voc_palette():
    """The PASCAL VOC colour map: a 256 x 3 uint8 array (index -> RGB)."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[index] = (r, g, b)
    return palette


def _read_text_lines(path, what, item, first_column=False):
    """The non-blank lines of a text file (stripped, or their first
    column), or DataError naming the file: missing, not text, empty."""
    if not os.path.isfile(path):
        raise DataError(path, f"{what} does not exist; give a text file "
                        f"with one {item} per line")
    try:
        with open(path) as f:
            lines = [line.split()[0] if first_column else line.strip()
                     for line in f if line.strip()]
    except UnicodeDecodeError as e:
        raise DataError(path, f"{what} is not text; give a text file with "
                        f"one {item} per line") from e
    if not lines:
        raise DataError(path, f"{what} is empty")
    return lines


def read_class_names(path):
    """Class names from a text file, one per line (blank lines ignored)."""
    return _read_text_lines(path, "class file", "class name")


def read_list(path):
    """Names from a split list (first column of each non-blank line)."""
    return _read_text_lines(path, "split list", "image name",
                            first_column=True)


# ---------------------------------------------------------------------------
# Label loaders (each raises DataError naming the file)

def _require_file(path):
    if not os.path.isfile(path):
        raise DataError(path, "label file is missing")


def load_index_png(path):
    """A palette-indexed ('P') or grayscale ('L') PNG as its index array."""
    from PIL import Image
    _require_file(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L"):
                raise DataError(path, f"label PNG has mode {im.mode!r}; "
                                "expected palette-indexed (P) or single-"
                                "channel 8-bit (L) class indices")
            return np.array(im, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError...
        raise DataError(path, f"cannot read label PNG ({_reason(e)})") from e


def load_regions_txt(path):
    """A Stanford Background ``.regions.txt``: negatives become 255."""
    _require_file(path)
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append([int(v) for v in line.split()])
            except ValueError as e:
                raise DataError(path, f"line {lineno} is not a row of "
                                f"integers ({_reason(e)})") from e
            if len(rows[-1]) != len(rows[0]):
                raise DataError(path, f"line {lineno} has {len(rows[-1])} "
                                f"values but line 1 has {len(rows[0])} "
                                "(wrong row length)")
    if not rows or not rows[0]:
        raise DataError(path, "label file is empty")
    labels = np.array(rows, dtype=np.int64)
    labels[labels < 0] = IGNORE_LABEL
    if labels.max() > IGNORE_LABEL:
        bad = int(labels[labels > IGNORE_LABEL].flat[0])
        raise DataError(path, f"label value {bad} does not fit in uint8")
    return labels.astype(np.uint8)


def load_sbd_mat(path):
    """An SBD ``cls/<name>.mat``: the ``GTcls.Segmentation`` array."""
    import scipy.io
    _require_file(path)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        seg = mat["GTcls"].Segmentation
    except Exception as e:
        raise DataError(path, "cannot read GTcls.Segmentation from the .mat "
                        f"file ({_reason(e)})") from e
    seg = np.asarray(seg)
    if seg.ndim != 2 or seg.min() < 0 or seg.max() > 255:
        raise DataError(path, f"GTcls.Segmentation is not a 2-D class map "
                        f"(shape {seg.shape})")
    return seg.astype(np.uint8)


def _reason(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# ---------------------------------------------------------------------------
# Readers

def _stem(filename):
    return os.path.splitext(filename)[0]


def _names_in(directory, extensions):
    if not os.path.isdir(directory):
        raise DataError(directory, "directory does not exist")
    return sorted(_stem(f) for f in os.listdir(directory)
                  if f.lower().endswith(extensions))


def _find_image(directory, name):
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        path = os.path.join(directory, name + ext)
        if os.path.isfile(path):
            return path
    return os.path.join(directory, name + ".jpg")


def stanford_bg_samples(root, names=None):
    """Stanford Background (``iccv09Data``); ``names`` default: all images."""
    image_dir = os.path.join(root, "images")
    if names is None:
        names = _names_in(image_dir, (".jpg",))
        if not names:
            raise DataError(image_dir, "no .jpg images found")
    samples = []
    for name in names:
        label = os.path.join(root, "labels", name + ".regions.txt")
        samples.append(Sample(name, os.path.join(image_dir, name + ".jpg"),
                              label, functools.partial(load_regions_txt,
                                                       label)))
    return samples


def voc_split_path(root, split):
    return os.path.join(root, "ImageSets", "Segmentation", split + ".txt")


def voc_sample(root, name):
    label = os.path.join(root, "SegmentationClass", name + ".png")
    return Sample(name, os.path.join(root, "JPEGImages", name + ".jpg"),
                  label, functools.partial(load_index_png, label))


def voc_samples(root, split="train", names=None):
    """PASCAL VOC 2012 (``VOC2012``): a split name or an explicit name list."""
    if names is None:
        names = read_list(voc_split_path(root, split))
    return [voc_sample(root, n) for n in names]


def sbd_dataset_dir(root):
    """Accept ``benchmark_RELEASE`` or ``benchmark_RELEASE/dataset``."""
    nested = os.path.join(root, "dataset")
    return nested if os.path.isdir(os.path.join(nested, "cls")) else root


def sbd_aug_names(sbd_train, sbd_val, voc_train, voc_val):
    """The paper's augmented training set (10,582 images with the real lists).

    (SBD train | SBD val | VOC12 train) - VOC12 val, sorted: every SBD image
    and every VOC12 training image, never a VOC12 validation image.
    """
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train))
                  - set(voc_val))


def sbd_sample(sbd_root, name):
    ds = sbd_dataset_dir(sbd_root)
    label = os.path.join(ds, "cls", name + ".mat")
    return Sample(name, os.path.join(ds, "img", name + ".jpg"), label,
                  functools.partial(load_sbd_mat, label))


def sbd_samples(root, split="train", names=None, voc_root=None):
    """SBD; ``split`` is ``train``, ``val`` or ``aug``.

    ``aug`` needs ``voc_root`` (``VOC2012``): the set of
    :func:`sbd_aug_names`. An image that has a VOC12 annotation (i.e. is in
    VOC12 train) takes it, as it carries the void borders; the others take
    their SBD annotation.
    """
    ds = sbd_dataset_dir(root)
    if names is not None:
        return [sbd_sample(root, n) for n in names]
    if split in ("train", "val"):
        return [sbd_sample(root, n)
                for n in read_list(os.path.join(ds, split + ".txt"))]
    if split != "aug":
        raise DataError("--split", f"unknown SBD split {split!r}: use "
                        "train, val or aug")
    if voc_root is None:
        raise DataError("--split aug", "the SBD 'aug' split needs the "
                        "VOC2012 root (--voc-root) for its train and val "
                        "lists")
    voc_train = read_list(voc_split_path(voc_root, "train"))
    voc_val = read_list(voc_split_path(voc_root, "val"))
    names = sbd_aug_names(read_list(os.path.join(ds, "train.txt")),
                          read_list(os.path.join(ds, "val.txt")),
                          voc_train, voc_val)
    in_voc = set(voc_train)
    return [voc_sample(voc_root, n) if n in in_voc else sbd_sample(root, n)
            for n in names]


def folder_samples(root, names=None):
    """Generic folder: ``images/<name>.<jpg|png>``, ``labels/<name>.png``."""
    image_dir = os.path.join(root, "images")
    if names is None:
        names = _names_in(image_dir, IMAGE_EXTENSIONS)
        if not names:
            raise DataError(image_dir, "no .jpg/.jpeg/.png images found")
    samples = []
    for name in names:
        label = os.path.join(root, "labels", name + ".png")
        samples.append(Sample(name, _find_image(image_dir, name), label,
                              functools.partial(load_index_png, label)))
    return samples


def coco_label(coco, image_id, annotations_path="annotations"):
    """The VOC-class map of one COCO image.

    Each annotation whose category is one of the 20 VOC categories
    (:data:`COCO_TO_VOC`; crowd regions included) paints its mask; every
    other category is background (0). A pixel covered by two or more such
    annotations (of the same or of different classes) is 255: the
    segmentation masks disagree or are ambiguous there.
    """
    info = coco.imgs[image_id]
    h, w = int(info["height"]), int(info["width"])
    label = np.zeros((h, w), np.uint8)
    hits = np.zeros((h, w), np.uint8)
    for ann in coco.imgToAnns.get(image_id, []):
        voc = COCO_TO_VOC.get(ann["category_id"])
        if voc is None:
            continue
        try:
            with warnings.catch_warnings():  # pycocotools vs numpy 2 copy=
                warnings.simplefilter("ignore", DeprecationWarning)
                mask = coco.annToMask(ann).astype(bool)
        except Exception as e:
            raise DataError(annotations_path, f"annotation {ann.get('id')} "
                            f"of image {image_id} cannot be decoded "
                            f"({_reason(e)})") from e
        if mask.shape != (h, w):
            raise DataError(annotations_path, f"annotation {ann.get('id')} "
                            f"mask is {mask.shape[0]}x{mask.shape[1]} but "
                            f"image {image_id} is {h}x{w}")
        label[mask] = voc
        hits[mask] = np.minimum(hits[mask] + 1, 2)
    label[hits >= 2] = IGNORE_LABEL
    return label


def coco_samples(image_dir, annotations):
    """COCO images of an instances JSON (pycocotools), sorted by image id.

    Keeping only images with more than :data:`COCO_MIN_VOC_PIXELS` VOC-class
    pixels is the builder's job (``min_foreground``): it needs the labels.
    """
    from pycocotools.coco import COCO
    if not os.path.isfile(annotations):
        raise DataError(annotations, "annotations JSON does not exist")
    import contextlib
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(annotations)
    except (ValueError, KeyError, TypeError, AttributeError,
            UnicodeDecodeError) as e:
        raise DataError(annotations, "not a COCO instances JSON "
                        f"({_reason(e)}); give instances_<split>.json") from e
    samples = []
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        fname = info["file_name"]
        samples.append(Sample(_stem(fname), os.path.join(image_dir, fname),
                              f"{annotations} (image id {image_id})",
                              functools.partial(coco_label, coco, image_id,
                                                annotations)))
    return samples


# ---------------------------------------------------------------------------
# Reading and validating a pair

def image_format(data):
    """'jpeg', 'png' or None from the leading magic bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def decode_image(path, data=None):
    """Read and fully decode an image; returns (encoded bytes, BGR array).

    Strict: a truncated or corrupt JPEG/PNG (which OpenCV may half-decode
    with only a warning) is an error. Images in other formats are re-encoded
    as PNG so that the LMDB only holds JPEG or PNG.
    """
    import cv2
    from PIL import Image
    if data is None:
        if not os.path.isfile(path):
            raise DataError(path, "image file is missing")
        with open(path, "rb") as f:
            data = f.read()
    if not data:
        raise DataError(path, "image file is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as e:
        from PIL import UnidentifiedImageError
        if isinstance(e, UnidentifiedImageError) and \
                image_format(data) is None:
            raise DataError(path, "not an image file (no known image format "
                            "in its first bytes)") from e
        reason = "damaged header" if isinstance(
            e, UnidentifiedImageError) else _reason(e)
        raise DataError(path, f"cannot decode image: corrupt or truncated "
                        f"({reason})") from e
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if array is None:
        raise DataError(path, "cannot decode image with OpenCV (corrupt or "
                        "unsupported format)")
    if image_format(data) is None:
        ok, buf = cv2.imencode(".png", array)
        data = buf.tobytes()
    return data, array


def validate_label(label, num_classes, label_path, image_shape=None,
                   image_path=None):
    """Check shape and values; returns the label as uint8."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise DataError(label_path, f"label has shape {label.shape}; "
                        "expected a 2-D class-index map")
    if image_shape is not None and label.shape != tuple(image_shape[:2]):
        raise DataError(label_path, f"size mismatch: label is "
                        f"{label.shape[0]}x{label.shape[1]} (HxW) but image "
                        f"{image_path} is {image_shape[0]}x{image_shape[1]}")
    bad = (label != IGNORE_LABEL) & ((label < 0) | (label >= num_classes))
    if bad.any():
        values = sorted(set(int(v) for v in np.unique(label[bad])))
        shown = ", ".join(str(v) for v in values[:5])
        raise DataError(label_path, f"label value {shown} outside "
                        f"[0, {num_classes}) and not {IGNORE_LABEL} "
                        f"({int(bad.sum())} pixels; {num_classes} classes)")
    return label.astype(np.uint8)


def load_pair(sample, num_classes):
    """(encoded image bytes, decoded BGR image, validated uint8 label)."""
    data, image = decode_image(sample.image_path)
    label = sample.load_label()
    label = validate_label(label, num_classes, sample.label_path,
                           image.shape, sample.image_path)
    return data, image, label


# ---------------------------------------------------------------------------
# Stanford Background folds

def make_folds(names, k=5, seed=0):
    """Split ``names`` randomly and evenly into ``k`` folds.

    Returns a list of ``k`` (train, val) pairs of sorted name lists: fold i
    validates on the i-th part of a seeded permutation and trains on the rest.
    Part sizes differ by at most one (715 images: 143 each).
    """
    names = sorted(set(names))
    if len(names) < k:
        raise ValueError(f"{len(names)} names cannot make {k} folds")
    order = np.random.RandomState(seed).permutation(len(names))
    parts = np.array_split(order, k)
    folds = []
    for i in range(k):
        val = sorted(names[j] for j in parts[i])
        val_set = set(val)
        folds.append(([n for n in names if n not in val_set], val))
    return folds


def write_folds(out_dir, folds):
    """Write ``fold{i}_{train,val}.txt``; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i, (train, val) in enumerate(folds):
        for split, names in (("train", train), ("val", val)):
            path = os.path.join(out_dir, f"fold{i}_{split}.txt")
            tmp = path + f".tmp-{os.getpid()}"
            with open(tmp, "w") as f:
                f.write("".join(n + "\n" for n in names))
            os.replace(tmp, path)
            paths.append(path)
    return paths
