"""Tiny datasets in the real datasets' published layouts, for tests and demos.

Each ``make_*`` function writes a few small random images and labels under
``root`` exactly as the real dataset lays them out, and returns the expected
class-index labels (uint8, 255 = ignore) by name, so that a test can compare
what a reader or an LMDB gives back against the truth.
"""
import json
import os

import numpy as np

from hrenet.datasets import COCO_VOC_IDS, IGNORE_LABEL, voc_palette


def random_image(rng, height, width):
    """A smooth-ish random RGB image (compresses well, survives JPEG)."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 255, size=3)
    img = (base + 3 * yy[..., None] + 5 * xx[..., None]) % 256
    return img.astype(np.uint8)


def random_label(rng, height, width, num_classes, ignore_fraction=0.1):
    label = rng.integers(0, num_classes, size=(height, width)).astype(np.uint8)
    label[rng.random((height, width)) < ignore_fraction] = IGNORE_LABEL
    return label


def write_jpeg(path, rgb):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95)


def write_index_png(path, label, palette=True):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h, w = label.shape
    im = Image.frombytes("P" if palette else "L", (w, h),
                         np.ascontiguousarray(label, np.uint8).tobytes())
    if palette:
        im.putpalette(voc_palette().ravel().tolist())
    im.save(path)


def write_lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(f"{line}\n" for line in lines))


def make_voc(root, splits, size=(12, 16), num_classes=21, seed=0):
    """VOC2012 layout; ``splits``: {'train': [names], 'val': [names]}."""
    rng = np.random.default_rng(seed)
    labels = {}
    for split, names in splits.items():
        for name in names:
            if name in labels:
                continue
            write_jpeg(os.path.join(root, "JPEGImages", name + ".jpg"),
                       random_image(rng, *size))
            labels[name] = random_label(rng, *size, num_classes)
            write_index_png(os.path.join(root, "SegmentationClass",
                                         name + ".png"), labels[name])
        write_lines(os.path.join(root, "ImageSets", "Segmentation",
                                 split + ".txt"), names)
    if "train" in splits and "val" in splits:
        write_lines(os.path.join(root, "ImageSets", "Segmentation",
                                 "trainval.txt"),
                    sorted(set(splits["train"]) | set(splits["val"])))
    return labels


def make_stanford_bg(root, names, size=(12, 16), seed=0):
    """iccv09Data layout: images/*.jpg, labels/*.regions.txt (-1 unknown)."""
    rng = np.random.default_rng(seed)
    labels = {}
    for name in names:
        write_jpeg(os.path.join(root, "images", name + ".jpg"),
                   random_image(rng, *size))
        regions = rng.integers(-1, 8, size=size)
        os.makedirs(os.path.join(root, "labels"), exist_ok=True)
        np.savetxt(os.path.join(root, "labels", name + ".regions.txt"),
                   regions, fmt="%d")
        label = regions.astype(np.uint8)
        label[regions < 0] = IGNORE_LABEL
        labels[name] = label
    return labels


def make_sbd(root, train, val, size=(12, 16), seed=0):
    """benchmark_RELEASE/dataset layout: img/, cls/*.mat, train/val lists."""
    import scipy.io
    rng = np.random.default_rng(seed)
    ds = os.path.join(root, "dataset")
    labels = {}
    for name in list(train) + list(val):
        write_jpeg(os.path.join(ds, "img", name + ".jpg"),
                   random_image(rng, *size))
        seg = rng.integers(0, 21, size=size).astype(np.uint8)
        os.makedirs(os.path.join(ds, "cls"), exist_ok=True)
        scipy.io.savemat(os.path.join(ds, "cls", name + ".mat"), {
            "GTcls": {"Segmentation": seg,
                      "Boundaries": np.zeros((20, 1), object),
                      "CategoriesPresent": np.unique(seg[seg > 0])}})
        labels[name] = seg
    write_lines(os.path.join(ds, "train.txt"), train)
    write_lines(os.path.join(ds, "val.txt"), val)
    return labels


def make_folder(root, names, size=(12, 16), num_classes=5, seed=0):
    """Generic layout: images/*.png (lossless), labels/*.png (grayscale)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    labels = {}
    for name in names:
        os.makedirs(os.path.join(root, "images"), exist_ok=True)
        Image.fromarray(random_image(rng, *size)).save(
            os.path.join(root, "images", name + ".png"))
        labels[name] = random_label(rng, *size, num_classes)
        write_index_png(os.path.join(root, "labels", name + ".png"),
                        labels[name], palette=False)
    return labels


def rle_counts(mask):
    """Uncompressed COCO RLE counts of a boolean mask (column-major)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    counts, current, run = [], False, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return counts


def make_coco(root, size=(40, 48)):
    """A COCO-style image directory and instances JSON with two images.

    Image 1 (``000000000001.jpg``): a person polygon (rectangle rows 5-29,
    columns 2-27), a dog as uncompressed RLE (rows 15-34, columns 20-43)
    that overlaps the person on 120 pixels, a toothbrush (not a VOC class)
    polygon, and a crowd RLE of cats (64 pixels): 954 VOC-class pixels, so
    it passes the > 900 rule. Image 2: one small car (64 pixels): filtered.
    Returns (image_dir, annotations_path, {name: expected label}); the
    expected labels are built from plain masks, independent of pycocotools.
    """
    h, w = size
    image_dir = os.path.join(root, "images")
    rng = np.random.default_rng(0)
    for name in ("000000000001", "000000000002"):
        write_jpeg(os.path.join(image_dir, name + ".jpg"),
                   random_image(rng, h, w))

    def rect(y0, y1, x0, x1):  # inclusive pixel rows/columns
        m = np.zeros((h, w), bool)
        m[y0:y1 + 1, x0:x1 + 1] = True
        return m

    def polygon(y0, y1, x0, x1):
        # pixel (y, x) covers [x, x+1) x [y, y+1): outline the block
        return [[x0, y0, x1 + 1, y0, x1 + 1, y1 + 1, x0, y1 + 1]]

    person, dog, cats = rect(5, 29, 2, 27), rect(15, 34, 20, 43), \
        rect(30, 37, 2, 9)
    car = rect(30, 37, 30, 37)
    voc = {cid: i + 1 for i, cid in enumerate(COCO_VOC_IDS)}
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
         "segmentation": polygon(5, 29, 2, 27), "area": float(person.sum()),
         "bbox": [2, 5, 26, 25]},
        {"id": 2, "image_id": 1, "category_id": 18, "iscrowd": 0,
         "segmentation": {"size": [h, w], "counts": rle_counts(dog)},
         "area": float(dog.sum()), "bbox": [20, 15, 24, 20]},
        {"id": 3, "image_id": 1, "category_id": 90, "iscrowd": 0,
         "segmentation": polygon(0, 3, 30, 45), "area": 64.0,
         "bbox": [30, 0, 16, 4]},
        {"id": 4, "image_id": 1, "category_id": 17, "iscrowd": 1,
         "segmentation": {"size": [h, w], "counts": rle_counts(cats)},
         "area": float(cats.sum()), "bbox": [2, 30, 8, 8]},
        {"id": 5, "image_id": 2, "category_id": 3, "iscrowd": 0,
         "segmentation": polygon(30, 37, 30, 37), "area": 64.0,
         "bbox": [30, 30, 8, 8]},
    ]
    categories = [{"id": i, "name": f"cat{i}", "supercategory": "x"}
                  for i in sorted(set(COCO_VOC_IDS) | {90})]
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": h,
               "width": w} for i in (1, 2)]
    os.makedirs(root, exist_ok=True)
    ann_path = os.path.join(root, "instances_fixture.json")
    with open(ann_path, "w") as f:
        json.dump({"images": images, "annotations": anns,
                   "categories": categories}, f)
    one = np.zeros((h, w), np.uint8)
    one[person] = voc[1]
    one[dog] = voc[18]
    one[cats] = voc[17]
    one[person & dog] = IGNORE_LABEL
    two = np.zeros((h, w), np.uint8)
    two[car] = voc[3]
    return image_dir, ann_path, {"000000000001": one, "000000000002": two}
