"""Forward time of a deploy net, whole and per layer type.

Method (:func:`time_forward`): the ``data`` blob is reshaped to 1 x 3 x H x W
and filled with a photograph (scikit-image's ``chelsea``, resized and
preprocessed with the net's mean/scale: the DenseCRF's lattice depends on
the image's content, so noise would time it wrongly). After ``warmup``
forward passes, ``repeats`` whole passes (``net.forward()``) are timed with
``time.perf_counter``, the device synchronised before the clock stops; the
median and spread of those are the net's time. Then ``repeats`` passes are
run layer by layer (``net._forward(i, i)``, i.e. Caffe's ForwardFromTo,
synchronised after each layer) and each layer's median is summed by type:
``ReNet``, ``convolution`` (Convolution and Deconvolution), ``DenseCRF``
and ``rest``. The per-layer sum can exceed the whole pass slightly (one
synchronisation per layer).

:func:`time_onnx` times the same net exported to ONNX
(:mod:`hrenet.onnx_export`, in memory, at the timed size) in an ONNX
Runtime session on the CPU, with the same image, warm-up and repeats; for
a net with a DenseCRF it includes the CRF, which runs after ONNX Runtime
through pycaffe as ``tools/infer.py --onnx`` runs it.
"""
import time

import numpy as np

TYPES = ("ReNet", "convolution", "DenseCRF", "rest")


def type_group(layer_type):
    if layer_type == "ReNet":
        return "ReNet"
    if layer_type in ("Convolution", "Deconvolution"):
        return "convolution"
    if layer_type == "DenseCRF":
        return "DenseCRF"
    return "rest"


def test_image(height, width):
    """A BGR uint8 photograph of the given size (chelsea, else a smooth
    synthetic image)."""
    import cv2
    try:
        from skimage import data
        rgb = data.chelsea()
    except Exception:  # scikit-image's data missing: a smooth gradient
        yy, xx = np.mgrid[0:300, 0:450]
        rgb = np.stack([(yy // 2) % 256, (xx // 2) % 256,
                        ((yy + xx) // 3) % 256], -1).astype(np.uint8)
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb[..., ::-1])


def spread(values):
    v = np.asarray(values, np.float64) * 1000.0
    return {"median_ms": float(np.median(v)), "min_ms": float(v.min()),
            "max_ms": float(v.max()), "p25_ms": float(np.percentile(v, 25)),
            "p75_ms": float(np.percentile(v, 75)), "runs": len(v)}


def time_forward(model, height=375, width=500, warmup=1, repeats=5,
                 per_layer=True, progress=None):
    """Time ``model`` (:class:`hrenet.inference.Model`); see the module doc.

    Returns ``{"total": spread, "types": {type: median ms}, "layers":
    [{"name", "type", "group", "median_ms"}], "height", "width"}``.
    ``progress``: callable(n) called after each timed pass.
    """
    from hrenet.inference import device_sync, preprocess
    net = model.net
    x = preprocess(test_image(height, width), model.mean, model.scale)
    data = net.blobs["data"]
    data.reshape(*x.shape)
    net.reshape()
    data.data[...] = x
    for _ in range(warmup):
        net.forward()
    device_sync()
    totals = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net.forward()
        device_sync()
        totals.append(time.perf_counter() - t0)
        if progress:
            progress(1)
    result = {"height": height, "width": width, "total": spread(totals)}
    if not per_layer:
        return result
    names = list(net._layer_names)
    layers = list(net.layers)
    per = np.zeros((repeats, len(layers)))
    for r in range(repeats):
        for i in range(len(layers)):
            t0 = time.perf_counter()
            net._forward(i, i)
            device_sync()
            per[r, i] = time.perf_counter() - t0
        if progress:
            progress(1)
    med = np.median(per, axis=0) * 1000.0
    result["layers"] = [{"name": n, "type": layer.type,
                         "group": type_group(layer.type),
                         "median_ms": float(m)}
                        for n, layer, m in zip(names, layers, med)]
    types = {t: 0.0 for t in TYPES}
    for rec in result["layers"]:
        types[rec["group"]] += rec["median_ms"]
    result["types"] = types
    result["layer_sum_ms"] = float(med.sum())
    return result


def onnx_available():
    """None if onnx and onnxruntime import, else the reason."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return str(e)
    return None


def time_onnx(model, height=375, width=500, warmup=1, repeats=5,
              progress=None, threads=None):
    """Forward time of ``model`` (:class:`hrenet.inference.Model`) exported
    to ONNX and run by ONNX Runtime; see the module doc. Returns a
    :func:`spread` dict plus ``"crf"`` (whether a pycaffe CRF tail ran) and
    ``"threads"`` (ONNX Runtime's intra-op threads, 0: its default).
    Raises :class:`hrenet.onnx_export.UnsupportedLayer` for a net it
    cannot export."""
    from hrenet import onnx_export, onnx_run
    from hrenet.inference import preprocess
    net = model.net
    x = preprocess(test_image(height, width), model.mean, model.scale)
    data = net.blobs["data"]
    if tuple(data.data.shape) != x.shape:
        data.reshape(*x.shape)
        net.reshape()
    onnx_model, _ = onnx_export.convert_net(net, model.param,
                                            mean=model.mean,
                                            scale=model.scale)
    runner = onnx_run.OnnxModel(onnx_model.SerializeToString(),
                                threads=threads)
    del onnx_model

    def once():
        outs = runner.run(x)
        if runner.tail is not None:
            runner.tail(outs, x)

    for _ in range(warmup):
        once()
    totals = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        totals.append(time.perf_counter() - t0)
        if progress:
            progress(1)
    result = spread(totals)
    result["crf"] = runner.tail is not None
    result["threads"] = int(threads or 0)
    return result


def format_markdown(results):
    """One table over nets: median, spread, ratio to the first, per type;
    with ONNX Runtime columns when a result has ``"onnx"`` (its median and
    its ratio to Caffe's)."""
    onnx = any("onnx" in r for r in results)
    lines = ["| net | median ms | IQR ms | min-max ms | vs first | ReNet ms "
             "| convolution ms | DenseCRF ms | rest ms |"
             + (" ONNX Runtime ms | ONNX Runtime / Caffe |" if onnx else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
             + ("---:|---:|" if onnx else "")]
    base = results[0]["total"]["median_ms"] if results else 1.0
    for r in results:
        t = r["total"]
        types = r.get("types", {})
        cells = [f"{types[k]:.1f}" if k in types else "-" for k in TYPES]
        if onnx:
            o = r.get("onnx")
            cells += ([f"{o['median_ms']:.1f}",
                       f"{o['median_ms'] / t['median_ms']:.2f}x"] if o
                      else ["-", "-"])
        lines.append(
            f"| {r['name']} | {t['median_ms']:.1f} | "
            f"{t['p25_ms']:.1f}-{t['p75_ms']:.1f} | "
            f"{t['min_ms']:.1f}-{t['max_ms']:.1f} | "
            f"{t['median_ms'] / base:.2f}x | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
