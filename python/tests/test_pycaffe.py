"""The fork's Python side: pycaffe imports, runs a tiny net, sees our
protos."""
import numpy as np
from google.protobuf import text_format

TINY_NET = """
name: "tiny"
force_backward: true
input: "data" input_shape { dim: 2 dim: 3 dim: 5 dim: 4 }
input: "label" input_shape { dim: 2 dim: 1 dim: 5 dim: 4 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label"
  top: "loss" }
"""


def test_import_and_version(caffe):
    assert hasattr(caffe, "Net")
    assert caffe.__version__ == "1.0.0"


def test_tiny_net_forward_backward(net_from_string):
    net = net_from_string(TINY_NET)
    rng = np.random.RandomState(0)
    net.blobs["data"].data[...] = rng.randn(2, 3, 5, 4)
    net.blobs["label"].data[...] = rng.randint(0, 4, size=(2, 1, 5, 4))
    out = net.forward()
    assert out["loss"].shape == ()
    # four classes, small random weights: the loss is close to log(4)
    assert abs(float(out["loss"]) - np.log(4)) < 0.5
    net.backward()
    grad = net.blobs["data"].diff
    assert grad.shape == (2, 3, 5, 4)
    assert np.abs(grad).sum() > 0
    assert np.abs(net.params["conv"][0].diff).sum() > 0


def test_conv_forward_matches_numpy(net_from_string):
    net = net_from_string(TINY_NET)
    rng = np.random.RandomState(1)
    x = rng.randn(2, 3, 5, 4).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = 0
    net.forward()
    w, b = net.params["conv"][0].data, net.params["conv"][1].data
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((2, 4, 5, 4), np.float64)
    for dy in range(3):
        for dx in range(3):
            ref += np.einsum("nchw,oc->nohw", xp[:, :, dy:dy + 5, dx:dx + 4],
                             w[:, :, dy, dx])
    ref += b[None, :, None, None]
    np.testing.assert_allclose(net.blobs["score"].data, ref,
                               rtol=1e-4, atol=1e-5)


def test_hrenet_proto_messages_visible(caffe):
    from caffe.proto import caffe_pb2
    layer = caffe_pb2.LayerParameter()
    text_format.Merge(
        'name: "r" type: "ReNet" renet_param { num_output: 8 '
        'direction: HORIZONTAL patch_h: 2 patch_w: 2 unit: GRU } '
        'dense_crf_param { max_iter: 2 unary_type: PROB } '
        'seg_data_param { source: "x" crop_h: 4 crop_w: 5 mean_value: 1 }',
        layer)
    assert layer.renet_param.num_output == 8
    assert layer.renet_param.direction == caffe_pb2.ReNetParameter.HORIZONTAL
    assert layer.renet_param.unit == caffe_pb2.ReNetParameter.GRU
    assert layer.dense_crf_param.max_iter == 2
    assert layer.seg_data_param.crop_w == 5
    # private field range, far from upstream's
    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert fields["renet_param"].number == 7001
    assert fields["dense_crf_param"].number == 7002
    assert fields["seg_data_param"].number == 7003
    # defaults follow the paper / the authors' released model
    assert caffe_pb2.DenseCRFParameter().bi_xy_std == 80
    assert caffe_pb2.ReNetParameter().patch_h == 1


def test_caffe_tool_runs():
    import os
    import subprocess
    import sys
    caffe_bin = os.path.join(os.path.dirname(sys.executable), "caffe")
    out = subprocess.run([caffe_bin, "--version"], capture_output=True,
                         text=True)
    assert out.returncode == 0
    assert "1.0.0" in out.stdout + out.stderr
