"""Import a caffemodel trained with the H-ReNet authors' Caffe fork.

The authors' fork (``stephenyan1231/caffe-hybridnet``, branch ``hybridnet``)
saves H-ReNet in layer types of its own: ``ReNetLSTM``,
``BilinearInterpolation`` and ``DenseCRFMeanfield``. Their layer-specific
fields use LayerParameter numbers 141-147, which upstream Caffe (and so this
project) gives to other messages (bias_param, scale_param, input_param,
crop_param, ...), so a plain ``ParseFromString`` of their file misreads or
rejects those fields. This module reads their file at the protobuf wire
level: it sets their private fields aside, decodes the ones it needs from
the wire format, and parses the rest of every layer with this project's
``caffe_pb2``.

Their layouts, as their layers define them:

* ``ReNetLSTM``: 11 blobs per direction (forward sweep first). Blobs 0-3
  are the input gate, cell input, output gate and forget gate weights
  ``W_i, W_c, W_o, W_f``, each d x (K + d): the patch's K = C s t inputs,
  then the d recurrent inputs (the previous hidden state). Blobs 4-6 are
  the peephole matrices ``W_ic, W_oc, W_fc`` (d x d), used only with
  ``peephole: true``. Blobs 7-10 are the biases ``b_i, b_c, b_o, b_f``.
  Our ``ReNet`` layer stores W (4d x K), U (4d x d) and b (4d) per
  direction in the gate order i, f, o, g (g = their cell input c), so the
  conversion splits each matrix into its input and recurrent columns and
  reorders the gates. Directions, the patch feature order (c, dy, dx), the
  zero initial state and the top's channel order are the same.
* ``DenseCRFMeanfield``: blobs spatial weight (1x1x1x1), bilateral weight
  (1x1x1x1), label compatibility (1x1xLxL): our ``DenseCRF`` with
  ``param_blobs: true`` stores them in the same order and shapes.
* ``BilinearInterpolation`` has no blobs; ``Convolution`` and ``BatchNorm``
  blobs are upstream's and are copied as they are.

:func:`import_model` maps every layer with parameters by name onto our
``prototxt/hrenet/released/deploy.prototxt`` (their deploy file, layer for
layer), checks every shape and writes our caffemodel atomically.
"""
import os
import struct

import numpy as np

from hrenet.files import atomic_path
from hrenet.inference import ToolError, import_caffe

RELEASED_DEPLOY = os.path.join("prototxt", "hrenet", "released",
                               "deploy.prototxt")
#: Their LayerParameter fields that collide with upstream's numbers.
PRIVATE_FIELDS = range(141, 148)
RENET_LSTM_PARAM = 143  # their renet_lstm_param
#: Their layer type -> ours.
TYPE_MAP = {"ReNetLSTM": "ReNet", "BilinearInterpolation": "BilinearResize",
            "DenseCRFMeanfield": "DenseCRF"}
BLOBS_PER_DIRECTION = 11
THEIR_GATES = ("i", "c", "o", "f")  # their blob order
OUR_GATES = ("i", "f", "o", "c")    # ours: i, f, o, g (g = their c)


class HybridNetError(ToolError):
    """A caffemodel that cannot be imported (one line, names the fix)."""


# --------------------------------------------------------------------------
# Protobuf wire format (the few pieces needed).

def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def wire_fields(buf):
    """[(field number, wire type, value, raw bytes of the whole field)].

    value: an int (varint, fixed32, fixed64) or the payload bytes
    (length-delimited). Raises ValueError on a truncated or malformed
    message (groups are not used by Caffe and are rejected).
    """
    out = []
    pos = 0
    n = len(buf)
    while pos < n:
        start = pos
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > n:
                raise ValueError("truncated fixed64")
            value = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > n:
                raise ValueError("truncated length-delimited field %d"
                                 % field)
            value = bytes(buf[pos:pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > n:
                raise ValueError("truncated fixed32")
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        out.append((field, wire, value, bytes(buf[start:pos])))
    return out


def encode_varint(value):
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_field(field, wire, payload):
    """One field: key, then a varint (wire 0), length + bytes (wire 2) or
    a little-endian float (wire 5)."""
    key = encode_varint(field << 3 | wire)
    if wire == 0:
        return key + encode_varint(payload)
    if wire == 2:
        return key + encode_varint(len(payload)) + payload
    if wire == 5:
        return key + struct.pack("<f", payload)
    raise ValueError("wire type %d" % wire)


# --------------------------------------------------------------------------
# Their caffemodel.

class TheirLayer(object):
    """One layer of their caffemodel: ``proto`` (our LayerParameter parsed
    from every field but the blobs and their private fields), ``blobs``
    (numpy arrays in their stored shapes), ``private`` {field: payload} and,
    for ReNetLSTM, ``renet`` (direction, num_output, patch_width,
    patch_height, peephole)."""

    def __init__(self, proto, blobs, private):
        self.proto = proto
        self.blobs = blobs
        self.private = private
        self.renet = None
        if proto.type == "ReNetLSTM":
            self.renet = _renet_lstm_param(private.get(RENET_LSTM_PARAM,
                                                       b""))

    @property
    def name(self):
        return self.proto.name

    @property
    def type(self):
        return self.proto.type

    def phases(self):
        """The phases the layer is included in (empty: every phase)."""
        return [rule.phase for rule in self.proto.include
                if rule.HasField("phase")]


def _packed(value, wire, dtype):
    """A repeated numeric field's values: packed (wire 2) or one (0/1/5)."""
    if wire == 2:
        if dtype in ("<f4", "<f8"):
            return np.frombuffer(value, dtype=dtype)
        out, pos = [], 0
        while pos < len(value):
            v, pos = _varint(value, pos)
            out.append(v)
        return np.asarray(out, dtype=np.int64)
    if dtype == "<f4":
        return np.frombuffer(struct.pack("<I", value), dtype="<f4")
    if dtype == "<f8":
        return np.frombuffer(struct.pack("<Q", value), dtype="<f8")
    return np.asarray([value], dtype=np.int64)


def decode_blob(payload):
    """A BlobProto's data as a float32 array in its stored shape (the
    shape field, or the legacy num/channels/height/width)."""
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}
    shape, parts, double_parts = None, [], []
    for field, wire, value, _ in wire_fields(payload):
        if field in legacy and wire == 0:
            legacy[field] = value
        elif field == 5:
            parts.append(_packed(value, wire, "<f4"))
        elif field == 8:
            double_parts.append(_packed(value, wire, "<f8"))
        elif field == 7 and wire == 2:
            dims = [_packed(v, w, "int") for f, w, v, _ in wire_fields(value)
                    if f == 1]
            shape = tuple(int(d) for d in np.concatenate(dims)) if dims \
                else ()
    data = np.concatenate(parts) if parts else (
        np.concatenate(double_parts) if double_parts else np.zeros(0))
    if shape is None:
        shape = (legacy[1], legacy[2], legacy[3], legacy[4])
    if int(np.prod(shape)) != data.size:
        raise ValueError("a blob of shape %s holds %d values"
                         % ("x".join(map(str, shape)), data.size))
    return data.astype(np.float32).reshape(shape)


def _renet_lstm_param(payload):
    """Their ReNetLSTMParameter fields, with their proto's defaults."""
    p = dict(direction=0, num_output=0, patch_width=1, patch_height=1,
             peephole=True)
    names = {1: "direction", 2: "num_output", 3: "patch_width",
             4: "patch_height", 10: "peephole"}
    for field, wire, value, _ in wire_fields(payload):
        if field in names and wire == 0:
            p[names[field]] = bool(value) if field == 10 else value
    return p


def read_their_model(path):
    """The layers of a caffemodel saved by the authors' fork, in order.

    Raises HybridNetError (one line naming the file) when it is missing,
    truncated, or not a NetParameter.
    """
    import_caffe()
    from caffe.proto import caffe_pb2
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise HybridNetError("cannot read %s: %s" % (path, e.strerror))
    try:
        net_fields = wire_fields(data)
    except ValueError as e:
        raise HybridNetError("%s is not a complete caffemodel (%s): the file "
                             "is truncated or not a Caffe model; download it "
                             "again" % (path, e))
    layers = []
    for field, wire, value, _ in net_fields:
        if field == 2 and wire == 2:
            raise HybridNetError("%s holds V1 layers (a pre-2015 model); "
                                 "upgrade it with Caffe's "
                                 "upgrade_net_proto_binary first" % path)
        if field != 100 or wire != 2:
            continue
        try:
            fields = wire_fields(value)
            kept = b"".join(raw for f, _, _, raw in fields
                            if f not in PRIVATE_FIELDS and f != 7)
            proto = caffe_pb2.LayerParameter()
            proto.ParseFromString(kept)
            blobs = [decode_blob(v) for f, w, v, _ in fields
                     if f == 7 and w == 2]
        except Exception as e:  # protobuf raises its own DecodeError
            raise HybridNetError(
                "%s: layer %d cannot be decoded (%s); the file is damaged"
                % (path, len(layers) + 1, e))
        private = {f: v for f, w, v, _ in fields
                   if f in PRIVATE_FIELDS and w == 2}
        layers.append(TheirLayer(proto, blobs, private))
    if not layers:
        raise HybridNetError("%s holds no layers: it is not a caffemodel "
                             "saved by Caffe" % path)
    return layers


# --------------------------------------------------------------------------
# Conversion.

def convert_renet(blobs, num_output, name):
    """Their 22 ReNetLSTM blobs -> our 6 ReNet blobs (W, U, b per direction).

    Returns ([W_fwd, U_fwd, b_fwd, W_bwd, U_bwd, b_bwd], peephole_max_abs).
    """
    if len(blobs) != 2 * BLOBS_PER_DIRECTION:
        raise HybridNetError("layer %s (ReNetLSTM) has %d blobs; their "
                             "layer stores 22 (11 per direction)"
                             % (name, len(blobs)))
    d = num_output
    out = []
    peephole = 0.0
    for direction in range(2):
        b = [np.asarray(x, dtype=np.float32) for x in
             blobs[direction * BLOBS_PER_DIRECTION:
                   (direction + 1) * BLOBS_PER_DIRECTION]]
        gates = dict(zip(THEIR_GATES, b[0:4]))
        biases = dict(zip(THEIR_GATES, b[7:11]))
        for g in THEIR_GATES:
            w = gates[g].reshape(gates[g].shape[-2:]) \
                if gates[g].ndim > 2 else gates[g]
            if w.ndim != 2 or w.shape[0] != d or w.shape[1] <= d:
                raise HybridNetError(
                    "layer %s (ReNetLSTM): gate %s weights are %s, expected "
                    "%d x (inputs + %d)" % (name, g, tuple(gates[g].shape),
                                            d, d))
            gates[g] = w
            if biases[g].size != d:
                raise HybridNetError("layer %s (ReNetLSTM): bias %s has %d "
                                     "values, expected %d"
                                     % (name, g, biases[g].size, d))
        k = gates["i"].shape[1] - d
        for g in THEIR_GATES:
            if gates[g].shape[1] != k + d:
                raise HybridNetError("layer %s (ReNetLSTM): the gates' "
                                     "weights differ in shape" % name)
        for p in b[4:7]:
            if p.size:
                peephole = max(peephole, float(np.abs(p).max()))
        out.append(np.concatenate([gates[g][:, :k] for g in OUR_GATES]))
        out.append(np.concatenate([gates[g][:, k:] for g in OUR_GATES]))
        out.append(np.concatenate([biases[g].reshape(d) for g in OUR_GATES]))
    return out, peephole


def _layer_types(deploy):
    """{layer name: type} of our deploy prototxt."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net_param = caffe_pb2.NetParameter()
    with open(deploy) as f:
        text_format.Merge(f.read(), net_param)
    return {layer.name: layer.type for layer in net_param.layer}


def _pick_entries(layers):
    """One entry per layer name that has parameters, in file order; a copy
    included in TEST (or in every phase) beats a TRAIN-only copy."""
    from caffe.proto import caffe_pb2
    chosen, order = {}, []
    for layer in layers:
        if not layer.blobs:
            continue
        prev = chosen.get(layer.name)
        if prev is None:
            order.append(layer.name)
            chosen[layer.name] = layer
        elif caffe_pb2.TRAIN in prev.phases() and \
                caffe_pb2.TRAIN not in layer.phases():
            chosen[layer.name] = layer
    return [chosen[name] for name in order]


def _shape(a):
    return "x".join(str(int(n)) for n in a.shape)


def import_model(theirs, out, deploy=RELEASED_DEPLOY, ignore_peepholes=False):
    """Convert ``theirs`` (a caffemodel of the authors' fork) into our
    caffemodel ``out`` for ``deploy`` (our released deploy net).

    Every layer of theirs with parameters must map by name onto a layer of
    ours of the corresponding type, blob for blob and shape for shape;
    layers without parameters (data, ReLU, loss, ...) are skipped, and a
    TRAIN-only copy of a layer gives way to its TEST copy. A model without
    the CRF layer (trained without it) keeps our CRF's initial values, which
    are their layer's (spatial weight 3, bilateral weight 5, Potts). Their
    ReNetLSTM peepholes cannot be reproduced (our LSTM has none): a model
    with ``peephole: true`` or non-zero peephole blobs stops the import,
    unless ``ignore_peepholes`` (what their fork computes with their deploy
    file, which sets ``peephole: false``). Nothing is written unless
    everything converts. Returns the table of what was done: [(layer, their
    type, our type, what)].
    """
    caffe = import_caffe()
    entries = _pick_entries(read_their_model(theirs))
    if not os.path.exists(deploy):
        raise HybridNetError("our deploy net %s is missing; run from the "
                             "repository root or pass --model" % deploy)
    our_types = _layer_types(deploy)
    net = caffe.Net(deploy, caffe.TEST)
    names = set(e.name for e in entries)
    for e in entries:
        if e.name not in net.params:
            raise HybridNetError(
                "layer %s (type %s) of %s has parameters but %s has no "
                "layer of that name: this is not a model of the authors' "
                "released H-ReNet" % (e.name, e.type, theirs, deploy))
    table = []
    for name in net.params:
        if name in names:
            continue
        if our_types[name] == "DenseCRF":
            table.append((name, "-", "DenseCRF",
                          "not in the model: initial values (their "
                          "layer's: weights 3 and 5, Potts)"))
            continue
        raise HybridNetError("%s has no layer %s (type %s) that %s needs: "
                             "the model is incomplete or of another net"
                             % (theirs, name, our_types[name], deploy))
    converted = {}
    for e in entries:
        ours = our_types[e.name]
        if TYPE_MAP.get(e.type, e.type) != ours:
            raise HybridNetError("layer %s is a %s in %s but a %s in %s"
                                 % (e.name, e.type, theirs, ours, deploy))
        blobs = e.blobs
        what = ""
        if e.type == "ReNetLSTM":
            d = net.params[e.name][1].data.shape[1]
            if e.renet["num_output"] and e.renet["num_output"] != d:
                raise HybridNetError(
                    "layer %s (ReNetLSTM) has %d units per direction, %s "
                    "expects %d" % (e.name, e.renet["num_output"], deploy, d))
            blobs, peep = convert_renet(blobs, d, e.name)
            if e.renet["peephole"] or peep:
                if not ignore_peepholes:
                    why = ("was trained with peephole: true"
                           if e.renet["peephole"] else
                           "has non-zero peephole weights (max |w| %.3g)"
                           % peep)
                    raise HybridNetError(
                        "layer %s (ReNetLSTM) %s, which our LSTM cannot "
                        "reproduce; pass --ignore-peepholes to drop them as "
                        "their deploy file does (peephole: false)"
                        % (e.name, why))
                what = "peepholes dropped; "
            what += "gates (i, c, o, f) -> (i, f, o, g), W|U split; "
        converted[e.name] = blobs
        dst = net.params[e.name]
        if len(blobs) != len(dst):
            raise HybridNetError("layer %s (%s) has %d blobs, %s expects %d"
                                 % (e.name, e.type, len(blobs), deploy,
                                    len(dst)))
        for i, (src, target) in enumerate(zip(blobs, dst)):
            if src.shape != target.data.shape and (
                    src.size != target.data.size or
                    _squeeze(src.shape) != _squeeze(target.data.shape)):
                raise HybridNetError(
                    "layer %s (%s) blob %d is %s, %s expects %s"
                    % (e.name, e.type, i, _shape(src), deploy,
                       _shape(target.data)))
        table.append((e.name, e.type, ours,
                      what + ", ".join(_shape(t.data) for t in dst)))
    for e in entries:
        for src, target in zip(converted[e.name], net.params[e.name]):
            target.data[...] = src.reshape(target.data.shape)
    with atomic_path(out) as tmp:
        net.save(tmp)
    return table


def _squeeze(shape):
    return tuple(int(n) for n in shape if n != 1)
