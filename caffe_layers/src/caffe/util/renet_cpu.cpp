#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "caffe/layers/renet_layer.hpp"
#include "caffe/util/dnnl_util.hpp"
#include "caffe/util/renet_cpu.hpp"
#include "caffe/util/user_error.hpp"

namespace caffe {
namespace renet_cpu {

// HRENET_PORTABLE=1: the BLAS does every product, never the packed kernel
// or oneDNN.
bool HrenetPortable() {
  const char* env = std::getenv("HRENET_PORTABLE");
  const std::string value = env ? env : "";
  HRENET_USER_CHECK(value == "" || value == "0" || value == "1",
      "HRENET_PORTABLE is '"
      << value << "'; set it to 1 (the BLAS does every product) or 0 (the "
      << "CPU's own kernel where it has AVX-512, oneDNN's products in a build "
      << "with it), or unset it");
  return value == "1";
}

bool OnednnGemm(bool is_float) {
#ifdef USE_DNNL
  return is_float && !HrenetPortable();
#else
  return false;
#endif
}

void Gemm(bool onednn, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n,
    int k, float alpha, const float* a, int lda, const float* b, int ldb,
    float beta, float* c, int ldc) {
#ifdef USE_DNNL
  if (onednn) {
    DnnlSgemmOneThread(ta == CblasTrans, tb == CblasTrans, m, n, k, alpha, a,
                       lda, b, ldb, beta, c, ldc);
    return;
  }
#endif
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc);
}

void Gemm(bool, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
    double alpha, const double* a, int lda, const double* b, int ldb,
    double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc);
}

namespace {

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

// Step (time) t of sweep s of a direction and its predecessor.
inline int StepTime(int dir, int s, int T) { return dir == 0 ? s : T - 1 - s; }

// First row of block k at step t.
template <typename Dtype>
inline int StepRow(const Sweep<Dtype>& w, int k, int t) {
  return (k * w.T + t) * w.Bs;
}

}  // namespace

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
    Gemm(w.onednn, w.x_trans ? CblasTrans : CblasNoTrans, CblasTrans,
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
        Gemm(w.onednn, CblasNoTrans, CblasTrans, Bs, gd, w.K, Dtype(1),
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
    Gemm(w.onednn, CblasTrans, w.x_trans ? CblasTrans : CblasNoTrans,
        gd, w.K, TBs, Dtype(1), w.da + k * TBs * gd, w.x + k * TBs * w.K,
        Dtype(1), w.dW);
  }
  for (int k = 0; w.grad_U && w.T > 1 && k < w.N; ++k) {
    // dU += sum over steps with a predecessor of dR_t^T h_{t-1}; forward:
    // t = 1..T-1 with t-1, backward: t = 0..T-2 with t+1.
    const Dtype* dr = (w.du ? w.du : w.da) + StepRow(w, k, 1 - w.dir) * gd;
    Gemm(w.onednn, CblasTrans, CblasNoTrans, gd, d, TBs - Bs,
        Dtype(1), dr, w.h + StepRow(w, k, w.dir) * d, Dtype(1), w.dU);
  }
  if (w.grad_b) {
    caffe_cpu_gemv<Dtype>(CblasTrans, w.N * TBs, gd, Dtype(1), w.da,
        w.ones, Dtype(1), w.db);
  }
}

#define INSTANTIATE_RENET_CPU(Dtype)                                        \
  template void SweepForward(const Sweep<Dtype>& w,                         \
      const StepProduct<Dtype>& step_product, int k0, int k1, Dtype* top);  \
  template void SweepBackward(const Sweep<Dtype>& w,                        \
      const StepProduct<Dtype>& step_product, int k0, int k1,               \
      const Dtype* top_diff);                                               \
  template void SweepParamGradients(const Sweep<Dtype>& w)

INSTANTIATE_RENET_CPU(float);  // NOLINT(readability/function)
INSTANTIATE_RENET_CPU(double);  // NOLINT(readability/function)

}  // namespace renet_cpu
}  // namespace caffe
