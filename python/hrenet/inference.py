"""Deploy nets through pycaffe: checked loading, preprocessing, prediction.

Conventions (the paper's nets and any net the tools accept):

* A deploy net has an ``Input`` layer named ``data`` with top ``data``
  (N x 3 x H x W, BGR, already mean-subtracted and scaled). The data layer's
  preprocessing is recorded on that layer as
  ``transform_param { mean_value: B mean_value: G mean_value: R scale: s }``
  (Input ignores it); :func:`resolve_transform` reads it, flags override it,
  and without either the mean is 0 and the scale 1, with a warning.
* The prediction comes from the net's last output (``net.outputs[-1]``):
  ``score`` logits (N x K x H x W at the input resolution) in plain nets,
  ``crf_prob`` marginals of a ``DenseCRF`` layer in CRF variants; a named blob
  overrides it. Prediction = argmax over channels.

Everything a user can get wrong raises :class:`ToolError` with one line that
names the file and the fix, *before* Caffe sees it: Caffe itself aborts the
process (glog ``CHECK``) on an unparsable prototxt, an unknown layer type,
weights whose shapes differ from the net, or ``--gpu`` on a CPU-only build.

GPU detection (:func:`cuda_build`, :func:`set_mode`): a CPU-only pycaffe is
compiled without the ``Blob._gpu_data_ptr`` property (``#ifndef CPU_ONLY`` in
``_caffe.cpp``), so its presence tells the build apart without touching CUDA.
In a CUDA build, whether device N can be used is probed in a child process
(``caffe.set_device`` aborts the process when there is no driver or device),
so a failure becomes a message instead of an abort.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


class ToolError(Exception):
    """A problem the user can fix; the tools print it as ``error: ...``."""


def import_caffe():
    """``import caffe``, or ToolError saying how to get it. Caffe's glog
    prints INFO lines unless GLOG_minloglevel is set before the import
    (the tools set it to 2 in their ``__main__``; this library leaves the
    process's environment alone)."""
    try:
        import caffe
    except ImportError as e:
        raise ToolError(f"cannot import pycaffe ({e}); run scripts/setup.sh "
                        "and use .venv/bin/python") from e
    return caffe


def caffe_pb2():
    import_caffe()
    from caffe.proto import caffe_pb2 as pb2
    return pb2


# ---------------------------------------------------------------------------
# Net and weights files

def require_file(path, what, fix=""):
    if not path or not os.path.isfile(path):
        raise ToolError(f"{path}: {what} does not exist" +
                        (f"; {fix}" if fix else ""))


def read_net_param(path):
    """The NetParameter of a prototxt; checks that it parses and that every
    layer type is registered in this build."""
    param = _parse_prototxt(path, caffe_pb2().NetParameter(), "net")
    known = set(import_caffe().layer_type_list())
    for layer in param.layer:
        if layer.type not in known:
            raise ToolError(f"{path}: layer {layer.name!r} has type "
                            f"{layer.type!r}, which this Caffe build does "
                            "not have; check the spelling or rebuild")
    return param


def read_solver_param(path):
    """The SolverParameter of a solver prototxt; checks that it parses."""
    return _parse_prototxt(path, caffe_pb2().SolverParameter(), "solver")


def _parse_prototxt(path, param, what):
    """Merges the text file `path` into the message `param`; a missing file
    or a parse error is a ToolError naming the file."""
    from google.protobuf import text_format
    require_file(path, f"{what} prototxt")
    try:
        with open(path) as f:
            text_format.Merge(f.read(), param)
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise ToolError(f"{path}: cannot parse the {what} prototxt "
                        f"({str(e).splitlines()[0]})") from e
    return param


def write_net_param(param, path):
    from google.protobuf import text_format
    from hrenet.files import write_text
    write_text(path, text_format.MessageToString(param))


def read_weights(path):
    """The NetParameter of a binary ``.caffemodel``."""
    require_file(path, "weights file", "check the path given to --weights")
    pb2 = caffe_pb2()
    param = pb2.NetParameter()
    try:
        with open(path, "rb") as f:
            param.ParseFromString(f.read())
    except Exception as e:
        raise ToolError(f"{path}: not a binary .caffemodel (protobuf "
                        "NetParameter), or cut short; give the weights file "
                        "that Caffe saved") from e
    if not len(param.layer) and not len(param.layers):
        raise ToolError(f"{path}: holds no layers; is it a .caffemodel?")
    return param


def _proto_shape(blob):
    if len(blob.shape.dim):
        return tuple(int(d) for d in blob.shape.dim), False
    return (int(blob.num), int(blob.channels), int(blob.height),
            int(blob.width)), True


def _shape_equal(target, proto_shape, legacy):
    if not legacy:
        return tuple(target) == proto_shape
    if len(target) > 4:
        return False
    return (1,) * (4 - len(target)) + tuple(target) == proto_shape


def check_weights(net, weights, path, require_match=True):
    """Check a parsed caffemodel against ``net`` the way Caffe's
    ``CopyTrainedLayersFrom`` will (layers matched by name, blob count and
    shapes equal), raising ToolError instead of Caffe's abort.

    Returns ``(matched layer names, net layers with parameters that the
    weights lack)``. ``require_match``: no common layer is an error.
    """
    names = list(net._layer_names)
    blobs = {name: [tuple(b.data.shape) for b in layer.blobs]
             for name, layer in zip(names, net.layers)}
    matched = []
    for layer in list(weights.layer) + list(weights.layers):
        if layer.name not in blobs:
            continue
        target = blobs[layer.name]
        if len(target) != len(layer.blobs):
            raise ToolError(
                f"{path}: layer {layer.name!r} has {len(layer.blobs)} "
                f"parameter blobs but the net's has {len(target)}; these "
                "weights belong to another net (rename the layer to skip "
                "it)")
        for i, (shape, blob) in enumerate(zip(target, layer.blobs)):
            src, legacy = _proto_shape(blob)
            if not _shape_equal(shape, src, legacy):
                raise ToolError(
                    f"{path}: layer {layer.name!r} blob {i} has shape "
                    f"{'x'.join(map(str, src))} but the net expects "
                    f"{'x'.join(map(str, shape))}; these weights do not "
                    "fit this net (rename the layer to skip it)")
        if len(layer.blobs):
            matched.append(layer.name)
    missing = [n for n in names if blobs[n] and n not in matched]
    if require_match and not matched and any(blobs.values()):
        raise ToolError(f"{path}: no layer name matches a layer of the net "
                        "that has parameters; these weights belong to "
                        "another net")
    return matched, missing


def load_weights(net, path, require_match=True, warn=None):
    """Copy ``path`` into ``net`` by layer name after :func:`check_weights`."""
    matched, missing = check_weights(net, read_weights(path), path,
                                     require_match)
    if missing and warn is not None:
        warn(f"{len(missing)} layer(s) with parameters are not in {path} "
             f"and keep their initial values: {', '.join(missing[:8])}"
             + (" ..." if len(missing) > 8 else ""))
    net.copy_from(path)
    return matched, missing


# ---------------------------------------------------------------------------
# Preprocessing

def data_layer(param, name="data"):
    for layer in param.layer:
        if layer.name == name and layer.type == "Input":
            return layer
    return None


def read_transform(param):
    """(mean, scale) recorded on the Input layer ``data``; None if absent."""
    layer = data_layer(param)
    if layer is None or not layer.HasField("transform_param"):
        return None, None
    tp = layer.transform_param
    mean = list(tp.mean_value) or None
    if mean is not None and len(mean) == 1:
        mean = mean * 3
    scale = tp.scale if tp.HasField("scale") else None
    return mean, scale


def resolve_transform(param, mean=None, scale=None, path="", warn=None):
    """Mean (3 BGR floats) and scale: flags, else the deploy net's record,
    else 0 and 1 with a warning."""
    net_mean, net_scale = read_transform(param)
    if mean is None:
        mean = net_mean
    if scale is None:
        scale = net_scale
    if mean is None and scale is None and warn is not None:
        warn(f"{path}: the Input layer 'data' records no transform_param "
             "(mean_value, scale) and no --mean/--scale was given; using "
             "mean 0 and scale 1")
    mean = [0.0, 0.0, 0.0] if mean is None else [float(m) for m in mean]
    if len(mean) != 3:
        raise ToolError(f"mean must have 3 values (B G R), got {mean}")
    return mean, 1.0 if scale is None else float(scale)


def preprocess(image, mean, scale):
    """BGR uint8 H x W x 3 -> float32 1 x 3 x H x W, (x - mean) * scale."""
    x = image.astype(np.float32)
    x -= np.asarray(mean, np.float32)
    if scale != 1.0:
        x *= np.float32(scale)
    return x.transpose(2, 0, 1)[None]


# ---------------------------------------------------------------------------
# DenseCRF

def crf_layers(param):
    return [layer for layer in param.layer if layer.type == "DenseCRF"]


def add_crf(param, score_blob, mean, scale, crf_params=None):
    """A copy of ``param`` with a ``DenseCRF`` layer ``crf`` (bottoms
    ``score_blob`` and ``data``, top ``crf_prob``) appended; unchanged if the
    net already has one. ``crf_params``: DenseCRFParameter fields."""
    out = type(param)()
    out.CopyFrom(param)
    if crf_layers(out):
        return out
    layer = out.layer.add()
    layer.name, layer.type = "crf", "DenseCRF"
    layer.bottom.extend([score_blob, "data"])
    layer.top.append("crf_prob")
    p = layer.dense_crf_param
    for key, value in (crf_params or {}).items():
        if key == "unary_type":
            value = {"logit": 0, "prob": 1}.get(value, value)
        setattr(p, key, value)
    p.mean_value.extend(float(m) for m in mean)
    p.scale = float(scale)
    return out


# ---------------------------------------------------------------------------
# Devices

def cuda_build():
    """True if pycaffe was built with CUDA (see the module doc)."""
    return hasattr(import_caffe()._caffe.Blob, "_gpu_data_ptr")


_PROBE = """
import sys
import caffe
caffe.set_device(int(sys.argv[1]))
caffe.set_mode_gpu()
b = caffe.Blob([4])
b.data[...] = 1
b._gpu_data_ptr
print("ok")
"""


def probe_gpu(device, timeout=300):
    """(ok, reason): can this process's pycaffe use GPU ``device``? Run in
    a child, since Caffe aborts on a missing driver or device."""
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE, str(device)],
                           capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, GLOG_minloglevel="2"))
    except subprocess.TimeoutExpired:
        return False, f"probing GPU {device} took over {timeout} s"
    if r.returncode == 0 and r.stdout.strip().endswith("ok"):
        return True, ""
    lines = [line for line in r.stderr.splitlines()
             if "Check failed" in line or "error" in line.lower()]
    reason = (lines[0] if lines else (r.stderr.strip().splitlines() or
                                      [f"exit status {r.returncode}"])[-1])
    return False, reason.split("] ", 1)[-1]


def set_mode(gpu=None):
    """CPU mode (``gpu`` None) or GPU ``gpu``, checked first."""
    caffe = import_caffe()
    if gpu is None:
        caffe.set_mode_cpu()
        _GPU_MODE[:] = [False]
        return "cpu"
    if gpu < 0:
        raise ToolError(f"--gpu {gpu}: give a device number >= 0")
    if not cuda_build():
        raise ToolError(f"--gpu {gpu}: this pycaffe ({caffe.__file__}) is a "
                        "CPU-only build; build with -DCPU_ONLY=OFF "
                        "(docs/CUDA.md) or leave out --gpu")
    ok, reason = probe_gpu(gpu)
    if not ok:
        raise ToolError(f"--gpu {gpu}: the GPU cannot be used ({reason}); "
                        "check nvidia-smi or leave out --gpu")
    caffe.set_device(gpu)
    caffe.set_mode_gpu()
    _GPU_MODE[:] = [True]
    return f"gpu{gpu}"


_GPU_MODE = [False]
_CUDART = []


def device_sync():
    """Wait for queued GPU work after :func:`set_mode` chose a GPU
    (cudaDeviceSynchronize through the CUDA runtime that pycaffe loaded,
    found in /proc/self/maps; else the first libcudart the loader finds,
    which syncs the same primary context); a no-op in CPU mode."""
    if not _GPU_MODE[0]:
        return
    lib = _cudart()
    if lib is not None:
        lib.cudaDeviceSynchronize()


def _cudart():
    if not _CUDART:
        import ctypes
        names = []
        try:
            with open("/proc/self/maps") as f:
                names = sorted({line.split()[-1] for line in f
                                if "libcudart" in line})
        except OSError:
            pass
        lib = None
        for name in names + ["libcudart.so", "libcudart.so.13",
                             "libcudart.so.12"]:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        _CUDART.append(lib)
    return _CUDART[0]


# ---------------------------------------------------------------------------
# Loading and running a deploy net

def blob_names(net):
    """The net's blob names, without the copies Caffe's Split layers add."""
    names = list(net.blobs.keys())
    hidden = set()
    for i, layer in enumerate(net.layers):
        if layer.type == "Split":
            hidden.update(names[j] for j in net._top_ids(i))
    return [n for n in names if n not in hidden]


class Model(object):
    """A loaded deploy net with its preprocessing and output blob.

    Build with :func:`load_model`. ``predict(image)`` returns the label map
    and the scores at the image's size.
    """

    def __init__(self, net, param, mean, scale, blob, path):
        self.net, self.param = net, param
        self.mean, self.scale = mean, scale
        self.blob, self.path = blob, path
        if "data" not in net.blobs:
            raise ToolError(f"{path}: the net has no blob 'data'; a deploy "
                            "net needs an Input layer named data with top "
                            "data")
        if blob not in net.blobs:
            raise ToolError(f"{path}: the net has no blob {blob!r}; it has: "
                            + ", ".join(blob_names(net)))

    @property
    def num_classes(self):
        return int(self.net.blobs[self.blob].data.shape[1])

    def forward(self, image, copy=True):
        """Scores (K x H x W float32) for a BGR uint8 image, resized
        bilinearly to the image's size if the net's output differs.
        ``copy=False`` may return a view of the net's blob, valid until the
        next forward."""
        x = preprocess(image, self.mean, self.scale)
        data = self.net.blobs["data"]
        if tuple(data.data.shape) != x.shape:
            data.reshape(*x.shape)
            self.net.reshape()
        data.data[...] = x
        self.net.forward()
        scores = self.net.blobs[self.blob].data[0]
        h, w = image.shape[:2]
        if scores.shape[1:] != (h, w):
            return resize_scores(scores, h, w)
        return np.array(scores, np.float32) if copy else scores

    def predict(self, image):
        """(label uint8 H x W, scores K x H x W, forward seconds)."""
        t0 = time.perf_counter()
        scores = self.forward(image)
        device_sync()
        seconds = time.perf_counter() - t0
        return argmax_channels(scores), scores, seconds

    def bytes_per_pixel(self):
        """Bytes of the net's blobs (float32 activations) per input pixel,
        at the current input size: the memory a forward pass needs scales
        with this (layers' scratch memory comes on top)."""
        h, w = self.net.blobs["data"].data.shape[2:]
        total = sum(b.count for b in self.net.blobs.values())
        return 4.0 * total / max(1, h * w)

    def predict_label(self, image, max_side=0):
        """(label uint8 H x W, forward seconds, size the net ran at); see
        :func:`predict_label`."""
        return predict_label(self, image, max_side)


def predict_label(model, image, max_side=0):
    """(label uint8 H x W, forward seconds, size the net ran at) of
    ``model`` (a :class:`Model`, or :class:`hrenet.onnx_run.OnnxModel`: any
    object with ``predict(image)`` and ``forward(image, copy)``).

    ``max_side`` > 0: an image whose longer side exceeds it runs scaled
    down to that side (area interpolation); the scores are upsampled
    bilinearly to the full size in bands of rows and the label is their
    argmax, so memory stays that of the smaller run.
    """
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        label, _, seconds = model.predict(image)
        return label, seconds, (h, w)
    import cv2
    f = max_side / float(max(h, w))
    sh, sw = max(1, int(round(h * f))), max(1, int(round(w * f)))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    t0 = time.perf_counter()
    scores = model.forward(small, copy=False)
    device_sync()
    seconds = time.perf_counter() - t0
    return upsample_argmax(scores, h, w), seconds, (sh, sw)


def argmax_channels(scores):
    """``scores.argmax(axis=0)`` as uint8 for K x H x W scores (K <= 256),
    in K vectorised passes over H x W (about twice as fast as numpy's
    argmax over the first axis, which walks the array with a stride).
    Ties go to the lowest class, as with argmax."""
    scores = np.asarray(scores)
    if scores.shape[0] > 256:
        return scores.argmax(axis=0)
    best = scores[0].copy()
    label = np.zeros(best.shape, np.uint8)
    better = np.empty(best.shape, bool)
    for c in range(1, scores.shape[0]):
        np.greater(scores[c], best, out=better)
        np.maximum(best, scores[c], out=best)
        np.putmask(label, better, c)
    return label


def _bilinear_taps(size_in, size_out):
    """Source indices and weights of a bilinear resize (OpenCV's
    half-pixel convention, edges clamped)."""
    x = (np.arange(size_out) + 0.5) * (size_in / float(size_out)) - 0.5
    x = np.clip(x, 0, size_in - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, size_in - 1)
    return i0, i1, (x - i0).astype(np.float32)


def upsample_argmax(scores, height, width, band=128):
    """argmax over channels of K x h x w ``scores`` resized bilinearly to
    ``height`` x ``width``, computed in bands of rows (memory K x band x
    width, not K x height x width). uint8 labels (K <= 256)."""
    scores = np.asarray(scores, np.float32)
    y0, y1, wy = _bilinear_taps(scores.shape[1], height)
    x0, x1, wx = _bilinear_taps(scores.shape[2], width)
    label = np.empty((height, width), np.uint8)
    for r in range(0, height, band):
        sl = slice(r, min(r + band, height))
        a = wy[sl][None, :, None]
        rows = scores[:, y0[sl], :] * (1 - a) + scores[:, y1[sl], :] * a
        full = rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx
        label[sl] = argmax_channels(full)
    return label


def resize_scores(scores, height, width):
    """K x h x w -> K x height x width, bilinear (OpenCV, per 512 channels)."""
    import cv2
    out = np.empty((scores.shape[0], height, width), np.float32)
    for c0 in range(0, scores.shape[0], 512):
        chunk = np.ascontiguousarray(scores[c0:c0 + 512].transpose(1, 2, 0))
        r = cv2.resize(chunk, (width, height),
                       interpolation=cv2.INTER_LINEAR)
        out[c0:c0 + 512] = r.reshape(height, width, -1).transpose(2, 0, 1)
    return out


def load_model(model, weights, crf=False, crf_params=None, mean=None,
               scale=None, blob=None, warn=None):
    """Load a deploy net with checked weights; see the module doc.

    ``crf``: use the net's DenseCRF layer or append one (:func:`add_crf`)
    after the output blob (``blob`` or the net's last output). Set the
    device first (:func:`set_mode`).
    """
    caffe = import_caffe()
    param = read_net_param(model)
    if data_layer(param) is None:
        raise ToolError(f"{model}: no Input layer named 'data'; a deploy net "
                        "needs one (N x 3 x H x W, BGR)")
    mean, scale = resolve_transform(param, mean, scale, model, warn)
    weights_param = read_weights(weights) if weights else None
    if crf and not crf_layers(param):
        probe = caffe.Net(model, caffe.TEST)
        score = blob or probe.outputs[-1]
        if score not in probe.blobs:
            raise ToolError(f"{model}: the net has no blob {score!r}; it "
                            "has: " + ", ".join(blob_names(probe)))
        del probe
        param = add_crf(param, score, mean, scale, crf_params)
        blob = "crf_prob"
    elif crf:
        blob = blob or crf_layers(param)[-1].top[0]
    fd, path = tempfile.mkstemp(suffix=".prototxt", prefix="deploy_")
    os.close(fd)
    try:
        write_net_param(param, path)
        net = caffe.Net(path, caffe.TEST)
    finally:
        os.remove(path)
    if weights_param is not None:
        matched, missing = check_weights(net, weights_param, weights)
        if missing and warn is not None:
            warn(f"{len(missing)} layer(s) with parameters are not in "
                 f"{weights} and keep their initial values: "
                 + ", ".join(missing[:8]))
        net.copy_from(weights)
    elif warn is not None:
        warn(f"{model}: no --weights given; the net runs with its initial "
             "(filler) weights")
    return Model(net, param, mean, scale, blob or net.outputs[-1], model)
