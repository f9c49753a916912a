"""A synthetic dataset on which only global context decides the class.

Each image holds 1-3 objects drawn with ONE texture shared by all classes, on
a textured background. The objects' class k (1..K, one per image) is given
only by the colour of a band along the top or the bottom edge, kept at least
``height // 8`` pixels away from every object. A model that sees only a small
neighbourhood of an object pixel cannot tell the class; one that carries
information across the image (a ReNet sweep) can: the paper's thesis in
miniature.

Labels: background (band included) 0, object pixels k, and a 1-pixel ring of
255 (ignore) just outside every object, as in VOC's void borders. Generation
is deterministic: image i depends only on (seed, i, height, width, K).

:func:`write_voc` and :func:`write_stanford_bg` write the samples in the real
datasets' layouts, so the same readers and LMDB builder run on them.
"""
import colorsys
import os

import numpy as np

from hrenet.datasets import IGNORE_LABEL, voc_palette

TEXTURE_COLOURS = ((205, 200, 190), (70, 75, 85))  # object stripes (RGB)
BACKGROUND_RGB = (120, 135, 110)


def band_colours(classes):
    """K well-separated saturated RGB colours (evenly spaced hues)."""
    colours = []
    for k in range(classes):
        r, g, b = colorsys.hsv_to_rgb(k / classes, 0.85, 0.9)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(colours, np.uint8)


def band_height(height):
    return max(3, height // 10)


def _object_mask(rng, height, width, top, bottom):
    """A random rectangle or ellipse within rows [top, bottom)."""
    yy, xx = np.mgrid[0:height, 0:width]
    span = bottom - top
    h = int(rng.integers(max(4, span // 4), max(5, span * 2 // 3) + 1))
    w = int(rng.integers(max(4, width // 8), max(5, width // 3) + 1))
    y0 = int(rng.integers(top, bottom - h + 1))
    x0 = int(rng.integers(1, width - w))
    if rng.random() < 0.5:
        return (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
    cy, cx = y0 + (h - 1) / 2.0, x0 + (w - 1) / 2.0
    return ((yy - cy) / (h / 2.0)) ** 2 + ((xx - cx) / (w / 2.0)) ** 2 <= 1.0


def _dilate(mask):
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    out[1:, 1:] |= mask[:-1, :-1]
    out[1:, :-1] |= mask[:-1, 1:]
    out[:-1, 1:] |= mask[1:, :-1]
    out[:-1, :-1] |= mask[1:, 1:]
    return out


def make_sample(index, height=96, width=128, classes=4, seed=0):
    """One sample: (name, RGB uint8 HxWx3, label uint8 HxW, class, band side).

    ``band side`` is 'top' or 'bottom'.
    """
    if height < 32 or width < 32:
        raise ValueError(f"image {height}x{width} is too small: use at least "
                         "32x32 so that objects fit far from the band")
    if not 1 <= classes <= 254:
        raise ValueError(f"classes={classes}: use 1..254")
    rng = np.random.default_rng([seed, index, height, width, classes])
    k = int(rng.integers(1, classes + 1))
    side = "top" if rng.random() < 0.5 else "bottom"
    bh = band_height(height)
    gap = max(2, height // 8)

    # background: a tinted noise texture
    image = np.empty((height, width, 3), np.float32)
    image[...] = BACKGROUND_RGB
    image += rng.normal(0, 12, size=(height, width, 1))
    image += rng.normal(0, 4, size=(height, width, 3))

    # the context cue
    rows = slice(0, bh) if side == "top" else slice(height - bh, height)
    image[rows] = band_colours(classes)[k - 1]
    image[rows] += rng.normal(0, 4, size=(bh, width, 3))

    # objects, all in the shared texture, far from the band
    top = bh + gap if side == "top" else 2
    bottom = height - 2 if side == "top" else height - bh - gap
    objects = np.zeros((height, width), bool)
    for _ in range(int(rng.integers(1, 4))):
        objects |= _object_mask(rng, height, width, top, bottom)
    yy, xx = np.mgrid[0:height, 0:width]
    phase = int(rng.integers(0, 6))
    stripes = ((yy + xx + phase) // 3) % 2
    texture = np.where(stripes[..., None] == 0,
                       np.array(TEXTURE_COLOURS[0], np.float32),
                       np.array(TEXTURE_COLOURS[1], np.float32))
    texture += rng.normal(0, 6, size=(height, width, 3))
    image[objects] = texture[objects]

    label = np.zeros((height, width), np.uint8)
    label[objects] = k
    label[_dilate(objects) & ~objects] = IGNORE_LABEL
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return f"syn_{index:06d}", image, label, k, side


def generate(num, height=96, width=128, classes=4, seed=0):
    """Yield :func:`make_sample` for indices 0..num-1."""
    for i in range(num):
        yield make_sample(i, height, width, classes, seed)


def class_names(classes):
    return ["background"] + [f"class_{k}" for k in range(1, classes + 1)]


def _save_jpeg(path, rgb):
    from PIL import Image
    Image.fromarray(rgb).save(path, quality=95)


def _write_lines(path, lines):
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def is_val(index):
    """Deterministic 80/20 split: every fifth image is validation."""
    return index % 5 == 4


def write_voc(out, samples, classes):
    """VOC layout: JPEGImages/, palette SegmentationClass/, ImageSets/."""
    from PIL import Image
    for sub in ("JPEGImages", "SegmentationClass",
                os.path.join("ImageSets", "Segmentation")):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    palette = voc_palette().ravel().tolist()
    train, val = [], []
    for i, (name, image, label, _, _) in enumerate(samples):
        _save_jpeg(os.path.join(out, "JPEGImages", name + ".jpg"), image)
        im = Image.frombytes("P", (label.shape[1], label.shape[0]),
                             label.tobytes())
        im.putpalette(palette)
        im.save(os.path.join(out, "SegmentationClass", name + ".png"))
        (val if is_val(i) else train).append(name)
    sets = os.path.join(out, "ImageSets", "Segmentation")
    _write_lines(os.path.join(sets, "train.txt"), train)
    _write_lines(os.path.join(sets, "val.txt"), val)
    _write_lines(os.path.join(sets, "trainval.txt"), sorted(train + val))
    _write_lines(os.path.join(out, "classes.txt"), class_names(classes))
    return train, val


def write_stanford_bg(out, samples, classes):
    """Stanford Background layout: images/*.jpg, labels/*.regions.txt (-1)."""
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    names = []
    for name, image, label, _, _ in samples:
        _save_jpeg(os.path.join(out, "images", name + ".jpg"), image)
        regions = label.astype(np.int64)
        regions[label == IGNORE_LABEL] = -1
        np.savetxt(os.path.join(out, "labels", name + ".regions.txt"),
                   regions, fmt="%d")
        names.append(name)
    _write_lines(os.path.join(out, "classes.txt"), class_names(classes))
    return names
