#include <cmath>
#include <cstdio>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/common.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/step_gemm.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

namespace {

std::vector<float> RandomMatrix(int rows, int cols) {
  std::vector<float> m(rows * cols);
  caffe_rng_uniform<float>(m.size(), -1.f, 1.f, &m[0]);
  return m;
}

}  // namespace

// The packed layout: P[r][c0 + c] at c0 kp + r w + c, w = 32 (16 for a last
// panel of 16 or fewer columns), zeros past n; rows packed in two calls
// from two sources (one of them transposed) land in one factor.
TEST(StepGemmTest, TestPackLayout) {
  const int kp = 5, n = 40;  // panels of 32 and 16 (8 columns past n)
  EXPECT_EQ(PackedStepSize(kp, n), kp * 32 + kp * 16);
  EXPECT_EQ(StepPanelWidth(0, 40), 32);
  EXPECT_EQ(StepPanelWidth(32, 40), 16);
  EXPECT_EQ(StepPanelWidth(0, 16), 16);
  EXPECT_EQ(StepPanelWidth(0, 17), 32);
  // Rows 0..2 from a (3 x n) row-major source, rows 3..4 from a (n x 2)
  // one read transposed.
  const std::vector<float> top = RandomMatrix(3, n);
  const std::vector<float> bottom_t = RandomMatrix(n, 2);
  std::vector<float> packed(PackedStepSize(kp, n), -7.f);
  PackStepFactor(kp, 0, 3, n, &top[0], n, 1, &packed[0]);
  PackStepFactor(kp, 3, 2, n, &bottom_t[0], 1, 2, &packed[0]);
  for (int r = 0; r < kp; ++r) {
    for (int col = 0; col < 48; ++col) {
      const int c0 = col < 32 ? 0 : 32, w = col < 32 ? 32 : 16;
      const float got = packed[c0 * kp + r * w + (col - c0)];
      const float want = col >= n ? 0.f :
          (r < 3 ? top[r * n + col] : bottom_t[col * 2 + (r - 3)]);
      EXPECT_EQ(got, want) << "row " << r << " column " << col;
    }
  }
}

// StepGemm against caffe_cpu_gemm on random shapes: rows in whole and
// partial blocks of 8, columns in whole and partial panels of 16 and 32,
// one or two A operands, with and without accumulation, a row offset into
// P. Skipped, saying so, on a CPU without AVX-512F.
TEST(StepGemmTest, TestAgainstBlas) {
  if (!StepGemmUsable()) {
    std::printf("[  SKIPPED ] StepGemm needs AVX-512F (and GCC on x86-64); "
                "this CPU or build has none: the BLAS does the products\n");
    return;
  }
  const int ms[] = {1, 3, 8, 9, 17, 63};
  const int ns[] = {1, 15, 16, 17, 31, 32, 33, 48, 100, 480};
  const int k1s[] = {1, 7, 120};
  const int k2s[] = {0, 5};
  for (int mi = 0; mi < 6; ++mi) {
    for (int ni = 0; ni < 10; ++ni) {
      for (int ki = 0; ki < 3; ++ki) {
        for (int k2i = 0; k2i < 2; ++k2i) {
          for (int acc = 0; acc < 2; ++acc) {
            const int m = ms[mi], n = ns[ni], k1 = k1s[ki], k2 = k2s[k2i];
            const int p0 = 2;  // rows of P before the ones used
            const int kp = p0 + k1 + k2;
            // A1 and A2 with padding between rows (lda > k).
            const int lda1 = k1 + 3, lda2 = k2 + 1;
            const std::vector<float> a1 = RandomMatrix(m, lda1);
            const std::vector<float> a2 = RandomMatrix(m, lda2);
            const std::vector<float> p = RandomMatrix(kp, n);
            std::vector<float> packed(PackedStepSize(kp, n));
            PackStepFactor(kp, 0, kp, n, &p[0], n, 1, &packed[0]);
            std::vector<float> c = RandomMatrix(m, n);
            std::vector<float> want(c);
            // want = [A1 A2] P[p0:] (+ C), by the BLAS on dense copies.
            std::vector<float> a(m * (k1 + k2));
            for (int r = 0; r < m; ++r) {
              for (int k = 0; k < k1; ++k) {
                a[r * (k1 + k2) + k] = a1[r * lda1 + k];
              }
              for (int k = 0; k < k2; ++k) {
                a[r * (k1 + k2) + k1 + k] = a2[r * lda2 + k];
              }
            }
            caffe_cpu_gemm<float>(CblasNoTrans, CblasNoTrans, m, n, k1 + k2,
                1.f, &a[0], &p[p0 * n], acc ? 1.f : 0.f, &want[0]);
            const StepOperands o = {m, n, kp, p0, &packed[0], &a1[0], lda1,
                k1, k2 ? &a2[0] : NULL, lda2, k2, acc == 1, &c[0]};
            StepGemm(o);
            for (int i = 0; i < m * n; ++i) {
              ASSERT_NEAR(c[i], want[i], 1e-4 * (1 + std::abs(want[i])))
                  << "m " << m << " n " << n << " k1 " << k1 << " k2 " << k2
                  << " accumulate " << acc << " at " << i;
            }
          }
        }
      }
    }
  }
}

}  // namespace caffe
