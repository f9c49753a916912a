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

    def rle(mask):
        return {"size": [h, w], "counts": rle_counts(mask)}

    # (image, category, crowd, segmentation, area, bbox x y w h)
    anns = [(1, 1, 0, polygon(5, 29, 2, 27), person.sum(), [2, 5, 26, 25]),
            (1, 18, 0, rle(dog), dog.sum(), [20, 15, 24, 20]),
            (1, 90, 0, polygon(0, 3, 30, 45), 64, [30, 0, 16, 4]),
            (1, 17, 1, rle(cats), cats.sum(), [2, 30, 8, 8]),
            (2, 3, 0, polygon(30, 37, 30, 37), 64, [30, 30, 8, 8])]
    anns = [{"id": i + 1, "image_id": image, "category_id": cat,
             "iscrowd": crowd, "segmentation": seg, "area": float(area),
             "bbox": bbox}
            for i, (image, cat, crowd, seg, area, bbox) in enumerate(anns)]
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


# --------------------------------------------------------------------------
# A caffemodel in the layout of the H-ReNet authors' fork.

def hybridnet_layers(num_classes=21, renet_width=160):
    """Their trained H-ReNet (d) + DenseCRF as their fork saves it: [(name,
    type, bottoms, tops, [blob shapes], phase or None)], in their TRAIN
    net's order (a data layer and the loss included, BatchNorm as its
    TRAIN-phase copy)."""
    layers = [("data", "ImageSegData", [], ["data", "label"], [], None)]
    x, c = "data", 3
    plan = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
    for block, convs, nout in plan:
        for i in range(1, convs + 1):
            conv = "conv%d_%d" % (block, i)
            layers.append((conv, "Convolution", [x], [conv],
                           [(nout, c, 3, 3), (nout,)], None))
            x, c = conv, nout
            if (block, i) != (5, 3):
                layers.append(("Relu%d_%d" % (block, i), "ReLU", [x], [x], [],
                               None))
        pool = "pool%d" % block
        layers.append((pool, "Pooling", [x], [pool], [], None))
        x = pool
    layers += [
        ("fc6_new", "Convolution", ["pool5"], ["fc6_new"],
         [(1024, 512, 3, 3), (1024,)], None),
        ("Relu6", "ReLU", ["fc6_new"], ["fc6_new"], [], None),
        ("drop6", "Dropout", ["fc6_new"], ["fc6_new"], [], None),
        ("fc7_new", "Convolution", ["fc6_new"], ["fc7_new"],
         [(1024, 1024, 1, 1), (1024,)], None)]
    for src, ch in (("pool4", 512), ("pool5", 512), ("fc7_new", 1024)):
        top = src + "_batch_norm"
        layers.append((top, "BatchNorm", [src], [top], [(ch,), (ch,), (1,)],
                       "TRAIN"))
        layers.append(("Relu7", "ReLU", [top], [top], [], None))
    layers.append(("pool4_pool5_fc7_batch_norm", "Concat",
                   ["pool4_batch_norm", "pool5_batch_norm",
                    "fc7_new_batch_norm"], ["pool4_pool5_fc7_batch_norm"], [],
                   None))
    d = renet_width
    x, k = "pool4_pool5_fc7_batch_norm", 2048
    for suffix in ("vertical", "horizontal"):
        name = "renet_lstm_6_" + suffix
        per_dir = [(d, k + d)] * 4 + [(d, d)] * 3 + [(d,)] * 4
        layers.append((name, "ReNetLSTM", [x], [name], per_dir * 2, None))
        x, k = name, 2 * d
    layers += [
        ("conv6", "Convolution", [x], ["conv6"],
         [(num_classes, 2 * d, 1, 1), (num_classes,)], None),
        ("bilinear_interpolation", "BilinearInterpolation",
         ["conv6", "data"], ["conv6_full_res"], [], None),
        ("splitting", "Split", ["conv6_full_res"], ["unary", "Q0"], [], None),
        ("inference1", "DenseCRFMeanfield", ["unary", "Q0", "data"],
         ["inference1"], [(1, 1, 1, 1), (1, 1, 1, 1),
                          (1, 1, num_classes, num_classes)], None),
        ("loss", "SoftmaxWithLoss", ["inference1", "label"], ["loss"], [],
         None)]
    return layers


def _hybridnet_values(name, ltype, shapes, rng, peephole_scale):
    """Random parameter values of a plausible trained model."""
    if ltype == "Convolution":
        fan_in = int(np.prod(shapes[0][1:]))
        # He-scaled, conv1_1 also divided by the input's scale (mean-
        # subtracted 0-255 pixels), so that activations stay near 1
        # and conv6 (the classifier) strong enough that the CRF keeps
        # several labels
        gain = {"conv1_1": 1.0 / 60, "conv6": 4.0}.get(name, 1.0)
        return [rng.normal(0, gain * np.sqrt(2.0 / fan_in), shapes[0]),
                rng.normal(0, 0.05, shapes[1])]
    if ltype == "BatchNorm":
        factor = 999.98  # their moving-average normaliser after training
        mean = rng.uniform(0, 1, shapes[0]) * factor
        var = rng.uniform(0.5, 2, shapes[1]) * factor
        return [mean, var, np.full(shapes[2], factor)]
    if ltype == "ReNetLSTM":
        out = []
        for i, shape in enumerate(shapes):
            slot = i % 11
            if slot < 4:
                out.append(rng.uniform(-0.1, 0.1, shape))
            elif slot < 7:
                out.append(rng.uniform(-1, 1, shape) * peephole_scale)
            else:
                out.append(rng.uniform(-0.1, 0.1, shape) +
                           (2.0 if slot == 10 else 0.0))
        return out
    if ltype == "DenseCRFMeanfield":
        num = shapes[2][-1]
        compat = -np.eye(num) + rng.normal(0, 0.1, (num, num))
        return [np.full(shapes[0], 2.7), np.full(shapes[1], 4.2),
                compat.reshape(shapes[2])]
    raise ValueError("no values for %s (%s)" % (name, ltype))


def write_hybridnet_caffemodel(path, num_classes=21, seed=0,
                               peephole=False, peephole_scale=0.0,
                               drop=(), blob_count=None, blob_shape=None,
                               extra_layer=None):
    """Write a caffemodel in the authors' fork's exact layout with random
    values; returns {layer: [arrays]} of the parameters written.

    Their private LayerParameter fields are written with their numbers
    (renet_lstm_param 143: direction, num_output, patch size, peephole;
    dense_crf_meanfield_param 145), so that the file decodes wrongly with
    upstream's caffe_pb2, as theirs do. The damage options make bad
    models for tests: ``drop`` layer names to leave out, ``blob_count``
    (name, n) keeps only n blobs, ``blob_shape`` (name, index, shape)
    replaces one blob's shape, ``extra_layer`` (name, type, shape) adds a
    layer with one blob; ``peephole`` sets their peephole flag and
    ``peephole_scale`` fills the peephole matrices.
    """
    from caffe.proto import caffe_pb2
    from hrenet.hybridnet import encode_field, encode_varint
    rng = np.random.default_rng(seed)
    layers = hybridnet_layers(num_classes)
    if extra_layer:
        layers.append((extra_layer[0], extra_layer[1], [], [extra_layer[0]],
                       [extra_layer[2]], None))
    values = {}
    data = bytearray()
    for name, ltype, bottoms, tops, shapes, phase in layers:
        if name in drop:
            continue
        layer = caffe_pb2.LayerParameter()
        layer.name, layer.type = name, ltype
        layer.bottom.extend(bottoms)
        layer.top.extend(tops)
        layer.phase = caffe_pb2.TRAIN
        if phase:
            layer.include.add().phase = caffe_pb2.TRAIN
        raw = layer.SerializeToString()
        if shapes:
            if extra_layer and name == extra_layer[0]:
                arrays = [rng.normal(0, 1, shapes[0])]
            else:
                arrays = _hybridnet_values(name, ltype, shapes, rng,
                                           peephole_scale)
            if blob_count and blob_count[0] == name:
                arrays = arrays[:blob_count[1]]
            if blob_shape and blob_shape[0] == name:
                arrays[blob_shape[1]] = rng.normal(0, 1, blob_shape[2])
            values[name] = [np.asarray(a, np.float32) for a in arrays]
            for a in values[name]:
                # BlobProto: shape (7; BlobShape dim 1, packed), data (5,
                # packed floats), written directly: much faster than
                # filling the repeated field from Python.
                dims = b"".join(encode_varint(int(n)) for n in a.shape)
                blob = encode_field(7, 2, encode_field(1, 2, dims))
                blob += encode_field(5, 2, a.astype("<f4").tobytes())
                raw += encode_field(7, 2, blob)
        if ltype == "ReNetLSTM":
            p = encode_field(1, 0, 1 if name.endswith("vertical") else 0)
            p += encode_field(2, 0, shapes[-1][0])
            p += encode_field(3, 0, 1) + encode_field(4, 0, 1)
            p += encode_field(10, 0, 1 if peephole else 0)
            raw += encode_field(143, 2, p)
        elif ltype == "DenseCRFMeanfield":
            # num_iterations 5, theta_alpha 80, theta_beta 3, theta_gamma 3
            p = encode_field(6, 0, 5)
            for field, value in ((3, 80.0), (4, 3.0), (5, 3.0)):
                p += encode_field(field, 5, value)
            raw += encode_field(145, 2, p)
        data += encode_field(100, 2, raw)
    with open(path, "wb") as f:
        f.write(bytes(data))
    return values


# --------------------------------------------------------------------------
# Random weights at a trained net's scale.

def randomize_weights(net, seed=0):
    """Fill a caffe.Net's parameters with random values whose activations
    stay at a trained net's scale, touching every part of every blob.

    The generated nets' own fillers (N(0, 0.1) for conv6-conv8, BatchNorm
    statistics of 0) give a random VGG trunk logits of 10^3-10^4: the
    ReNet gates then saturate and float32 rounding alone moves outputs by
    about 1e-4 of their range. Here instead: Convolution / Deconvolution
    weights N(0, 2 / fan_in) (MSRA), biases N(0, 0.1); BatchNorm mean
    N(0, 1), variance U(0.5, 2) and scale factor U(0.5, 2) (so the export
    must divide by it); Scale U(0.5, 1.5) and bias N(0, 0.1); ReNet W, U
    and b U(-0.2, 0.2); DenseCRF kernel weights near their defaults and
    the compatibility -I plus N(0, 0.1) noise. Other layers' blobs N(0,
    0.1).
    """
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        blobs = [b.data for b in layer.blobs]
        if not blobs:
            continue
        kind = layer.type
        for i, a in enumerate(blobs):
            if kind in ("Convolution", "Deconvolution") and i == 0:
                fan_in = a[0].size if kind == "Convolution" else \
                    a.shape[0] * a[0, 0].size
                a[...] = rng.normal(0, np.sqrt(2.0 / fan_in), a.shape)
            elif kind == "BatchNorm":
                a[...] = (rng.normal(0, 1, a.shape) if i == 0 else
                          rng.uniform(0.5, 2, a.shape))
            elif kind == "Scale" and i == 0:
                a[...] = rng.uniform(0.5, 1.5, a.shape)
            elif kind == "ReNet":
                a[...] = rng.uniform(-0.2, 0.2, a.shape)
            elif kind == "DenseCRF":
                a[...] = (a * rng.uniform(0.8, 1.2) if a.size == 1 else
                          -np.eye(a.shape[-1]) + rng.normal(0, 0.1, a.shape))
            else:
                a[...] = rng.normal(0, 0.1, a.shape)
    return net
