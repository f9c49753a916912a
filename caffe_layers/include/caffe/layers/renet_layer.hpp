#ifndef CAFFE_RENET_LAYER_HPP_
#define CAFFE_RENET_LAYER_HPP_

#include <math.h>

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/fast_math.hpp"

namespace caffe {

template <typename Dtype> struct ReNetSweep;

/**
 * @brief A spatially recurrent ("ReNet") layer: two 1-D RNNs with independent
 *        weights sweep a grid of patches in opposite directions along one
 *        axis; their hidden states are concatenated along the channels.
 *
 * F. Visin et al., "ReNet: A Recurrent Neural Network Based Alternative to
 * Convolutional Networks", 2015; Z. Yan et al., "Combining the Best of
 * Convolutional Layers and Recurrent Layers: A Hybrid Network for Semantic
 * Segmentation" (H-ReNet), section 3.
 *
 * The bottom @f$ N \times C \times H \times W @f$ is cut into a grid of
 * @f$ h \times w @f$ patches of @f$ s \times t @f$ pixels (`patch_h`,
 * `patch_w`), @f$ h = \lceil H/s \rceil @f$, @f$ w = \lceil W/t \rceil @f$.
 * When H or W is not a multiple of s or t, the bottom/right border is padded
 * with zeros up to the next multiple (the padding receives no gradient).
 * Each patch is one time step's input vector @f$ x \in R^K @f$ with
 * @f$ K = C s t @f$ features in (c, dy, dx) order, i.e.
 * @f$ x[(c s + dy) t + dx] = I[n, c, y s + dy, x t + dx] @f$.
 *
 * - `direction: VERTICAL`: each column of the grid (fixed n, x) is a sequence;
 *   the forward RNN sweeps y = 0..h-1 (top to bottom), the backward RNN
 *   y = h-1..0 (bottom to top).
 * - `direction: HORIZONTAL`: each row (fixed n, y) is a sequence; forward
 *   sweeps left to right, backward right to left.
 *
 * Top: @f$ N \times 2d \times h \times w @f$ (d = `num_output`), channels
 * [0, d) the forward sweep's hidden state, [d, 2d) the backward sweep's.
 * The initial hidden (and cell) state of every sweep is zero.
 *
 * Parameter blobs (6; forward direction first, then backward):
 *   blobs_[0] @f$ W^F @f$ (G d x K), blobs_[1] @f$ U^F @f$ (G d x d),
 *   blobs_[2] @f$ b^F @f$ (G d), blobs_[3..5] the same for the backward RNN.
 * Row block k (rows [k d, (k+1) d)) of W, U and b belongs to gate k:
 *
 * - `unit: LSTM` (G = 4, gate order i, f, o, g like upstream `LSTMUnit`; no
 *   peepholes), with @f$ a = W x_t + U h_{t-1} + b @f$:
 *   @f$ i = \sigma(a_i), f = \sigma(a_f), o = \sigma(a_o), g = \tanh(a_g) @f$,
 *   @f$ c_t = f \odot c_{t-1} + i \odot g @f$,
 *   @f$ h_t = o \odot \tanh(c_t) @f$.
 *   Porting a PyTorch `nn.LSTM` (gate order i, f, g, o):
 *   W = weight_ih rows reordered to (i, f, o, g), U = weight_hh reordered the
 *   same way, b = bias_ih + bias_hh reordered (exact).
 * - `unit: IRNN` (G = 1): @f$ h_t = \max(0, W x_t + U h_{t-1} + b) @f$
 *   (Le et al. 2015); U is initialised to `irnn_scale` times the identity.
 * - `unit: GRU` (G = 3, gate order r, z, n, PyTorch's convention where the
 *   reset gate multiplies @f$ U_n h_{t-1} @f$, not @f$ h_{t-1} @f$):
 *   @f$ r = \sigma(W_r x + U_r h + b_r) @f$,
 *   @f$ z = \sigma(W_z x + U_z h + b_z) @f$,
 *   @f$ n = \tanh(W_n x + b_n + r \odot (U_n h)) @f$,
 *   @f$ h_t = (1 - z) \odot n + z \odot h_{t-1} @f$.
 *   There is a single bias per gate. A PyTorch `nn.GRU` (same gate order)
 *   ports with W = weight_ih, U = weight_hh, b_r = b_ir + b_hr,
 *   b_z = b_iz + b_hz, b_n = b_in; this is exact only when b_hn = 0 (PyTorch
 *   puts b_hn inside the reset product, which this layer has no slot for).
 *
 * Initialisation (when the layer is not loaded from a model): W and U from
 * `weight_filler` (default uniform [-0.2, 0.2], the paper's), b from
 * `bias_filler` (default 0); LSTM adds `forget_bias` to @f$ b_f @f$ (with
 * `forget_bias_long`, units [d/2, d), d/2 rounded down, add that instead:
 * half the units start with a short memory, half with a long one; LSTM
 * only); IRNN
 * sets U to `irnn_scale` * I.
 *
 * Backward: back-propagation through time. The bottom receives a gradient
 * (when propagate_down[0]); the six parameter diffs are accumulated (+=),
 * so `iter_size > 1` works.
 *
 * @param bottom input Blob vector (length 1)
 *   -# @f$ (N \times C \times H \times W) @f$
 * @param top output Blob vector (length 1)
 *   -# @f$ (N \times 2d \times h \times w) @f$
 *
 * Algorithm, shared by the CPU and CUDA paths. The patches are rows of a
 * matrix X (T x B x K): T steps of B = N x (sequences per image)
 * independent sequences. Per direction:
 *   -# the input projections of all positions, @f$ A = X W^T @f$, in one
 *      GEMM;
 *   -# per step t, in the sweep's order, @f$ A_t \mathrel{+}= h_{t-1} U^T
 *      @f$ in one GEMM over the step's sequences, then one element-wise pass
 *      of the gate maths below (bias, activations, cell and hidden state);
 *   -# backward, steps in reverse order: the element-wise backward of the
 *      step gives @f$ dA_t @f$, then @f$ dh_{t-1} \mathrel{+}= dA_t U @f$ in
 *      one GEMM; the parameter gradients are one GEMM each over all steps
 *      (@f$ dW \mathrel{+}= dA^T X @f$, @f$ dU \mathrel{+}= dA_t^T
 *      h_{t-1} @f$ summed over t, @f$ db \mathrel{+}= \sum dA @f$), the
 *      input gradient @f$ dX = \sum_{dir} dA W @f$, copied back to the
 *      bottom's layout.
 * No memory is allocated per step or per pass once the shapes are set. The
 * element-wise maths is the inline functions below, which the CPU loops and
 * the CUDA kernels both call, so the CPU tests cover the GPU's maths.
 *
 * Where the paths differ, and why:
 * - Layout of X, the gates and the hidden states. GPU: time-major, one
 *   block (a step's B rows contiguous), so that each step is one GEMM over
 *   the whole batch. CPU: one block per image, each image's rows step after
 *   step (time-major for N = 1), so that images are independent jobs for
 *   threads and a step's rows stay in cache.
 * - VERTICAL 1 x 1 patches: each image of the bottom already is X^T of its
 *   own sequences; the CPU reads it in place for any N, the GPU for N = 1.
 * - CPU, LSTM, at most 32 features per patch: the projection is done per
 *   step with the recurrence (its gates stay in cache).
 * - CPU, float, AVX-512F: the step products run on a kernel of the
 *   layer's own (caffe/util/step_gemm.hpp) with U (and a per-step W)
 *   packed once per sweep; a BLAS packs U again at every step. The
 *   environment variable HRENET_PORTABLE=1 turns the kernel off (the BLAS
 *   does every product, as on any other CPU or in double).
 * - CPU, float, a build with oneDNN: every other product (the input
 *   projection, the step products without the kernel, the gradients) is
 *   oneDNN's sgemm on the calling thread, which picks its kernels by the
 *   CPU it finds; OpenBLAS may be pinned to older ones (single-threaded,
 *   on the products of the paper's layers, OpenBLAS 0.3.21 took 1.3-1.9
 *   times oneDNN's time with its Haswell kernels on an AVX-512 CPU, 0.9-1.4
 *   times with its SkylakeX ones). Without oneDNN, in double or with
 *   HRENET_PORTABLE=1: the BLAS.
 * - CPU, LSTM: the element-wise pass runs as two loops per row, all 4 d
 *   activations (renet_gate_act) and then the cell (renet_lstm_cell), so
 *   that each vector's chain of dependent operations stays short.
 * - GPU: one kernel per step does both directions' gate maths.
 *
 * CPU threads: `renet_param { threads }`, or when it is 0 (the default)
 * HrenetThreads() (the environment variable HRENET_THREADS, default: the
 * CPUs this process may run on; caffe/util/parallel.hpp), read at set-up.
 * With one image the two directions sweep concurrently, with no
 * barrier between their steps; the layout copies and the input-gradient
 * GEMM are split in parts. With several images the work is jobs that the
 * threads take in turn: per direction and image the sweep (projection,
 * recurrence, top copy; backward, back-propagation through time), then
 * per direction the parameter gradients (images in order) and per image
 * its bottom diff. Every split of arithmetic is fixed by the shapes, never
 * by the thread count (only the exact layout copies are cut per thread), so
 * the results are the same bits for any number of threads. While
 * the layer runs, the BLAS runs each call on one thread
 * (BlasSingleThreaded: OpenBLAS's count is restored afterwards, safely
 * when several nets run at once), so that layer threads x BLAS threads
 * never exceed the cores.
 */
template <typename Dtype>
class ReNetLayer : public Layer<Dtype> {
 public:
  explicit ReNetLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "ReNet"; }
  // One bottom and one top; checked in LayerSetUp with a message that names
  // the layer (the generic check does not).

 protected:
  /// @param bottom input @f$ N \times C \times H \times W @f$
  /// @param top output @f$ N \times 2d \times h \times w @f$
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  /// Gradients w.r.t. the bottom (if propagate_down[0]) and all six
  /// parameter blobs (accumulated).
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// CPU: both directions' sweeps (pointers into the blobs); with
  /// backward, their diffs too.
  void SetUpSweeps(const vector<Blob<Dtype>*>& bottom, bool backward,
      ReNetSweep<Dtype>* w);

  int num_threads_;  ///< CPU threads (threads or HrenetThreads() at set-up)
  bool step_kernel_;  ///< CPU: the packed kernel may do the step products
  bool onednn_gemm_;  ///< CPU: the other products go through oneDNN
  int unit_;        ///< ReNetParameter::Unit
  bool vertical_;   ///< direction == VERTICAL
  int d_;           ///< hidden units per direction
  int G_;           ///< gates per unit (LSTM 4, GRU 3, IRNN 1)
  int ph_, pw_;     ///< patch height s and width t
  int C_, K_;       ///< input channels, features per patch C s t
  int N_, H_, W_;   ///< bottom shape
  int gh_, gw_;     ///< patch grid h x w
  int T_, B_;       ///< steps per sequence, sequences in the batch
  /// VERTICAL, 1 x 1 patches: each image of the bottom is X^T of its w
  /// sequences (C x H W), so the CPU's GEMMs read and write the bottom with
  /// no layout copy (the GPU does so for N = 1 only).
  bool direct_;
  /// Whether the GPU reads the bottom in place (direct_ with N = 1).
  bool gpu_direct() const { return direct_ && N_ == 1; }
  Blob<Dtype> x_;       ///< X (T x B x K); diff: dX
  Blob<Dtype> gates_;   ///< 2 x T x B x Gd: activations; diff: dpre-act
  Blob<Dtype> hidden_;  ///< 2 x T x B x d: h; diff: dh
  Blob<Dtype> cell_;    ///< LSTM: 2 x T x B x d: c
  /// LSTM backward: dL/dc carried in time, 2 x 2 x B x d: two blocks per
  /// direction that the CPU's steps read and write in turn (the CUDA
  /// kernels use the first, in place).
  Blob<Dtype> carry_;
  Blob<Dtype> rec_;     ///< GRU: 2 x T x B x Gd: U h_{t-1}; diff: its grad
  Blob<Dtype> bias_multiplier_;  ///< T B ones
  Blob<Dtype> zeros_;   ///< G d zeros: U h_{-1} for the GRU's first step
  /// LSTM: per gate, the s of renet_gate_act (1 for i, f, o; 2 for g).
  Blob<Dtype> gate_scale_;
  /// LSTM, CPU, few input features (a projection per step): 2 x B x Gd
  /// scratch for one step's pre-activations (empty otherwise).
  Blob<Dtype> step_;
  /// CPU, float, AVX-512: each direction's U (and a fused step
  /// projection's W) packed for the step products.
  Blob<float> packed_u_;
  /// CPU: patch (n, gy, gx) is row p = n * pos_n_ + pos_y_[gy] + pos_x_[gx]
  /// of X (T x B rows) and of each direction's hidden block: for sequence b
  /// at step t, p = (k T + t) Bs + b % Bs in block k = b / Bs of
  /// Bs = B / N sequences: the CPU stores one block per image, each
  /// block's rows step after step (time-major for N = 1; the GPU always
  /// uses one time-major block). pos_n_ = T Bs: image n's rows.
  vector<int> pos_y_, pos_x_;
  vector<int> pos_;  ///< pos_y_[gy] + pos_x_[gx] at gy * gw + gx
  int pos_n_;
};

// ---------------------------------------------------------------------------
// Element-wise gate maths, shared by the CPU loops and the CUDA kernels.
// Each call handles hidden unit j of one sequence; `a` points at that
// sequence's G d gate values, `d` is the number of hidden units.

/// Gates per hidden unit: G = 4 (LSTM: i, f, o, g), 3 (GRU: r, z, n), 1 (IRNN).
HRENET_HD inline int renet_num_gates(int unit) {
  return unit == ReNetParameter_Unit_LSTM ? 4 :
      (unit == ReNetParameter_Unit_GRU ? 3 : 1);
}

/// tanh for float through FastExp (absolute error about 1e-7).
HRENET_HD inline float renet_tanh(float x) {
  return 2.0f / (1.0f + FastExp(-2.0f * x)) - 1.0f;
}
HRENET_HD inline double renet_tanh(double x) { return tanh(x); }

template <typename Dtype>
HRENET_HD inline Dtype renet_sigmoid(Dtype x) {
  return Dtype(1) / (Dtype(1) + FastExp(-x));
}

/// A gate's activation with s = 1 (sigmoid) or s = 2 (tanh, as
/// 2 sigmoid(2 x) - 1: the same bits as renet_tanh for float), so that a
/// loop over all G d gates of a row runs one function (a per-gate s).
template <typename Dtype>
HRENET_HD inline Dtype renet_gate_act(Dtype x, Dtype s) {
  return s * renet_sigmoid(s * x) - (s - Dtype(1));
}

/// LSTM cell update from the gate activations: c_t = f c_{t-1} + i g,
/// h_t = o tanh(c_t).
template <typename Dtype>
HRENET_HD inline void renet_lstm_cell(Dtype i, Dtype f, Dtype o, Dtype g,
    Dtype cp, Dtype* ct, Dtype* ht) {
  const Dtype c = f * cp + i * g;
  *ct = c;
  *ht = o * renet_tanh(c);
}

/// LSTM step. In: a = W x (+ U h_{t-1}) pre-activations (i, f, o, g), bias b,
/// cp = c_{t-1} (0 at the first step). Out: a overwritten with the
/// activations, c_t and h_t.
/// (The CPU's rows run the same two functions in two passes.)
template <typename Dtype>
HRENET_HD inline void renet_lstm_forward(int j, int d, Dtype* a,
    const Dtype* b, Dtype cp, Dtype* c, Dtype* h) {
  const Dtype i = renet_gate_act(a[j] + b[j], Dtype(1));
  const Dtype f = renet_gate_act(a[d + j] + b[d + j], Dtype(1));
  const Dtype o = renet_gate_act(a[2 * d + j] + b[2 * d + j], Dtype(1));
  const Dtype g = renet_gate_act(a[3 * d + j] + b[3 * d + j], Dtype(2));
  a[j] = i;
  a[d + j] = f;
  a[2 * d + j] = o;
  a[3 * d + j] = g;
  renet_lstm_cell(i, f, o, g, cp, c + j, h + j);
}

/// LSTM step backward. In: activations a, cp = c_{t-1} (0 at the first
/// step), c_t, dh = dL/dh_t (all paths), dcn = dL/dc_t through c_{t+1}.
/// Out: da (gradients of the pre-activations), dcp[j] = dL/dc_{t-1} (dcp
/// may hold dcn: the CUDA kernels carry it in place, the CPU rows in two
/// alternating blocks).
template <typename Dtype>
HRENET_HD inline void renet_lstm_backward(int j, int d, const Dtype* a,
    Dtype cp, const Dtype* c, Dtype dh, Dtype dcn, Dtype* dcp, Dtype* da) {
  const Dtype i = a[j], f = a[d + j], o = a[2 * d + j], g = a[3 * d + j];
  const Dtype tc = renet_tanh(c[j]);
  const Dtype dct = dcn + dh * o * (Dtype(1) - tc * tc);
  da[j] = dct * g * i * (Dtype(1) - i);
  da[d + j] = dct * cp * f * (Dtype(1) - f);
  da[2 * d + j] = dh * tc * o * (Dtype(1) - o);
  da[3 * d + j] = dct * i * (Dtype(1) - g * g);
  dcp[j] = dct * f;
}

/// IRNN step: h = max(0, a + b); a is overwritten with h.
template <typename Dtype>
HRENET_HD inline void renet_irnn_forward(int j, Dtype* a, const Dtype* b,
    Dtype* h) {
  const Dtype v = a[j] + b[j];
  const Dtype ht = v > Dtype(0) ? v : Dtype(0);
  a[j] = ht;
  h[j] = ht;
}

/// IRNN step backward: da = dh where h > 0.
template <typename Dtype>
HRENET_HD inline void renet_irnn_backward(int j, const Dtype* a, Dtype dh,
    Dtype* da) {
  da[j] = a[j] > Dtype(0) ? dh : Dtype(0);
}

/// GRU step. In: a = W x (r, z, n), bias b, u = U h_{t-1} (r, z, n; a row of
/// zeros at the first step), hp = h_{t-1} (0 at the first step). Out: a
/// overwritten with the activations r, z, n; h_t.
template <typename Dtype>
HRENET_HD inline void renet_gru_forward(int j, int d, Dtype* a, const Dtype* b,
    const Dtype* u, Dtype hp, Dtype* h) {
  const Dtype r = renet_sigmoid(a[j] + b[j] + u[j]);
  const Dtype z = renet_sigmoid(a[d + j] + b[d + j] + u[d + j]);
  const Dtype n = renet_tanh(a[2 * d + j] + b[2 * d + j] + r * u[2 * d + j]);
  a[j] = r;
  a[d + j] = z;
  a[2 * d + j] = n;
  h[j] = (Dtype(1) - z) * n + z * hp;
}

/// GRU step backward. In: activations a, u = U h_{t-1} and hp = h_{t-1}
/// (zeros at the first step), dh = dL/dh_t. Out: da (gradient of W x + b),
/// du (gradient of U h_{t-1}; differs from da in the n block). Returns the
/// direct-path gradient dh * z for h_{t-1}.
template <typename Dtype>
HRENET_HD inline Dtype renet_gru_backward(int j, int d, const Dtype* a,
    const Dtype* u, Dtype hp, Dtype dh, Dtype* da, Dtype* du) {
  const Dtype r = a[j], z = a[d + j], n = a[2 * d + j];
  const Dtype dn = dh * (Dtype(1) - z) * (Dtype(1) - n * n);
  const Dtype dz = dh * (hp - n) * z * (Dtype(1) - z);
  const Dtype dr = dn * u[2 * d + j] * r * (Dtype(1) - r);
  da[j] = dr;
  da[d + j] = dz;
  da[2 * d + j] = dn;
  du[j] = dr;
  du[d + j] = dz;
  du[2 * d + j] = dn * r;
  return dh * z;
}

}  // namespace caffe

#endif  // CAFFE_RENET_LAYER_HPP_
