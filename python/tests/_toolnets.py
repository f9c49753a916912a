"""A tiny segmentation set-up for the tools' end-to-end tests.

:func:`make_setup` writes, under a directory: a synthetic dataset (VOC
layout, 32x40 images, 4 labels), its train and val LMDBs, and a model
folder in the paper's layout (``train_val.prototxt``, ``deploy.prototxt``,
``solver.prototxt``): SegData -> conv 3x3 -> ReLU -> ReNet (vertical, 2x2
patches) -> 1x1 conv -> bilinear deconvolution x2 -> Crop to the input ->
``score`` (-> SoftmaxWithLoss). ``deploy_crf.prototxt`` adds a DenseCRF.
"""
import os
from types import SimpleNamespace

from _tools import load_tool

H, W, CLASSES = 32, 40, 3  # labels 0..3
K = CLASSES + 1
MEAN = (104.0, 117.0, 123.0)
SCALE = 0.017

BODY = """
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: {c1} kernel_size: 3 pad: 1
    weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "renet1" type: "ReNet" bottom: "conv1" top: "renet1"
  renet_param {{ num_output: 4 direction: VERTICAL patch_h: 2 patch_w: 2 }} }}
layer {{ name: "score_lr" type: "Convolution" bottom: "renet1" top: "score_lr"
  convolution_param {{ num_output: {k} kernel_size: 1
    weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "upscore" type: "Deconvolution" bottom: "score_lr"
  top: "upscore" param {{ lr_mult: 0 }}
  convolution_param {{ num_output: {k} group: {k} kernel_size: 4 stride: 2
    pad: 1 bias_term: false weight_filler {{ type: "bilinear" }} }} }}
layer {{ name: "score" type: "Crop" bottom: "upscore" bottom: "data"
  top: "score" crop_param {{ axis: 2 offset: 0 }} }}
"""

SEG = """
layer {{ name: "data" type: "SegData" top: "data" top: "label"
  include {{ phase: {phase} }}
  seg_data_param {{ source: "{source}" batch_size: {batch} {crop}
    mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.017
    {extra} }} }}
"""

DEPLOY_HEAD = """name: "tiny"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 32 dim: 40 } }
  transform_param { mean_value: 104 mean_value: 117 mean_value: 123
    scale: 0.017 } }
"""

CRF = """
layer { name: "crf" type: "DenseCRF" bottom: "score" bottom: "data"
  top: "crf_prob" dense_crf_param { max_iter: 2 mean_value: 104
    mean_value: 117 mean_value: 123 scale: 0.017 } }
"""


def body(c1=8):
    return BODY.format(c1=c1, k=K)


def train_val_text(train_source, val_source, c1=8):
    return ('name: "tiny"\n'
            + SEG.format(phase="TRAIN", source=train_source, batch=2,
                         crop="crop_h: 24 crop_w: 32",
                         extra="mirror: true shuffle: true seed: 1")
            + SEG.format(phase="TEST", source=val_source, batch=1, crop="",
                         extra="")
            + body(c1)
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" '
              'bottom: "label" top: "loss" loss_param { ignore_label: 255 } '
              '}\n')


def solver_text(net, max_iter=30):
    return (f'net: "{net}"\ntype: "Adam"\nbase_lr: 0.01\nlr_policy: "step"\n'
            f'gamma: 0.5\nstepsize: 10\nmax_iter: {max_iter}\ndisplay: 5\n'
            'snapshot: 0\nsnapshot_prefix: "tiny"\nrandom_seed: 1\n')


def make_setup(root, num=10):
    root = str(root)
    syn = os.path.join(root, "syn")
    make = load_tool("make_synthetic")
    assert make.main(make.parse_args(
        ["--out", syn, "--num", str(num), "--height", str(H), "--width",
         str(W), "--classes", str(CLASSES), "--quiet"])) == 0
    build = load_tool("build_lmdb")
    lmdbs = {}
    for split in ("train", "val"):
        out = os.path.join(root, f"lmdb_{split}")
        assert build.main(build.parse_args(
            ["--format", "voc", "--root", syn, "--split", split,
             "--classes", os.path.join(syn, "classes.txt"), "--out", out,
             "--quiet"])) == 0
        lmdbs[split] = out
    model = os.path.join(root, "model")
    os.makedirs(model)
    paths = SimpleNamespace(
        root=root, syn=syn, train=lmdbs["train"], val=lmdbs["val"],
        model=model,
        train_val=os.path.join(model, "train_val.prototxt"),
        deploy=os.path.join(model, "deploy.prototxt"),
        deploy_crf=os.path.join(model, "deploy_crf.prototxt"),
        solver=os.path.join(model, "solver.prototxt"),
        classes=os.path.join(syn, "classes.txt"))
    with open(paths.train_val, "w") as f:
        f.write(train_val_text(paths.train, paths.val))
    with open(paths.deploy, "w") as f:
        f.write(DEPLOY_HEAD + body())
    with open(paths.deploy_crf, "w") as f:
        f.write(DEPLOY_HEAD + body() + CRF)
    with open(paths.solver, "w") as f:
        f.write(solver_text(paths.train_val))
    return paths


def save_weights(caffe, deploy, path, seed=3):
    """Initial (filler) weights of ``deploy`` saved as a .caffemodel."""
    caffe.set_random_seed(seed)
    net = caffe.Net(deploy, caffe.TEST)
    net.save(str(path))
    return str(path)
