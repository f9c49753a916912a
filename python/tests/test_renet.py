"""The ReNet layer through pycaffe against NumPy (float64) and PyTorch.

The NumPy reference (hrenet.renet.renet_forward) is written from the
equations alone. Caffe runs in float32, so forward values agree to float32
rounding (atol 2e-5 on O(1) activations) and gradients are checked against
float64 central differences of the reference. The PyTorch comparison needs
`torch` (see docs/BENCHMARKS.md for the CPU install) and is skipped, with
the reason, when it cannot be imported.
"""
import numpy as np
import pytest

from hrenet import renet

UNITS = ["LSTM", "IRNN", "GRU"]
DIRECTIONS = ["VERTICAL", "HORIZONTAL"]


def renet_net(shape, unit, direction, d, ph=1, pw=1):
    n, c, h, w = shape
    return f"""
name: "renet_test"
force_backward: true
layer {{ name: "data" type: "Input" top: "data"
  input_param {{ shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }} }}
layer {{ name: "renet" type: "ReNet" bottom: "data" top: "out"
  renet_param {{ num_output: {d} direction: {direction} unit: {unit}
    patch_h: {ph} patch_w: {pw} }} }}
"""


def random_params(rng, unit, c, ph, pw, d, scale=0.5):
    g = renet.GATES[unit]
    k = c * ph * pw
    params = []
    for _ in range(2):
        params += [rng.uniform(-scale, scale, (g * d, k)),
                   rng.uniform(-scale, scale, (g * d, d)),
                   rng.uniform(-scale, scale, g * d)]
    return params


def load(net, params):
    for blob, value in zip(net.params["renet"], params):
        blob.data[...] = value
        blob.diff[...] = 0


def forward_both(net_from_string, rng, shape, unit, direction, d, patch):
    """The layer's forward and the numpy reference's on random weights and
    inputs (the net keeps the weights)."""
    net = net_from_string(renet_net(shape, unit, direction, d, *patch))
    params = random_params(rng, unit, shape[1], *patch, d)
    load(net, params)
    x = rng.uniform(-1, 1, shape)
    net.blobs["data"].data[...] = x
    out = net.forward()["out"]
    return out, renet.renet_forward(x, params, unit, direction, *patch)


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("patch", [(1, 1), (2, 2), (2, 3)])
def test_forward_matches_numpy(net_from_string, unit, direction, patch):
    rng = np.random.RandomState(3)
    shape = (2, 3, 5, 7)  # 5 x 7 is a multiple of no patch but 1 x 1
    d = 4
    out, ref = forward_both(net_from_string, rng, shape, unit, direction, d,
                            patch)
    assert out.shape == ref.shape == (2, 2 * d, -(-5 // patch[0]),
                                      -(-7 // patch[1]))
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)
    assert np.abs(ref).max() > 0.1  # not a trivially small output


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape, patch", [((2, 40, 3, 4), (1, 1)),
                                          ((2, 3, 9, 10), (4, 4))])
def test_forward_matches_numpy_many_features(net_from_string, unit,
                                             direction, shape, patch):
    """Over 32 input features per patch the CPU layer projects all steps in
    one GEMM (below, step by step): check that path as well."""
    rng = np.random.RandomState(5)
    d = 4
    net = net_from_string(renet_net(shape, unit, direction, d, *patch))
    params = random_params(rng, unit, shape[1], *patch, d, scale=0.2)
    load(net, params)
    x = rng.uniform(-1, 1, shape)
    net.blobs["data"].data[...] = x
    out = net.forward()["out"]
    ref = renet.renet_forward(x, params, unit, direction, *patch)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)
    assert np.abs(ref).max() > 0.1


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("d", [16, 20, 37, 100])
def test_forward_matches_numpy_row_tails(net_from_string, unit, direction,
                                         d):
    """d not a multiple of 16: the CPU's LSTM rows run their last 16 units
    again to keep the loops vectorised (d = 100 as in N-ReNet)."""
    rng = np.random.RandomState(17)
    out, ref = forward_both(net_from_string, rng, (2, 3, 4, 5), unit,
                            direction, d, (2, 2))
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)
    assert np.abs(ref[:, d - 4:d]).max() > 0.05  # the tail units are live


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_backward_matches_numeric(net_from_string, unit, direction):
    rng = np.random.RandomState(5)
    shape, d, patch = (2, 2, 4, 3), 3, (2, 2)
    net = net_from_string(renet_net(shape, unit, direction, d, *patch))
    params = random_params(rng, unit, shape[1], *patch, d)
    if unit == "IRNN":  # keep the pre-activations away from ReLU's kink
        params[2] += 1.0
        params[5] += 1.0
    load(net, params)
    x = rng.uniform(-1, 1, shape)
    net.blobs["data"].data[...] = x
    out = net.forward()["out"]
    weights = rng.randn(*out.shape)
    net.blobs["out"].diff[...] = weights
    net.backward()

    def loss(xv, pv):
        return np.sum(renet.renet_forward(xv, pv, unit, direction, *patch)
                      * weights)

    eps = 1e-6
    # the bottom, every element (the padded column included)
    num = np.zeros(shape)
    for idx in np.ndindex(*shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num[idx] = (loss(xp, params) - loss(xm, params)) / (2 * eps)
    np.testing.assert_allclose(net.blobs["data"].diff, num, rtol=1e-3,
                               atol=2e-4)
    check_param_gradients(net, x, params, loss, rng, 6, eps, 2e-4)


def test_parameter_diffs_accumulate(net_from_string):
    rng = np.random.RandomState(7)
    net = net_from_string(renet_net((1, 2, 3, 3), "LSTM", "VERTICAL", 2))
    net.blobs["data"].data[...] = rng.randn(1, 2, 3, 3)
    for blob in net.params["renet"]:
        blob.diff[...] = 0
    net.forward()
    net.blobs["out"].diff[...] = 1
    net.backward()
    once = [b.diff.copy() for b in net.params["renet"]]
    net.backward()
    for b, o in zip(net.params["renet"], once):
        assert np.abs(o).sum() > 0
        np.testing.assert_allclose(b.diff, 2 * o, rtol=1e-5, atol=1e-7)


def test_reshape_to_a_new_size(net_from_string):
    rng = np.random.RandomState(9)
    net = net_from_string(renet_net((1, 2, 4, 4), "GRU", "HORIZONTAL", 3,
                                    2, 2))
    params = [b.data.copy() for b in net.params["renet"]]
    for shape in [(1, 2, 4, 4), (2, 2, 7, 5), (1, 2, 3, 9)]:
        x = rng.randn(*shape)
        net.blobs["data"].reshape(*shape)
        net.blobs["data"].data[...] = x
        out = net.forward()["out"]
        ref = renet.renet_forward(x, params, "GRU", "HORIZONTAL", 2, 2)
        np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)


def test_torch_weight_port_round_trip():
    rng = np.random.RandomState(1)
    W, U, b = rng.randn(8, 5), rng.randn(8, 2), rng.randn(8)
    back = renet.lstm_from_torch(*renet.lstm_to_torch(W, U, b))
    for a, e in zip(back, (W, U, b)):
        np.testing.assert_array_equal(a, e)
    with pytest.raises(ValueError, match="b_hn"):
        renet.gru_from_torch(W[:6], U[:6], b[:6], np.ones(6))


def _torch():
    try:
        import torch
    except ImportError as exc:  # includes a CUDA wheel missing its libraries
        pytest.skip(f"PyTorch comparison skipped: torch cannot be imported "
                    f"({exc}); install torch==2.13.0 (CPU) to run it")
    return torch


@pytest.mark.parametrize("unit", ["LSTM", "GRU"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_matches_torch(net_from_string, unit, direction):
    torch = _torch()
    rng = np.random.RandomState(11)
    shape, d, patch = (2, 3, 6, 5), 5, (2, 2)
    net = net_from_string(renet_net(shape, unit, direction, d, *patch))
    params = [p.astype(np.float32)
              for p in random_params(rng, unit, shape[1], *patch, d)]
    load(net, params)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    out = net.forward()["out"].copy()
    weights = rng.randn(*out.shape).astype(np.float32)
    net.blobs["out"].diff[...] = weights
    net.backward()

    seq, grid = renet.patch_sequences(x, direction, *patch)
    k = seq.shape[2]
    cls = torch.nn.LSTM if unit == "LSTM" else torch.nn.GRU
    to_torch = renet.lstm_to_torch if unit == "LSTM" else renet.gru_to_torch
    rnn = cls(k, d, bidirectional=True).float()
    with torch.no_grad():
        for suffix, (W, U, b) in (("", params[:3]), ("_reverse", params[3:])):
            wi, wh, bi, bh = to_torch(W, U, b)
            getattr(rnn, "weight_ih_l0" + suffix).copy_(torch.from_numpy(wi))
            getattr(rnn, "weight_hh_l0" + suffix).copy_(torch.from_numpy(wh))
            getattr(rnn, "bias_ih_l0" + suffix).copy_(torch.from_numpy(bi))
            getattr(rnn, "bias_hh_l0" + suffix).copy_(
                torch.from_numpy(bh.astype(np.float32)))
    xs = torch.from_numpy(np.ascontiguousarray(seq)).requires_grad_(True)
    ys, _ = rnn(xs)
    ref = renet.sequences_to_map(ys.detach().numpy(), direction, grid)

    def rel(a, e):
        return np.abs(a - e).max() / np.abs(e).max()

    assert rel(out, ref) <= 1e-4
    # the top's diff laid out like torch's output
    wseq = renet.patch_sequences(weights, direction)[0]
    (ys * torch.from_numpy(wseq)).sum().backward()
    # input gradient: map the sequence gradient back through the patches
    gseq = xs.grad.numpy()
    n, gh, gw = grid
    g = renet.sequences_to_map(gseq, direction, grid)  # N x K x gh x gw
    g = g.reshape(n, shape[1], patch[0], patch[1], gh, gw)
    g = g.transpose(0, 1, 4, 2, 5, 3).reshape(n, shape[1], gh * patch[0],
                                              gw * patch[1])
    g = g[:, :, :shape[2], :shape[3]]
    assert rel(net.blobs["data"].diff, g) <= 1e-4
    from_torch = renet.lstm_from_torch if unit == "LSTM" \
        else renet.gru_from_torch
    for dir_i, suffix in enumerate(("", "_reverse")):
        grads = from_torch(
            getattr(rnn, "weight_ih_l0" + suffix).grad.numpy(),
            getattr(rnn, "weight_hh_l0" + suffix).grad.numpy(),
            getattr(rnn, "bias_ih_l0" + suffix).grad.numpy())
        for j, expect in enumerate(grads):
            got = net.params["renet"][3 * dir_i + j].diff
            assert rel(got, expect) <= 1e-4, f"direction {dir_i} blob {j}"


def check_param_gradients(net, x, params, loss, rng, samples, eps, atol):
    """A sample of every parameter blob's gradient (after net.backward)
    against central differences of loss(x, params)."""
    for i, blob in enumerate(net.params["renet"]):
        flat = blob.diff.ravel()
        for j in rng.choice(flat.size, size=min(samples, flat.size),
                            replace=False):
            pp = [p.copy() for p in params]
            pm = [p.copy() for p in params]
            pp[i].ravel()[j] += eps
            pm[i].ravel()[j] -= eps
            num = (loss(x, pp) - loss(x, pm)) / (2 * eps)
            assert flat[j] == pytest.approx(num, rel=1e-3, abs=atol), \
                f"param blob {i} element {j}"


def check_sampled_gradients(net, x, params, unit, direction, patch, rng,
                            samples=6, eps=1e-4):
    """Central differences of the float64 reference for a sample of the
    bottom's and of every parameter blob's gradients (after net.forward),
    for a random top gradient."""
    weights = rng.randn(*net.blobs["out"].shape)
    net.blobs["out"].diff[...] = weights
    net.backward()

    def loss(xv, pv):
        return np.sum(renet.renet_forward(xv, pv, unit, direction, *patch)
                      * weights)

    for _ in range(samples):
        idx = tuple(rng.randint(0, s) for s in x.shape)
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = (loss(xp, params) - loss(xm, params)) / (2 * eps)
        assert net.blobs["data"].diff[idx] == pytest.approx(
            num, rel=1e-3, abs=1e-4), idx
    check_param_gradients(net, x, params, loss, rng, samples, eps, 1e-4)


def check_forward_and_gradients(net_from_string, rng, shape, unit, direction,
                                d, patch=(1, 1), scale=0.3, samples=6):
    """The layer's forward against the numpy reference (random weights of
    the given scale, inputs in [-1, 1]), then check_sampled_gradients."""
    net = net_from_string(renet_net(shape, unit, direction, d, *patch))
    params = random_params(rng, unit, shape[1], *patch, d, scale=scale)
    load(net, params)
    x = rng.uniform(-1, 1, shape)
    net.blobs["data"].data[...] = x
    out = net.forward()["out"]
    ref = renet.renet_forward(x, params, unit, direction, *patch)
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)
    check_sampled_gradients(net, x, params, unit, direction, patch, rng,
                            samples)


@pytest.mark.parametrize("unit", ["LSTM", "GRU"])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("c", [3, 40])
@pytest.mark.parametrize("d", [4, 5, 9, 33])
def test_step_products(net_from_string, unit, direction, c, d):
    """The CPU's per-step products (float, AVX-512: a kernel of our own) in
    blocks of 8 sequences and panels of 32 or 16 gates: 21 columns and 11
    rows of patches leave partial blocks; d = 4, 5, 9, 33 make G d and d
    fill panels fully, partly and with a last narrow one; c = 3 fuses the
    LSTM's step projection into the same product in horizontal sweeps
    (vertical sweeps of one image read the bottom in place), c = 40 does
    not."""
    check_forward_and_gradients(net_from_string, np.random.RandomState(23),
                                (1, c, 11, 21), unit, direction, d)


@pytest.mark.parametrize("direction, shape", [("VERTICAL", (2, 3, 300)),
                                              ("HORIZONTAL", (1, 300, 3))])
@pytest.mark.parametrize("c", [3, 40])
def test_many_sequences(net_from_string, direction, shape, c):
    """Over 256 sequences per step product the products that add to the
    stored gates go back to the BLAS (the fused ones, c = 3 in horizontal
    sweeps, stay with the kernel): forward and sampled gradients for two
    images of 300 columns (vertical: one block of 300 sequences per image,
    read in place) and one image of 300 rows (horizontal: one block of 300
    sequences; the CPU's blocks are per image)."""
    check_forward_and_gradients(net_from_string, np.random.RandomState(31),
                                (shape[0], c) + shape[1:], "LSTM", direction,
                                5)


@pytest.mark.parametrize("direction, shape, patch, d", [
    ("VERTICAL", (3, 32, 16, 48), (1, 1), 24),
    ("HORIZONTAL", (3, 32, 16, 48), (1, 1), 24),
    ("VERTICAL", (3, 8, 33, 47), (2, 2), 32),
    ("HORIZONTAL", (3, 8, 33, 47), (2, 2), 32)])
@pytest.mark.parametrize("unit", UNITS)
def test_image_jobs_match_single_images(net_from_string, unit, direction,
                                        shape, patch, d):
    """With several images the CPU stores each image's sequences as a block
    and runs the work as jobs that the threads take in turn (all sweeps and
    products here over 2^20 multiply-adds): each direction and image's
    sweep, then each direction's parameter gradients and each image's
    bottom diff (the layout copies, too small here to take two threads, are
    jobs in test_large_input_split_copies). Vertical 1 x 1 patches are read
    in place; 2 x 2 patches of 8 channels (32 features, zero padding at
    33 x 47) take the LSTM's step projection, whose scratch is per block. Three
    images must give what each gives alone: outputs and bottom diffs image by
    image, parameter diffs summed over the images (the single-image net
    accumulates them over its three backward passes). The three-image net runs
    backward twice (its bottom diff is written anew, its parameter diffs
    accumulate), so that state left by the first pass (the LSTM's dL/dc carry)
    would show."""
    rng = np.random.RandomState(37)
    params = random_params(rng, unit, shape[1], *patch, d, scale=0.3)
    x = rng.uniform(-1, 1, shape)
    net = net_from_string(renet_net(shape, unit, direction, d, *patch))
    load(net, params)
    net.blobs["data"].data[...] = x
    out = net.forward()["out"].copy()
    np.testing.assert_allclose(
        out, renet.renet_forward(x, params, unit, direction, *patch),
        rtol=0, atol=2e-5)
    top_diff = rng.randn(*out.shape)
    net.blobs["out"].diff[...] = top_diff
    net.backward()
    net.backward()
    single = net_from_string(renet_net((1,) + shape[1:], unit, direction, d,
                                       *patch))
    load(single, params)
    for n in range(shape[0]):
        single.blobs["data"].data[...] = x[n:n + 1]
        np.testing.assert_allclose(single.forward()["out"][0], out[n],
                                   rtol=0, atol=1e-6)
        single.blobs["out"].diff[...] = top_diff[n:n + 1]
        single.backward()
        np.testing.assert_allclose(single.blobs["data"].diff[0],
                                   net.blobs["data"].diff[n],
                                   rtol=1e-5, atol=1e-6)
    for i, (a, b) in enumerate(zip(single.params["renet"],
                                   net.params["renet"])):
        assert np.abs(b.diff).max() > 0, f"param blob {i}"
        np.testing.assert_allclose(2 * a.diff, b.diff, rtol=1e-4,
                                   atol=2e-4, err_msg=f"param blob {i}")


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("width", [36, 35])
def test_two_by_two_patch_copies(net_from_string, direction, width):
    """2 x 2 patches are copied in tiles of 16 as pairs when the tile does
    not reach the zero padding: width 36 (two tiles, no padding) and 35 (the
    second tile padded), forward and the bottom's gradient."""
    check_forward_and_gradients(net_from_string, np.random.RandomState(29),
                                (1, 3, 10, width), "LSTM", direction, 4,
                                (2, 2), samples=12)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape", [(1, 256, 64, 64), (4, 64, 64, 64)])
def test_large_input_split_copies(net_from_string, direction, shape):
    """N C H W >= 2^17 elements: the layout copies run on the threads, one
    image's split in parts, several images as one job each."""
    check_forward_and_gradients(net_from_string, np.random.RandomState(13),
                                shape, "LSTM", direction, 4,
                                scale=0.1, samples=8)
