"""A synthetic dataset on which only global context decides the class.

Each image holds 1-3 objects drawn with ONE texture shared by all classes, on
a textured background. The objects' class k (1..K, one per image) is given
only by the colour of a band along the top or the bottom edge, kept at least
``height // 8`` pixels away from every object. A model that sees only a small
neighbourhood of an object pixel cannot tell the class; one that carries
information across the image (a ReNet sweep) can: the paper's thesis in
miniature.

A :class:`Style` varies the set: the cue on any side, in a corner, as a
ring or a distant blob; the number of objects; the texture's stripes and the
noise. :data:`VARIANTS` names the family that the generalisation study runs
the main job over, so that the project knows its demonstration is not tuned
to one set.

Labels: background (cue included) 0, object pixels k, and a 1-pixel ring of
255 (ignore) just outside every object, as in VOC's void borders. Generation
is deterministic: image i depends only on (seed, i, height, width, K, style);
the default style's images are those the set has always had.

:func:`write_voc` and :func:`write_stanford_bg` write the samples in the real
datasets' layouts, so the same readers and LMDB builder run on them.
"""
import colorsys
import dataclasses
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


def _object_mask(rng, height, width, top, bottom, left=1, right=None):
    """A random rectangle or ellipse within rows [top, bottom) and columns
    [left, right - 1) (default: the image's width less one column each
    side)."""
    right = width if right is None else right
    yy, xx = np.mgrid[0:height, 0:width]
    span, span_w = bottom - top, right - left + 1
    h = int(rng.integers(max(4, span // 4), max(5, span * 2 // 3) + 1))
    w = int(rng.integers(max(4, span_w // 8), max(5, span_w // 3) + 1))
    y0 = int(rng.integers(top, bottom - h + 1))
    x0 = int(rng.integers(left, right - w))
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


CUES = ("band", "side", "corner", "ring", "blob")


@dataclasses.dataclass(frozen=True)
class Style:
    """How a synthetic set looks, beyond its size and class count.

    ``cue``: where the class colour is shown, always far from the objects:
    ``band`` a band along the top or the bottom edge (the default set),
    ``side`` a band along any of the four edges, ``corner`` a square in one
    corner, ``ring`` a frame around the whole image, ``blob`` a disc at a
    random place near one edge. ``objects``: the fewest and most objects
    per image. ``stripe``: the width in pixels of the shared texture's
    diagonal stripes. ``noise``: the standard deviation of the background's
    grey noise (the texture's own noise is half of it).
    """
    cue: str = "band"
    objects: tuple = (1, 3)
    stripe: int = 3
    noise: float = 12.0

    def __post_init__(self):
        if self.cue not in CUES:
            raise ValueError(f"cue {self.cue!r}: use one of {', '.join(CUES)}")
        lo, hi = self.objects
        if not 1 <= lo <= hi <= 12:
            raise ValueError(f"objects {self.objects}: use 1 <= min <= max "
                             "<= 12")
        if not 1 <= self.stripe <= 16:
            raise ValueError(f"stripe {self.stripe}: use 1..16 pixels")
        if not 0 <= self.noise <= 64:
            raise ValueError(f"noise {self.noise}: use 0..64")


DEFAULT_STYLE = Style()


def _cue(rng, style, height, width):
    """(cue mask, where, object box (top, bottom, left, right)): the cue's
    pixels and the box the objects are drawn in, at least the gap (an
    eighth of the image's side across the gap) away from the cue."""
    cue = np.zeros((height, width), bool)
    bh, bw = band_height(height), band_height(width)
    gy, gx = max(2, height // 8), max(2, width // 8)
    if style.cue == "band" or (style.cue == "side" and rng.random() < 0.5):
        side = "top" if rng.random() < 0.5 else "bottom"
    elif style.cue == "side":
        side = "left" if rng.random() < 0.5 else "right"
    else:
        side = None
    if side == "top":
        cue[:bh] = True
        return cue, side, (bh + gy, height - 2, 1, width)
    if side == "bottom":
        cue[height - bh:] = True
        return cue, side, (2, height - bh - gy, 1, width)
    if side == "left":
        cue[:, :bw] = True
        return cue, side, (2, height - 2, bw + gx, width)
    if side == "right":
        cue[:, width - bw:] = True
        return cue, side, (2, height - 2, 1, width - bw - gx)
    if style.cue == "ring":
        t = max(2, min(height, width) // 16)
        cue[:t] = cue[-t:] = True
        cue[:, :t] = cue[:, -t:] = True
        return cue, "ring", (t + gy, height - t - gy, t + gx,
                             width - t - gx)
    # corner or blob: near one of the four edges; the objects keep to the
    # far side of the image across the gap
    edge = ("top", "bottom", "left", "right")[int(rng.integers(0, 4))]
    yy, xx = np.mgrid[0:height, 0:width]
    if style.cue == "corner":
        c = max(6, min(height, width) // 5)
        y0 = 0 if rng.random() < 0.5 else height - c
        x0 = 0 if rng.random() < 0.5 else width - c
        cue[y0:y0 + c, x0:x0 + c] = True
        # the edge that the objects stay clear of is one the corner touches
        edge = (("top" if y0 == 0 else "bottom") if edge in ("top", "bottom")
                else ("left" if x0 == 0 else "right"))
        where = "corner-%s%s" % ("t" if y0 == 0 else "b",
                                 "l" if x0 == 0 else "r")
        depth = c
    else:
        r = max(4, min(height, width) // 10)
        along = width if edge in ("top", "bottom") else height
        a = int(rng.integers(r, along - r))
        b = int(rng.integers(r, 2 * r))
        cy, cx = {"top": (b, a), "bottom": (height - 1 - b, a),
                  "left": (a, b), "right": (a, width - 1 - b)}[edge]
        cue = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        where = "blob-" + edge
        depth = 3 * r
    box = {"top": (depth + gy, height - 2, 1, width),
           "bottom": (2, height - depth - gy, 1, width),
           "left": (2, height - 2, depth + gx, width),
           "right": (2, height - 2, 1, width - depth - gx)}[edge]
    return cue, where, box


@dataclasses.dataclass(frozen=True)
class Variant:
    """A member of the family: image size, object classes and style."""
    height: int
    width: int
    classes: int
    style: Style = DEFAULT_STYLE


#: The family of synthetic context sets the generalisation study runs over
#: (``tools/make_synthetic.py --variant NAME``; bench/context_study.py).
#: ``band-64x80-k4`` is the main job's own set; the others vary the cue's
#: place and shape, the image size (64 x 80 to 128 x 160), the number of
#: classes (3 to 8), the texture, the noise and the number of objects.
VARIANTS = {
    "band-64x80-k4": Variant(64, 80, 4),
    "band-96x128-k4": Variant(96, 128, 4),
    "side-96x128-k4": Variant(96, 128, 4, Style(cue="side")),
    "corner-80x96-k6": Variant(80, 96, 6, Style(cue="corner")),
    "ring-96x128-k3": Variant(96, 128, 3, Style(cue="ring")),
    "blob-128x160-k5": Variant(128, 160, 5, Style(cue="blob")),
    "side-64x80-k8": Variant(64, 80, 8, Style(cue="side")),
    "band-128x160-k8-noisy": Variant(128, 160, 8,
                                     Style(objects=(2, 5), noise=24.0)),
    "corner-64x80-k3-wide": Variant(64, 80, 3,
                                    Style(cue="corner", objects=(1, 2),
                                          stripe=5)),
    "blob-96x128-k4-many": Variant(96, 128, 4,
                                   Style(cue="blob", objects=(3, 6),
                                         noise=6.0)),
}


def make_sample(index, height=96, width=128, classes=4, seed=0,
                style=DEFAULT_STYLE):
    """One sample: (name, RGB uint8 HxWx3, label uint8 HxW, class, where).

    ``where`` says where the cue is: 'top' or 'bottom' for the default
    band; also 'left'/'right' (side), 'corner-tl' ... (corner), 'ring',
    'blob-top' ... (blob). :func:`make_sample_with_cue` also returns the
    cue's pixels.
    """
    return make_sample_with_cue(index, height, width, classes, seed,
                                style)[:5]


def make_sample_with_cue(index, height=96, width=128, classes=4, seed=0,
                         style=DEFAULT_STYLE):
    """:func:`make_sample` and, last, the cue's mask (bool HxW)."""
    if height < 32 or width < 32:
        raise ValueError(f"image {height}x{width} is too small: use at least "
                         "32x32 so that objects fit far from the cue")
    if not 1 <= classes <= 254:
        raise ValueError(f"classes={classes}: use 1..254")
    key = [seed, index, height, width, classes]
    if style != DEFAULT_STYLE:  # the default set stays what it always was
        key += [CUES.index(style.cue), style.objects[0], style.objects[1],
                style.stripe, int(round(style.noise * 100))]
    rng = np.random.default_rng(key)
    k = int(rng.integers(1, classes + 1))
    cue, where, (top, bottom, left, right) = _cue(rng, style, height, width)

    # background: a tinted noise texture
    image = np.empty((height, width, 3), np.float32)
    image[...] = BACKGROUND_RGB
    image += rng.normal(0, style.noise, size=(height, width, 1))
    image += rng.normal(0, 4, size=(height, width, 3))

    # the context cue
    image[cue] = band_colours(classes)[k - 1]
    image[cue] += rng.normal(0, 4, size=(int(cue.sum()), 3))

    # objects, all in the shared texture, far from the cue
    objects = np.zeros((height, width), bool)
    lo, hi = style.objects
    for _ in range(int(rng.integers(lo, hi + 1))):
        objects |= _object_mask(rng, height, width, top, bottom, left, right)
    yy, xx = np.mgrid[0:height, 0:width]
    phase = int(rng.integers(0, 2 * style.stripe))
    stripes = ((yy + xx + phase) // style.stripe) % 2
    texture = np.where(stripes[..., None] == 0,
                       np.array(TEXTURE_COLOURS[0], np.float32),
                       np.array(TEXTURE_COLOURS[1], np.float32))
    texture += rng.normal(0, style.noise / 2, size=(height, width, 3))
    image[objects] = texture[objects]

    label = np.zeros((height, width), np.uint8)
    label[objects] = k
    label[_dilate(objects) & ~objects] = IGNORE_LABEL
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return f"syn_{index:06d}", image, label, k, where, cue


def generate(num, height=96, width=128, classes=4, seed=0,
             style=DEFAULT_STYLE):
    """Yield :func:`make_sample` for indices 0..num-1 (of a
    :data:`VARIANTS` entry ``v``: ``generate(num, v.height, v.width,
    v.classes, seed, v.style)``)."""
    for i in range(num):
        yield make_sample(i, height, width, classes, seed, style)


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
