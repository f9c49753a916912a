"""Label images: palettes, palette PNGs, overlays with a legend, feature grids.

Arrays: labels are uint8 H x W class indices; images handed to these
functions are RGB uint8 H x W x 3 unless a name says BGR.
"""
import numpy as np

from hrenet.datasets import STANFORD_BG_CLASSES, VOC_CLASSES, voc_palette

#: Stanford Background's own colours (sky, tree, road, grass, water,
#: building, mountain, foreground), RGB.
STANFORD_BG_COLOURS = ((128, 180, 255), (30, 120, 30), (128, 64, 128),
                       (130, 200, 60), (40, 80, 200), (200, 70, 50),
                       (130, 110, 80), (250, 200, 30))

VOC_FORMATS = ("voc", "sbd", "coco")


def stanford_bg_palette():
    palette = voc_palette()
    palette[:len(STANFORD_BG_COLOURS)] = STANFORD_BG_COLOURS
    return palette


def palette_for(fmt=None, num_classes=None):
    """256 x 3 RGB palette: VOC's for VOC-style data (and by default), the
    dataset's own colours for Stanford Background."""
    if fmt == "stanford-bg":
        return stanford_bg_palette()
    return voc_palette()


def default_class_names(num_classes, fmt=None):
    """Class names for ``num_classes`` outputs when no list is given."""
    if fmt in VOC_FORMATS or (fmt is None and num_classes == len(VOC_CLASSES)):
        if num_classes == len(VOC_CLASSES):
            return list(VOC_CLASSES)
    if fmt == "stanford-bg" or (fmt is None and
                                num_classes == len(STANFORD_BG_CLASSES)):
        if num_classes == len(STANFORD_BG_CLASSES):
            return list(STANFORD_BG_CLASSES)
    return [str(i) for i in range(num_classes)]


def palette_png_bytes(label, palette, compress_level=1):
    """``label`` encoded as a palette-indexed ('P') PNG (zlib level 1: label
    maps compress well even so, and it is several times faster than 6)."""
    import io
    from PIL import Image
    label = np.ascontiguousarray(label, np.uint8)
    im = Image.frombytes("P", (label.shape[1], label.shape[0]),
                         label.tobytes())
    im.putpalette(np.asarray(palette, np.uint8).tobytes())
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def save_palette_png(path, label, palette):
    """Write ``label`` as a palette-indexed ('P') PNG, atomically."""
    from hrenet.files import write_bytes
    write_bytes(path, palette_png_bytes(label, palette))


def colorize(label, palette):
    """RGB H x W x 3 of ``label`` through ``palette``."""
    return np.asarray(palette, np.uint8)[label]


def _font(size):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def overlay(image_rgb, label, palette, class_names, alpha=0.5,
            ignore_label=255):
    """The image blended with the colour labels, with a legend of the
    classes present to its right. Returns RGB uint8 (H' x W' x 3)."""
    from PIL import Image, ImageDraw
    colours = colorize(label, palette).astype(np.float32)
    blend = (1 - alpha) * image_rgb.astype(np.float32) + alpha * colours
    if ignore_label is not None:
        keep = label == ignore_label
        blend[keep] = image_rgb[keep]
    blend = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    h, w = label.shape
    present = [int(c) for c in np.unique(label) if c != ignore_label]
    size = max(10, min(18, h // 12 if h >= 120 else 10))
    font = _font(size)
    row = size + 6
    names = [class_names[c] if c < len(class_names) else str(c)
             for c in present]
    text_w = max([int(font.getlength(n)) for n in names] + [0])
    legend_w = row + 8 + text_w + 10
    height = max(h, row * len(present) + 8)
    canvas = Image.new("RGB", (w + legend_w, height), (255, 255, 255))
    canvas.paste(Image.fromarray(blend), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (c, name) in enumerate(zip(present, names)):
        y = 4 + i * row
        x = w + 6
        draw.rectangle([x, y, x + size, y + size],
                       fill=tuple(int(v) for v in palette[c]),
                       outline=(0, 0, 0))
        draw.text((x + size + 6, y), name, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def feature_grid(features, k=16, cols=None, pad=1, zoom=1):
    """The first ``k`` channels of a C x H x W array as one grayscale grid.

    Each channel is min-max normalised to 0-255 on its own (a constant
    channel becomes mid-grey 128); channels are laid out row-major in
    ``cols`` columns (default ceil(sqrt(k))), separated by ``pad`` white
    pixels, each enlarged ``zoom`` times (nearest neighbour). Returns uint8.
    """
    features = np.asarray(features, np.float32)
    if features.ndim == 2:
        features = features[None]
    if features.ndim != 3:
        raise ValueError(f"features must be C x H x W, got {features.shape}")
    k = min(int(k), features.shape[0])
    if k < 1:
        raise ValueError("k must be >= 1")
    cols = int(cols or int(np.ceil(np.sqrt(k))))
    rows = int(np.ceil(k / cols))
    h, w = features.shape[1] * zoom, features.shape[2] * zoom
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad),
                   255, np.uint8)
    for i in range(k):
        f = features[i]
        lo, hi = float(f.min()), float(f.max())
        if hi > lo:
            tile = np.rint((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)
        else:
            tile = np.full(f.shape, 128, np.uint8)
        if zoom > 1:
            tile = np.repeat(np.repeat(tile, zoom, 0), zoom, 1)
        r, c = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h,
             c * (w + pad):c * (w + pad) + w] = tile
    return grid
