"""ReNet layer helpers: patch layout, a NumPy reference, weight porting.

The Caffe "ReNet" layer (caffe_layers/include/caffe/layers/renet_layer.hpp)
keeps, per direction (forward first), W (G*d x C*s*t), U (G*d x d) and
b (G*d). Gate order: LSTM i, f, o, g (upstream Caffe's LSTMUnit); GRU r, z, n
with PyTorch's reset convention; IRNN a single block. PyTorch's nn.LSTM uses
i, f, g, o and two biases; the functions here convert between the two.
ONNX's LSTM uses i, o, f, c, its GRU z, r, h and its RNN one block, each
with an input and a recurrent bias (:func:`to_onnx`).

Nothing runs at import; only NumPy is needed.
"""
import numpy as np

__all__ = [
    "GATES", "patch_sequences", "sequences_to_map", "renet_forward",
    "lstm_from_torch", "lstm_to_torch", "gru_from_torch", "gru_to_torch",
    "ONNX_OPS", "to_onnx",
]

GATES = {"LSTM": 4, "GRU": 3, "IRNN": 1}

# PyTorch LSTM rows (i, f, g, o) from ours (i, f, o, g) and back: both are
# the same block permutation (it swaps blocks 2 and 3).
_LSTM_SWAP = (0, 1, 3, 2)

#: ONNX operator of each unit, and its gate blocks as indices into ours:
#: LSTM (i, o, f, c) from (i, f, o, g); GRU (z, r, h) from (r, z, n).
ONNX_OPS = {"LSTM": ("LSTM", (0, 2, 1, 3)), "GRU": ("GRU", (1, 0, 2)),
            "IRNN": ("RNN", (0,))}


def _blocks(a, order):
    """Reorder the 4 (or 3) equal row blocks of `a` by `order`."""
    blocks = np.split(np.asarray(a), len(order), axis=0)
    return np.concatenate([blocks[k] for k in order], axis=0)


def patch_sequences(x, direction, patch_h=1, patch_w=1):
    """Cut an N x C x H x W map into the layer's sequences.

    Returns (seq, grid): seq is T x B x K (time-major; K = C*s*t in
    (c, dy, dx) order; the bottom/right border zero-padded up to a multiple
    of the patch size), grid = (N, gh, gw). VERTICAL: sequences are the
    columns of the patch grid (B = N*gw, batch index n*gw + x); HORIZONTAL:
    rows (B = N*gh, index n*gh + y).
    """
    x = np.asarray(x)
    n, c, h, w = x.shape
    gh, gw = -(-h // patch_h), -(-w // patch_w)
    pad = np.zeros((n, c, gh * patch_h, gw * patch_w), dtype=x.dtype)
    pad[:, :, :h, :w] = x
    p = pad.reshape(n, c, gh, patch_h, gw, patch_w)
    p = p.transpose(0, 2, 4, 1, 3, 5).reshape(n, gh, gw, -1)
    if direction == "VERTICAL":
        seq = p.transpose(1, 0, 2, 3).reshape(gh, n * gw, -1)
    elif direction == "HORIZONTAL":
        seq = p.transpose(2, 0, 1, 3).reshape(gw, n * gh, -1)
    else:
        raise ValueError(f"direction must be VERTICAL or HORIZONTAL, "
                         f"got {direction!r}")
    return seq, (n, gh, gw)


def sequences_to_map(seq, direction, grid):
    """Inverse of the sequence layout for the top:
    T x B x D -> N x D x gh x gw."""
    n, gh, gw = grid
    dim = seq.shape[-1]
    if direction == "VERTICAL":
        m = seq.reshape(gh, n, gw, dim).transpose(1, 3, 0, 2)
    else:
        m = seq.reshape(gw, n, gh, dim).transpose(1, 3, 2, 0)
    return np.ascontiguousarray(m)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _sweep(seq, W, U, b, unit, reverse):
    """One direction over T x B x K; returns T x B x d hidden states."""
    t_len, batch, _ = seq.shape
    d = U.shape[1]
    h = np.zeros((batch, d))
    c = np.zeros((batch, d))
    out = np.zeros((t_len, batch, d))
    steps = range(t_len - 1, -1, -1) if reverse else range(t_len)
    for t in steps:
        wx = seq[t] @ W.T + b
        uh = h @ U.T
        if unit == "LSTM":
            a = wx + uh
            i, f, o = (_sigmoid(a[:, k * d:(k + 1) * d]) for k in range(3))
            g = np.tanh(a[:, 3 * d:])
            c = f * c + i * g
            h = o * np.tanh(c)
        elif unit == "GRU":
            r = _sigmoid(wx[:, :d] + uh[:, :d])
            z = _sigmoid(wx[:, d:2 * d] + uh[:, d:2 * d])
            n = np.tanh(wx[:, 2 * d:] + r * uh[:, 2 * d:])
            h = (1 - z) * n + z * h
        elif unit == "IRNN":
            h = np.maximum(wx + uh, 0)
        else:
            raise ValueError(
                f"unit must be one of {sorted(GATES)}, got {unit!r}")
        out[t] = h
    return out


def renet_forward(x, params, unit="LSTM", direction="VERTICAL", patch_h=1,
                  patch_w=1):
    """The ReNet layer's forward pass in float64 NumPy.

    params: the layer's six blobs [W_f, U_f, b_f, W_b, U_b, b_b].
    Returns N x 2d x ceil(H/s) x ceil(W/t).
    """
    seq, grid = patch_sequences(np.asarray(x, np.float64), direction,
                                patch_h, patch_w)
    p = [np.asarray(a, np.float64) for a in params]
    fwd = _sweep(seq, p[0], p[1], p[2], unit, reverse=False)
    bwd = _sweep(seq, p[3], p[4], p[5], unit, reverse=True)
    return sequences_to_map(np.concatenate([fwd, bwd], axis=2), direction,
                            grid)


def lstm_from_torch(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """(W, U, b) of one direction from a PyTorch LSTM's tensors (as arrays).

    Reorders the gates (i, f, g, o) -> (i, f, o, g) and sums the two biases;
    the conversion is exact.
    """
    b = np.zeros(np.shape(weight_ih)[0])
    for bias in (bias_ih, bias_hh):
        if bias is not None:
            b = b + np.asarray(bias)
    return (_blocks(weight_ih, _LSTM_SWAP), _blocks(weight_hh, _LSTM_SWAP),
            _blocks(b, _LSTM_SWAP))


def lstm_to_torch(W, U, b):
    """(weight_ih, weight_hh, bias_ih, bias_hh) for PyTorch from (W, U, b);
    the whole bias goes to bias_ih, bias_hh is zero."""
    return (_blocks(W, _LSTM_SWAP), _blocks(U, _LSTM_SWAP),
            _blocks(b, _LSTM_SWAP), np.zeros(np.shape(b)))


def gru_from_torch(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """(W, U, b) of one direction from a PyTorch GRU (gate order r, z, n).

    b_r = b_ir + b_hr, b_z = b_iz + b_hz, b_n = b_in. PyTorch's b_hn sits
    inside the reset product r * (U_n h + b_hn), which the layer has no slot
    for: a non-zero b_hn raises ValueError rather than port inexactly.
    """
    d = np.shape(weight_hh)[1]
    b = np.zeros(3 * d)
    if bias_ih is not None:
        b = b + np.asarray(bias_ih)
    if bias_hh is not None:
        bias_hh = np.asarray(bias_hh)
        if np.any(bias_hh[2 * d:] != 0):
            raise ValueError("GRU bias_hh has a non-zero n block (b_hn); the "
                             "ReNet GRU cannot represent it exactly")
        b[:2 * d] += bias_hh[:2 * d]
    return np.asarray(weight_ih), np.asarray(weight_hh), b


def gru_to_torch(W, U, b):
    """(weight_ih, weight_hh, bias_ih, bias_hh) for PyTorch's GRU."""
    return np.asarray(W), np.asarray(U), np.asarray(b), np.zeros(np.shape(b))


def to_onnx(unit, W, U, b):
    """(W, R, B) of one direction for ONNX's LSTM / GRU / RNN operator.

    W (G*d x K) and R (G*d x d) are ours with the gate blocks in ONNX's
    order (:data:`ONNX_OPS`); B (2*G*d) is [Wb, Rb] with the whole bias in
    the input bias Wb and Rb = 0. Exact: for the GRU, ONNX's
    ``linear_before_reset=1`` is PyTorch's reset convention, and Rb_h = 0 is
    the layer's b_hn = 0; the RNN needs ``activations=["Relu", "Relu"]``.
    """
    if unit not in ONNX_OPS:
        raise ValueError(f"unit must be one of {sorted(GATES)}, got {unit!r}")
    order = ONNX_OPS[unit][1]
    b = _blocks(b, order)
    return (_blocks(W, order), _blocks(U, order),
            np.concatenate([b, np.zeros_like(b)]))
