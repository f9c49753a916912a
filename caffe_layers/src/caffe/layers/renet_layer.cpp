#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "caffe/filler.hpp"
#include "caffe/layers/renet_layer.hpp"
#include "caffe/util/math_functions.hpp"

// The BLAS's own threads are switched off while the layer works on two
// threads of its own (OpenBLAS only; weak symbols, null with another BLAS).
extern "C" {
void openblas_set_num_threads(int num_threads) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
int blas_thread_shutdown_(void) __attribute__((weak));
}

namespace caffe {

namespace {

// Row helpers for the CPU step loops: restrict-qualified and kept out of line
// (inlined, GCC loses the restrict and does not vectorise) so that the loops
// over the hidden units vectorise; split on the first step (no predecessor)
// so that the loop bodies carry no branch. On x86-64 GCC also builds AVX-512
// and AVX2 clones of them, picked at load time by the CPU (the default build
// targets plain x86-64, i.e. SSE2).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define RENET_ROW_ATTRIBUTES \
  __attribute__((noinline, target_clones("avx512f", "avx2", "default")))
#else
#define RENET_ROW_ATTRIBUTES __attribute__((noinline))
#endif

// A row of d hidden units vectorises in whole vectors; the d % 16 units
// left over (d = 100: 4) would run as a scalar loop that costs as much as
// the vectorised part. The LSTM's row loops read and write distinct arrays
// (the backward's dL/dc carry alternates between two blocks for that), so
// they run their last kTailLanes units once more as a fixed-length loop
// that vectorises: the units shared with the main loop get the same values
// again. Rows shorter than kTailLanes stay one loop.
const int kTailLanes = 16;

// LSTM forward, first pass over a row: the activations of all G d gates,
// out[k] = renet_gate_act(in[k] + b[k], s[k]) with s[k] = 1 (sigmoid: i, f,
// o) or 2 (tanh: g). One function over the whole row keeps each vector's
// chain of dependent operations short (a single exp and division), so
// that the core overlaps many of them; out may be in (each k is read and
// written once, hence ivdep).
template <typename Dtype>
RENET_ROW_ATTRIBUTES
void LstmGatesRow(int gd, const Dtype* in, const Dtype* __restrict__ b,
    const Dtype* __restrict__ s, Dtype* out) {
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep
#endif
  for (int k = 0; k < gd; ++k) out[k] = renet_gate_act(in[k] + b[k], s[k]);
}

// Second pass: c_t and h_t from the activations a (i, f, o, g) and
// cp = c_{t-1} (NULL at the first step).
template <typename Dtype>
RENET_ROW_ATTRIBUTES
void LstmCellRow(int d, const Dtype* __restrict__ a,
    const Dtype* __restrict__ cp, Dtype* __restrict__ c,
    Dtype* __restrict__ h) {
  const int L = kTailLanes;
  const int body = d >= L ? d - d % L : d;
  const Dtype* f = a + d;
  const Dtype* o = a + 2 * d;
  const Dtype* g = a + 3 * d;
  if (cp) {
    for (int j = 0; j < body; ++j) {
      renet_lstm_cell(a[j], f[j], o[j], g[j], cp[j], c + j, h + j);
    }
    if (body < d) {
      for (int l = 0; l < L; ++l) {
        const int j = d - L + l;
        renet_lstm_cell(a[j], f[j], o[j], g[j], cp[j], c + j, h + j);
      }
    }
  } else {
    for (int j = 0; j < body; ++j) {
      renet_lstm_cell(a[j], f[j], o[j], g[j], Dtype(0), c + j, h + j);
    }
    if (body < d) {
      for (int l = 0; l < L; ++l) {
        const int j = d - L + l;
        renet_lstm_cell(a[j], f[j], o[j], g[j], Dtype(0), c + j, h + j);
      }
    }
  }
}

// dcn: dL/dc_t through c_{t+1}; dcp: out, dL/dc_{t-1} (a different block).
template <typename Dtype>
RENET_ROW_ATTRIBUTES
void LstmBackwardRow(int d, const Dtype* __restrict__ a,
    const Dtype* __restrict__ cp, const Dtype* __restrict__ c,
    const Dtype* __restrict__ dh, const Dtype* __restrict__ dcn,
    Dtype* __restrict__ dcp, Dtype* __restrict__ da) {
  const int L = kTailLanes;
  const int body = d >= L ? d - d % L : d;
  if (cp) {
    for (int j = 0; j < body; ++j) {
      renet_lstm_backward(j, d, a, cp[j], c, dh[j], dcn[j], dcp, da);
    }
    if (body < d) {
      for (int l = 0; l < L; ++l) {
        const int j = d - L + l;
        renet_lstm_backward(j, d, a, cp[j], c, dh[j], dcn[j], dcp, da);
      }
    }
  } else {
    for (int j = 0; j < body; ++j) {
      renet_lstm_backward(j, d, a, Dtype(0), c, dh[j], dcn[j], dcp, da);
    }
    if (body < d) {
      for (int l = 0; l < L; ++l) {
        const int j = d - L + l;
        renet_lstm_backward(j, d, a, Dtype(0), c, dh[j], dcn[j], dcp, da);
      }
    }
  }
}

// u: U h_{t-1}, or a row of zeros with hp == NULL at the first step.
template <typename Dtype>
RENET_ROW_ATTRIBUTES
void GruForwardRow(int d, Dtype* __restrict__ a,
    const Dtype* __restrict__ b,
    const Dtype* __restrict__ u, const Dtype* __restrict__ hp,
    Dtype* __restrict__ h) {
  if (hp) {
    for (int j = 0; j < d; ++j) renet_gru_forward(j, d, a, b, u, hp[j], h);
  } else {
    for (int j = 0; j < d; ++j) renet_gru_forward(j, d, a, b, u, Dtype(0), h);
  }
}

template <typename Dtype>
RENET_ROW_ATTRIBUTES
void GruBackwardRow(int d, const Dtype* __restrict__ a,
    const Dtype* __restrict__ u, const Dtype* __restrict__ hp,
    const Dtype* __restrict__ dh, Dtype* __restrict__ da,
    Dtype* __restrict__ du, Dtype* __restrict__ dhp) {
  if (hp) {
    for (int j = 0; j < d; ++j) {
      dhp[j] += renet_gru_backward(j, d, a, u, hp[j], dh[j], da, du);
    }
  } else {
    for (int j = 0; j < d; ++j) {
      renet_gru_backward(j, d, a, u, Dtype(0), dh[j], da, du);
    }
  }
}

template <typename Dtype>
RENET_ROW_ATTRIBUTES
void IrnnForwardRow(int d, Dtype* __restrict__ a,
    const Dtype* __restrict__ b,
    Dtype* __restrict__ h) {
  for (int j = 0; j < d; ++j) renet_irnn_forward(j, a, b, h);
}

template <typename Dtype>
RENET_ROW_ATTRIBUTES
void IrnnBackwardRow(int d, const Dtype* __restrict__ a,
    const Dtype* __restrict__ dh, Dtype* __restrict__ da) {
  for (int j = 0; j < d; ++j) renet_irnn_backward(j, a, dh[j], da);
}

// Input features up to which the CPU's input projection is done step by
// step (one GEMM per step instead of one over all positions).
const int kStepProjectionMaxK = 32;

}  // namespace

template <typename Dtype>
void ReNetLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const ReNetParameter& p = this->layer_param_.renet_param();
  const string& name = this->layer_param_.name();
  CHECK_EQ(bottom.size(), 1) << "ReNet layer '" << name << "' has "
      << bottom.size() << " bottoms; it takes exactly 1 (N x C x H x W)";
  CHECK_EQ(top.size(), 1) << "ReNet layer '" << name << "' has "
      << top.size() << " tops; it produces exactly 1 (N x 2d x h x w)";
  CHECK_EQ(bottom[0]->num_axes(), 4) << "ReNet layer '" << name
      << "': bottom must be N x C x H x W (4 axes), got "
      << bottom[0]->shape_string();
  CHECK_GT(p.num_output(), 0) << "ReNet layer '" << name
      << "': renet_param.num_output is " << p.num_output()
      << "; set it to the number of hidden units per direction (> 0)";
  CHECK_GT(p.patch_h(), 0) << "ReNet layer '" << name
      << "': renet_param.patch_h is 0; a patch must be at least 1 pixel";
  CHECK_GT(p.patch_w(), 0) << "ReNet layer '" << name
      << "': renet_param.patch_w is 0; a patch must be at least 1 pixel";
  unit_ = p.unit();
  vertical_ = p.direction() == ReNetParameter_Direction_VERTICAL;
  d_ = p.num_output();
  G_ = renet_num_gates(unit_);
  ph_ = p.patch_h();
  pw_ = p.patch_w();
  C_ = bottom[0]->channels();
  K_ = C_ * ph_ * pw_;
  const int gd = G_ * d_;
  if (this->blobs_.size() > 0) {
    CHECK_EQ(this->blobs_.size(), 6) << "ReNet layer '" << name
        << "': expected 6 parameter blobs (W, U, b per direction), got "
        << this->blobs_.size();
    LOG(INFO) << "Skipping parameter initialization";
  } else {
    this->blobs_.resize(6);
    FillerParameter wf;
    if (p.has_weight_filler()) {
      wf = p.weight_filler();
    } else {
      wf.set_type("uniform");
      wf.set_min(-0.2);
      wf.set_max(0.2);
    }
    FillerParameter bf;
    if (p.has_bias_filler()) {
      bf = p.bias_filler();
    } else {
      bf.set_type("constant");
      bf.set_value(0);
    }
    shared_ptr<Filler<Dtype> > weight_filler(GetFiller<Dtype>(wf));
    shared_ptr<Filler<Dtype> > bias_filler(GetFiller<Dtype>(bf));
    for (int dir = 0; dir < 2; ++dir) {
      Blob<Dtype>* w = new Blob<Dtype>(vector<int>{gd, K_});
      Blob<Dtype>* u = new Blob<Dtype>(vector<int>{gd, d_});
      Blob<Dtype>* b = new Blob<Dtype>(vector<int>{gd});
      weight_filler->Fill(w);
      if (unit_ == ReNetParameter_Unit_IRNN) {
        Dtype* ud = u->mutable_cpu_data();
        caffe_set(u->count(), Dtype(0), ud);
        for (int j = 0; j < d_; ++j) {
          ud[j * d_ + j] = p.irnn_scale();
        }
      } else {
        weight_filler->Fill(u);
      }
      bias_filler->Fill(b);
      if (unit_ == ReNetParameter_Unit_LSTM && p.forget_bias() != 0) {
        caffe_add_scalar(d_, Dtype(p.forget_bias()),
            b->mutable_cpu_data() + d_);
      }
      this->blobs_[3 * dir].reset(w);
      this->blobs_[3 * dir + 1].reset(u);
      this->blobs_[3 * dir + 2].reset(b);
    }
  }
  for (int dir = 0; dir < 2; ++dir) {
    CHECK(this->blobs_[3 * dir]->shape() == (vector<int>{gd, K_}))
        << "ReNet layer '" << name << "': W has shape "
        << this->blobs_[3 * dir]->shape_string() << ", expected " << gd
        << " " << K_ << " (G d x C patch_h patch_w)";
    CHECK(this->blobs_[3 * dir + 1]->shape() == (vector<int>{gd, d_}))
        << "ReNet layer '" << name << "': U has shape "
        << this->blobs_[3 * dir + 1]->shape_string() << ", expected " << gd
        << " " << d_ << " (G d x d)";
    CHECK_EQ(this->blobs_[3 * dir + 2]->count(), gd)
        << "ReNet layer '" << name << "': b has shape "
        << this->blobs_[3 * dir + 2]->shape_string() << ", expected " << gd;
  }
  this->param_propagate_down_.resize(this->blobs_.size(), true);
}

template <typename Dtype>
void ReNetLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "ReNet layer '" << name
      << "': bottom must be N x C x H x W (4 axes), got "
      << bottom[0]->shape_string();
  CHECK_EQ(bottom[0]->channels(), C_) << "ReNet layer '" << name
      << "': bottom has " << bottom[0]->channels() << " channels but the "
      << "layer was set up (and its weights shaped) for " << C_;
  N_ = bottom[0]->num();
  H_ = bottom[0]->height();
  W_ = bottom[0]->width();
  gh_ = (H_ + ph_ - 1) / ph_;
  gw_ = (W_ + pw_ - 1) / pw_;
  T_ = vertical_ ? gh_ : gw_;
  B_ = N_ * (vertical_ ? gw_ : gh_);
  // The CPU stores the sequences in blocks of one image each (image-major)
  // and reads VERTICAL 1 x 1 patches from the bottom in place (its image n
  // is X^T of n's w sequences); other patches it copies into X. The GPU
  // keeps one time-major block and reads the bottom in place for N = 1.
  direct_ = vertical_ && ph_ == 1 && pw_ == 1;
  const int Bs = B_ / N_;
  // Row of patch (n, gy, gx): sequence b (n w + gx or n h + gy) at step t
  // (gy or gx) is row (k T + t) Bs + b % Bs of block k = b / Bs.
  pos_y_.resize(gh_);
  pos_x_.resize(gw_);
  for (int gy = 0; gy < gh_; ++gy) {
    pos_y_[gy] = vertical_ ? gy * Bs : gy;
  }
  for (int gx = 0; gx < gw_; ++gx) {
    pos_x_[gx] = vertical_ ? gx : gx * Bs;
  }
  pos_n_ = T_ * Bs;
  pos_.resize(gh_ * gw_);
  for (int gy = 0; gy < gh_; ++gy) {
    for (int gx = 0; gx < gw_; ++gx) {
      pos_[gy * gw_ + gx] = pos_y_[gy] + pos_x_[gx];
    }
  }
  const int gd = G_ * d_;
  top[0]->Reshape(N_, 2 * d_, gh_, gw_);
  // X, also for the GPU with N > 1 (a blob's memory is allocated on first
  // use, so the CPU allocates none when direct_).
  if (!direct_ || N_ > 1) {
    x_.Reshape(vector<int>{T_, B_, K_});
  }
  gates_.Reshape(vector<int>{2, T_, B_, gd});
  hidden_.Reshape(vector<int>{2, T_, B_, d_});
  if (unit_ == ReNetParameter_Unit_LSTM) {
    cell_.Reshape(vector<int>{2, T_, B_, d_});
    carry_.Reshape(vector<int>{2, 2, B_, d_});
    if (gate_scale_.count() != gd) {
      gate_scale_.Reshape(vector<int>{gd});
      Dtype* s = gate_scale_.mutable_cpu_data();
      caffe_set(3 * d_, Dtype(1), s);
      caffe_set(d_, Dtype(2), s + 3 * d_);
    }
    step_.Reshape(vector<int>{!direct_ && K_ <= kStepProjectionMaxK ? 2 : 0,
                              B_, gd});
  }
  if (unit_ == ReNetParameter_Unit_GRU) {
    rec_.Reshape(vector<int>{2, T_, B_, gd});
    if (zeros_.count() != gd) {
      zeros_.Reshape(vector<int>{gd});
      caffe_set(gd, Dtype(0), zeros_.mutable_cpu_data());
    }
  }
  if (bias_multiplier_.count() != T_ * B_) {
    bias_multiplier_.Reshape(vector<int>{T_ * B_});
    caffe_set(T_ * B_, Dtype(1), bias_multiplier_.mutable_cpu_data());
  }
}

namespace {

// Layout copies between channel planes (C x L, plane stride ss) and rows
// (position l at row l_off[l], channels contiguous), in 32 x 32 tiles so
// that both sides stay in cache (a 19200 x 100 transpose: 2.2 ms with
// 16 x 16 tiles, 1.7 ms with 32 x 32).
const int kTile = 32;

template <typename Dtype>
void PlanesToRows(int C, int L, const Dtype* src, int ss, const int* l_off,
    int rs, Dtype* dst) {
  for (int c0 = 0; c0 < C; c0 += kTile) {
    const int c1 = std::min(C, c0 + kTile);
    for (int l0 = 0; l0 < L; l0 += kTile) {
      const int l1 = std::min(L, l0 + kTile);
      for (int l = l0; l < l1; ++l) {
        Dtype* d = dst + l_off[l] * rs;
        for (int c = c0; c < c1; ++c) d[c] = src[c * ss + l];
      }
    }
  }
}

template <typename Dtype>
void RowsToPlanes(int C, int L, const Dtype* src, const int* l_off, int rs,
    Dtype* dst, int ds) {
  for (int l0 = 0; l0 < L; l0 += kTile) {
    const int l1 = std::min(L, l0 + kTile);
    for (int c0 = 0; c0 < C; c0 += kTile) {
      const int c1 = std::min(C, c0 + kTile);
      for (int c = c0; c < c1; ++c) {
        Dtype* d = dst + c * ds;
        for (int l = l0; l < l1; ++l) d[l] = src[l_off[l] * rs + c];
      }
    }
  }
}

// Copies between an image (C x H x W) and the rows of its s x t patches
// (patch (gy, gx) at row row_y[gy] + row_x[gx], K = C s t features in
// (c, dy, dx) order), either way: kToRows gathers the image into the rows,
// else the rows are scattered back into the image. Only the patch rows
// gy in [gy0, gy1) are touched, so two threads can split them. Patches run
// in tiles of 16 along x, so that each tile's rows stay in cache while the
// channels fill them, and each image row segment is read or written whole.
// Pixels beyond H x W (the zero padding) are skipped.
template <bool kToRows, typename Dtype>
void PatchCopy(int C, int H, int W, int s, int t, int gy0, int gy1, int gw,
    const int* row_y, const int* row_x, int K, Dtype* image, Dtype* rows) {
  const int kPatchTile = 16;
  Dtype* row[kPatchTile];
  for (int gy = gy0; gy < gy1; ++gy) {
    for (int gx0 = 0; gx0 < gw; gx0 += kPatchTile) {
      const int count = std::min(kPatchTile, gw - gx0);
      for (int k = 0; k < count; ++k) {
        row[k] = rows + (row_y[gy] + row_x[gx0 + k]) * K;
      }
      for (int c = 0; c < C; ++c) {
        for (int dy = 0; dy < s && gy * s + dy < H; ++dy) {
          Dtype* line = image + (c * H + gy * s + dy) * W + gx0 * t;
          const int f = (c * s + dy) * t;
          if (t == 2 && (gx0 + count) * 2 <= W) {
            // The paper's 2 x 2 patches, none in the padding: the pairs as
            // single moves (a loop over dx costs several times as much).
            for (int k = 0; k < count; ++k) {
              if (kToRows) {
                memcpy(row[k] + f, line + 2 * k, 2 * sizeof(Dtype));
              } else {
                memcpy(line + 2 * k, row[k] + f, 2 * sizeof(Dtype));
              }
            }
            continue;
          }
          for (int k = 0; k < count; ++k) {
            // Only the last patch of a row may reach into the padding.
            const int n = std::min(t, W - (gx0 + k) * t);
            for (int dx = 0; dx < n; ++dx) {
              if (kToRows) {
                row[k][f + dx] = line[k * t + dx];
              } else {
                line[k * t + dx] = row[k][f + dx];
              }
            }
          }
        }
      }
    }
  }
}

// One direction's share of the work, as raw pointers fetched by the calling
// thread (Blob accessors are not thread-safe); blocks are this direction's.
//
// Step t's rows: each direction's blocks (gates, hidden states, cells, X)
// hold row (k T + t) Bs + b for sequence k Bs + b, b < Bs: the B = nb Bs
// sequences come in nb blocks of Bs, each block's steps one after another.
// Time-major (nb = 1, Bs = B): step t is rows [t B, (t + 1) B). Image-major
// (nb = N, Bs = w: vertical 1 x 1 patches read from a bottom with N > 1):
// block k is image k's positions in the bottom's own order.
template <typename Dtype>
struct Sweep {
  int unit, dir, T, B, d, gd, K;
  int Bs;              // sequences per block (one block per image)
  const Dtype* W;
  const Dtype* U;
  const Dtype* bias;
  const Dtype* zeros;  // GRU: U h_{-1}
  const Dtype* scale;  // LSTM: renet_gate_act's s for each of the G d gates
  Dtype* z;            // LSTM with a step projection: B x Gd pre-activations
  Dtype* a;            // T x B x Gd gates (data) and their diff
  Dtype* da;
  Dtype* h;            // T x B x d hidden states and their diff
  Dtype* dh;
  Dtype* c;            // LSTM: T x B x d cells; dc: two B x d carry
  Dtype* dc;           // blocks, dc_stride apart
  int dc_stride;
  Dtype* u;            // GRU: T x B x Gd U h_{t-1}; du: its diff
  Dtype* du;
  // Copies between the top (N x 2d x gh x gw) and this direction's hidden
  // block; patch (n, gy, gx) is row n * pos_n + pos[gy * gw + gx].
  int N, plane, pos_n;  // N: images, and blocks
  const int* pos;
  const Dtype* x;      // X (T B x K): projection input, weight gradient
  bool x_trans;        // x holds X transposed (K x T B: the bottom itself)
  Dtype* dW;
  Dtype* dU;
  Dtype* db;
  const Dtype* ones;
  bool grad_W, grad_U, grad_b;
  float* packed;       // scratch for StepProduct's packed U, or NULL
};

// ---------------------------------------------------------------------------
// The recurrence's per-step products, C (m x n) = A (m x k) P + beta C, with
// P = U^T in the forward sweep (k = d, n = G d) and P = U in the backward
// one (k = G d, n = d). P is the same at every step, but the BLAS packs it
// again at every call; on a CPU with AVX-512 and in float, P is packed once
// per sweep, in panels of 32 columns (zeros past n; W^T below U^T when a
// step projection is fused in), and multiplied by the kernel below.
// Otherwise (double, other CPUs) the BLAS does the products.

const int kPanel = 32;

// Width of the panel that starts at column c0 of n: 32, or 16 for a last
// panel of 16 or fewer columns.
inline int StepPanelWidth(int c0, int n) {
  return n - c0 > 16 ? kPanel : 16;
}

inline int PackedStepSize(int k, int n) {
  int size = 0;
  for (int c0 = 0; c0 < n; c0 += kPanel) size += k * StepPanelWidth(c0, n);
  return size;
}

// Packs rows [r0, r0 + kr) of P (kp x n), P[r0 + kk][c] = src[kk * rs + c *
// cs], in panels: the panel of columns [c0, c0 + w) holds P[r][c0 + c] at
// c0 kp + r w + c (zeros past n).
inline void PackStepFactor(int kp, int r0, int kr, int n, const float* src,
    int rs, int cs, float* dst) {
  for (int c0 = 0; c0 < n; c0 += kPanel) {
    const int w = StepPanelWidth(c0, n);
    float* panel = dst + c0 * kp + r0 * w;
    for (int kk = 0; kk < kr; ++kk) {
      for (int c = 0; c < w; ++c) {
        *panel++ = c0 + c < n ? src[kk * rs + (c0 + c) * cs] : 0.f;
      }
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define RENET_STEP_KERNEL 1

// acc[r][v] += sum over kk < k of A[r lda + kk] P[kk w + 16 v] (w = 16 NV):
// each step of kk loads NV vectors of P and broadcasts R values of A for
// NV R FMAs.
template <int R, int NV>
__attribute__((target("avx512f"), always_inline))
inline void StepAccumulate(const float* A, int lda, int k, const float* P,
    __m512 (&acc)[R][NV]) {
  for (int kk = 0; kk < k; ++kk) {
    __m512 b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      b[v] = _mm512_loadu_ps(P + kk * 16 * NV + 16 * v);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + kk]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
      }
    }
  }
}

// R rows of C, one panel of NV x 16 columns (NV = 1, 2; the masks m[v] pick
// the columns that exist), from k1 columns of A1 and then k2 of A2 against
// consecutive rows of the panel P, in NV R accumulators. C's rows are
// fetched at the start, so that a C in memory arrives during the products.
template <int R, int NV>
__attribute__((target("avx512f"), always_inline))
inline void StepBlock(const float* A1, int lda1, int k1, const float* A2,
    int lda2, int k2, const float* P, const __mmask16* m, bool accumulate,
    float* C, int ldc) {
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      acc[r][v] = _mm512_setzero_ps();
      if (accumulate) {
        _mm_prefetch(reinterpret_cast<const char*>(C + r * ldc + 16 * v),
            _MM_HINT_T0);
      }
    }
  }
  StepAccumulate<R, NV>(A1, lda1, k1, P, acc);
  StepAccumulate<R, NV>(A2, lda2, k2, P + k1 * 16 * NV, acc);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      float* c = C + r * ldc + 16 * v;
      if (accumulate) {
        acc[r][v] = _mm512_add_ps(acc[r][v], _mm512_maskz_loadu_ps(m[v], c));
      }
      _mm512_mask_storeu_ps(c, m[v], acc[r][v]);
    }
  }
}

// The operands of one step product: C (m x n) = [A1 A2] P (+ C), with
// A1 (m x k1, rows lda1 apart) and A2 (m x k2) against rows [p0, p0 + k1 +
// k2) of P, packed by PackStepFactor with kp rows per panel.
struct StepOperands {
  int m, n, kp, p0;
  const float* P;
  const float* A1;
  int lda1, k1;
  const float* A2;
  int lda2, k2;
  bool accumulate;
  float* C;
};

// All rows of C for the panel of NV x 16 columns at c0, in blocks of 8 rows.
template <int NV>
__attribute__((target("avx512f"), always_inline))
inline void StepPanel(const StepOperands& o, int c0, const __mmask16* mask) {
  const float* P = o.P + c0 * o.kp + o.p0 * 16 * NV;
  const int ldc = o.n;
  for (int r = 0; r < o.m; r += 8) {
    const float* A1 = o.A1 + r * o.lda1;
    const float* A2 = o.A2 ? o.A2 + r * o.lda2 : NULL;
    float* C = o.C + r * ldc + c0;
#define RENET_STEP_BLOCK(R) StepBlock<R, NV>(A1, o.lda1, o.k1, A2, o.lda2, \
    o.k2, P, mask, o.accumulate, C, ldc)
    switch (std::min(8, o.m - r)) {
      case 8: RENET_STEP_BLOCK(8); break;
      case 7: RENET_STEP_BLOCK(7); break;
      case 6: RENET_STEP_BLOCK(6); break;
      case 5: RENET_STEP_BLOCK(5); break;
      case 4: RENET_STEP_BLOCK(4); break;
      case 3: RENET_STEP_BLOCK(3); break;
      case 2: RENET_STEP_BLOCK(2); break;
      default: RENET_STEP_BLOCK(1); break;
    }
#undef RENET_STEP_BLOCK
  }
}

// A last panel with 16 or fewer columns runs 16 wide.
__attribute__((target("avx512f")))
void StepGemmAvx512(const StepOperands& o) {
  for (int c0 = 0; c0 < o.n; c0 += kPanel) {
    const int w = std::min(kPanel, o.n - c0);
    const __mmask16 mask[2] = {
        static_cast<__mmask16>(w >= 16 ? 0xffff : (1u << w) - 1),
        static_cast<__mmask16>(w >= 32 ? 0xffff :
                               (w > 16 ? (1u << (w - 16)) - 1 : 0))};
    if (w > 16) {
      StepPanel<2>(o, c0, mask);
    } else {
      StepPanel<1>(o, c0, mask);
    }
  }
}

inline bool StepKernelUsable() {
  static const bool usable = __builtin_cpu_supports("avx512f");
  return usable;
}
#else
inline bool StepKernelUsable() { return false; }
#endif

// One direction's step products for a sweep. packed: scratch from
// SetStepPackBuffers, or NULL for the BLAS. Forward only: with W (G d x K,
// a step projection), P is [U^T; W^T] and Projected() forms a step's
// whole pre-activation [h_{t-1} x_t] P in one pass.
template <typename Dtype>
class StepProduct {
 public:
  StepProduct(bool forward, int gd, int d, const Dtype* U, const Dtype* W,
      int K, float* packed)
      : forward_(forward), k_(forward ? d : gd), n_(forward ? gd : d),
        K_(W ? K : 0), U_(U), W_(W), packed_(packed) {
    if (packed_) Pack(U, W);
  }

  /// C (m x n) = A (m x k) op(U) + beta C, beta 0 or 1.
  void operator()(int m, const Dtype* A, Dtype beta, Dtype* C) const {
#ifdef RENET_STEP_KERNEL
    if (packed_) {
      const StepOperands o = {m, n_, k_ + K_, 0, packed_, Float(A), k_, k_,
          NULL, 0, 0, beta != Dtype(0), Float(C)};
      StepGemmAvx512(o);
      return;
    }
#endif
    caffe_cpu_gemm<Dtype>(CblasNoTrans, forward_ ? CblasTrans : CblasNoTrans,
        m, n_, k_, Dtype(1), A, U_, beta, C);
  }

  /// C (m x G d) = h_{t-1} U^T + x_t W^T (h_{t-1}: hp, NULL at the first
  /// step; x_t: m x K).
  void Projected(int m, const Dtype* hp, const Dtype* x, Dtype* C) const {
#ifdef RENET_STEP_KERNEL
    if (packed_) {
      StepOperands o = {m, n_, k_ + K_, 0, packed_, Float(hp), k_, k_,
          Float(x), K_, K_, false, Float(C)};
      if (!hp) {
        o.p0 = k_;
        o.A1 = o.A2;
        o.lda1 = o.k1 = K_;
        o.A2 = NULL;
        o.k2 = 0;
      }
      StepGemmAvx512(o);
      return;
    }
#endif
    caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, m, n_, K_, Dtype(1), x,
        W_, Dtype(0), C);
    if (hp) (*this)(m, hp, Dtype(1), C);
  }

 private:
  static const float* Float(const Dtype* p) {
    return reinterpret_cast<const float*>(p);
  }
  static float* Float(Dtype* p) { return reinterpret_cast<float*>(p); }
  // Forward: P[kk][c] = U[c][kk], then W[c][kk]; backward: P[kk][c] =
  // U[kk][c].
  void Pack(const float* U, const float* W) {
    const int kp = k_ + K_;
    PackStepFactor(kp, 0, k_, n_, U, forward_ ? 1 : n_, forward_ ? k_ : 1,
        packed_);
    if (W) PackStepFactor(kp, k_, K_, n_, W, 1, K_, packed_);
  }
  void Pack(const double*, const double*) {}

  const bool forward_;
  const int k_, n_, K_;
  const Dtype* U_;
  const Dtype* W_;
  float* packed_;
};

// Rows per step product (sequences per block) up to which the kernel does
// the products that add to a C in memory (the stored gates, dL/dh):
// standalone, 50 steps with C in memory, 63 x 480 x 120 ran at 141 GFLOP/s
// against OpenBLAS's 101, but 630 x 480 x 120 (ten images, time-major) at
// 109 against 141. The fused products write a cached scratch block and use
// the kernel at any size.
const int kStepKernelMaxRows = 256;

// Sets both sweeps' scratch for packed factors (float on an AVX-512 CPU;
// NULL, for the BLAS, otherwise). K: the features of a step projection
// fused into the forward's products, or 0; B: the rows of a product (the
// sequences of a block).
template <typename Dtype>
void SetStepPackBuffers(Blob<float>* buf, int gd, int d, int K, int B,
    Sweep<Dtype>* w) {
  w[0].packed = w[1].packed = NULL;
  if (sizeof(Dtype) != sizeof(float) || !StepKernelUsable()) return;
  if (K == 0 && B > kStepKernelMaxRows) return;
  const int size = std::max(PackedStepSize(d + K, gd), PackedStepSize(gd, d));
  buf->Reshape(vector<int>{2, size});
  w[0].packed = buf->mutable_cpu_data();
  w[1].packed = w[0].packed + size;
}

// Step (time) t of sweep s of a direction and its predecessor.
inline int StepTime(int dir, int s, int T) { return dir == 0 ? s : T - 1 - s; }

// First row of block k at step t.
template <typename Dtype>
inline int StepRow(const Sweep<Dtype>& w, int k, int t) {
  return (k * w.T + t) * w.Bs;
}

// Whether sweep w projects its input step by step (few input features).
template <typename Dtype>
inline bool StepProjection(const Sweep<Dtype>& w) {
  return !w.x_trans && w.K <= kStepProjectionMaxK;
}

// The forward sweep's step products (packing U, and W when a step
// projection is fused in, into w.packed).
template <typename Dtype>
StepProduct<Dtype> ForwardStepProduct(const Sweep<Dtype>& w) {
  const bool fused = StepProjection(w) && w.z;
  return StepProduct<Dtype>(true, w.gd, w.d, w.U, fused ? w.W : NULL, w.K,
                            w.packed);
}

template <typename Dtype>
StepProduct<Dtype> BackwardStepProduct(const Sweep<Dtype>& w) {
  return StepProduct<Dtype>(false, w.gd, w.d, w.U, NULL, 0, w.packed);
}

// Blocks (images) k0 to k1 of sweep w's forward pass: their input
// projection, the recurrence, and the copy of their hidden states to the
// top.
// step_product: ForwardStepProduct(w).
template <typename Dtype>
void SweepForward(const Sweep<Dtype>& w,
    const StepProduct<Dtype>& step_product, int k0, int k1, Dtype* top) {
  const int Bs = w.Bs, d = w.d, gd = w.gd, TBs = w.T * Bs;
  // This direction's input projection of every position, one GEMM per block
  // (X^T: each image's C x H W in the bottom); with few input features, one
  // per step instead, so that the step finds its gates in cache rather than
  // in memory.
  const bool step_projection = StepProjection(w);
  for (int k = k0; !step_projection && k < k1; ++k) {
    caffe_cpu_gemm<Dtype>(w.x_trans ? CblasTrans : CblasNoTrans, CblasTrans,
        TBs, gd, w.K, Dtype(1), w.x + k * TBs * w.K, w.W, Dtype(0),
        w.a + k * TBs * gd);
  }
  // LSTM with a step projection: the step's pre-activations in one product.
  const bool fused = step_projection && w.z;
  for (int s = 0; s < w.T; ++s) {
    const int t = StepTime(w.dir, s, w.T);
    const int tp = w.dir == 0 ? t - 1 : t + 1;
    for (int k = k0; k < k1; ++k) {
      const int r = StepRow(w, k, t), rp = StepRow(w, k, tp);
      Dtype* at = w.a + r * gd;
      // The step's pre-activations; for the LSTM with a step projection, in
      // a scratch block that stays in cache, from which the row loops write
      // the activations to at: the first touch of that memory then overlaps
      // their arithmetic instead of being the GEMM's zero fill (beta = 0).
      Dtype* pre = w.z ? w.z + k * Bs * gd : at;
      Dtype* ht = w.h + r * d;
      const Dtype* hp = s > 0 ? w.h + rp * d : NULL;
      const Dtype* cp = s > 0 && w.c ? w.c + rp * d : NULL;
      Dtype* ct = w.c ? w.c + r * d : NULL;
      Dtype* ut = NULL;
      if (fused) {
        step_product.Projected(Bs, hp, w.x + r * w.K, pre);
      } else if (step_projection) {
        caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, Bs, gd, w.K, Dtype(1),
            w.x + r * w.K, w.W, Dtype(0), pre);
      }
      if (hp && !fused) {
        if (w.u) {
          ut = w.u + r * gd;
          step_product(Bs, hp, Dtype(0), ut);
        } else {
          step_product(Bs, hp, Dtype(1), pre);
        }
      }
      for (int b = 0; b < Bs; ++b) {
        if (w.unit == ReNetParameter_Unit_LSTM) {
          LstmGatesRow(gd, pre + b * gd, w.bias, w.scale, at + b * gd);
          LstmCellRow(d, at + b * gd, cp ? cp + b * d : NULL, ct + b * d,
              ht + b * d);
        } else if (w.unit == ReNetParameter_Unit_GRU) {
          GruForwardRow(d, at + b * gd, w.bias, ut ? ut + b * gd : w.zeros,
              hp ? hp + b * d : NULL, ht + b * d);
        } else {
          IrnnForwardRow(d, at + b * gd, w.bias, ht + b * d);
        }
      }
    }
  }
  for (int n = k0; n < k1; ++n) {
    RowsToPlanes(d, w.plane, w.h + n * w.pos_n * d, w.pos, d,
        top + (n * 2 + w.dir) * d * w.plane, w.plane);
  }
}

// Blocks (images) k0 to k1 of sweep w's back-propagation through time (the
// copy of their top diff to dL/dh first), leaving dL/dA in w.da.
// step_product: BackwardStepProduct(w).
template <typename Dtype>
void SweepBackward(const Sweep<Dtype>& w,
    const StepProduct<Dtype>& step_product, int k0, int k1,
    const Dtype* top_diff) {
  const int Bs = w.Bs, d = w.d, gd = w.gd;
  for (int n = k0; n < k1; ++n) {
    PlanesToRows(d, w.plane, top_diff + (n * 2 + w.dir) * d * w.plane,
        w.plane, w.pos, d, w.dh + n * w.pos_n * d);
  }
  // The LSTM's dL/dc carry: each step reads one block and writes the other
  // (so that the row loops' inputs and outputs never overlap); the first
  // step's input is zero.
  if (w.dc) {
    caffe_set((k1 - k0) * Bs * d, Dtype(0),
        w.dc + ((w.T - 1) % 2) * w.dc_stride + k0 * Bs * d);
  }
  // Back-propagation through time, steps in reverse order of the forward.
  for (int s = w.T - 1; s >= 0; --s) {
    const int t = StepTime(w.dir, s, w.T);
    const int tp = w.dir == 0 ? t - 1 : t + 1;
    const bool has_prev = s > 0;
    for (int k = k0; k < k1; ++k) {
      const int r = StepRow(w, k, t), rp = StepRow(w, k, tp);
      const Dtype* at = w.a + r * gd;
      Dtype* dat = w.da + r * gd;
      const Dtype* dht = w.dh + r * d;
      Dtype* dhp = has_prev ? w.dh + rp * d : NULL;
      // This block's carry rows.
      const Dtype* dcn = w.dc ? w.dc + (s % 2) * w.dc_stride + k * Bs * d :
          NULL;
      Dtype* dcp = w.dc ? w.dc + (1 - s % 2) * w.dc_stride + k * Bs * d : NULL;
      for (int b = 0; b < Bs; ++b) {
        if (w.unit == ReNetParameter_Unit_LSTM) {
          LstmBackwardRow(d, at + b * gd,
              has_prev ? w.c + (rp + b) * d : NULL, w.c + (r + b) * d,
              dht + b * d, dcn + b * d, dcp + b * d, dat + b * gd);
        } else if (w.unit == ReNetParameter_Unit_GRU) {
          GruBackwardRow(d, at + b * gd,
              has_prev ? w.u + (r + b) * gd : w.zeros,
              has_prev ? w.h + (rp + b) * d : NULL, dht + b * d,
              dat + b * gd, w.du + (r + b) * gd,
              has_prev ? dhp + b * d : NULL);
        } else {
          IrnnBackwardRow(d, at + b * gd, dht + b * d, dat + b * gd);
        }
      }
      if (has_prev) {
        step_product(Bs, w.du ? w.du + r * gd : dat, Dtype(1), dhp);
      }
    }
  }
}

// Sweep w's parameter gradients from dL/dA, accumulated, one GEMM over all
// steps (of a block) each, blocks in order.
template <typename Dtype>
void SweepParamGradients(const Sweep<Dtype>& w) {
  const int Bs = w.Bs, d = w.d, gd = w.gd, TBs = w.T * w.Bs;
  for (int k = 0; w.grad_W && k < w.N; ++k) {
    caffe_cpu_gemm<Dtype>(CblasTrans, w.x_trans ? CblasTrans : CblasNoTrans,
        gd, w.K, TBs, Dtype(1), w.da + k * TBs * gd, w.x + k * TBs * w.K,
        Dtype(1), w.dW);
  }
  for (int k = 0; w.grad_U && w.T > 1 && k < w.N; ++k) {
    // dU += sum over steps with a predecessor of dR_t^T h_{t-1}; forward:
    // t = 1..T-1 with t-1, backward: t = 0..T-2 with t+1.
    const Dtype* dr = (w.du ? w.du : w.da) + StepRow(w, k, 1 - w.dir) * gd;
    caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, gd, d, TBs - Bs,
        Dtype(1), dr, w.h + StepRow(w, k, w.dir) * d, Dtype(1), w.dU);
  }
  if (w.grad_b) {
    caffe_cpu_gemv<Dtype>(CblasTrans, w.N * TBs, gd, Dtype(1), w.da,
        w.ones, Dtype(1), w.db);
  }
}


// The BLAS single-threaded while it lives (OpenBLAS only): the layer runs
// all its work on two threads of its own, each calling the BLAS for its
// share. OpenBLAS's idle worker spins (sched_yield) for about 2^28 cycles
// after its last job, a core the layer needs, so it is stopped here; the
// restore starts a new one, which spins into whatever runs next (another
// ReNet layer stops it at once).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas()
      : threads_(openblas_get_num_threads && openblas_set_num_threads ?
                 openblas_get_num_threads() : 1) {
    if (threads_ > 1) {
      openblas_set_num_threads(1);
      if (blas_thread_shutdown_) blas_thread_shutdown_();
    }
  }
  ~SingleThreadedBlas() {
    if (threads_ > 1) openblas_set_num_threads(threads_);
  }

 private:
  const int threads_;
};

// Runs fn(fwd) here and fn(bwd) on a second thread (the BLAS single-threaded
// meanwhile: see SingleThreadedBlas): the two directions are independent, so
// the per-step GEMMs and gate loops of both proceed with no barrier between
// them. Sweeps too small to pay for a thread (under 2^20 recurrent
// multiply-adds) run in turn.
template <typename Fn, typename Dtype>
void RunBothDirections(Fn fn, const Sweep<Dtype>& fwd,
    const Sweep<Dtype>& bwd) {
  const double macs = static_cast<double>(fwd.T) * fwd.B * fwd.gd * fwd.d;
  if (macs < (1 << 20) || std::thread::hardware_concurrency() < 2) {
    fn(fwd);
    fn(bwd);
    return;
  }
  std::thread second(fn, std::cref(bwd));
  fn(fwd);
  second.join();
}

// Runs fn(j) for j = 0 .. n - 1 on this thread and a second one, each taking
// the next job as it finishes its last, so that the faster core (a VM's
// vCPUs slow down independently) takes more of them; in turn here when the
// work (as for SplitInTwo) is under min_work.
template <typename Fn>
void RunJobs(int n, double work, Fn fn, double min_work = 1 << 20) {
  if (work < min_work || n < 2 || std::thread::hardware_concurrency() < 2) {
    for (int j = 0; j < n; ++j) fn(j);
    return;
  }
  std::atomic<int> next(0);
  auto take_jobs = [&next, n, &fn]() {
    for (int j = next++; j < n; j = next++) fn(j);
  };
  std::thread second(take_jobs);
  take_jobs();
  second.join();
}

// fn(0, n / 2) here and fn(n / 2, n) on a second thread when the work
// (multiply-adds, or elements copied) reaches min_work, else fn(0, n).
template <typename Fn>
void SplitInTwo(int n, double work, Fn fn, double min_work = 1 << 20) {
  if (work < min_work || n < 2 || std::thread::hardware_concurrency() < 2) {
    fn(0, n);
    return;
  }
  std::thread second(fn, n / 2, n);
  fn(0, n / 2);
  second.join();
}

// Where each image's pixels go in X: patch (n, gy, gx) is row n pos_n +
// pos[gy gw + gx] = n pos_n + row_y[gy] + row_x[gx].
struct RowLayout {
  int C, H, W, s, t, gh, gw, K, pos_n;
  const int* pos;
  const int* row_y;
  const int* row_x;
  bool one_by_one() const { return s == 1 && t == 1; }
  /// What CopyImageRows splits: channels (1 x 1 patches) or patch rows.
  int parts() const { return one_by_one() ? C : gh; }
};

// Image n's pixels (of N x C x H x W images) to its rows of X, or back when
// !kToRows: channels i0 to i1 with 1 x 1 patches, else patch rows i0 to i1.
template <bool kToRows, typename Dtype>
void CopyImageRows(const RowLayout& l, int n, int i0, int i1, Dtype* images,
    Dtype* rows) {
  const int HW = l.H * l.W;
  Dtype* image = images + n * l.C * HW;
  Dtype* image_rows = rows + n * l.pos_n * l.K;
  if (!l.one_by_one()) {
    PatchCopy<kToRows>(l.C, l.H, l.W, l.s, l.t, i0, i1, l.gw, l.row_y,
                       l.row_x, l.K, image, image_rows);
  } else if (kToRows) {
    PlanesToRows(i1 - i0, HW, image + i0 * HW, HW, l.pos, l.K,
                 image_rows + i0);
  } else {
    RowsToPlanes(i1 - i0, HW, image_rows + i0, l.pos, l.K, image + i0 * HW,
                 HW);
  }
}

// Elements that a layout copy needs for a second thread to pay (its start
// costs about as much as copying 2^15 to 2^16 of them).
const double kCopySplitMin = 1 << 17;

// CopyImageRows for all N images: with several, one job per image, which two
// threads take in turn; with one, its parts split in halves over two.
template <bool kToRows, typename Dtype>
void CopyAllImageRows(const RowLayout& l, int N, Dtype* images,
    Dtype* rows) {
  const double work = static_cast<double>(l.C) * l.H * l.W;
  if (N > 1) {
    RunJobs(N, N * work, [&l, images, rows](int n) {
      CopyImageRows<kToRows>(l, n, 0, l.parts(), images, rows);
    }, kCopySplitMin);
    return;
  }
  SplitInTwo(l.parts(), work, [&l, images, rows](int i0, int i1) {
    CopyImageRows<kToRows>(l, 0, i0, i1, images, rows);
  }, kCopySplitMin);
}

// C = alpha op(A) op(B) + beta C, row-major, with leading dimensions (for
// blocks of rows or columns of the operands).
inline void GemmLd(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
    float alpha, const float* a, int lda, const float* b, int ldb, float beta,
    float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc);
}

inline void GemmLd(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
    double alpha, const double* a, int lda, const double* b, int ldb,
    double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc);
}

}  // namespace

template <typename Dtype>
void ReNetLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  SingleThreadedBlas single_threaded_blas;
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  const Dtype* in = bottom[0]->cpu_data();
  Dtype* x = direct_ ? NULL : x_.mutable_cpu_data();
  // Patch extraction into X (zero padding where needed).
  if (!direct_) {
    if (gh_ * ph_ != H_ || gw_ * pw_ != W_) {
      caffe_set(x_.count(), Dtype(0), x);
    }
    const RowLayout layout = {C_, H_, W_, ph_, pw_, gh_, gw_, K_, pos_n_,
        pos_.data(), pos_y_.data(), pos_x_.data()};
    CopyAllImageRows<true>(layout, N_, const_cast<Dtype*>(in) /* only read */,
                           x);
  }
  // Each direction's input projection (one GEMM over all positions) and
  // recurrence; the two directions run concurrently.
  Dtype* a = gates_.mutable_cpu_data();
  Sweep<Dtype> w[2] = {};
  Dtype* h = hidden_.mutable_cpu_data();
  for (int dir = 0; dir < 2; ++dir) {
    Sweep<Dtype>& v = w[dir];
    v.unit = unit_; v.dir = dir; v.T = T_; v.B = B_; v.d = d_; v.gd = gd;
    v.K = K_; v.Bs = B_ / N_;
    v.x = direct_ ? in : x;
    v.x_trans = direct_;
    v.W = this->blobs_[3 * dir]->cpu_data();
    v.U = this->blobs_[3 * dir + 1]->cpu_data();
    v.bias = this->blobs_[3 * dir + 2]->cpu_data();
    v.a = a + dir * TB * gd;
    v.h = h + dir * TB * d_;
    if (unit_ == ReNetParameter_Unit_LSTM) {
      v.c = cell_.mutable_cpu_data() + dir * TB * d_;
      v.scale = gate_scale_.cpu_data();
      v.z = step_.count() ? step_.mutable_cpu_data() + dir * B_ * gd : NULL;
    }
    if (unit_ == ReNetParameter_Unit_GRU) {
      v.u = rec_.mutable_cpu_data() + dir * TB * gd;
      v.zeros = zeros_.cpu_data();
    }
    v.N = N_; v.plane = gh_ * gw_; v.pos_n = pos_n_; v.pos = pos_.data();
  }
  SetStepPackBuffers(&packed_u_, gd, d_, step_.count() ? K_ : 0,
      B_ / N_, w);
  Dtype* out = top[0]->mutable_cpu_data();
  const StepProduct<Dtype> product[2] = {ForwardStepProduct(w[0]),
                                         ForwardStepProduct(w[1])};
  const double macs = static_cast<double>(T_) * B_ * gd * d_;
  if (N_ > 1) {
    // One job per direction and block (image): its projection, recurrence
    // and top copy.
    RunJobs(2 * N_, macs, [&w, &product, out](int j) {
      SweepForward(w[j % 2], product[j % 2], j / 2, j / 2 + 1, out);
    });
    return;
  }
  RunBothDirections([&product, out](const Sweep<Dtype>& v) {
        SweepForward(v, product[v.dir], 0, 1, out);
      }, w[0], w[1]);
}

template <typename Dtype>
void ReNetLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  SingleThreadedBlas single_threaded_blas;
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  Sweep<Dtype> w[2] = {};
  Dtype* da = gates_.mutable_cpu_diff();
  for (int dir = 0; dir < 2; ++dir) {
    Sweep<Dtype>& v = w[dir];
    v.unit = unit_; v.dir = dir; v.T = T_; v.B = B_; v.d = d_; v.gd = gd;
    v.K = K_; v.Bs = B_ / N_;
    v.U = this->blobs_[3 * dir + 1]->cpu_data();
    v.a = gates_.mutable_cpu_data() + dir * TB * gd;
    v.da = da + dir * TB * gd;
    v.h = hidden_.mutable_cpu_data() + dir * TB * d_;
    v.dh = hidden_.mutable_cpu_diff() + dir * TB * d_;
    if (unit_ == ReNetParameter_Unit_LSTM) {
      v.c = cell_.mutable_cpu_data() + dir * TB * d_;
      v.dc = carry_.mutable_cpu_data() + dir * B_ * d_;
      v.dc_stride = 2 * B_ * d_;
    }
    if (unit_ == ReNetParameter_Unit_GRU) {
      v.u = rec_.mutable_cpu_data() + dir * TB * gd;
      v.du = rec_.mutable_cpu_diff() + dir * TB * gd;
      v.zeros = zeros_.cpu_data();
    }
    v.N = N_; v.plane = gh_ * gw_; v.pos_n = pos_n_; v.pos = pos_.data();
    v.x = direct_ ? bottom[0]->cpu_data() : x_.cpu_data();
    v.x_trans = direct_;
    v.ones = bias_multiplier_.cpu_data();
    v.grad_W = this->param_propagate_down_[3 * dir];
    v.grad_U = this->param_propagate_down_[3 * dir + 1];
    v.grad_b = this->param_propagate_down_[3 * dir + 2];
    v.dW = v.grad_W ? this->blobs_[3 * dir]->mutable_cpu_diff() : NULL;
    v.dU = v.grad_U ? this->blobs_[3 * dir + 1]->mutable_cpu_diff() : NULL;
    v.db = v.grad_b ? this->blobs_[3 * dir + 2]->mutable_cpu_diff() : NULL;
  }
  SetStepPackBuffers(&packed_u_, gd, d_, 0, B_ / N_, w);
  const Dtype* top_diff = top[0]->cpu_diff();
  const StepProduct<Dtype> product[2] = {BackwardStepProduct(w[0]),
                                         BackwardStepProduct(w[1])};
  Dtype* din = propagate_down[0] ? bottom[0]->mutable_cpu_diff() : NULL;
  const Dtype* W[2] = {this->blobs_[0]->cpu_data(),
                       this->blobs_[3]->cpu_data()};
  const int K = K_;
  const double macs = static_cast<double>(TB) * K * gd;
  const RowLayout layout = {C_, H_, W_, ph_, pw_, gh_, gw_, K_, pos_n_,
      pos_.data(), pos_y_.data(), pos_x_.data()};
  Dtype* dxm = direct_ || !propagate_down[0] ? NULL : x_.mutable_cpu_diff();
  if (N_ > 1) {
    // One job per direction and block (image) for the back-propagation
    // through time; then each direction's parameter gradients (blocks in
    // order: the sums do not depend on which thread took what) and each
    // image's bottom diff, the larger jobs first.
    const double step_macs = static_cast<double>(T_) * B_ * gd * d_;
    RunJobs(2 * N_, step_macs, [&w, &product, top_diff](int j) {
      SweepBackward(w[j % 2], product[j % 2], j / 2, j / 2 + 1, top_diff);
    });
    const bool direct = direct_;
    const int P = pos_n_;  // rows (positions) of an image's block
    RunJobs(2 + (propagate_down[0] ? N_ : 0), macs,
        [&w, &W, &layout, direct, da, din, dxm, K, P, gd, TB](int j) {
      if (j < 2) {
        SweepParamGradients(w[j]);
        return;
      }
      // Image n's bottom diff: read in place, its C x H W = sum over
      // directions of W^T dA^T; else its rows of dX = sum of dA W, copied
      // to the bottom's layout.
      const int n = j - 2;
      for (int dir = 0; dir < 2; ++dir) {
        const Dtype* dan = da + (dir * TB + n * P) * gd;
        if (direct) {
          GemmLd(CblasTrans, CblasTrans, K, P, gd, Dtype(1), W[dir], K, dan,
              gd, Dtype(dir), din + n * K * P, P);
        } else {
          caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, P, K, gd,
              Dtype(1), dan, W[dir], Dtype(dir), dxm + n * P * K);
        }
      }
      if (!direct) {
        CopyImageRows<false>(layout, n, 0, layout.parts(), din, dxm);
      }
    });
    return;
  }
  RunBothDirections([&product, top_diff](const Sweep<Dtype>& v) {
        SweepBackward(v, product[v.dir], 0, 1, top_diff);
        SweepParamGradients(v);
      }, w[0], w[1]);
  if (!propagate_down[0]) {
    return;
  }
  if (direct_) {
    // The image's bottom diff (C x H W) = sum over directions of W^T dA^T;
    // the two threads take halves of its rows (input channels: columns of
    // W).
    const int HW = H_ * W_;
    SplitInTwo(K, macs, [=](int k0, int k1) {
      for (int dir = 0; dir < 2; ++dir) {
        GemmLd(CblasTrans, CblasTrans, k1 - k0, HW, gd, Dtype(1),
            W[dir] + k0, K, da + dir * TB * gd, gd, Dtype(dir), din + k0 * HW,
            HW);
      }
    });
    return;
  }
  // dX (T B x K) = sum over directions of dA W; the two threads take
  // halves of its rows.
  SplitInTwo(TB, macs, [=](int r0, int r1) {
    for (int dir = 0; dir < 2; ++dir) {
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, r1 - r0, K, gd,
          Dtype(1), da + (dir * TB + r0) * gd, W[dir], Dtype(dir),
          dxm + r0 * K);
    }
  });
  CopyAllImageRows<false>(layout, N_, din, dxm);
}

#ifdef CPU_ONLY
STUB_GPU(ReNetLayer);
#endif

INSTANTIATE_CLASS(ReNetLayer);
REGISTER_LAYER_CLASS(ReNet);

}  // namespace caffe
