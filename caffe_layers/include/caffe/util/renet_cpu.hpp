#ifndef CAFFE_UTIL_RENET_CPU_HPP_
#define CAFFE_UTIL_RENET_CPU_HPP_

#include <algorithm>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/util/layout_copy.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/parallel.hpp"
#include "caffe/util/step_gemm.hpp"

/**
 * @file
 * The ReNet layer's CPU machinery (caffe/layers/renet_layer.hpp describes
 * the algorithm): one direction's sweep over its sequences (the input
 * projection, the recurrence with its per-step products, back-propagation
 * through time, the parameter gradients), the products' packed factors, the
 * jobs that run sweeps and GEMM parts on the layer's threads, and the copies
 * between images and the rows of X. renet_layer.cpp sets the sweeps up and
 * dispatches to these; the element-wise gate maths is the layer header's
 * __host__ __device__ functions, shared with the CUDA path.
 */

namespace caffe {

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
  bool onednn;         // products through oneDNN (renet_cpu::Gemm)
};

namespace renet_cpu {

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

// HRENET_PORTABLE=1: the BLAS does every product, never the packed kernel
// or oneDNN (an unset variable or 0: the packed kernel where the CPU has
// AVX-512, oneDNN's sgemm for the other products in a build with it).
// Anything else throws UserError.
bool HrenetPortable();

// Whether the layer's products (renet_cpu::Gemm) can go through oneDNN: in
// float, in a build with oneDNN (USE_DNNL), with HRENET_PORTABLE unset.
// oneDNN picks its kernels by the CPU it runs on; OpenBLAS by the model it
// was told or knows, which can be older ones (caffe/util/openblas_check).
bool OnednnGemm(bool is_float);

// C = alpha op(A) op(B) + beta C, row-major, with leading dimensions (for
// blocks of rows or columns of the operands), on the calling thread alone:
// every product of the CPU path that the packed kernel does not do. onednn
// (OnednnGemm): through oneDNN's sgemm, else through the BLAS.
void Gemm(bool onednn, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n,
    int k, float alpha, const float* a, int lda, const float* b, int ldb,
    float beta, float* c, int ldc);
void Gemm(bool onednn, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n,
    int k, double alpha, const double* a, int lda, const double* b, int ldb,
    double beta, double* c, int ldc);

// Gemm with the operands' own leading dimensions (as caffe_cpu_gemm).
template <typename Dtype>
inline void Gemm(bool onednn, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m,
    int n, int k, Dtype alpha, const Dtype* a, const Dtype* b, Dtype beta,
    Dtype* c) {
  Gemm(onednn, ta, tb, m, n, k, alpha, a, ta == CblasNoTrans ? k : m, b,
       tb == CblasNoTrans ? n : k, beta, c, n);
}

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
      int K, float* packed, bool onednn)
      : forward_(forward), onednn_(onednn), k_(forward ? d : gd),
        n_(forward ? gd : d), K_(W ? K : 0), U_(U), W_(W), packed_(packed) {
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
    Gemm(onednn_, CblasNoTrans, forward_ ? CblasTrans : CblasNoTrans, m, n_,
        k_, Dtype(1), A, U_, beta, C);
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
    Gemm(onednn_, CblasNoTrans, CblasTrans, m, n_, K_, Dtype(1), x, W_,
        Dtype(0), C);
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

  const bool forward_, onednn_;
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
                            w.packed, w.onednn);
}

template <typename Dtype>
StepProduct<Dtype> BackwardStepProduct(const Sweep<Dtype>& w) {
  return StepProduct<Dtype>(false, w.gd, w.d, w.U, NULL, 0, w.packed,
                            w.onednn);
}

// Blocks (images) k0 to k1 of sweep w's forward pass: their input
// projection, the recurrence, and the copy of their hidden states to the
// top. step_product: ForwardStepProduct(w).
template <typename Dtype>
void SweepForward(const Sweep<Dtype>& w,
    const StepProduct<Dtype>& step_product, int k0, int k1, Dtype* top);

// Blocks k0 to k1 of sweep w's back-propagation through time, from the
// top's diff; step_product: BackwardStepProduct(w).
template <typename Dtype>
void SweepBackward(const Sweep<Dtype>& w,
    const StepProduct<Dtype>& step_product, int k0, int k1,
    const Dtype* top_diff);

// Sweep w's parameter gradients over all its blocks (after SweepBackward).
template <typename Dtype>
void SweepParamGradients(const Sweep<Dtype>& w);

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

}  // namespace renet_cpu
}  // namespace caffe

#endif  // CAFFE_UTIL_RENET_CPU_HPP_
