"""The oneDNN convolution engine on whole nets: H-ReNet (d) gives the same
scores and gradients with every convolution on engine DNNL as on engine
CAFFE; DEFAULT picks DNNL; bench/net_bench.py's PyTorch nets have the
architectures they are compared with."""
import importlib.util
import os

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir))


def _load_net_bench():
    spec = importlib.util.spec_from_file_location(
        "net_bench", os.path.join(ROOT, "bench", "net_bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _deploy(caffe, net, engine, height, width, path):
    """The deploy net at height x width with every convolution on
    `engine` (None: the prototxt's own), force_backward on."""
    _load_net_bench().deploy_with_engine(net, engine, height, width,
                                         str(path))
    return caffe.Net(str(path), caffe.TEST)


@pytest.fixture
def dnnl(caffe, tmp_path):
    """Skips where the build has no oneDNN (engine DNNL is refused)."""
    try:
        _deploy(caffe, "fcn/a", "DNNL", 16, 16, tmp_path / "probe.prototxt")
    except RuntimeError as e:
        assert "no oneDNN" in str(e)
        pytest.skip("this build has no oneDNN (libdnnl-dev)")


def test_hrenet_d_same_scores_and_gradients(caffe, dnnl, tmp_path):
    nets = {}
    for engine in ("CAFFE", "DNNL"):
        n = _deploy(caffe, "hrenet/d", engine, 48, 56,
                    tmp_path / f"{engine}.prototxt")
        _load_net_bench().fill_random(n, 0)
        out = n.forward()[n.outputs[0]].copy()
        grad = np.random.RandomState(1).normal(0, 1, out.shape)
        n.blobs[n.outputs[0]].diff[...] = grad
        n.backward()
        nets[engine] = (n, out)
    (ref, ref_out), (ours, our_out) = nets["CAFFE"], nets["DNNL"]
    scale = np.abs(ref_out).max()
    assert scale > 1e-3
    np.testing.assert_allclose(our_out, ref_out, rtol=1e-3,
                               atol=1e-4 * scale)
    checked = 0
    for name in ref.params:
        for k, (a, b) in enumerate(zip(ours.params[name], ref.params[name])):
            s = np.abs(b.diff).max()
            if s == 0:
                continue
            np.testing.assert_allclose(a.diff, b.diff, rtol=1e-2,
                                       atol=1e-3 * s,
                                       err_msg=f"{name}[{k}] diff")
            checked += 1
    assert checked >= 40  # 16 convolutions x 2, ReNet, BatchNorm, Scale
    want = ref.blobs["data"].diff
    np.testing.assert_allclose(ours.blobs["data"].diff, want, rtol=1e-2,
                               atol=1e-3 * np.abs(want).max())


def test_default_engine_is_dnnl(caffe, dnnl, tmp_path):
    """An unmarked prototxt runs the same numbers as engine DNNL."""
    outs = []
    for engine in (None, "DNNL"):
        n = _deploy(caffe, "fcn/a", engine, 24, 32,
                    tmp_path / f"{engine}.prototxt")
        _load_net_bench().fill_random(n, 2)
        outs.append(n.forward()[n.outputs[0]].copy())
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("net", ["fcn/a", "hrenet/b", "hrenet/d"])
def test_bench_torch_nets_match_the_prototxts(caffe, tmp_path, net):
    """The PyTorch re-implementations the benchmark times have the deploy
    nets' parameter count (nn.LSTM's second bias aside) and output
    shape."""
    torch = pytest.importorskip("torch")
    bench = _load_net_bench()
    model = bench.torch_net(net)
    theirs = sum(p.numel() for name, p in model.named_parameters()
                 if "bias_hh" not in name)
    n = _deploy(caffe, net, None, 45, 61, tmp_path / "d.prototxt")
    ours = sum(b.data.size for name, blobs in n.params.items()
               if n.layer_dict[name].type != "BatchNorm" for b in blobs)
    assert theirs == ours
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 45, 61))
    assert tuple(y.shape) == n.blobs[n.outputs[0]].data.shape
