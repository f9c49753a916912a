#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layers/renet_layer.hpp"
#include "caffe/util/layout_copy.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/parallel.hpp"
#include "caffe/util/step_gemm.hpp"
#include "caffe/util/user_error.hpp"

namespace caffe {

namespace {

// ---------------------------------------------------------------------------
// Tuning constants of the CPU path, each with what it trades. None depends
// on the thread count, so that neither do the results. (The packed kernel's
// panels and the layout copies' tiles are properties of those utilities:
// caffe/util/step_gemm.hpp, layout_copy.cpp.)

// Work (multiply-adds, or elements for the copies) under which a sweep or a
// list of jobs runs on one thread: starting threads costs about as much.
const double kMinThreadedWork = 1 << 20;
// Elements per part of one image's layout copy: smaller parts cost more in
// thread starts than they save.
const double kMinCopyPart = 1 << 16;
// One image's input-gradient GEMM is split by positions into up to
// kMaxGemmParts parts (a power of two) of at least kMinGemmPart
// multiply-adds: more parts let more threads share it, but each packs the
// weights again.
const int kMaxGemmParts = 4;
const double kMinGemmPart = 1 << 19;
// Input features up to which the projection is done step by step (one
// small GEMM per step, whose gates stay in cache) instead of in one GEMM
// over all positions (which streams them through memory).
const int kStepProjectionMaxK = 32;
// Rows per step product up to which the packed kernel also does the
// products that add to a C in memory; above it the BLAS's larger blocking
// wins.
const int kStepKernelMaxRows = 256;

// HRENET_PORTABLE=1: the BLAS does every product, never the packed kernel.
bool HrenetPortable() {
  const char* env = std::getenv("HRENET_PORTABLE");
  const std::string value = env ? env : "";
  HRENET_USER_CHECK(value == "" || value == "0" || value == "1",
      "HRENET_PORTABLE is '"
      << value << "'; set it to 1 (the BLAS does every product) or 0 (the "
      << "CPU's own kernel where it has AVX-512), or unset it");
  return value == "1";
}

// Row helpers for the CPU step loops: restrict-qualified and kept out of line
// (inlined, GCC loses the restrict and does not vectorise) so that the loops
// over the hidden units vectorise; split on the first step (no predecessor)
// so that the loop bodies carry no branch. On x86-64 GCC also builds AVX-512
// and AVX2 clones of them, picked at load time by the CPU (the default build
// targets plain x86-64, i.e. SSE2).
#define RENET_ROW_ATTRIBUTES \
  __attribute__((noinline)) \
  HRENET_TARGET_CLONES("avx512f", "avx2", "default")

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

}  // namespace

// One direction's share of the work, as raw pointers fetched by the calling
// thread (Blob accessors are not thread-safe); blocks are this direction's.
//
// Step t's rows: each direction's blocks (gates, hidden states, cells, X)
// hold row (k T + t) Bs + b for sequence k Bs + b, b < Bs: the B = nb Bs
// sequences come in nb blocks of Bs, each block's steps one after another.
// Time-major (nb = 1, Bs = B: one image): step t is rows [t B, (t + 1) B).
// Image-major (nb = N, several images): block k is image k's sequences
// (for vertical 1 x 1 patches read in place, in the bottom's own order).
template <typename Dtype>
struct ReNetSweep {
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

namespace {

template <typename Dtype>
using Sweep = ReNetSweep<Dtype>;

// ---------------------------------------------------------------------------
// The recurrence's per-step products, C (m x n) = A (m x k) P + beta C, with
// P = U^T in the forward sweep (k = d, n = G d) and P = U in the backward
// one (k = G d, n = d). P is the same at every step, but the BLAS packs it
// again at every call; on a CPU with AVX-512 and in float, P is packed once
// per sweep (W^T below U^T when a step projection is fused in) and
// multiplied by StepGemm (caffe/util/step_gemm.hpp). Otherwise (double,
// other CPUs, HRENET_PORTABLE=1) the BLAS does the products.


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
    if (packed_) {
      const StepOperands o = {m, n_, k_ + K_, 0, packed_, Float(A), k_, k_,
          NULL, 0, 0, beta != Dtype(0), Float(C)};
      StepGemm(o);
      return;
    }
    caffe_cpu_gemm<Dtype>(CblasNoTrans, forward_ ? CblasTrans : CblasNoTrans,
        m, n_, k_, Dtype(1), A, U_, beta, C);
  }

  /// C (m x G d) = h_{t-1} U^T + x_t W^T (h_{t-1}: hp, NULL at the first
  /// step; x_t: m x K).
  void Projected(int m, const Dtype* hp, const Dtype* x, Dtype* C) const {
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
      StepGemm(o);
      return;
    }
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

// Sets both sweeps' scratch for packed factors (float on an AVX-512 CPU;
// NULL, for the BLAS, otherwise). K: the features of a step projection
// fused into the forward's products, or 0; B: the rows of a product (the
// sequences of a block).
template <typename Dtype>
void SetStepPackBuffers(bool kernel, Blob<float>* buf, int gd, int d, int K,
    int B, Sweep<Dtype>* w) {
  w[0].packed = w[1].packed = NULL;
  if (!kernel || sizeof(Dtype) != sizeof(float) || !StepGemmUsable()) return;
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


// Runs fn(fwd) and fn(bwd) as two jobs on up to `threads` threads: the
// directions are independent, so the per-step GEMMs and gate loops of both
// proceed with no barrier between them. Sweeps under kMinThreadedWork
// recurrent multiply-adds run in turn.
template <typename Fn, typename Dtype>
void RunBothDirections(int threads, Fn fn, const Sweep<Dtype>& fwd,
    const Sweep<Dtype>& bwd) {
  const double macs = static_cast<double>(fwd.T) * fwd.B * fwd.gd * fwd.d;
  const Sweep<Dtype>* sweep[2] = {&fwd, &bwd};
  ParallelJobs(2, macs < kMinThreadedWork ? 1 : threads,
      [&fn, &sweep](int dir) { fn(*sweep[dir]); });
}

// Runs fn(j) for j = 0 .. n - 1 as jobs on up to `threads` threads; in turn
// here when the work is under min_work.
template <typename Fn>
void RunJobs(int threads, int n, double work, Fn fn,
    double min_work = kMinThreadedWork) {
  ParallelJobs(n, work < min_work ? 1 : threads, fn);
}

// fn(r0, r1) over [0, n) split into parts by a GEMM's multiply-adds alone
// (see kMaxGemmParts), run as jobs on up to `threads` threads.
template <typename Fn>
void SplitGemm(int threads, int n, double macs, Fn fn) {
  ParallelParts(n, WorkParts(macs, kMinGemmPart, kMaxGemmParts), threads, fn);
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

// CopyImageRows for all N images: with several, one job per image; with
// one, its parts split over the threads, each part at least kMinCopyPart
// elements (a copy gives the same result however it is split).
template <bool kToRows, typename Dtype>
void CopyAllImageRows(int threads, const RowLayout& l, int N, Dtype* images,
    Dtype* rows) {
  const double work = static_cast<double>(l.C) * l.H * l.W;
  if (N > 1) {
    RunJobs(threads, N, N * work, [&l, images, rows](int n) {
      CopyImageRows<kToRows>(l, n, 0, l.parts(), images, rows);
    }, 2 * kMinCopyPart);
    return;
  }
  const int parts = static_cast<int>(std::min<double>(threads,
      std::max(1.0, work / kMinCopyPart)));
  ParallelParts(l.parts(), parts, parts, [&l, images, rows](int i0, int i1) {
    CopyImageRows<kToRows>(l, 0, i0, i1, images, rows);
  });
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
void ReNetLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const ReNetParameter& p = this->layer_param_.renet_param();
  const string& name = this->layer_param_.name();
  HRENET_USER_CHECK(bottom.size() == 1,
      "ReNet layer '" << name << "' has "
      << bottom.size() << " bottoms; it takes exactly 1 (N x C x H x W)");
  HRENET_USER_CHECK(top.size() == 1,
      "ReNet layer '" << name << "' has "
      << top.size() << " tops; it produces exactly 1 (N x 2d x h x w)");
  HRENET_USER_CHECK(bottom[0]->num_axes() == 4,
      "ReNet layer '" << name
      << "': bottom must be N x C x H x W (4 axes), got "
      << bottom[0]->shape_string());
  HRENET_USER_CHECK(p.num_output() > 0,
      "ReNet layer '" << name
      << "': renet_param.num_output is " << p.num_output()
      << "; set it to the number of hidden units per direction (> 0)");
  HRENET_USER_CHECK(p.patch_h() > 0,
      "ReNet layer '" << name
      << "': renet_param.patch_h is 0; a patch must be at least 1 pixel");
  HRENET_USER_CHECK(p.patch_w() > 0,
      "ReNet layer '" << name
      << "': renet_param.patch_w is 0; a patch must be at least 1 pixel");
  num_threads_ = p.threads() > 0 ? static_cast<int>(p.threads())
                                  : HrenetThreads();
  step_kernel_ = !HrenetPortable();
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
    HRENET_USER_CHECK(this->blobs_.size() == 6,
        "ReNet layer '" << name
        << "': expected 6 parameter blobs (W, U, b per direction), got "
        << this->blobs_.size());
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
    HRENET_USER_CHECK(this->blobs_[3 * dir]->shape() == (vector<int>{gd, K_}),
        "ReNet layer '" << name << "': W has shape "
        << this->blobs_[3 * dir]->shape_string() << ", expected " << gd
        << " " << K_ << " (G d x C patch_h patch_w)");
    HRENET_USER_CHECK(
        this->blobs_[3 * dir + 1]->shape() == (vector<int>{gd, d_}),
        "ReNet layer '" << name << "': U has shape "
        << this->blobs_[3 * dir + 1]->shape_string() << ", expected " << gd
        << " " << d_ << " (G d x d)");
    HRENET_USER_CHECK(this->blobs_[3 * dir + 2]->count() == gd,
        "ReNet layer '" << name << "': b has shape "
        << this->blobs_[3 * dir + 2]->shape_string() << ", expected " << gd);
  }
  this->param_propagate_down_.resize(this->blobs_.size(), true);
}

template <typename Dtype>
void ReNetLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  HRENET_USER_CHECK(bottom[0]->num_axes() == 4,
      "ReNet layer '" << name
      << "': bottom must be N x C x H x W (4 axes), got "
      << bottom[0]->shape_string());
  HRENET_USER_CHECK(bottom[0]->channels() == C_,
      "ReNet layer '" << name
      << "': bottom has " << bottom[0]->channels() << " channels but the "
      << "layer was set up (and its weights shaped) for " << C_);
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

template <typename Dtype>
void ReNetLayer<Dtype>::SetUpSweeps(const vector<Blob<Dtype>*>& bottom,
    bool backward, ReNetSweep<Dtype>* w) {
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  for (int dir = 0; dir < 2; ++dir) {
    ReNetSweep<Dtype>& v = w[dir];
    v = ReNetSweep<Dtype>();
    v.unit = unit_; v.dir = dir; v.T = T_; v.B = B_; v.d = d_; v.gd = gd;
    v.K = K_; v.Bs = B_ / N_;
    v.N = N_; v.plane = gh_ * gw_; v.pos_n = pos_n_; v.pos = pos_.data();
    v.x = direct_ ? bottom[0]->cpu_data() : x_.cpu_data();
    v.x_trans = direct_;
    v.W = this->blobs_[3 * dir]->cpu_data();
    v.U = this->blobs_[3 * dir + 1]->cpu_data();
    v.bias = this->blobs_[3 * dir + 2]->cpu_data();
    v.a = gates_.mutable_cpu_data() + dir * TB * gd;
    v.h = hidden_.mutable_cpu_data() + dir * TB * d_;
    if (unit_ == ReNetParameter_Unit_LSTM) {
      v.c = cell_.mutable_cpu_data() + dir * TB * d_;
      v.scale = gate_scale_.cpu_data();
      v.z = step_.count() ? step_.mutable_cpu_data() + dir * B_ * gd : NULL;
    }
    if (unit_ == ReNetParameter_Unit_GRU) {
      v.u = rec_.mutable_cpu_data() + dir * TB * gd;
      v.zeros = zeros_.cpu_data();
    }
    if (!backward) {
      continue;  // no diff memory for inference
    }
    v.da = gates_.mutable_cpu_diff() + dir * TB * gd;
    v.dh = hidden_.mutable_cpu_diff() + dir * TB * d_;
    if (unit_ == ReNetParameter_Unit_LSTM) {
      v.dc = carry_.mutable_cpu_data() + dir * B_ * d_;
      v.dc_stride = 2 * B_ * d_;
    }
    if (unit_ == ReNetParameter_Unit_GRU) {
      v.du = rec_.mutable_cpu_diff() + dir * TB * gd;
    }
    v.ones = bias_multiplier_.cpu_data();
    v.grad_W = this->param_propagate_down_[3 * dir];
    v.grad_U = this->param_propagate_down_[3 * dir + 1];
    v.grad_b = this->param_propagate_down_[3 * dir + 2];
    v.dW = v.grad_W ? this->blobs_[3 * dir]->mutable_cpu_diff() : NULL;
    v.dU = v.grad_U ? this->blobs_[3 * dir + 1]->mutable_cpu_diff() : NULL;
    v.db = v.grad_b ? this->blobs_[3 * dir + 2]->mutable_cpu_diff() : NULL;
  }
}

template <typename Dtype>
void ReNetLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  BlasSingleThreaded blas_single_threaded;
  const int gd = G_ * d_;
  const Dtype* in = bottom[0]->cpu_data();
  Dtype* x = direct_ ? NULL : x_.mutable_cpu_data();
  // Patch extraction into X (zero padding where needed).
  if (!direct_) {
    if (gh_ * ph_ != H_ || gw_ * pw_ != W_) {
      caffe_set(x_.count(), Dtype(0), x);
    }
    const RowLayout layout = {C_, H_, W_, ph_, pw_, gh_, gw_, K_, pos_n_,
        pos_.data(), pos_y_.data(), pos_x_.data()};
    CopyAllImageRows<true>(num_threads_, layout, N_,
                           const_cast<Dtype*>(in) /* only read */, x);
  }
  // Each direction's input projection and recurrence.
  Sweep<Dtype> w[2];
  SetUpSweeps(bottom, false, w);
  SetStepPackBuffers(step_kernel_, &packed_u_, gd, d_, step_.count() ? K_ : 0,
      B_ / N_, w);
  Dtype* out = top[0]->mutable_cpu_data();
  const StepProduct<Dtype> product[2] = {ForwardStepProduct(w[0]),
                                         ForwardStepProduct(w[1])};
  const double macs = static_cast<double>(T_) * B_ * gd * d_;
  if (N_ > 1) {
    // One job per direction and block (image): its projection, recurrence
    // and top copy.
    RunJobs(num_threads_, 2 * N_, macs, [&w, &product, out](int j) {
      SweepForward(w[j % 2], product[j % 2], j / 2, j / 2 + 1, out);
    });
    return;
  }
  RunBothDirections(num_threads_, [&product, out](const Sweep<Dtype>& v) {
        SweepForward(v, product[v.dir], 0, 1, out);
      }, w[0], w[1]);
}

template <typename Dtype>
void ReNetLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  BlasSingleThreaded blas_single_threaded;
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  Sweep<Dtype> w[2];
  SetUpSweeps(bottom, true, w);
  Dtype* da = gates_.mutable_cpu_diff();
  SetStepPackBuffers(step_kernel_, &packed_u_, gd, d_, 0, B_ / N_, w);
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
    RunJobs(num_threads_, 2 * N_, step_macs, [&w, &product, top_diff](int j) {
      SweepBackward(w[j % 2], product[j % 2], j / 2, j / 2 + 1, top_diff);
    });
    const bool direct = direct_;
    const int P = pos_n_;  // rows (positions) of an image's block
    RunJobs(num_threads_, 2 + (propagate_down[0] ? N_ : 0), macs,
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
  RunBothDirections(num_threads_, [&product, top_diff](const Sweep<Dtype>& v) {
        SweepBackward(v, product[v.dir], 0, 1, top_diff);
        SweepParamGradients(v);
      }, w[0], w[1]);
  if (!propagate_down[0]) {
    return;
  }
  if (direct_) {
    // The image's bottom diff (C x H W) = sum over directions of W^T dA^T,
    // in parts of its columns (positions: rows of dA), so that each part
    // packs its own rows of dA and all of W (K x G d, less than the H W x
    // G d of dA in the layers this path serves).
    const int HW = H_ * W_;
    SplitGemm(num_threads_, HW, macs, [=](int p0, int p1) {
      for (int dir = 0; dir < 2; ++dir) {
        GemmLd(CblasTrans, CblasTrans, K, p1 - p0, gd, Dtype(1), W[dir], K,
            da + (dir * TB + p0) * gd, gd, Dtype(dir), din + p0, HW);
      }
    });
    return;
  }
  // dX (T B x K) = sum over directions of dA W, in parts of its rows.
  SplitGemm(num_threads_, TB, macs, [=](int r0, int r1) {
    for (int dir = 0; dir < 2; ++dir) {
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, r1 - r0, K, gd,
          Dtype(1), da + (dir * TB + r0) * gd, W[dir], Dtype(dir),
          dxm + r0 * K);
    }
  });
  CopyAllImageRows<false>(num_threads_, layout, N_, din, dxm);
}

#ifdef CPU_ONLY
STUB_GPU(ReNetLayer);
#endif

INSTANTIATE_CLASS(ReNetLayer);
REGISTER_LAYER_CLASS(ReNet);

}  // namespace caffe
