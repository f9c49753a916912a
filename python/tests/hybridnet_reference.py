"""NumPy implementations of the H-ReNet authors' custom layers (float64),
written from the semantics of their fork's CPU code, independently of this
project's layers and of hrenet.hybridnet's conversion: the tests run a
converted model through our net and compare every custom layer's output
with these.

* :func:`renet_lstm` - their ``ReNetLSTM``: 11 blobs per direction (W_i,
  W_c, W_o, W_f over [patch; h_{t-1}], the peephole matrices W_ic, W_oc,
  W_fc, the biases b_i, b_c, b_o, b_f); X_DIR sweeps along x (sequences
  are rows), Y_DIR along y; direction 0 from the start, 1 from the end;
  top channels [0, d) direction 0, [d, 2d) direction 1.
* :func:`bilinear_interpolation` - their ``BilinearInterpolation`` to the
  size of a second blob, corners aligned.
* :func:`dense_crf_meanfield` - their ``DenseCRFMeanfield``: Q = softmax of
  the previous scores (the first: bottom[1]), messages filtered on the
  permutohedral lattice, normalised by rows, weighted, multiplied by the
  compatibility, subtracted from the unary; returns the last scores.
* :func:`permutohedral_filter` - the lattice (Adams, Baek & Davis 2010) as
  their ModifiedPermutohedral computes it: elevate, round to the nearest
  remainder-0 point (ties down), rank, barycentric weights, splat, blur
  with [1/2 1 1/2] along axes 0..d, slice scaled by 1 / (1 + 2^-d).
"""
import numpy as np

X_DIR, Y_DIR = 0, 1


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def renet_lstm(x, blobs, direction, num_output, patch=(1, 1),
               peephole=False):
    """Their ReNetLSTM forward of x (N x C x H x W) -> N x 2d x H/s x W/t."""
    n, c, h, w = x.shape
    ph, pw = patch
    gy, gx = h // ph, w // pw
    d = num_output
    # patches: N x gy x gx x (C ph pw) in (c, py, px) order
    p = x.reshape(n, c, gy, ph, gx, pw).transpose(0, 2, 4, 1, 3, 5)
    p = p.reshape(n, gy, gx, c * ph * pw).astype(np.float64)
    if direction == X_DIR:
        seqs, steps = gy, gx
        at = lambda t: p[:, :, t, :]  # noqa: E731  N x rows x K
    else:
        seqs, steps = gx, gy
        at = lambda t: p[:, t, :, :]  # noqa: E731  N x cols x K
    top = np.zeros((n, 2 * d, gy, gx))
    for dir_num in range(2):
        b = [np.asarray(v, np.float64) for v in
             blobs[11 * dir_num:11 * (dir_num + 1)]]
        w_i, w_c, w_o, w_f = b[0:4]
        p_i, p_o, p_f = b[4:7]
        b_i, b_c, b_o, b_f = [v.reshape(d) for v in b[7:11]]
        order = range(steps) if dir_num == 0 else range(steps - 1, -1, -1)
        hid = np.zeros((n, seqs, d))
        cell = np.zeros((n, seqs, d))
        for k, t in enumerate(order):
            xh = np.concatenate([at(t), hid], axis=2)
            gi = xh @ w_i.T + b_i
            gf = xh @ w_f.T + b_f
            if peephole and k > 0:
                gi += cell @ p_i.T
                gf += cell @ p_f.T
            i = _sigmoid(gi)
            g = np.tanh(xh @ w_c.T + b_c)
            f = _sigmoid(gf)
            cell = g * i + (f * cell if k > 0 else 0)
            go = xh @ w_o.T + b_o
            if peephole:
                go += cell @ p_o.T
            hid = _sigmoid(go) * np.tanh(cell)
            out = hid.transpose(0, 2, 1)  # N x d x seqs
            if direction == X_DIR:
                top[:, dir_num * d:(dir_num + 1) * d, :, t] = out
            else:
                top[:, dir_num * d:(dir_num + 1) * d, t, :] = out
    return top


def bilinear_interpolation(x, out_h, out_w):
    """Their BilinearInterpolation of x (N x C x H x W) to out_h x out_w."""
    n, c, h, w = x.shape
    top = np.zeros((n, c, out_h, out_w))
    x = np.asarray(x, np.float64)
    for oy in range(out_h):
        fy = (h - 1) * oy / (out_h - 1) if out_h > 1 else 0.0
        y0 = int(np.floor(fy))
        y1 = y0 if y0 + 1 == h else y0 + 1
        dy = fy - y0
        for ox in range(out_w):
            fx = (w - 1) * ox / (out_w - 1) if out_w > 1 else 0.0
            x0 = int(np.floor(fx))
            x1 = x0 if x0 + 1 == w else x0 + 1
            dx = fx - x0
            top[:, :, oy, ox] = ((1 - dy) * (1 - dx) * x[:, :, y0, x0] +
                                 (1 - dy) * dx * x[:, :, y0, x1] +
                                 dy * (1 - dx) * x[:, :, y1, x0] +
                                 dy * dx * x[:, :, y1, x1])
    return top


class Lattice(object):
    """The permutohedral lattice of a set of N points with d features."""

    def __init__(self, features):
        f = np.asarray(features, np.float64)
        num, d = f.shape
        self.d = d
        inv_std = np.sqrt(2.0 / 3.0) * (d + 1)
        scale = np.array([inv_std / np.sqrt((i + 1.0) * (i + 2.0))
                          for i in range(d)])
        elevated = np.zeros((num, d + 1))
        sm = np.zeros(num)
        for j in range(d, 0, -1):
            cf = f[:, j - 1] * scale[j - 1]
            elevated[:, j] = sm - j * cf
            sm += cf
        elevated[:, 0] = sm
        v = elevated / (d + 1)
        up, down = np.ceil(v), np.floor(v)
        rd = np.where(up * (d + 1) - elevated < elevated - down * (d + 1),
                      up, down).astype(np.int64)
        rem0 = rd * (d + 1)
        total = rd.sum(axis=1)
        rank = np.zeros((num, d + 1), np.int64)
        for i in range(d):
            di = elevated[:, i] - rem0[:, i]
            for j in range(i + 1, d + 1):
                less = di < elevated[:, j] - rem0[:, j]
                rank[:, i] += less
                rank[:, j] += ~less
        rank += total[:, None]
        low, high = rank < 0, rank > d
        rank[low] += d + 1
        rem0[low] += d + 1
        rank[high] -= d + 1
        rem0[high] -= d + 1
        bary = np.zeros((num, d + 2))
        vv = (elevated - rem0) / (d + 1)
        rows = np.arange(num)
        for i in range(d + 1):
            np.add.at(bary, (rows, d - rank[:, i]), vv[:, i])
            np.add.at(bary, (rows, d - rank[:, i] + 1), -vv[:, i])
        bary[:, 0] += 1 + bary[:, d + 1]
        self.weights = bary[:, :d + 1]
        canonical = np.array([[r if j <= d - r else r - (d + 1)
                               for j in range(d + 1)]
                              for r in range(d + 1)])
        index = {}
        keys = []
        self.offsets = np.zeros((num, d + 1), np.int64)
        for r in range(d + 1):
            key = rem0[:, :d] + canonical[r][rank[:, :d]]
            for pnt in range(num):
                k = tuple(key[pnt])
                if k not in index:
                    index[k] = len(keys)
                    keys.append(k)
                self.offsets[pnt, r] = index[k]
        # Blur neighbours along each axis j (index len(keys): absent -> 0).
        m = len(keys)
        self.size = m
        self.neighbours = []
        for j in range(d + 1):
            n1 = np.full(m, m)
            n2 = np.full(m, m)
            for i, k in enumerate(keys):
                a = [x - 1 for x in k]
                b = [x + 1 for x in k]
                if j < d:
                    a[j] = k[j] + d
                    b[j] = k[j] - d
                n1[i] = index.get(tuple(a), m)
                n2[i] = index.get(tuple(b), m)
            self.neighbours.append((n1, n2))

    def filter(self, values):
        """values: N x c -> the lattice's Gaussian filtering, N x c."""
        values = np.asarray(values, np.float64)
        c = values.shape[1]
        lat = np.zeros((self.size + 1, c))
        for r in range(self.d + 1):
            np.add.at(lat, self.offsets[:, r],
                      self.weights[:, r:r + 1] * values)
        for n1, n2 in self.neighbours:
            new = lat.copy()
            new[:self.size] = lat[:self.size] + 0.5 * (lat[n1] + lat[n2])
            new[self.size] = 0
            lat = new
        alpha = 1.0 / (1.0 + 2.0 ** (-self.d))
        out = np.zeros_like(values)
        for r in range(self.d + 1):
            out += self.weights[:, r:r + 1] * lat[self.offsets[:, r]]
        return out * alpha


def permutohedral_filter(features, values):
    return Lattice(features).filter(values)


def dense_crf_meanfield(unary, q0, data, spatial_weight, bilateral_weight,
                        compat, num_iterations=5, theta_alpha=80.0,
                        theta_beta=3.0, theta_gamma=3.0):
    """Their DenseCRFMeanfield forward for one image: unary, q0 (L x H x
    W), data (3 x H x W, as fed to the net) -> the last scores (L x H x W)."""
    num_labels, h, w = unary.shape
    npx = h * w
    ys, xs = np.divmod(np.arange(npx), w)
    spatial = np.stack([xs / theta_gamma, ys / theta_gamma], axis=1)
    planes = np.asarray(data, np.float64).reshape(3, npx)
    bilateral = np.stack([xs / theta_alpha, ys / theta_alpha] +
                         [planes[k] / theta_beta for k in range(3)], axis=1)
    lattices = [Lattice(spatial), Lattice(bilateral)]
    norms = [1.0 / (lat.filter(np.ones((npx, 1)))[:, 0] + 1e-20)
             for lat in lattices]
    unary = np.asarray(unary, np.float64).reshape(num_labels, npx)
    prev = np.asarray(q0, np.float64).reshape(num_labels, npx)
    compat = np.asarray(compat, np.float64).reshape(num_labels, num_labels)
    for _ in range(num_iterations):
        q = np.exp(prev - prev.max(axis=0))
        q /= q.sum(axis=0)
        message = np.zeros_like(q)
        for lat, norm, weight in zip(lattices, norms,
                                     (spatial_weight, bilateral_weight)):
            message += weight * lat.filter(q.T).T * norm
        prev = unary - compat @ message
    return prev.reshape(num_labels, h, w)
