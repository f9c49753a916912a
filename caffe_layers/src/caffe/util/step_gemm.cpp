#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>

#include "caffe/common.hpp"
#include "caffe/util/step_gemm.hpp"

namespace caffe {

int PackedStepSize(int k, int n) {
  int size = 0;
  for (int c0 = 0; c0 < n; c0 += kStepPanel) {
    size += k * StepPanelWidth(c0, n);
  }
  return size;
}

void PackStepFactor(int kp, int r0, int kr, int n, const float* src, int rs,
    int cs, float* dst) {
  for (int c0 = 0; c0 < n; c0 += kStepPanel) {
    const int w = StepPanelWidth(c0, n);
    float* panel = dst + c0 * kp + r0 * w;
    for (int kk = 0; kk < kr; ++kk) {
      for (int c = 0; c < w; ++c) {
        *panel++ = c0 + c < n ? src[kk * rs + (c0 + c) * cs] : 0.f;
      }
    }
  }
}

namespace {

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define STEP_GEMM_KERNEL 1

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
  for (int c0 = 0; c0 < o.n; c0 += kStepPanel) {
    const int w = std::min(kStepPanel, o.n - c0);
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

#endif  // STEP_GEMM_KERNEL

}  // namespace

bool StepGemmUsable() {
#ifdef STEP_GEMM_KERNEL
  static const bool usable = __builtin_cpu_supports("avx512f");
  return usable;
#else
  return false;
#endif
}

void StepGemm(const StepOperands& o) {
  CHECK(StepGemmUsable()) << "StepGemm needs an x86-64 CPU with AVX-512F";
#ifdef STEP_GEMM_KERNEL
  StepGemmAvx512(o);
#endif
}

}  // namespace caffe
