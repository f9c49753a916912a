"""Shared pytest fixtures: pycaffe in CPU mode, quiet glog, a temp net
helper."""
import os

os.environ.setdefault("GLOG_minloglevel", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def caffe():
    import caffe as _caffe
    _caffe.set_mode_cpu()
    return _caffe


@pytest.fixture
def net_from_string(caffe, tmp_path):
    """Build a caffe.Net from a prototxt string (written to a temp file)."""
    def make(text, phase=None, weights=None):
        path = tmp_path / "net.prototxt"
        path.write_text(text)
        phase = caffe.TEST if phase is None else phase
        if weights is not None:
            return caffe.Net(str(path), str(weights), phase)
        return caffe.Net(str(path), phase)
    return make


@pytest.fixture(scope="session")
def toolsetup(caffe, tmp_path_factory):
    """The tiny dataset, LMDBs and model folder of _toolnets.make_setup,
    plus ``weights``: the deploy net's filler weights as a .caffemodel."""
    import _toolnets
    setup = _toolnets.make_setup(tmp_path_factory.mktemp("toolsetup"))
    setup.weights = _toolnets.save_weights(
        caffe, setup.deploy, f"{setup.root}/tiny.caffemodel")
    return setup
