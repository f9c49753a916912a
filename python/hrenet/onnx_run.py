"""Run a model written by tools/export_onnx.py with ONNX Runtime.

:class:`OnnxModel` has the interface of :class:`hrenet.inference.Model`
(``mean``, ``scale``, ``blob``, ``num_classes``, ``forward(image)``,
``predict(image)``), so the tools take either. It reads the model's
metadata (:data:`hrenet.onnx_export.META`): the image input, the output to
predict from, the BGR mean and scale, and for nets that ended in a DenseCRF
the tail: the CRF layer (and what followed it) as a small Caffe net with
its parameter blobs, which :class:`CrfTail` runs through pycaffe on the
ONNX Runtime outputs. Only a model with a CRF (its own, or one appended
with ``crf_params``) needs pycaffe; the rest needs ``onnxruntime`` and
NumPy.

Nothing runs at import.
"""
import json
import os
import tempfile
import time

import numpy as np

from hrenet.inference import (ToolError, argmax_channels, preprocess,
                              resize_scores)
from hrenet.onnx_export import META


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise ToolError(f"cannot import onnxruntime ({e}); install the "
                        "pinned version from python/requirements.txt") from e
    return onnxruntime


class CrfTail(object):
    """The layers from a net's DenseCRF on, run through pycaffe.

    ``spec``: the ``hrenet.crf`` metadata (see
    :func:`hrenet.onnx_export.convert`). ``tail(outputs, x)`` feeds each
    tail input from the ONNX Runtime ``outputs`` (or the preprocessed image
    ``x`` for the graph input) and returns the tail's output blob.
    """

    def __init__(self, spec, image_input):
        from hrenet.inference import import_caffe
        self.spec = spec
        self.inputs = dict(spec["inputs"])
        self.output = spec["output"]
        self.image_input = image_input
        caffe = import_caffe()
        fd, path = tempfile.mkstemp(suffix=".prototxt", prefix="crf_tail_")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(spec["prototxt"])
            self.net = caffe.Net(path, caffe.TEST)
        finally:
            os.remove(path)
        names = list(self.net._layer_names)
        for name, blobs in spec.get("blobs", {}).items():
            layer = self.net.layers[names.index(name)]
            for blob, saved in zip(layer.blobs, blobs):
                blob.data[...] = np.asarray(saved["data"], np.float32) \
                    .reshape(saved["shape"])

    def __call__(self, outputs, x):
        net = self.net
        reshaped = False
        for blob, source in self.inputs.items():
            value = x if source == self.image_input else outputs[source]
            if tuple(net.blobs[blob].data.shape) != value.shape:
                net.blobs[blob].reshape(*value.shape)
                reshaped = True
        if reshaped:
            net.reshape()
        for blob, source in self.inputs.items():
            net.blobs[blob].data[...] = (x if source == self.image_input
                                         else outputs[source])
        net.forward()
        return np.array(net.blobs[self.output].data)


class OnnxModel(object):
    """An exported model in an ONNX Runtime session; see the module doc.

    ``model``: a path or the serialised bytes. ``mean``/``scale`` override
    the metadata's; ``blob`` names an ONNX output to predict from instead
    of the default (the tail's output for CRF nets: then no tail runs);
    ``crf_params`` (DenseCRFParameter fields of :class:`hrenet.crf.DenseCRF`)
    appends our DenseCRF to a model that has none; ``providers`` defaults
    to the CPU.
    """

    def __init__(self, model, mean=None, scale=None, blob=None,
                 crf_params=None, providers=None, threads=None):
        ort = import_onnxruntime()
        self.path = model if isinstance(model, str) else "<model>"
        if isinstance(model, str) and not os.path.isfile(model):
            raise ToolError(f"{model}: ONNX model does not exist")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                model, options,
                providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph
            raise ToolError(f"{self.path}: ONNX Runtime cannot load it "
                            f"({str(e).splitlines()[0]})") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        self.meta = dict(meta)
        inputs = self.session.get_inputs()
        self.input = meta.get(META["input"]) or inputs[0].name
        self.input_shape = next(i.shape for i in inputs
                                if i.name == self.input)
        names = [o.name for o in self.session.get_outputs()]
        self.outputs = json.loads(meta.get(META["outputs"], "{}")) or {
            n: n for n in names}
        self.mean = (list(mean) if mean is not None else
                     json.loads(meta.get(META["mean"], "[0, 0, 0]")))
        self.scale = float(scale if scale is not None else
                           meta.get(META["scale"], 1.0))
        spec = json.loads(meta[META["crf"]]) if META["crf"] in meta else None
        if blob is not None:
            if blob not in names and not (spec and blob == spec["output"]):
                raise ToolError(f"{self.path}: no output {blob!r}; it has: "
                                + ", ".join(names))
            if blob in names:
                spec = None
        self.tail = CrfTail(spec, self.input) if spec else None
        self.blob = blob or meta.get(META["output"]) or names[-1]
        self.classes = int(meta.get(META["classes"], 0)) or None
        self.extra_crf = None
        if crf_params is not None and self.tail is None:
            from hrenet.crf import DenseCRF
            self.extra_crf = DenseCRF(**crf_params)

    @property
    def num_classes(self):
        if self.classes:
            return self.classes
        for o in self.session.get_outputs():
            if o.name == self.blob and isinstance(o.shape[1], int):
                return o.shape[1]
        raise ToolError(f"{self.path}: the number of classes is not in the "
                        "model's metadata")

    def check_size(self, shape):
        fixed = self.input_shape
        if len(fixed) == len(shape) and all(
                not isinstance(f, int) or f == s
                for f, s in zip(fixed, shape)):
            return
        want = "x".join(str(f) for f in fixed)
        raise ToolError(f"{self.path}: exported for {want} inputs, got "
                        f"{'x'.join(map(str, shape))}; export with --dynamic "
                        "to run any size")

    def run(self, x):
        """{ONNX output: array} for a preprocessed N x 3 x H x W input."""
        self.check_size(x.shape)
        names = [o.name for o in self.session.get_outputs()]
        values = self.session.run(names, {self.input: x})
        return dict(zip(names, values))

    def forward(self, image, copy=True):
        """Scores (K x H x W float32) for a BGR uint8 image, after the CRF
        tail if any, resized to the image's size if the output differs."""
        x = preprocess(image, self.mean, self.scale)
        outs = self.run(x)
        if self.tail is not None:
            scores = self.tail(outs, x)[0]
        else:
            scores = outs[self.blob][0]
        h, w = image.shape[:2]
        if scores.shape[1:] != (h, w):
            scores = resize_scores(scores, h, w)
        if self.extra_crf is not None:
            scores = self.extra_crf(scores, image)
        return np.asarray(scores, np.float32)

    def predict(self, image):
        """(label uint8 H x W, scores K x H x W, seconds)."""
        t0 = time.perf_counter()
        scores = self.forward(image)
        seconds = time.perf_counter() - t0
        return argmax_channels(scores), scores, seconds

    def bytes_per_pixel(self):
        """Memory per input pixel, for infer.py's warning: unknown for an
        ONNX Runtime session, so 0 (no warning)."""
        return 0.0

    def predict_label(self, image, max_side=0):
        """As :func:`hrenet.inference.predict_label`: (label, seconds, size
        the net ran at), an image above ``max_side`` run scaled down."""
        from hrenet.inference import predict_label
        return predict_label(self, image, max_side)
