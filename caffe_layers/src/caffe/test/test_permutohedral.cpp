#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/common.hpp"
#include "caffe/util/permutohedral.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

// Brute-force O(n^2) Gaussian filter: out_i = sum_j exp(-|f_i-f_j|^2/2) v_j.
static std::vector<double> BruteForceGauss(const std::vector<double>& f,
    int d, const std::vector<double>& v, int c) {
  const int n = f.size() / d;
  std::vector<double> out(n * c, 0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      double dist2 = 0;
      for (int k = 0; k < d; ++k) {
        const double t = f[i * d + k] - f[j * d + k];
        dist2 += t * t;
      }
      const double w = std::exp(-dist2 / 2);
      for (int l = 0; l < c; ++l) {
        out[i * c + l] += w * v[j * c + l];
      }
    }
  }
  return out;
}

template <typename Dtype>
class PermutohedralTest : public ::testing::Test {
 protected:
  PermutohedralTest() : rng_(1701) {}

  // n points uniform in [0, box)^d (in units of the kernel's std).
  std::vector<double> RandomPoints(int n, int d, double box) {
    std::uniform_real_distribution<double> u(0, box);
    std::vector<double> f(n * d);
    for (int i = 0; i < n * d; ++i) {
      f[i] = u(rng_);
    }
    return f;
  }

  std::vector<double> RandomValues(int count) {
    std::uniform_real_distribution<double> u(0.1, 1.1);
    std::vector<double> v(count);
    for (int i = 0; i < count; ++i) {
      v[i] = u(rng_);
    }
    return v;
  }

  std::vector<double> LatticeFilter(const std::vector<double>& f, int d,
      const std::vector<double>& v, int c, int threads) {
    const int n = f.size() / d;
    std::vector<Dtype> fd(f.begin(), f.end()), vd(v.begin(), v.end());
    std::vector<Dtype> out(n * c);
    PermutohedralLattice<Dtype> lattice;
    lattice.Init(&fd[0], d, n, threads);
    lattice.Filter(&vd[0], &out[0], c, threads);
    return std::vector<double>(out.begin(), out.end());
  }

  // Filters of random values against the brute force: the relative L2
  // error of the raw filter and of the normalised one, filter(v)/filter(1)
  // (what the CRF uses through its normalisation).
  // With @p spread > 0 the points form three clusters of the same density,
  // spread apart along the diagonal: far enough apart for Init() to leave
  // its dense grid (d <= 2) and packed keys (d <= 5) for the plain hash
  // table.
  void CompareWithBruteForce(int d, double raw_bound, double norm_bound,
      double spread = 0) {
    const int n = spread > 0 ? 900 : 300;  // 300 points a cluster
    std::vector<double> f = RandomPoints(n, d, 3.0);
    for (int i = 0; i < n; ++i) {
      for (int a = 0; a < d; ++a) {
        f[i * d + a] += (i % 3) * spread;
      }
    }
    const std::vector<double> v = RandomValues(n);
    const std::vector<double> ones(n, 1.0);
    const std::vector<double> exact = BruteForceGauss(f, d, v, 1);
    const std::vector<double> exact_ones = BruteForceGauss(f, d, ones, 1);
    const std::vector<double> approx = LatticeFilter(f, d, v, 1, 1);
    const std::vector<double> approx_ones = LatticeFilter(f, d, ones, 1, 1);
    double raw_err = 0, raw_ref = 0, norm_err = 0, norm_ref = 0;
    for (int i = 0; i < n; ++i) {
      raw_err += (approx[i] - exact[i]) * (approx[i] - exact[i]);
      raw_ref += exact[i] * exact[i];
      const double a = approx[i] / approx_ones[i];
      const double b = exact[i] / exact_ones[i];
      norm_err += (a - b) * (a - b);
      norm_ref += b * b;
      EXPECT_GT(approx[i], 0.25 * exact[i]) << "point " << i;
      EXPECT_LT(approx[i], 1.1 * exact[i]) << "point " << i;
    }
    EXPECT_LT(std::sqrt(raw_err / raw_ref), raw_bound) << "d = " << d;
    EXPECT_LT(std::sqrt(norm_err / norm_ref), norm_bound) << "d = " << d;
  }

  std::mt19937 rng_;
};

TYPED_TEST_CASE(PermutohedralTest, TestDtypes);

// A lone point on a lattice vertex: its simplex has d + 1 vertices and it
// gets back between alpha = 1 / (1 + 2^-d) and 1 times its value (the
// blur's centre weight 1 plus the echo from the simplex's other corners).
TYPED_TEST(PermutohedralTest, TestSinglePointAtVertex) {
  for (int d = 1; d <= 5; ++d) {
    std::vector<TypeParam> f(d, TypeParam(0)), v(1, TypeParam(2)), out(1);
    PermutohedralLattice<TypeParam> lattice;
    lattice.Init(&f[0], d, 1, 1);
    EXPECT_EQ(lattice.num_vertices(), d + 1);
    lattice.Filter(&v[0], &out[0], 1, 1);
    EXPECT_GE(out[0], 2 / (1 + std::pow(2.0, -d)) - 1e-5) << "d = " << d;
    EXPECT_LE(out[0], 2 + 1e-5) << "d = " << d;
  }
}

// Barycentric weights are a partition of unity and reproduce the point.
TYPED_TEST(PermutohedralTest, TestSimplexWeights) {
  const int d = 5;
  const std::vector<double> f = this->RandomPoints(50, d, 10.0);
  for (int i = 0; i < 50; ++i) {
    TypeParam fi[kPermutohedralMaxDim], weight[kPermutohedralMaxDim + 1];
    int keys[(kPermutohedralMaxDim + 1) * kPermutohedralMaxDim];
    for (int k = 0; k < d; ++k) {
      fi[k] = f[i * d + k];
    }
    TypeParam scale[kPermutohedralMaxDim];
    PermutohedralScales(d, scale);
    PermutohedralSimplex(fi, d, scale, keys, weight);
    TypeParam sum = 0;
    for (int r = 0; r <= d; ++r) {
      EXPECT_GE(weight[r], -1e-5);
      sum += weight[r];
    }
    EXPECT_NEAR(sum, 1, 1e-5);
  }
}

// Bound, measured over seeds and stated here: with features in a 3-sigma
// box the lattice kernel is a slightly narrower, truncated Gaussian (the
// known approximation of splat / one-ring blur / slice), so the raw filter
// is within 25% (2-D) and 50% (5-D) in relative L2 and every output lies
// in [0.25, 1.1] x the exact one; after normalisation by filter(1), the
// quantity the CRF uses, the error is below 3%.
TYPED_TEST(PermutohedralTest, TestAgainstBruteForce2D) {
  this->CompareWithBruteForce(2, 0.25, 0.03);
}

TYPED_TEST(PermutohedralTest, TestAgainstBruteForce5D) {
  this->CompareWithBruteForce(5, 0.5, 0.03);
}

TYPED_TEST(PermutohedralTest, TestAgainstBruteForceSpread) {
  this->CompareWithBruteForce(2, 0.25, 0.03, 3000.0);
  this->CompareWithBruteForce(3, 0.5, 0.03, 3000.0);
  this->CompareWithBruteForce(3, 0.5, 0.03);
  this->CompareWithBruteForce(5, 0.5, 0.03, 3000.0);
}

// splat = slice^T and each axis' blur is symmetric; the blurs along
// different axes commute only where the lattice is complete, so the filter
// is symmetric up to the sparse lattice's border: <u, K v> ~ <K u, v>
// within 2% (measured 0.5%).
TYPED_TEST(PermutohedralTest, TestSymmetric) {
  const int n = 200, d = 5;
  const std::vector<double> f = this->RandomPoints(n, d, 4.0);
  const std::vector<double> u = this->RandomValues(n);
  const std::vector<double> v = this->RandomValues(n);
  const std::vector<double> ku = this->LatticeFilter(f, d, u, 1, 1);
  const std::vector<double> kv = this->LatticeFilter(f, d, v, 1, 1);
  double a = 0, b = 0;
  for (int i = 0; i < n; ++i) {
    a += u[i] * kv[i];
    b += ku[i] * v[i];
  }
  EXPECT_NEAR(a, b, 0.02 * std::fabs(a));
}

// c channels at once equal c single-channel filters; the thread count
// (parallel hash tables merged in Init, ranges in Filter) does not change a
// bit of the result. Enough points for Init to split (16384 per thread).
TYPED_TEST(PermutohedralTest, TestChannelsAndThreads) {
  const int n = 40000, d = 5, c = 3;
  const std::vector<double> f = this->RandomPoints(n, d, 30.0);
  const std::vector<double> v = this->RandomValues(n * c);
  const std::vector<double> all = this->LatticeFilter(f, d, v, c, 1);
  const std::vector<double> all2 = this->LatticeFilter(f, d, v, c, 2);
  for (int i = 0; i < n * c; ++i) {
    ASSERT_EQ(all[i], all2[i]);
  }
  for (int l = 0; l < c; ++l) {
    std::vector<double> vl(n);
    for (int i = 0; i < n; ++i) {
      vl[i] = v[i * c + l];
    }
    const std::vector<double> one = this->LatticeFilter(f, d, vl, 1, 1);
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(one[i], all[i * c + l], 1e-5 * std::fabs(one[i]));
    }
  }
}

#ifndef CPU_ONLY
// The GPU lattice (parallel hash build, atomic splat) matches the CPU one.
TYPED_TEST(PermutohedralTest, TestGPUMatchesCPU) {
  const int n = 3000, d = 5, c = 4;
  const std::vector<double> f = this->RandomPoints(n, d, 15.0);
  const std::vector<double> v = this->RandomValues(n * c);
  const std::vector<double> cpu = this->LatticeFilter(f, d, v, c, 1);
  std::vector<TypeParam> fd(f.begin(), f.end()), vd(v.begin(), v.end());
  SyncedMemory f_mem(sizeof(TypeParam) * fd.size());
  SyncedMemory v_mem(sizeof(TypeParam) * vd.size());
  SyncedMemory out_mem(sizeof(TypeParam) * vd.size());
  std::copy(fd.begin(), fd.end(),
            static_cast<TypeParam*>(f_mem.mutable_cpu_data()));
  std::copy(vd.begin(), vd.end(),
            static_cast<TypeParam*>(v_mem.mutable_cpu_data()));
  PermutohedralLatticeGPU<TypeParam> lattice;
  lattice.Init(static_cast<const TypeParam*>(f_mem.gpu_data()), d, n);
  PermutohedralLattice<TypeParam> cpu_lattice;
  cpu_lattice.Init(&fd[0], d, n, 1);
  EXPECT_EQ(lattice.num_vertices(), cpu_lattice.num_vertices());
  lattice.Filter(static_cast<const TypeParam*>(v_mem.gpu_data()),
                 static_cast<TypeParam*>(out_mem.mutable_gpu_data()), c);
  const TypeParam* gpu = static_cast<const TypeParam*>(out_mem.cpu_data());
  for (int i = 0; i < n * c; ++i) {
    EXPECT_NEAR(gpu[i], cpu[i], 1e-4 * std::fabs(cpu[i]) + 1e-6);
  }
}
#endif

}  // namespace caffe
