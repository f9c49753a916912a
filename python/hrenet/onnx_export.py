"""Export a Caffe deploy net to ONNX, and check the export against pycaffe.

No per-net code: :func:`convert` walks the net's layers (TEST phase) and
maps each type with one converter (:data:`CONVERTERS`):

==================  =======================================================
Caffe               ONNX
==================  =======================================================
Input               a graph input (static shape, or N, H, W symbolic)
Convolution         Conv (pad, stride, dilation, group, bias)
Deconvolution       ConvTranspose
Pooling MAX / AVE   MaxPool / AveragePool with ``ceil_mode=1`` (Caffe's
                    output size, the last window starting inside the
                    input); global pooling: GlobalMaxPool / ...AveragePool
ReLU, Sigmoid, TanH Relu (LeakyRelu with negative_slope), Sigmoid, Tanh
Dropout, Split      nothing (identity at test; the tops alias the bottom)
BatchNorm           BatchNormalization with the stored mean and variance
                    divided by the stored scale factor, epsilon ``eps``
Scale, Bias         Mul / Add with the blob (or the second bottom) shaped
                    to broadcast from ``axis``
Eltwise             Add (with coefficients) / Mul / Max
Concat, Softmax     Concat, Softmax on the same axis
Power               Mul, Add, Pow: (shift + scale x)^power
Reduction           ReduceSum / ReduceL1 / ReduceSumSquare / ReduceMean over
                    the axes from ``axis`` on, times ``coeff``
Crop                Slice to the reference bottom's size from ``offset``
BilinearResize      Resize, mode linear, align_corners, to the reference
                    bottom's H x W (or height/width, or zoom_factor)
ReNet               Pad (bottom/right to whole patches), Reshape/Transpose
                    to T x B x (C s t) sequences in (c, dy, dx) order, one
                    bidirectional LSTM / GRU (``linear_before_reset=1``) /
                    RNN (Relu), Reshape/Transpose back to N x 2d x h x w
DenseCRF            not in the graph: the net is cut before the first
                    DenseCRF, and that layer with everything after it is
                    stored in the model's metadata (``hrenet.crf``) to run
                    through pycaffe (:mod:`hrenet.onnx_run`)
==================  =======================================================

A layer of any other type raises :class:`UnsupportedLayer` naming it and
its type. The ReNet gate blocks are reordered by
:func:`hrenet.renet.to_onnx`; shapes inside the ReNet and the resize are
computed from the tensors (Shape ops), so the same graph serves a fixed
and a dynamic input size.

The model (opset :data:`OPSET`) carries metadata (:data:`META`): the input
and prediction output names, the BGR mean and scale of the net's Input
``transform_param``, the number of classes and, for CRF nets, the tail.

:func:`check_parity` runs the same inputs through pycaffe and ONNX Runtime
and compares every ONNX output (and, for CRF nets, the final output after
the tail) with the Caffe blob of the same name.

Nothing runs at import; ``onnx`` is imported on first use.
"""
import json

import numpy as np

from hrenet import renet
from hrenet.inference import ToolError

__all__ = ["OPSET", "IR_VERSION", "META", "CONVERTERS", "UnsupportedLayer",
           "deploy_layers", "split_at_crf", "convert", "convert_net",
           "check_parity", "record_passed", "parity_passed", "format_parity",
           "REL_TOL", "LABEL_TOL"]

#: ONNX opset and IR version of the exported models (ONNX Runtime >= 1.14
#: and current mobile runtimes read them).
OPSET = 17
IR_VERSION = 8

#: Metadata keys (``metadata_props``) of an exported model.
META = {
    "format": "hrenet.format",      # "1"
    "source": "hrenet.source",      # the deploy net's name
    "input": "hrenet.input",        # the image input (N x 3 x H x W, BGR)
    "output": "hrenet.output",      # the ONNX output to predict from
    "mean": "hrenet.mean",          # JSON [B, G, R] subtracted
    "scale": "hrenet.scale",        # applied after the mean
    "classes": "hrenet.classes",    # channels of the prediction
    "outputs": "hrenet.outputs",    # JSON {ONNX output: Caffe blob}
    "crf": "hrenet.crf",            # JSON tail (see convert), CRF nets only
}

#: Parity tolerances: max |caffe - onnx| over the Caffe output's range, and
#: the fraction of identical argmax labels.
REL_TOL = 1e-4
LABEL_TOL = 0.9999


class UnsupportedLayer(ToolError):
    """A layer (or a setting of one) the export cannot express."""


# ---------------------------------------------------------------------------
# Which layers run at test time

def _rule_matches(rule, phase="TEST", level=0, stages=()):
    """Caffe's NetStateRule check for the TEST state of a deploy net."""
    if rule.HasField("phase") and rule.Phase.Name(rule.phase) != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def deploy_layers(param):
    """The layers of a NetParameter that a TEST net keeps (Caffe's
    include/exclude rules), in order."""
    kept = []
    for layer in param.layer:
        if len(layer.include):
            if not any(_rule_matches(r) for r in layer.include):
                continue
        elif any(_rule_matches(r) for r in layer.exclude):
            continue
        kept.append(layer)
    return kept


# ---------------------------------------------------------------------------
# Graph builder

class _Builder(object):
    def __init__(self):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits = [], []
        self.used = set()
        self._ints = {}

    def name(self, hint):
        name, k = hint, 1
        while name in self.used:
            name = f"{hint}#{k}"
            k += 1
        self.used.add(name)
        return name

    def const(self, hint, value, dtype=np.float32):
        name = self.name(hint)
        self.inits.append(self.numpy_helper.from_array(
            np.ascontiguousarray(np.asarray(value, dtype)), name))
        return name

    def ints(self, values):
        key = tuple(int(v) for v in values)
        if key not in self._ints:
            self._ints[key] = self.const(
                "const_" + "_".join(str(v).replace("-", "m") for v in key),
                key, np.int64)
        return self._ints[key]

    def op(self, op_type, inputs, out=None, hint=None, **attrs):
        out = out or self.name(hint or op_type)
        self.nodes.append(self.helper.make_node(
            op_type, list(inputs), [out], name=self.name("node_" + out),
            **attrs))
        return out

    def rename(self, old, new):
        for node in self.nodes:
            for seq in (node.input, node.output):
                for i, n in enumerate(seq):
                    if n == old:
                        seq[i] = new
        self.used.add(new)


class _Layer(object):
    """What a converter sees: the LayerParameter, its bottoms' tensors and
    ranks, its parameter blobs and the names its tops' tensors must have."""

    def __init__(self, layer, x, ranks, blobs, out):
        self.layer, self.x, self.ranks = layer, x, ranks
        self.blobs, self.out = blobs, out
        self.name, self.type = layer.name, layer.type

    def unsupported(self, why):
        return UnsupportedLayer(f"layer {self.name!r} (type {self.type!r}): "
                                f"{why}")

    def need_blobs(self, *counts):
        if len(self.blobs) not in counts:
            raise self.unsupported(
                f"has {len(self.blobs)} parameter blobs, expected "
                + " or ".join(map(str, counts)))

    def axis(self, axis, rank=None):
        rank = self.ranks[0] if rank is None else rank
        a = axis + rank if axis < 0 else axis
        if not 0 <= a < rank:
            raise self.unsupported(f"axis {axis} outside a {rank}-D blob")
        return a


def _pair(L, repeated, has_h, h, w, default, what):
    if has_h:
        return [int(h), int(w)]
    v = [int(x) for x in repeated] or [default]
    if len(v) == 1:
        v = v * 2
    if len(v) != 2:
        raise L.unsupported(f"{len(v)} values of {what}; only 2-D maps are "
                            "exported")
    return v


def _conv(b, L, transpose=False):
    p = L.layer.convolution_param
    if L.ranks[0] != 4:
        raise L.unsupported("only 2-D convolutions (4-D blobs) are exported")
    if p.axis != 1:
        raise L.unsupported(f"axis {p.axis} (only 1)")
    L.need_blobs(2 if p.bias_term else 1)
    kernel = _pair(L, p.kernel_size, p.HasField("kernel_h"), p.kernel_h,
                   p.kernel_w, 1, "kernel_size")
    stride = _pair(L, p.stride, p.HasField("stride_h"), p.stride_h,
                   p.stride_w, 1, "stride")
    pad = _pair(L, p.pad, p.HasField("pad_h"), p.pad_h, p.pad_w, 0, "pad")
    dilation = _pair(L, p.dilation, False, 0, 0, 1, "dilation")
    inputs = [L.x[0], b.const(L.name + "/weight", L.blobs[0])]
    if p.bias_term:
        inputs.append(b.const(L.name + "/bias", L.blobs[1].reshape(-1)))
    return [b.op("ConvTranspose" if transpose else "Conv", inputs, L.out[0],
                 kernel_shape=kernel, strides=stride, pads=pad + pad,
                 dilations=dilation, group=int(p.group))]


def _deconv(b, L):
    return _conv(b, L, transpose=True)


def _pooling(b, L):
    p = L.layer.pooling_param
    method = p.PoolMethod.Name(p.pool)
    if method not in ("MAX", "AVE"):
        raise L.unsupported(f"pool {method} (only MAX and AVE)")
    if L.ranks[0] != 4:
        raise L.unsupported("only 2-D pooling (4-D blobs) is exported")
    if len(L.layer.top) > 1:
        raise L.unsupported("a second top (the max positions)")
    if p.global_pooling:
        op = "GlobalMaxPool" if method == "MAX" else "GlobalAveragePool"
        return [b.op(op, [L.x[0]], L.out[0])]
    kernel = _pair(L, [p.kernel_size] if p.HasField("kernel_size") else [],
                   p.HasField("kernel_h"), p.kernel_h, p.kernel_w, 0,
                   "kernel_size")
    stride = _pair(L, [p.stride], p.HasField("stride_h"), p.stride_h,
                   p.stride_w, 1, "stride")
    pad = _pair(L, [p.pad], p.HasField("pad_h"), p.pad_h, p.pad_w, 0, "pad")
    ceil = 1
    if hasattr(p, "round_mode"):
        ceil = int(p.RoundMode.Name(p.round_mode) == "CEIL")
    attrs = dict(kernel_shape=kernel, strides=stride, pads=pad + pad,
                 ceil_mode=ceil)
    if method == "MAX":
        return [b.op("MaxPool", [L.x[0]], L.out[0], **attrs)]
    return [b.op("AveragePool", [L.x[0]], L.out[0], count_include_pad=1,
                 **attrs)]


def _relu(b, L):
    slope = L.layer.relu_param.negative_slope
    if slope:
        return [b.op("LeakyRelu", [L.x[0]], L.out[0], alpha=float(slope))]
    return [b.op("Relu", [L.x[0]], L.out[0])]


def _unary(op):
    def convert(b, L):
        return [b.op(op, [L.x[0]], L.out[0])]
    return convert


def _alias(b, L):
    return [L.x[0]] * len(L.out)


def _batch_norm(b, L):
    p = L.layer.batch_norm_param
    if p.HasField("use_global_stats") and not p.use_global_stats:
        raise L.unsupported("use_global_stats: false normalises with the "
                            "batch's own statistics, which a deploy export "
                            "cannot; remove the setting")
    L.need_blobs(3)
    factor = float(np.asarray(L.blobs[2]).reshape(-1)[0])
    factor = 0.0 if factor == 0 else 1.0 / factor
    mean = np.asarray(L.blobs[0], np.float64).reshape(-1) * factor
    var = np.asarray(L.blobs[1], np.float64).reshape(-1) * factor
    c = mean.size
    return [b.op("BatchNormalization",
                 [L.x[0], b.const(L.name + "/one", np.ones(c)),
                  b.const(L.name + "/zero", np.zeros(c)),
                  b.const(L.name + "/mean", mean),
                  b.const(L.name + "/var", var)],
                 L.out[0], epsilon=float(p.eps))]


def _broadcast(array, axis, rank):
    """``array`` (the dims of a blob from ``axis`` on) shaped to broadcast
    against a ``rank``-D blob."""
    array = np.asarray(array)
    return array.reshape(array.shape + (1,) * (rank - axis - array.ndim))


def _scale_like(b, L, param, with_bias_blob):
    rank = L.ranks[0]
    axis = L.axis(param.axis)
    y, blobs = L.x[0], list(L.blobs)
    if len(L.x) == 2:
        s, srank = L.x[1], L.ranks[1]
        extra = rank - axis - srank
        if extra < 0:
            raise L.unsupported("the second bottom has more axes than the "
                                "first from axis on")
        if extra:
            s = b.op("Unsqueeze", [s, b.ints(range(srank, srank + extra))],
                     hint=L.name + "/unsqueeze")
        op = "Mul" if with_bias_blob else "Add"
        last = not (with_bias_blob and param.bias_term)
        y = b.op(op, [y, s], L.out[0] if last else None, hint=L.name)
        bias = blobs[0] if with_bias_blob and param.bias_term else None
    elif with_bias_blob:
        L.need_blobs(2 if param.bias_term else 1)
        last = not param.bias_term
        y = b.op("Mul", [y, b.const(L.name + "/scale",
                                    _broadcast(blobs[0], axis, rank))],
                 L.out[0] if last else None, hint=L.name)
        bias = blobs[1] if param.bias_term else None
    else:
        L.need_blobs(1)
        bias = blobs[0]
    if bias is not None:
        y = b.op("Add", [y, b.const(L.name + "/bias",
                                    _broadcast(bias, axis, rank))],
                 L.out[0])
    return [y]


def _scale(b, L):
    return _scale_like(b, L, L.layer.scale_param, True)


def _bias(b, L):
    return _scale_like(b, L, L.layer.bias_param, False)


def _eltwise(b, L):
    p = L.layer.eltwise_param
    op = p.EltwiseOp.Name(p.operation)
    coeffs = list(p.coeff)
    if coeffs and (op != "SUM" or len(coeffs) != len(L.x)):
        raise L.unsupported("coeff needs operation SUM and one per bottom")
    xs = list(L.x)
    if coeffs:
        for i, c in enumerate(coeffs):
            if c != 1:
                k = b.const(L.name + "/coeff", np.float32(c))
                xs[i] = b.op("Mul", [xs[i], k], hint=L.name + "/mul")
    onnx_op = {"SUM": "Sum", "PROD": "Mul", "MAX": "Max"}[op]
    if onnx_op == "Mul":
        y = xs[0]
        for i, x in enumerate(xs[1:]):
            y = b.op("Mul", [y, x], L.out[0] if i == len(xs) - 2 else None,
                     hint=L.name)
        return [y]
    return [b.op(onnx_op, xs, L.out[0])]


def _concat(b, L):
    p = L.layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    return [b.op("Concat", L.x, L.out[0], axis=L.axis(axis))]


def _softmax(b, L):
    return [b.op("Softmax", [L.x[0]], L.out[0],
                 axis=L.axis(L.layer.softmax_param.axis))]


def _power(b, L):
    p = L.layer.power_param
    steps = []
    if p.scale != 1:
        steps.append(("Mul", p.scale))
    if p.shift != 0:
        steps.append(("Add", p.shift))
    if p.power != 1:
        steps.append(("Pow", p.power))
    if not steps:
        return [b.op("Identity", [L.x[0]], L.out[0])]
    y = L.x[0]
    for i, (op, v) in enumerate(steps):
        y = b.op(op, [y, b.const(f"{L.name}/{op.lower()}", np.float32(v))],
                 L.out[0] if i == len(steps) - 1 else None, hint=L.name)
    return [y]


def _reduction(b, L):
    p = L.layer.reduction_param
    op = p.ReductionOp.Name(p.operation)
    rank = L.ranks[0]
    axis = L.axis(p.axis)
    axes = list(range(axis, rank))
    last = p.coeff == 1
    out = L.out[0] if last else None
    if op == "SUM":
        y = b.op("ReduceSum", [L.x[0], b.ints(axes)], out, hint=L.name,
                 keepdims=0)
    else:
        onnx_op = {"ASUM": "ReduceL1", "SUMSQ": "ReduceSumSquare",
                   "MEAN": "ReduceMean"}[op]
        y = b.op(onnx_op, [L.x[0]], out, hint=L.name, axes=axes, keepdims=0)
    if not last:
        y = b.op("Mul", [y, b.const(L.name + "/coeff", np.float32(p.coeff))],
                 L.out[0])
    return [y]


def _crop(b, L):
    p = L.layer.crop_param
    rank = L.ranks[0]
    axis = L.axis(p.axis)
    n = rank - axis
    offsets = list(p.offset)
    if not offsets:
        offsets = [0] * n
    elif len(offsets) == 1:
        offsets = offsets * n
    elif len(offsets) != n:
        raise L.unsupported(f"{len(offsets)} offsets for {n} cropped axes")
    size = b.op("Slice", [b.op("Shape", [L.x[1]], hint=L.name + "/shape"),
                          b.ints([axis]), b.ints([rank])],
                hint=L.name + "/size")
    ends = b.op("Add", [size, b.ints(offsets)], hint=L.name + "/ends")
    return [b.op("Slice", [L.x[0], b.ints(offsets), ends,
                           b.ints(range(axis, rank))], L.out[0])]


def _dims(b, x, hint, *ranges):
    """1-D int64 slices [a, z) of Shape(x), one per range."""
    shape = b.op("Shape", [x], hint=hint + "/shape")
    return [b.op("Slice", [shape, b.ints([a]), b.ints([z])],
                 hint=f"{hint}/dims{a}") for a, z in ranges]


def _bilinear_resize(b, L):
    p = L.layer.bilinear_resize_param
    if L.ranks[0] != 4:
        raise L.unsupported("only 4-D blobs are resized")
    nc, hw = _dims(b, L.x[0], L.name, (0, 2), (2, 4))
    if len(L.x) == 2:
        hw = _dims(b, L.x[1], L.name + "/ref", (2, 4))[0]
    elif p.height and p.width:
        hw = b.ints([p.height, p.width])
    elif p.zoom_factor != 1:
        hw = b.op("Mul", [hw, b.ints([p.zoom_factor] * 2)],
                  hint=L.name + "/zoom")
    sizes = b.op("Concat", [nc, hw], hint=L.name + "/sizes", axis=0)
    return [b.op("Resize", [L.x[0], "", "", sizes], L.out[0], mode="linear",
                 coordinate_transformation_mode="align_corners")]


def _renet(b, L):
    p = L.layer.renet_param
    unit = p.Unit.Name(p.unit)
    direction = p.Direction.Name(p.direction)
    s, t = int(p.patch_h), int(p.patch_w)
    if L.ranks[0] != 4:
        raise L.unsupported("the bottom must be N x C x H x W")
    L.need_blobs(6)
    op, _ = renet.ONNX_OPS[unit]
    d = int(np.shape(L.blobs[1])[1])
    k = int(np.shape(L.blobs[0])[1])
    if k % (s * t):
        raise L.unsupported(f"W has {k} columns, not C x {s} x {t}")
    per_dir = [renet.to_onnx(unit, *L.blobs[3 * i:3 * i + 3])
               for i in (0, 1)]
    W, R, B = (b.const(f"{L.name}/{what}",
                       np.stack([pd[j] for pd in per_dir]))
               for j, what in enumerate("WRB"))
    h = L.name
    x = L.x[0]
    if s > 1 or t > 1:
        hw, = _dims(b, x, h + "/in", (2, 4))
        pad_hw = b.op("Mod", [b.op("Neg", [hw], hint=h + "/neg"),
                              b.ints([s, t])], hint=h + "/pad_hw")
        pads = b.op("Concat", [b.ints([0] * 6), pad_hw], hint=h + "/pads",
                    axis=0)
        x = b.op("Pad", [x, pads], hint=h + "/padded")
    n, hp, wp = _dims(b, x, h, (0, 1), (2, 3), (3, 4))
    gh = b.op("Div", [hp, b.ints([s])], hint=h + "/gh")
    gw = b.op("Div", [wp, b.ints([t])], hint=h + "/gw")
    six = b.op("Concat", [b.ints([0, 0]), gh, b.ints([s]), gw, b.ints([t])],
               hint=h + "/patch_shape", axis=0)
    x6 = b.op("Reshape", [x, six], hint=h + "/patches")
    vertical = direction == "VERTICAL"
    # (gh, N, gw, C, s, t) for columns, (gw, N, gh, C, s, t) for rows
    perm = (2, 0, 4, 1, 3, 5) if vertical else (4, 0, 2, 1, 3, 5)
    seq = b.op("Reshape", [b.op("Transpose", [x6], hint=h + "/t_major",
                                perm=perm), b.ints([0, -1, k])],
               hint=h + "/sequences")
    attrs = dict(direction="bidirectional", hidden_size=d)
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    elif op == "RNN":
        attrs["activations"] = ["Relu", "Relu"]
    y = b.op(op, [seq, W, R, B], hint=h + "/" + op.lower(), **attrs)
    # Y: (T, 2, B, d) with B = N x (sequences per image)
    y5 = b.op("Reshape", [y, b.op("Concat", [b.ints([0, 2]), n,
                                             gw if vertical else gh,
                                             b.ints([d])],
                                  hint=h + "/y_shape", axis=0)],
              hint=h + "/y5")
    perm = (2, 1, 4, 0, 3) if vertical else (2, 1, 4, 3, 0)
    top = b.op("Transpose", [y5], hint=h + "/nchw", perm=perm)
    shape = b.op("Concat", [b.ints([0, 2 * d]), gh, gw], hint=h + "/shape",
                 axis=0)
    return [b.op("Reshape", [top, shape], L.out[0])]


#: Caffe layer type -> converter(builder, layer) -> top tensors.
CONVERTERS = {
    "Convolution": _conv, "Deconvolution": _deconv, "Pooling": _pooling,
    "ReLU": _relu, "Sigmoid": _unary("Sigmoid"), "TanH": _unary("Tanh"),
    "Dropout": _alias, "Split": _alias, "BatchNorm": _batch_norm,
    "Scale": _scale, "Bias": _bias, "Eltwise": _eltwise, "Concat": _concat,
    "Softmax": _softmax, "Power": _power, "Reduction": _reduction,
    "Crop": _crop, "BilinearResize": _bilinear_resize, "ReNet": _renet,
}

#: Types that stop the graph: they and every later layer form the tail.
TAIL_TYPES = ("DenseCRF",)


# ---------------------------------------------------------------------------
# The whole net

def _blob_json(arrays):
    return [{"shape": list(np.shape(a)),
             "data": np.asarray(a, np.float32).ravel().tolist()}
            for a in arrays]


def _tail_prototxt(name, layers, inputs, shapes):
    from google.protobuf import text_format
    from hrenet.inference import caffe_pb2
    net = caffe_pb2().NetParameter()
    net.name = name + "_tail"
    for blob in inputs:
        layer = net.layer.add()
        layer.name, layer.type = "input_" + blob, "Input"
        layer.top.append(blob)
        layer.input_param.shape.add().dim.extend(int(d) for d in shapes[blob])
    for layer in layers:
        net.layer.add().CopyFrom(layer)
    return text_format.MessageToString(net)


def split_at_crf(param):
    """(head, tail): the TEST-phase layers before the first DenseCRF and
    from it on (tail empty without one). Raises :class:`UnsupportedLayer`
    for the first head layer of a type with no converter."""
    layers = deploy_layers(param)
    cut = next((i for i, layer in enumerate(layers)
                if layer.type in TAIL_TYPES), len(layers))
    head, tail = layers[:cut], layers[cut:]
    for layer in head:
        if layer.type != "Input" and layer.type not in CONVERTERS:
            raise UnsupportedLayer(
                f"layer {layer.name!r} has type {layer.type!r}, which the "
                "ONNX export does not support (supported: Input, "
                + ", ".join(sorted(CONVERTERS)) + "; DenseCRF and what "
                "follows it run outside the graph)")
    return head, tail


def convert(param, params, shapes, dynamic=False, mean=None, scale=None,
            source=""):
    """An ONNX model of a deploy net.

    ``param``: the NetParameter; ``params``: {layer name: [arrays]} (its
    weights); ``shapes``: {blob: shape} at the export size (the graph
    input's static shape, ranks, the tail's input shapes); ``dynamic``:
    batch, height and width of the inputs symbolic. ``mean``/``scale``: the
    preprocessing recorded in the metadata.

    Returns (onnx.ModelProto, info) with info = {"inputs": [names],
    "outputs": {onnx output: caffe blob}, "output": the prediction output
    (ONNX name, or the tail's blob), "crf": the tail dict or None,
    "tensors": {caffe blob: the ONNX tensor of its last version before the
    tail}}. The
    tail dict ("prototxt": a net of Input layers for its inputs and the
    layers from the first DenseCRF on; "inputs": {blob: ONNX input or
    output name}; "blobs": {layer: [{"shape", "data"}]}; "output": its
    prediction blob) is also the ``hrenet.crf`` metadata.
    Raises :class:`UnsupportedLayer` for a layer it cannot express.
    """
    import onnx
    from onnx import TensorProto, helper
    head, tail = split_at_crf(param)
    b = _Builder()
    tensor = {}       # blob -> current tensor
    producer = {}     # tensor -> the blob it was made for
    graph_inputs = []
    open_blobs = []   # blobs produced and not consumed yet, in order
    for layer in head:
        if layer.type == "Input":
            for top in layer.top:
                shape = list(shapes[top])
                if dynamic:
                    prefix = f"{top}_" if graph_inputs else ""
                    sym = {0: "batch", 2: "height", 3: "width"}
                    if len(shape) != 4:
                        sym = {0: "batch"}
                    shape = [prefix + sym[i] if i in sym else d
                             for i, d in enumerate(shape)]
                name = b.name(top)
                graph_inputs.append(helper.make_tensor_value_info(
                    name, TensorProto.FLOAT, shape))
                tensor[top] = name
                producer[name] = top
                open_blobs.append(top)
            continue
        for bottom in layer.bottom:
            if bottom not in tensor:
                raise UnsupportedLayer(
                    f"layer {layer.name!r} (type {layer.type!r}): bottom "
                    f"{bottom!r} is not produced by an earlier layer")
            if bottom in open_blobs:
                open_blobs.remove(bottom)
        ranks = [len(shapes[bottom]) for bottom in layer.bottom]
        out = [b.name(top if top not in b.used else f"{top}/{layer.name}")
               for top in layer.top]
        L = _Layer(layer, [tensor[x] for x in layer.bottom], ranks,
                   [np.asarray(a) for a in params.get(layer.name, [])], out)
        made = CONVERTERS[layer.type](b, L)
        for top, t in zip(layer.top, made):
            tensor[top] = t
            producer.setdefault(t, top)
            if top in open_blobs:
                open_blobs.remove(top)
            open_blobs.append(top)
    input_names = [vi.name for vi in graph_inputs]
    crf = None
    wanted = list(open_blobs)
    if tail:
        needed = []
        made = set()
        for layer in tail:
            for bottom in layer.bottom:
                if bottom not in made and bottom not in needed:
                    if bottom not in tensor:
                        raise UnsupportedLayer(
                            f"layer {layer.name!r} (type {layer.type!r}): "
                            f"bottom {bottom!r} is not produced before it")
                    needed.append(bottom)
            made.update(layer.top)
        wanted = needed + [x for x in open_blobs if x not in needed]
        crf = {"inputs": {x: tensor[x] for x in needed}}
    # graph outputs: unique tensors, each named after the blob it was
    # made for (an earlier version of an in-place blob gives way)
    outputs = {}

    def rename(old, new):
        b.rename(old, new)
        for k, v in list(tensor.items()):
            if v == old:
                tensor[k] = new
        if old in producer:
            producer[new] = producer.pop(old)

    for blob in wanted:
        t = tensor[blob]
        if t in input_names or t in outputs:
            continue
        want = producer[t]
        if t != want and want not in input_names:
            if want in b.used:
                rename(want, b.name(want + "#0"))
            rename(t, want)
            t = want
        outputs[t] = producer[t]
    if crf is not None:
        crf["inputs"] = {x: tensor[x] for x in crf["inputs"]}
    graph = helper.make_graph(
        b.nodes, param.name or "net", graph_inputs,
        [helper.make_tensor_value_info(
            t, TensorProto.FLOAT,
            [None] * len(shapes[blob]) if dynamic else list(shapes[blob]))
         for t, blob in outputs.items()],
        initializer=b.inits)
    model = helper.make_model(
        graph, producer_name="hrenet", ir_version=IR_VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=f"{param.name}: exported from Caffe by "
        "tools/export_onnx.py" + (" (net up to its DenseCRF; the CRF runs "
                                  "after it, see metadata hrenet.crf)"
                                  if crf else ""))
    out_names = list(outputs)
    if crf is not None:
        final = _open_after(tail)
        crf["output"] = final[-1]
        crf["prototxt"] = _tail_prototxt(param.name or "net", tail,
                                         list(crf["inputs"]), shapes)
        crf["blobs"] = {layer.name: _blob_json(params[layer.name])
                        for layer in tail if params.get(layer.name)}
        prediction = crf["output"]
        classes = shapes[prediction][1]
    else:
        prediction = out_names[-1]
        classes = shapes[outputs[prediction]][1]
    props = {META["format"]: "1", META["source"]: source or param.name,
             META["input"]: input_names[0] if input_names else "",
             META["output"]: prediction, META["classes"]: str(int(classes)),
             META["mean"]: json.dumps([float(m) for m in (mean or [0] * 3)]),
             META["scale"]: repr(float(1.0 if scale is None else scale)),
             META["outputs"]: json.dumps(outputs)}
    if crf is not None:
        props[META["crf"]] = json.dumps(crf)
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model, {"inputs": input_names, "outputs": outputs,
                   "output": prediction, "crf": crf, "tensors": tensor}


def _open_after(layers):
    """Blobs the layers produce and do not consume, in order."""
    open_blobs = []
    for layer in layers:
        for bottom in layer.bottom:
            if bottom in open_blobs:
                open_blobs.remove(bottom)
        for top in layer.top:
            if top in open_blobs:
                open_blobs.remove(top)
            open_blobs.append(top)
    return open_blobs


def net_params(net):
    """{layer name: [arrays]} of a caffe.Net's parameter blobs (copies)."""
    out = {}
    for name, layer in zip(net._layer_names, net.layers):
        if len(layer.blobs):
            out[name] = [np.array(blob.data) for blob in layer.blobs]
    return out


def convert_net(net, param, dynamic=False, mean=None, scale=None,
                source=""):
    """:func:`convert` from a loaded caffe.Net (at the export size) and its
    NetParameter."""
    shapes = {name: tuple(blob.data.shape) for name, blob in net.blobs.items()}
    return convert(param, net_params(net), shapes, dynamic=dynamic,
                   mean=mean, scale=scale, source=source)


# ---------------------------------------------------------------------------
# Parity with pycaffe

def _compare(name, ref, got, rel_tol=REL_TOL):
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    if ref.shape != got.shape:
        return {"output": name, "shape": list(ref.shape),
                "onnx_shape": list(got.shape), "max_abs_diff": float("inf"),
                "range": 0.0, "rel_diff": float("inf"), "labels": 0.0}
    diff = float(np.abs(ref - got).max()) if ref.size else 0.0
    rng = float(ref.max() - ref.min()) if ref.size else 0.0
    # a constant output (one value per image) has no range: its magnitude
    scale = rng if rng > 0 else float(np.abs(ref).max()) if ref.size else 0
    rel = diff / scale if scale > 0 else diff
    labels, flipped, ties, margin = 1.0, 0, 0, 0.0
    if ref.ndim >= 2 and ref.shape[1] > 1:
        same = ref.argmax(1) == got.argmax(1)
        labels = float(np.mean(same))
        flipped = int(same.size - same.sum())
        if flipped:  # how close to a tie Caffe's scores were there
            top2 = np.sort(np.moveaxis(ref, 1, -1)[~same], axis=-1)[:, -2:]
            gaps = top2[:, 1] - top2[:, 0]
            margin = float(gaps.max())
            ties = int((gaps <= rel_tol * scale).sum())
        labels_or_ties = float((same.sum() + ties) / same.size)
    else:
        labels_or_ties = 1.0
    return {"output": name, "shape": list(ref.shape), "max_abs_diff": diff,
            "range": rng, "rel_diff": rel, "labels": labels,
            "flipped": flipped, "ties": ties, "flip_margin": margin,
            "labels_or_ties": labels_or_ties}


def parity_images(height, width, seed=0):
    """(name, BGR uint8 image): uniform noise and a photograph."""
    from hrenet.timing import test_image
    rng = np.random.default_rng(seed)
    return [("random", rng.integers(0, 256, (height, width, 3), np.uint8)),
            ("photo", test_image(height, width))]


def check_parity(net, onnx_model, sizes, mean, scale, seed=0):
    """Compare pycaffe's ``net`` with :class:`hrenet.onnx_run.OnnxModel`
    ``onnx_model`` on :func:`parity_images` at each (height, width) of
    ``sizes``.

    Records (input, height, width, output, max_abs_diff, range, rel_diff
    (max_abs_diff over the range, or over the magnitude of a constant
    output), labels (fraction of identical argmax labels), flipped (pixels
    whose label differs), ties (those of them where Caffe's top two scores
    are within ``REL_TOL`` x the range: either label is within the score
    tolerance), flip_margin (the largest top-two gap among them),
    labels_or_ties (what the label tolerance applies to), gate).

    Every ONNX output is compared with the Caffe blob it was made for
    (gate "logits": both tolerances apply). With a CRF tail, also the tail
    fed with Caffe's own blobs against the net's output (gate "logits": the
    tail's plumbing, expected exact) and the tail fed with the ONNX outputs
    (gate "labels": only the label agreement applies, since the CRF's
    softmax turns a logit difference into a probability difference that
    no longer scales with the logits' range).
    """
    from hrenet.inference import preprocess
    records = []
    data = onnx_model.input
    tail = onnx_model.tail
    for height, width in sizes:
        for kind, image in parity_images(height, width, seed):
            x = preprocess(image, mean, scale)
            blob = net.blobs[data]
            if tuple(blob.data.shape) != x.shape:
                blob.reshape(*x.shape)
                net.reshape()
            blob.data[...] = x
            net.forward()
            outs = onnx_model.run(x)
            where = dict(input=kind, height=height, width=width)
            for name, caffe_blob in onnx_model.outputs.items():
                records.append(dict(where, gate="logits", **_compare(
                    caffe_blob, net.blobs[caffe_blob].data, outs[name])))
            if tail is None:
                continue
            ref = np.array(net.blobs[tail.output].data)
            own = {name: np.array(net.blobs[b].data)
                   for name, b in onnx_model.outputs.items()}
            records.append(dict(where, gate="logits", **_compare(
                f"{tail.output} (CRF on Caffe's)", ref, tail(own, x))))
            records.append(dict(where, gate="labels", **_compare(
                f"{tail.output} (ONNX + CRF)", ref, tail(outs, x))))
    return records


def record_passed(r, rel_tol=REL_TOL, label_tol=LABEL_TOL):
    """One :func:`check_parity` record within the tolerances."""
    return (r.get("labels_or_ties", r["labels"]) >= label_tol
            and (r.get("gate") == "labels" or r["rel_diff"] <= rel_tol))


def parity_passed(records, rel_tol=REL_TOL, label_tol=LABEL_TOL):
    return all(record_passed(r, rel_tol, label_tol) for r in records)


def format_parity(records, rel_tol=REL_TOL, label_tol=LABEL_TOL):
    lines = [f"parity, pycaffe vs ONNX Runtime (pass: max |diff| <= "
             f"{rel_tol:g} x the Caffe output's range, >= "
             f"{100 * label_tol:g}% identical argmax labels, counting "
             "as a tie a pixel whose top two Caffe scores are closer than "
             "the score tolerance; after the CRF, labels only)",
             f"{'input':8} {'size':>9}  {'output':28} {'max |diff|':>10} "
             f"{'range':>10} {'rel':>9} {'labels':>9}  ok"]
    for r in records:
        ok = record_passed(r, rel_tol, label_tol)
        flips = (f" ({r['flipped']} px differ, {r['ties']} of them "
                 f"ties: Caffe's top two scores within {rel_tol:g} x the "
                 f"range; largest gap {r['flip_margin']:.2g})"
                 if r.get("flipped") else "")
        lines.append(
            f"{r['input']:8} {r['height']:>4}x{r['width']:<4}  "
            f"{r['output'][:28]:28} {r['max_abs_diff']:10.3g} "
            f"{r['range']:10.3g} {r['rel_diff']:9.2g} "
            f"{100 * r['labels']:8.4f}%  {'yes' if ok else 'NO'}{flips}")
    return "\n".join(lines) + "\n"


def check_sizes(height, width, dynamic):
    """The sizes the check runs at: the export size, and for a dynamic
    model a second one, odd in both (no patch size divides it): 3/4 of
    the first, or 5/4 where 3/4 has fewer than 10,000 pixels (below that,
    99.99% identical labels would mean all of them)."""
    if not dynamic:
        return [(height, width)]
    h2, w2 = max(8, height * 3 // 4) | 1, max(8, width * 3 // 4) | 1
    if h2 * w2 < 10000 <= height * width:
        h2, w2 = (height * 5 // 4) | 1, (width * 5 // 4) | 1
    return [(height, width), (h2, w2)]
