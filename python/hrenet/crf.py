"""Dense CRF post-processing of numpy arrays through Caffe's DenseCRF layer.

The layer (caffe_layers/include/caffe/layers/dense_crf_layer.hpp) runs
Kraehenbuehl & Koltun's mean-field inference on the permutohedral lattice.
This module builds a one-layer net (two Input layers and the CRF) from a
prototxt string in a temporary file and feeds it numpy arrays:

    >>> crf = DenseCRF(max_iter=5)
    >>> q = crf(scores, image)            # scores L x H x W, image H x W x 3
    >>> labels = q.argmax(axis=0)

Array conventions:
  * ``scores``: float, ``L x H x W`` or ``N x L x H x W`` (L >= 2 labels),
    class scores before the softmax (``unary_type="logit"``, the unary is
    -score) or probabilities (``unary_type="prob"``, the unary is -log p).
  * ``image``: uint8 0-255 colours, ``H x W x 3`` or ``N x H x W x 3``, in
    BGR order (what OpenCV's ``imread`` returns and Caffe's data layers use)
    unless ``channel_order="rgb"`` (skimage, PIL).
  * Result: float32 marginals Q with the shape of ``scores``.

The net runs in whatever mode pycaffe is set to (``caffe.set_mode_cpu()`` or
``set_mode_gpu()``). ``num_threads`` bounds the CPU threads (the layer's
``dense_crf_param { threads }``; None: the environment variable
HRENET_THREADS, else the CPUs the process may run on); results do not depend
on it, and nothing in the process changes. Nothing runs at import: ``caffe``
is imported on first use.
"""
import os
import tempfile

import numpy as np

#: The authors' released model: 5 iterations, bilateral theta_alpha 80,
#: theta_beta 3, weight 5; spatial theta_gamma 3, weight 3.
DEFAULTS = dict(max_iter=5, pos_w=3.0, pos_xy_std=3.0, bi_w=5.0,
                bi_xy_std=80.0, bi_rgb_std=3.0)

_UNARY_TYPES = {"logit": "LOGIT", "prob": "PROB"}
_CHANNEL_ORDERS = ("bgr", "rgb")


def crf_prototxt(num, num_labels, height, width, max_iter=5, pos_w=3.0,
                 pos_xy_std=3.0, bi_w=5.0, bi_xy_std=80.0, bi_rgb_std=3.0,
                 unary_type="logit", mean_value=(0.0, 0.0, 0.0), scale=1.0,
                 threads=0):
    """Text of a net: Input "scores" (N x L x H x W), Input "image"
    (N x 3 x H x W, BGR), DenseCRF "crf" -> top "prob" (``threads``: the
    layer's CPU threads, 0 for its default)."""
    if unary_type not in _UNARY_TYPES:
        raise ValueError("unary_type must be one of %s, got %r"
                         % (sorted(_UNARY_TYPES), unary_type))
    means = "".join("    mean_value: %r\n" % float(m) for m in mean_value)
    return (
        'name: "dense_crf"\n'
        'layer {{ name: "scores" type: "Input" top: "scores"\n'
        '  input_param {{ shape {{ dim: {n} dim: {l} dim: {h} dim: {w} }} '
        '}} }}\n'
        'layer {{ name: "image" type: "Input" top: "image"\n'
        '  input_param {{ shape {{ dim: {n} dim: 3 dim: {h} dim: {w} }} '
        '}} }}\n'
        'layer {{ name: "crf" type: "DenseCRF" bottom: "scores" '
        'bottom: "image" top: "prob"\n'
        '  dense_crf_param {{\n'
        '    max_iter: {it}\n    pos_w: {pw!r}\n    pos_xy_std: {ps!r}\n'
        '    bi_w: {bw!r}\n    bi_xy_std: {bs!r}\n    bi_rgb_std: {br!r}\n'
        '    unary_type: {ut}\n{means}    scale: {sc!r}\n    threads: {th}\n'
        '  }}\n}}\n'
    ).format(n=int(num), l=int(num_labels), h=int(height), w=int(width),
             it=int(max_iter), pw=float(pos_w), ps=float(pos_xy_std),
             bw=float(bi_w), bs=float(bi_xy_std), br=float(bi_rgb_std),
             ut=_UNARY_TYPES[unary_type], means=means, sc=float(scale),
             th=int(threads))


class DenseCRF(object):
    """Callable CRF post-processor; nets are cached per input shape."""

    def __init__(self, max_iter=5, pos_w=3.0, pos_xy_std=3.0, bi_w=5.0,
                 bi_xy_std=80.0, bi_rgb_std=3.0, unary_type="logit",
                 num_threads=None):
        if int(max_iter) < 1:
            raise ValueError("max_iter must be >= 1, got %r" % (max_iter,))
        if unary_type not in _UNARY_TYPES:
            raise ValueError("unary_type must be one of %s, got %r"
                             % (sorted(_UNARY_TYPES), unary_type))
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError("num_threads must be >= 1, got %r"
                             % (num_threads,))
        self.params = dict(max_iter=int(max_iter), pos_w=pos_w,
                           pos_xy_std=pos_xy_std, bi_w=bi_w,
                           bi_xy_std=bi_xy_std, bi_rgb_std=bi_rgb_std,
                           unary_type=unary_type)
        self.num_threads = num_threads
        self._nets = {}

    def _net(self, shape):
        net = self._nets.get(shape)
        if net is not None:
            return net
        import caffe
        text = crf_prototxt(*shape, threads=self.num_threads or 0,
                            **self.params)
        fd, path = tempfile.mkstemp(suffix=".prototxt", prefix="dense_crf_")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            net = caffe.Net(path, caffe.TEST)
        finally:
            os.remove(path)
        self._nets[shape] = net
        return net

    def __call__(self, scores, image, channel_order="bgr"):
        """Marginals Q (float32, shape of ``scores``); see the module doc."""
        scores = np.asarray(scores)
        image = np.asarray(image)
        if channel_order not in _CHANNEL_ORDERS:
            raise ValueError("channel_order must be 'bgr' or 'rgb', got %r"
                             % (channel_order,))
        if scores.ndim not in (3, 4):
            raise ValueError("scores must be L x H x W or N x L x H x W, got "
                             "shape %s" % (scores.shape,))
        single = scores.ndim == 3
        if single:
            scores = scores[None]
            if image.ndim == 3:
                image = image[None]
        if image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError("image must be H x W x 3 (or N x H x W x 3) "
                             "colours, got shape %s" % (image.shape,))
        if image.dtype != np.uint8:
            raise ValueError("image must be uint8 0-255 colours, got dtype "
                             "%s" % image.dtype)
        n, num_labels, height, width = scores.shape
        if image.shape[:3] != (n, height, width):
            raise ValueError("scores %s and image %s differ in N, H or W; "
                             "resize the scores to the image"
                             % (scores.shape, image.shape))
        if num_labels < 2:
            raise ValueError("scores have %d label channel; a CRF needs at "
                             "least 2 labels" % num_labels)
        if channel_order == "rgb":
            image = image[..., ::-1]
        net = self._net((n, num_labels, height, width))
        net.blobs["scores"].data[...] = scores
        net.blobs["image"].data[...] = image.transpose(0, 3, 1, 2)
        q = net.forward()["prob"].copy()
        return q[0] if single else q


def dense_crf(scores, image, channel_order="bgr", **params):
    """One-shot helper: ``DenseCRF(**params)(scores, image, channel_order)``.
    Prefer a ``DenseCRF`` object when processing many images (it keeps the
    nets)."""
    return DenseCRF(**params)(scores, image, channel_order)
