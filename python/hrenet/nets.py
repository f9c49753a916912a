"""The paper's nets and solvers, generated with pycaffe's NetSpec.

Three families, one builder each; every variant of the paper is a set of
arguments to its family's builder, never a hand-edited copy:

``nrenet``  N-ReNet (Section 4.1, Figure 1/2): three ReNet layer groups, each
            a VERTICAL then a HORIZONTAL ``ReNet`` layer; group 1 on 2x2
            patches (resolution /4), groups 2-3 on single pixels; a 1x1
            convolution to the classes; bilinear upsampling (x4).
``fcn``     the baseline FCN of Table 2 (VGG-16 conv1-conv5, pool4/pool5 with
            stride 1, conv5 dilated 2, conv6 dilated 12, conv7, conv8;
            bilinear upsampling (x8)).
``hrenet``  H-ReNet (Table 3): the baseline with one ReNet layer group
            ``renet1`` between its features (conv7, or pool4/pool5/conv7
            normalised and concatenated, Figure 3) and conv8.

Conventions shared by every net (the tools rely on them):

* train/val nets read ``SegData`` (tops ``data``, ``label``): random crops
  with flips in TRAIN, whole images (batch 1) in TEST; pixel-wise
  ``SoftmaxWithLoss`` ignoring 255; ``Accuracy`` in TEST.
* deploy nets start with an ``Input`` layer ``data`` whose
  ``transform_param`` records the data layer's BGR mean and scale (``Input``
  itself ignores it), and end with ``score``: N x K x H x W logits at exactly
  the input size (``BilinearResize``: align-corners bilinear interpolation
  of the stride-s score map to the data's size). CRF variants add ``crf``
  (``DenseCRF`` on ``score`` and ``data``) whose top ``crf_prob`` holds the
  marginals.
* layer names follow VGG-16's (``conv1_1`` ... ``conv5_3``), so
  ``caffe train -weights VGG_ILSVRC_16_layers.caffemodel`` copies conv1-conv5
  by name and nothing else (VGG's fc6/fc7/fc8 match no layer here).
* paths inside the files are relative to the repository root.

:data:`VARIANTS` lists every variant with its paper figure;
:func:`write_all` writes ``<out>/<family>/<variant>/{train_val,deploy,
solver}.prototxt`` plus ``variant.json``. ``tools/make_nets.py`` is the CLI.
"""
import collections
import json
import os

import numpy as np

VGG_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # VGG-16's training mean
IGNORE_LABEL = 255
HEADLINE_SOLVER = "hrenet_solver.prototxt"  # in the output root
HEADLINE_VARIANT = ("hrenet", "d")

# Where the train/val nets read their LMDBs (relative to the repository root)
# and the command that builds each one; DATA_SOURCES[key] = (folder, command).
_VOC_ROOT = "/path/to/VOCdevkit/VOC2012"
_SBD_ROOT = "/path/to/benchmark_RELEASE"
_SBG_ROOT = "/path/to/iccv09Data"
DATA_SOURCES = {
    "voc_train_aug": (
        "data/voc/lmdb/train_aug",
        "python tools/build_lmdb.py --format sbd --root %s --split aug "
        "--voc-root %s --shuffle --out data/voc/lmdb/train_aug"
        % (_SBD_ROOT, _VOC_ROOT)),
    "voc_val": (
        "data/voc/lmdb/val",
        "python tools/build_lmdb.py --format voc --root %s --split val "
        "--out data/voc/lmdb/val" % _VOC_ROOT),
    "voc_trainval_aug": (
        "data/voc/lmdb/trainval_aug",
        "python tools/merge_lmdb.py --shuffle --out data/voc/lmdb/trainval_aug"
        " data/voc/lmdb/train_aug data/voc/lmdb/val"),
    "coco_voc_trainval": (
        "data/coco_voc/lmdb/trainval",
        "python tools/merge_lmdb.py --shuffle --out "
        "data/coco_voc/lmdb/trainval data/coco/lmdb/train2014 "
        "data/coco/lmdb/val2014 "
        "data/voc/lmdb/trainval_aug (first build the COCO LMDBs with "
        "tools/build_lmdb.py --format coco, and trainval_aug: README, COCO)"),
}


def sbg_source(fold, split):
    """Stanford Background fold LMDB (folder, command); split train|val."""
    folder = "data/stanford_bg/lmdb/fold%d_%s" % (fold, split)
    return folder, (
        "python tools/make_folds.py --root %s && python tools/build_lmdb.py "
        "--format stanford-bg --root %s --list "
        "data/stanford_bg/folds/fold%d_%s.txt --shuffle --out %s"
        % (_SBG_ROOT, _SBG_ROOT, fold, split, folder))


# --------------------------------------------------------------------------
# Small NetSpec helpers.

def _caffe():
    import caffe
    return caffe


def _pb2():
    from caffe.proto import caffe_pb2
    return caffe_pb2


FROZEN = [dict(lr_mult=0, decay_mult=0)] * 2  # conv1, conv2: no updates
LEARNED = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]


def gaussian(std):
    return dict(type="gaussian", std=std)


def _conv(n, name, bottom, nout, ks=3, pad=None, dilation=1, learn=True,
          weight_filler=None, bias_filler=None, relu=True):
    """Convolution ``name`` (+ in-place ReLU ``relu<suffix>``)."""
    L = _caffe().layers
    pad = (ks // 2) * dilation if pad is None else pad
    conv = dict(num_output=nout, kernel_size=ks, pad=pad,
                weight_filler=weight_filler or dict(type="msra"),
                bias_filler=bias_filler or dict(type="constant", value=0))
    if dilation != 1:
        conv["dilation"] = dilation
    setattr(n, name, L.Convolution(bottom, param=LEARNED if learn else FROZEN,
                                   convolution_param=conv))
    top = getattr(n, name)
    if relu:
        setattr(n, "relu" + name[len("conv"):],
                L.ReLU(top, in_place=True))
    return top


def _max_pool(n, name, bottom, ks, stride, pad=0):
    P = _caffe().params
    setattr(n, name, _caffe().layers.Pooling(
        bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride, pad=pad))
    return getattr(n, name)


def _renet(n, name, bottom, width, direction, patch=1, unit="LSTM",
           forget_bias=0.0, weight_filler=None, init=0.2,
           forget_bias_long=None):
    """One ReNet layer: ``num_output`` = ``width`` per direction (top 2w).

    Parameters U[-init, init] (the paper's rule, weights and biases) unless
    ``weight_filler`` is given for W and U (biases then start at 0).
    ``forget_bias_long``: the forget-gate bias of the second half of the
    units (the first half keeps ``forget_bias``).
    """
    pb2 = _pb2()
    uniform = dict(type="uniform", min=-init, max=init)
    p = dict(num_output=width,
             direction=getattr(pb2.ReNetParameter, direction),
             patch_h=patch, patch_w=patch,
             unit=getattr(pb2.ReNetParameter, unit),
             weight_filler=weight_filler or uniform,
             bias_filler=dict(type="constant", value=0) if weight_filler
             else uniform)
    if forget_bias:
        p["forget_bias"] = forget_bias
    if forget_bias_long is not None:
        p["forget_bias_long"] = forget_bias_long
    setattr(n, name, _caffe().layers.ReNet(bottom, renet_param=p))
    return getattr(n, name)


def _renet_group(n, index, bottom, width, patch=1, unit="LSTM",
                 forget_bias=0.0, weight_filler=None, forget_bias_long=None):
    """Layer group ``renet<index>``: VERTICAL ``_v`` then HORIZONTAL ``_h``."""
    v = _renet(n, "renet%d_v" % index, bottom, width, "VERTICAL", patch, unit,
               forget_bias, weight_filler,
               forget_bias_long=forget_bias_long)
    return _renet(n, "renet%d_h" % index, v, width, "HORIZONTAL", patch, unit,
                  forget_bias, weight_filler,
                  forget_bias_long=forget_bias_long)


TRAIN_SEED = 1  # SegData's shuffle seed: one permutation on every GPU


def _hint(command):
    """SegData's ``missing_hint``: what to run when the LMDB is missing."""
    return "Build it with: " + command


def _data(n, mode, data):
    """``data`` (+ ``label``) from SegData (train_val) or Input (deploy)."""
    L = _caffe().layers
    if mode == "deploy":
        h, w = data["deploy_size"]
        n.data = L.Input(shape=dict(dim=[1, 3, h, w]),
                         transform_param=dict(mean_value=list(data["mean"]),
                                              scale=data["scale"]))
        return n.data
    p = dict(source=data["train_source"][0], batch_size=data["batch_size"],
             crop_h=data["crop"][0], crop_w=data["crop"][1], mirror=True,
             shuffle=True, seed=TRAIN_SEED, mean_value=list(data["mean"]),
             ignore_label=IGNORE_LABEL)
    if data["train_source"][1]:
        p["missing_hint"] = _hint(data["train_source"][1])
    if data["scale"] != 1:
        p["scale"] = data["scale"]
    n.data, n.label = L.SegData(ntop=2, seg_data_param=p)
    return n.data


def _head(n, mode, bottom, num_classes, weight_filler, bias_filler,
          classifier, crf=None, data=None):
    """Classifier, bilinear upsampling to the input size, loss or CRF."""
    L = _caffe().layers
    setattr(n, classifier, L.Convolution(
        bottom, param=LEARNED, convolution_param=dict(
            num_output=num_classes, kernel_size=1,
            weight_filler=weight_filler, bias_filler=bias_filler)))
    # Bilinear interpolation with aligned corners to exactly the input size
    # (the paper's upsampling, as the authors' released layer computes it):
    # the first and last score pixels land on the first and last input
    # pixels, so the border is not attenuated. No parameters.
    n.score = L.BilinearResize(getattr(n, classifier), n.data)
    if mode == "deploy":
        if crf:
            p = dict(crf)
            p["mean_value"] = list(data["mean"])
            if data["scale"] != 1:
                p["scale"] = data["scale"]
            n.crf_prob = L.DenseCRF(n.score, n.data, name="crf",
                                    dense_crf_param=p)
        return
    weights = (data or {}).get("class_weights")
    if weights:
        # Class-weighted cross-entropy: InfogainLoss with a diagonal H (the
        # softmax inside; -w_l log p_l per pixel, over the valid pixels).
        n.loss = L.InfogainLoss(n.score, n.label,
                                loss_param=dict(ignore_label=IGNORE_LABEL),
                                infogain_loss_param=dict(source=weights,
                                                         axis=1))
    else:
        n.loss = L.SoftmaxWithLoss(n.score, n.label,
                                   loss_param=dict(ignore_label=IGNORE_LABEL))
    n.accuracy = L.Accuracy(n.score, n.label,
                            accuracy_param=dict(ignore_label=IGNORE_LABEL),
                            include=dict(phase=_caffe().TEST))


def _finish(n, name, mode, data):
    """NetParameter of ``n``; train_val nets get the TEST-phase SegData."""
    net = n.to_proto()
    net.name = name
    if mode == "deploy" or not data.get("test_source"):
        return net
    pb2 = _pb2()
    train_layer = net.layer[0]
    test_layer = pb2.LayerParameter()
    test_layer.CopyFrom(train_layer)
    train_layer.include.add().phase = pb2.TRAIN
    test_layer.include.add().phase = pb2.TEST
    p = test_layer.seg_data_param
    p.source = data["test_source"][0]
    p.batch_size = 1
    for f in ("crop_h", "crop_w", "mirror", "shuffle", "seed",
              "missing_hint"):
        p.ClearField(f)
    if data["test_source"][1]:
        p.missing_hint = _hint(data["test_source"][1])
    out = pb2.NetParameter()
    out.name = name
    out.layer.add().CopyFrom(train_layer)
    out.layer.add().CopyFrom(test_layer)
    for layer in net.layer[1:]:
        out.layer.add().CopyFrom(layer)
    return out


def data_config(train_source, test_source, crop, batch_size, mean, scale,
                deploy_size, class_weights=None):
    """The data settings every builder takes (sources: (folder, command));
    ``class_weights``: a file of :func:`write_class_weights` that the
    train nets' loss weighs each pixel's class by (default: none, the plain
    softmax loss)."""
    return dict(train_source=train_source, test_source=test_source,
                crop=tuple(crop), batch_size=batch_size, mean=tuple(mean),
                scale=scale, deploy_size=tuple(deploy_size),
                class_weights=class_weights)


def median_frequency_weights(class_pixels, power=1.0):
    """Median frequency balancing (Eigen and Fergus 2015): class c weighs
    (median(f) / f_c) ** power, f the classes' shares of the labelled
    pixels (a class without pixels: 0; ``power`` 0.5 is a milder, square
    root balance), scaled so that the average pixel weighs 1 and the loss
    keeps its scale."""
    counts = np.asarray(class_pixels, np.float64)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any() \
            or counts.sum() <= 0:
        raise ValueError(f"class pixel counts {list(class_pixels)}: need "
                         "one non-negative count per class, some nonzero")
    f = counts / counts.sum()
    present = f > 0
    w = np.zeros_like(f)
    w[present] = (np.median(f[present]) / f[present]) ** power
    return w / (w * f).sum()


def write_class_weights(path, weights):
    """The weights as InfogainLoss's H (a diagonal K x K binaryproto)."""
    from caffe import io as caffe_io
    h = np.diag(np.asarray(weights, np.float32))[None, None]
    with open(path, "wb") as f:
        f.write(caffe_io.array_to_blobproto(h).SerializeToString())
    return path


# --------------------------------------------------------------------------
# Families.

NRENET_WIDTHS = (64, 128, 256)  # hidden units per direction, groups 1-3


def nrenet(mode, data, num_classes=8, widths=NRENET_WIDTHS, unit="LSTM",
           forget_bias=0.0, classifier_filler=None, renet_filler=None,
           norm=None, forget_bias_long=None, skip=False, name="nrenet"):
    """N-ReNet: three ReNet layer groups, 1x1 conv, bilinear x4 upsampling.

    Group 1 sweeps 2x2 patches in both its layers (resolution /4); groups 2
    and 3 sweep single pixels. ``widths[k]`` is the number of hidden units
    per direction of both layers of group k+1 (their tops have 2*widths[k]
    channels). ReNet parameters follow the paper's U[-0.2, 0.2] unless
    ``renet_filler`` (e.g. xavier, which keeps the signal's scale through
    a deep stack of narrow layers) is given. ``norm`` ("bn"; default none,
    as in the paper) normalises each group's output (:func:`_normalise`).
    ``forget_bias_long``: half of each LSTM's units start with this
    forget-gate bias, half with ``forget_bias`` (a short and a long memory;
    the paper has one forget bias, 0). ``skip``: the classifier reads the
    three groups' outputs concatenated (``groups``, 2 * sum(widths)
    channels) instead of the last group's alone, so that the loss's
    gradient reaches the first group, which carries the context across the
    image, without passing two more groups (the paper classifies from the
    last group).
    """
    n = _caffe().NetSpec()
    x = _data(n, mode, data)
    outs = []
    for k, width in enumerate(widths):
        x = _renet_group(n, k + 1, x, width, patch=2 if k == 0 else 1,
                         unit=unit, forget_bias=forget_bias,
                         weight_filler=renet_filler,
                         forget_bias_long=forget_bias_long)
        x = _normalise(n, "renet%d" % (k + 1), x, norm)
        outs.append(x)
    if skip:
        n.groups = _caffe().layers.Concat(*outs)
        x = n.groups
    filler = classifier_filler or gaussian(0.1)
    _head(n, mode, x, num_classes, filler, filler, "classifier",
          data=data)
    return _finish(n, name, mode, data)


def _vgg16(n, bottom, upto, conv_filler=None):
    """VGG-16 conv1_1 ... as Table 2 adapts it, built up to layer ``upto``.

    conv1/conv2 are frozen (lr_mult 0: no updates, and Caffe then skips
    their backward pass); pool1-pool3 2x2 stride 2; pool4 and pool5 3x3
    stride 1 pad 1; conv5_x dilated 2. Returns the blobs by name.
    """
    blobs = {}
    x = bottom
    plan = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
    for block, convs, nout in plan:
        for i in range(1, convs + 1):
            x = _conv(n, "conv%d_%d" % (block, i), x, nout,
                      dilation=2 if block == 5 else 1, learn=block > 2,
                      weight_filler=conv_filler)
        if block <= 3:
            x = _max_pool(n, "pool%d" % block, x, 2, 2)
        else:
            x = _max_pool(n, "pool%d" % block, x, 3, 1, pad=1)
        blobs["pool%d" % block] = x
        if "pool%d" % block == upto:
            return blobs
    return blobs


PAPER_CONV_FILLER = dict(type="gaussian", std=0.1)  # Section 4: N(0, 0.1)


def _fc_convs(n, x, filler, bias_filler):
    """conv6 (3x3, dilation 12, 1024) and conv7 (3x3, 1024), each + ReLU."""
    x = _conv(n, "conv6", x, 1024, ks=3, dilation=12, weight_filler=filler,
              bias_filler=bias_filler)
    return _conv(n, "conv7", x, 1024, ks=3, weight_filler=filler,
                 bias_filler=bias_filler)


def fcn(mode, data, num_classes=21, crf=None, conv_filler=None,
        conv_bias_filler=None, name="fcn"):
    """The baseline FCN of Table 2: VGG-16 conv1-conv5, conv6-conv8, x8.

    New convolutions (conv6-conv8) draw weights from ``conv_filler`` and
    biases from ``conv_bias_filler`` (default both the paper's N(0, 0.1)).
    """
    n = _caffe().NetSpec()
    x = _data(n, mode, data)
    x = _vgg16(n, x, "pool5")["pool5"]
    filler = conv_filler or PAPER_CONV_FILLER
    bias_filler = conv_bias_filler or filler
    x = _fc_convs(n, x, filler, bias_filler)
    _head(n, mode, x, num_classes, filler, bias_filler, "conv8", crf=crf,
          data=data)
    return _finish(n, name, mode, data)


def _normalise(n, blob_name, x, norm, l2_lambda=None):
    """Figure 3's per-input normalisation of ``x`` (a top named blob_name).

    ``bn``: BatchNorm + Scale (learned affine); ``l2``: every
    sample's C x H x W map scaled to unit L2 norm times ``l2_lambda``,
    composed from upstream layers (Reduction SUMSQ -> Power -> Scale with
    the per-sample factor as second bottom); None: unchanged.
    """
    L = _caffe().layers
    P = _caffe().params
    if norm is None:
        return x
    if norm == "bn":
        top = blob_name + "_bn"
        setattr(n, top, L.BatchNorm(x, batch_norm_param=dict(
            moving_average_fraction=0.999, eps=1e-5)))
        y = getattr(n, top)
        setattr(n, blob_name + "_scale",
                L.Scale(y, in_place=True, scale_param=dict(bias_term=True)))
        return y
    if norm == "l2":
        sumsq = blob_name + "_sumsq"
        setattr(n, sumsq, L.Reduction(x, operation=P.Reduction.SUMSQ,
                                      axis=1))
        # (eps + s / lambda^2)^(-1/2) = lambda / ||x|| (eps: no 1/0)
        inv = blob_name + "_l2inv"
        setattr(n, inv, L.Power(getattr(n, sumsq), power=-0.5,
                                scale=1.0 / (l2_lambda * l2_lambda),
                                shift=1e-12))
        top = blob_name + "_l2"
        setattr(n, top, L.Scale(x, getattr(n, inv),
                                scale_param=dict(axis=0, bias_term=False)))
        return getattr(n, top)
    raise ValueError("unknown normalisation %r (bn, l2 or None)"
                     % norm)


FEATURE_LAYERS = ("pool4", "pool5", "conv7")


def hrenet(mode, data, num_classes=21, inputs=("conv7",), norm=None,
           l2_lambda=None, renet_width=120, unit="LSTM", conv_filler=None,
           conv_bias_filler=None, crf=None, name="hrenet"):
    """H-ReNet (Table 3): the baseline FCN with ``renet1`` before conv8.

    ``inputs``: the layers whose features feed renet1, a subset of pool4,
    pool5, conv7 (one: Table 5 left, the layers after it dropped; several:
    normalised and concatenated in that order, Figure 3). ``norm`` is
    applied to each input (see :func:`_normalise`). ``renet_width`` hidden
    units per direction (Table 3: 120, so renet1's top has 240 channels).
    ``unit`` LSTM or IRNN. New convolutions (conv6-conv8) draw weights
    from ``conv_filler`` and biases from ``conv_bias_filler`` (default both
    the paper's N(0, 0.1)). The authors' released net is :func:`released`.
    """
    unknown = set(inputs) - set(FEATURE_LAYERS)
    if unknown or not inputs:
        raise ValueError("inputs must be a non-empty subset of %s, not %s"
                         % (FEATURE_LAYERS, inputs))
    inputs = [f for f in FEATURE_LAYERS if f in inputs]  # Figure 3's order
    n = _caffe().NetSpec()
    x = _data(n, mode, data)
    deepest = inputs[-1]
    blobs = _vgg16(n, x, "pool5" if deepest == "conv7" else deepest)
    filler = conv_filler or PAPER_CONV_FILLER
    bias_filler = conv_bias_filler or filler
    if deepest == "conv7":
        blobs["conv7"] = _fc_convs(n, blobs["pool5"], filler, bias_filler)
    feats = [_normalise(n, f, blobs[f], norm, l2_lambda) for f in inputs]
    if len(feats) > 1:
        n.concat = _caffe().layers.Concat(*feats, concat_param=dict(axis=1))
        x = n.concat
    else:
        x = feats[0]
    x = _renet_group(n, 1, x, renet_width, unit=unit)
    _head(n, mode, x, num_classes, filler, bias_filler, "conv8", crf=crf,
          data=data)
    return _finish(n, name, mode, data)


# The authors' released H-ReNet (d) + DenseCRF, layer for layer.
#
# Their deploy file (stephenyan1231/caffe-hybridnet, branch hybridnet,
# examples/voc12_SBD/H_ReNet_densecrf_deploy.prototxt) in our layer types,
# with their layer and top names so that a converted caffemodel
# (tools/import_hybridnet.py) loads by name and outputs compare blob by
# blob. Their ReNetLSTM is our ReNet (LSTM, no peepholes; their deploy
# turns peepholes off), their BilinearInterpolation our BilinearResize,
# their DenseCRFMeanfield our DenseCRF with the options that reproduce it.

RELEASED_MEAN_BGR = (104.0, 117.0, 123.0)  # their demo's mean pixel
RELEASED_RENET_WIDTH = 160
RELEASED_FC_WIDTH = 1024
# Their DenseCRFMeanfield settings, in dense_crf_param's terms.
CRF_AUTHORS = dict(max_iter=5, pos_w=3.0, pos_xy_std=3.0, bi_w=5.0,
                   bi_xy_std=80.0, bi_rgb_std=3.0, normalization=1,
                   feature_source=1, output=1, param_blobs=True)


def released_data(crop=None, train="voc_train_aug", test="voc_val"):
    """VOC data with their preprocessing: mean 104/117/123 (BGR), scale 1,
    their deploy's 400 x 500 input."""
    return data_config(DATA_SOURCES[train],
                       DATA_SOURCES[test] if test else None, crop or VOC_CROP,
                       batch_size=1, mean=RELEASED_MEAN_BGR, scale=1.0,
                       deploy_size=(400, 500))


def released(mode, data, num_classes=21, name="hrenet_released"):
    """The authors' released H-ReNet (d) + DenseCRF (their deploy file).

    VGG-16 conv1_1-conv5_3 (in-place ReLUs ``ReluX_Y``, none after
    conv5_3), pool4/pool5 3x3 stride 1, conv5 dilated 2; ``fc6_new`` (3x3,
    dilation 12, 1024) + ``Relu6`` + ``drop6``; ``fc7_new`` (1x1, 1024, no
    ReLU, no dropout); BatchNorm (no Scale) then an in-place ReLU (all three
    named ``Relu7``, as theirs) on pool4, pool5 and fc7_new, concatenated
    into ``pool4_pool5_fc7_batch_norm``; ``renet_lstm_6_vertical`` /
    ``renet_lstm_6_horizontal`` (160 units per direction, 1x1 patches,
    weights U[-0.2, 0.2], biases 0, forget-gate bias 2); ``conv6`` (1x1 to
    the classes, N(0, 0.1)); ``bilinear_interpolation`` to the data size
    (top ``conv6_full_res``). Deploy: ``splitting`` (tops ``unary``,
    ``Q0``), ``inference1`` (the CRF: row-normalised kernels, bilateral
    features from the data planes as fed, learned weights and
    compatibility, logits out) and ``prob`` (Softmax). Train/val: the loss
    on ``conv6_full_res``.
    """
    L = _caffe().layers
    n = _caffe().NetSpec()
    x = _data(n, mode, data)
    plan = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
    for block, convs, nout in plan:
        for i in range(1, convs + 1):
            conv = "conv%d_%d" % (block, i)
            x = _conv(n, conv, x, nout, dilation=2 if block == 5 else 1,
                      learn=block > 2, relu=False)
            if (block, i) != (5, 3):
                setattr(n, "Relu%d_%d" % (block, i),
                        L.ReLU(x, in_place=True))
        if block <= 3:
            x = _max_pool(n, "pool%d" % block, x, 2, 2)
        else:
            x = _max_pool(n, "pool%d" % block, x, 3, 1, pad=1)
    pool4, pool5 = n.pool4, n.pool5
    fc_filler = gaussian(0.01)
    zero = dict(type="constant", value=0)
    x = _conv(n, "fc6_new", pool5, RELEASED_FC_WIDTH, ks=3, dilation=12,
              weight_filler=fc_filler, bias_filler=zero, relu=False)
    n.Relu6 = L.ReLU(x, in_place=True)
    n.drop6 = L.Dropout(x, dropout_ratio=0.5, in_place=True)
    fc7 = _conv(n, "fc7_new", x, RELEASED_FC_WIDTH, ks=1,
                weight_filler=fc_filler, bias_filler=zero, relu=False)
    feats = []
    for src, blob in (("pool4", pool4), ("pool5", pool5), ("fc7_new", fc7)):
        top = src + "_batch_norm"
        setattr(n, top, L.BatchNorm(blob, batch_norm_param=dict(
            moving_average_fraction=0.999, eps=1e-5)))
        y = getattr(n, top)
        setattr(n, top + "_relu", L.ReLU(y, in_place=True, name="Relu7"))
        feats.append(y)
    n.pool4_pool5_fc7_batch_norm = L.Concat(*feats, concat_param=dict(axis=1))
    x = n.pool4_pool5_fc7_batch_norm
    for suffix, direction in (("vertical", "VERTICAL"),
                              ("horizontal", "HORIZONTAL")):
        x = _renet(n, "renet_lstm_6_" + suffix, x, RELEASED_RENET_WIDTH,
                   direction, forget_bias=2.0,
                   weight_filler=dict(type="uniform", min=-0.2, max=0.2))
    n.conv6 = L.Convolution(x, param=LEARNED, convolution_param=dict(
        num_output=num_classes, kernel_size=1, weight_filler=gaussian(0.1),
        bias_filler=zero))
    n.conv6_full_res = L.BilinearResize(n.conv6, n.data,
                                        name="bilinear_interpolation")
    if mode == "deploy":
        n.unary, n.Q0 = L.Split(n.conv6_full_res, ntop=2, name="splitting")
        n.inference1 = L.DenseCRF(n.unary, n.Q0, n.data,
                                  param=[dict(lr_mult=0, decay_mult=0)] * 3,
                                  dense_crf_param=dict(CRF_AUTHORS))
        n.prob = L.Softmax(n.inference1)
    else:
        n.loss = L.SoftmaxWithLoss(n.conv6_full_res, n.label, loss_param=dict(
            ignore_label=IGNORE_LABEL))
        n.accuracy = L.Accuracy(n.conv6_full_res, n.label,
                                accuracy_param=dict(ignore_label=IGNORE_LABEL),
                                include=dict(phase=_caffe().TEST))
    return _finish(n, name, mode, data)


# --------------------------------------------------------------------------
# Parameter counts (the tables' arithmetic; the tests check them on nets).

def renet_params(in_channels, width, unit="LSTM", patch=1):
    """Parameters of one ReNet layer: two directions of W, U, b."""
    gates = {"LSTM": 4, "GRU": 3, "IRNN": 1}[unit]
    c = in_channels * patch * patch
    return 2 * gates * width * (c + width + 1)


def renet_group_params(in_channels, width, unit="LSTM"):
    return renet_params(in_channels, width, unit) + \
        renet_params(2 * width, width, unit)


def matching_irnn_width(in_channels, lstm_width):
    """The IRNN width whose renet1 group has the LSTM group's parameters.

    The paper's rule ("an IRNN-based ReNet layer with same number of
    parameters"): the integer width whose two-layer group count is closest
    to the LSTM group's (conv8's input then grows with it).
    """
    target = renet_group_params(in_channels, lstm_width, "LSTM")
    best = None
    for w in range(1, 8 * lstm_width):
        diff = abs(renet_group_params(in_channels, w, "IRNN") - target)
        if best is None or diff < best[0]:
            best = (diff, w)
    return best[1]


# --------------------------------------------------------------------------
# Solvers.

def solver(net_path, max_iter, snapshot_prefix, base_lr=0.001,
           stepsize=None, iter_size=10, test_iter=None, solver_type="SGD",
           momentum=0.9, weight_decay=0.0005, snapshot=2000, display=20,
           random_seed=None, clip_gradients=None):
    """SolverParameter: lr ``base_lr`` x0.1 every ``stepsize`` (default
    half of ``max_iter``), momentum 0.9, weight decay 5e-4."""
    pb2 = _pb2()
    s = pb2.SolverParameter()
    s.net = net_path
    s.type = solver_type
    s.base_lr = base_lr
    s.lr_policy = "step"
    s.gamma = 0.1
    s.stepsize = stepsize or max_iter // 2
    s.max_iter = max_iter
    if solver_type in ("SGD", "Nesterov"):
        s.momentum = momentum
    elif solver_type == "Adam":
        s.momentum = 0.9
        s.momentum2 = 0.999
    s.weight_decay = weight_decay
    s.iter_size = iter_size
    s.display = display
    s.average_loss = max(display, 1)
    if test_iter:
        s.test_iter.append(test_iter)
        s.test_interval = max_iter
        s.test_initialization = False
    s.snapshot = snapshot
    s.snapshot_prefix = snapshot_prefix
    if random_seed is not None:
        s.random_seed = random_seed
    if clip_gradients:
        s.clip_gradients = clip_gradients
    return s


# --------------------------------------------------------------------------
# The paper's variants.

Variant = collections.namedtuple("Variant", [
    "family", "name", "description", "study", "paper", "builder", "net",
    "data", "iters", "trains", "weights_from", "solver_extra"])
# paper: {"miou": ...} or {"pixel_acc": ..., "class_acc": ...} (percent) or
# {}. trains False: a deploy-only variant using ``weights_from``'s weights.

# The CRF settings. The paper's Table 6 runs 2 mean-field iterations and
# prints no kernel parameters: we use the released deploy file's kernels.
CRF_PAPER = dict(max_iter=2, pos_w=3.0, pos_xy_std=3.0, bi_w=5.0,
                 bi_xy_std=80.0, bi_rgb_std=3.0)

VOC_TEST_ITER = 1449  # VOC12 val
SBG_TEST_ITER = 143   # one Stanford Background fold
FCN_ITERS, HRENET_ITERS, MLFB_ITERS = 12000, 30000, 40000
VOC_CROP = (400, 500)
CROP_STUDY = ((256, 320), (320, 400), (400, 500))
L2_LAMBDAS = (100, 1000, 10000)
NUM_FOLDS = 5
# IRNN's identity recurrence makes its activations and gradients grow
# with the sequence length; like Le et al. (2015) we clip the gradient's
# L2 norm (the paper is silent). Without it the first updates overflow.
IRNN_CLIP = 10.0


def voc_data(crop=VOC_CROP, train="voc_train_aug", test="voc_val"):
    return data_config(DATA_SOURCES[train],
                       DATA_SOURCES[test] if test else None, crop,
                       batch_size=1, mean=VGG_MEAN_BGR, scale=1.0,
                       deploy_size=(375, 500))


def sbg_data(fold, crop=(240, 320)):
    return data_config(sbg_source(fold, "train"), sbg_source(fold, "val"),
                       crop, batch_size=10, mean=VGG_MEAN_BGR,
                       scale=1.0 / 128, deploy_size=(240, 320))


def _variants():
    v = []

    def add(family, name, description, study, paper, builder, net, data,
            iters, trains=True, weights_from=None, **solver_extra):
        v.append(Variant(family, name, description, study, paper, builder,
                         net, data, iters, trains, weights_from,
                         solver_extra))

    for k in range(NUM_FOLDS):
        add("nrenet", "fold%d" % k,
            "N-ReNet, Stanford Background fold %d" % k, "Table 1",
            dict(pixel_acc=80.4, class_acc=71.8), "nrenet", {}, sbg_data(k),
            10000, iter_size=1, test_iter=SBG_TEST_ITER)
    voc = voc_data()
    add("fcn", "a", "(a) baseline FCN", "Table 4", dict(miou=63.4), "fcn",
        {}, voc, FCN_ITERS)
    add("fcn", "e", "(e) baseline FCN + DenseCRF", "Table 4",
        dict(miou=67.5), "fcn", dict(crf=CRF_PAPER), voc, FCN_ITERS,
        trains=False, weights_from="a")
    for crop, miou in zip(CROP_STUDY[:2], (63.6, 63.4)):
        add("fcn", "crop%dx%d" % crop,
            "baseline FCN trained on %dx%d crops" % crop, "crop size",
            dict(miou=miou), "fcn", {}, voc_data(crop), FCN_ITERS)
    mlfb = dict(inputs=FEATURE_LAYERS, norm="bn")
    add("hrenet", "b", "(b) H-ReNet", "Table 4", dict(miou=70.0), "hrenet",
        {}, voc, HRENET_ITERS)
    add("hrenet", "c", "(c) H-ReNet + BN", "Table 4", dict(miou=70.4),
        "hrenet", dict(norm="bn"), voc, HRENET_ITERS)
    add("hrenet", "d", "(d) H-ReNet + BN + multi-layer features",
        "Table 4", dict(miou=71.1), "hrenet", mlfb, voc, MLFB_ITERS)
    add("hrenet", "f", "(f) H-ReNet + BN + DenseCRF", "Table 4",
        dict(miou=71.9), "hrenet", dict(norm="bn", crf=CRF_PAPER), voc,
        HRENET_ITERS, trains=False, weights_from="c")
    add("hrenet", "g", "(g) H-ReNet + BN + multi-layer features + DenseCRF",
        "Table 4", dict(miou=72.6), "hrenet", dict(mlfb, crf=CRF_PAPER), voc,
        MLFB_ITERS, trains=False, weights_from="d")
    for lam in L2_LAMBDAS:
        add("hrenet", "d_l2_%d" % lam,
            "(d) with L2 normalisation, lambda %d, instead of BN" % lam,
            "L2 vs BN", {}, "hrenet",
            dict(inputs=FEATURE_LAYERS, norm="l2", l2_lambda=lam), voc,
            MLFB_ITERS)
    for f, miou in (("pool4", 59.2), ("pool5", 68.3)):
        add("hrenet", "t5_" + f, "renet1 fed by %s alone (+BN)" % f,
            "Table 5 left", dict(miou=miou), "hrenet",
            dict(inputs=(f,), norm="bn"), voc, HRENET_ITERS)
    add("hrenet", "t5_conv7_pool5", "renet1 fed by conv7 + pool5 (+BN)",
        "Table 5 right", dict(miou=70.9), "hrenet",
        dict(inputs=("pool5", "conv7"), norm="bn"), voc, MLFB_ITERS)
    for crop, miou in zip(CROP_STUDY[:2], (67.3, 69.3)):
        add("hrenet", "d_crop%dx%d" % crop,
            "(d) trained on %dx%d crops" % crop, "crop size",
            dict(miou=miou), "hrenet", mlfb, voc_data(crop), MLFB_ITERS)
    add("hrenet", "c_irnn",
        "(c) with IRNN units, width %d (renet1's parameters match the "
        "LSTM's)" % matching_irnn_width(1024, 120), "LSTM vs IRNN",
        dict(miou=67.2), "hrenet",
        dict(norm="bn", unit="IRNN",
             renet_width=matching_irnn_width(1024, 120)), voc, HRENET_ITERS,
        clip_gradients=IRNN_CLIP)
    add("hrenet", "d_coco_pretrain",
        "(d) pretrained on VOC12 + COCO train+val (then d_coco_finetune)",
        "COCO", {}, "hrenet", mlfb,
        voc_data(train="coco_voc_trainval", test=None), 120000,
        stepsize=50000)
    add("hrenet", "d_coco_finetune",
        "(d) fine-tuned on VOC12 train+val from d_coco_pretrain's weights",
        "COCO", dict(miou_test=76.8), "hrenet", mlfb,
        voc_data(train="voc_trainval_aug", test=None), 30000)
    add("hrenet", "released",
        "the authors' released H-ReNet (d) + DenseCRF, layer for layer",
        "released", {}, "released", {}, released_data(), MLFB_ITERS)
    return v


VARIANTS = collections.OrderedDict(
    ((x.family, x.name), x) for x in _variants())
FAMILIES = {"nrenet": nrenet, "fcn": fcn, "hrenet": hrenet}
BUILDERS = dict(FAMILIES, released=released)


def variant(family, name):
    """The Variant ``family/name``; ValueError naming the valid ones."""
    if family not in FAMILIES:
        raise ValueError("unknown family %r; valid: %s"
                         % (family, ", ".join(FAMILIES)))
    if (family, name) not in VARIANTS:
        names = [v for f, v in VARIANTS if f == family]
        raise ValueError("unknown %s variant %r; valid: %s"
                         % (family, name, ", ".join(names)))
    return VARIANTS[(family, name)]


def build(v, mode, data=None):
    """NetParameter of variant ``v`` in ``mode`` train_val|deploy.

    ``data`` overrides the variant's data settings (the tests use it to
    point the nets at tiny LMDBs).
    """
    net = dict(v.net)
    if mode == "train_val":
        net.pop("crf", None)
    return BUILDERS[v.builder](mode, data or v.data,
                               name="%s_%s" % (v.family, v.name), **net)


def build_solver(v, folder):
    """SolverParameter of variant ``v`` whose files are in ``folder``."""
    extra = dict(v.solver_extra)
    iter_size = extra.pop("iter_size", 10)
    test_iter = extra.pop("test_iter",
                          VOC_TEST_ITER if v.data["test_source"] else None)
    return solver(folder + "/train_val.prototxt", v.iters,
                  "runs/%s_%s" % (v.family, v.name), iter_size=iter_size,
                  test_iter=test_iter, **extra)


def _header(v, what):
    lines = ["# %s: %s" % (what, v.description),
             "# Generated by tools/make_nets.py from python/hrenet/nets.py;"
             " do not edit: change the generator and regenerate."]
    if what == "solver":
        lines.append("# Run from the repository root: caffe train -solver "
                     "prototxt/%s/%s/solver.prototxt%s"
                     % (v.family, v.name, _weights_hint(v)))
    return "\n".join(lines) + "\n"


def _weights_hint(v):
    if v.family == "nrenet":
        return ""  # trained from scratch
    if v.name == "d_coco_finetune":
        return " -weights runs/hrenet_d_coco_pretrain_iter_120000.caffemodel"
    return " -weights VGG_ILSVRC_16_layers.caffemodel"


def missing_hints(v):
    """{LMDB folder: the command that builds it} for variant ``v``."""
    out = {}
    for key in ("train_source", "test_source"):
        if v.data[key]:
            out[v.data[key][0]] = v.data[key][1]
    return out


def variant_files(v):
    """{file name: text} of variant ``v``'s folder."""
    from google.protobuf import text_format
    folder = "prototxt/%s/%s" % (v.family, v.name)
    files = {}
    if v.trains:
        files["train_val.prototxt"] = _header(v, "train/val net") + \
            text_format.MessageToString(build(v, "train_val"))
        files["solver.prototxt"] = _header(v, "solver") + \
            text_format.MessageToString(build_solver(v, folder))
    files["deploy.prototxt"] = _header(v, "deploy net") + \
        text_format.MessageToString(build(v, "deploy"))
    meta = dict(family=v.family, variant=v.name, description=v.description,
                study=v.study, paper=v.paper, iterations=v.iters,
                crop=list(v.data["crop"]), trains=v.trains,
                weights_from=v.weights_from,
                data=missing_hints(v) if v.trains else {})
    files["variant.json"] = json.dumps(meta, indent=1, sort_keys=True) + "\n"
    return files


def all_files():
    """{relative path under prototxt/: text} of every variant."""
    files = {}
    for v in VARIANTS.values():
        for name, text in variant_files(v).items():
            files["%s/%s/%s" % (v.family, v.name, name)] = text
    files[HEADLINE_SOLVER] = (
        "# The headline: H-ReNet (d) on VOC12 (Table 4 (d), 71.1% mean IoU).\n"
        "# Generated by tools/make_nets.py; do not edit.\n"
        "# From the repository root, after building the VOC LMDBs\n"
        "# (docs/NETS.md):\n"
        "#   caffe train -solver prototxt/hrenet_solver.prototxt "
        "-weights VGG_ILSVRC_16_layers.caffemodel\n") + \
        files["hrenet/d/solver.prototxt"].split("\n", 3)[3]
    return files


def write_all(out, selected=None):
    """Write every (or the ``selected``) variant's files under ``out``.

    Each file is written to a temporary name and renamed, so an interrupted
    run leaves no half-written prototxt. Returns the paths written.
    """
    written = []
    for rel, text in sorted(all_files().items()):
        if selected is not None and rel != HEADLINE_SOLVER and \
                tuple(rel.split("/")[:2]) not in selected:
            continue
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp-%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        written.append(path)
    return written


# --------------------------------------------------------------------------
# A local-context baseline (the main job's control, not a paper net).

def local_fcn(mode, data, num_classes, widths=(32, 48, 64), name="local"):
    """A small fully convolutional net whose receptive field stays local.

    conv1 (3x3) -> pool1 (2x2) -> conv2 (3x3) -> pool2 (2x2) -> conv3_1,
    conv3_2 (3x3) -> 1x1 classifier -> bilinear x4, the same head as
    N-ReNet. Its receptive field is :func:`receptive_field` (26 pixels
    with these layers), whatever the image size.
    """
    n = _caffe().NetSpec()
    x = _data(n, mode, data)
    x = _conv(n, "conv1", x, widths[0])
    x = _max_pool(n, "pool1", x, 2, 2)
    x = _conv(n, "conv2", x, widths[1])
    x = _max_pool(n, "pool2", x, 2, 2)
    x = _conv(n, "conv3_1", x, widths[2])
    x = _conv(n, "conv3_2", x, widths[2])
    filler = dict(type="msra")
    _head(n, mode, x, num_classes, filler,
          dict(type="constant", value=0), "classifier", data=data)
    return _finish(n, name, mode, data)


def receptive_field(net, blob):
    """Receptive field (pixels, one side) of ``blob`` in a NetParameter.

    Follows Convolution and Pooling layers (kernel, stride, dilation) from
    the input; ReNet layers make it the whole image (returns None).
    """
    rf, jump = {}, {}
    for layer in net.layer:
        if layer.type in ("Input", "SegData"):
            for top in layer.top:
                rf[top], jump[top] = 1, 1
            continue
        if not layer.bottom or layer.bottom[0] not in rf:
            continue
        r, j = rf[layer.bottom[0]], jump[layer.bottom[0]]
        if r is None or layer.type == "ReNet":
            r = None
        elif layer.type == "Convolution":
            p = layer.convolution_param
            k = p.kernel_size[0] if p.kernel_size else 1
            d = p.dilation[0] if p.dilation else 1
            r += (d * (k - 1)) * j
            j *= p.stride[0] if p.stride else 1
        elif layer.type == "Pooling":
            p = layer.pooling_param
            r += (p.kernel_size - 1) * j
            j *= p.stride
        for top in layer.top:
            rf[top], jump[top] = r, j
    return rf[blob]
