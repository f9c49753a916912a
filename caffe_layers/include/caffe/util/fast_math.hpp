#ifndef CAFFE_UTIL_FAST_MATH_HPP_
#define CAFFE_UTIL_FAST_MATH_HPP_

#include <math.h>
#include <string.h>

/**
 * @brief Marks element-wise maths that both the CPU loops and the CUDA
 *        kernels run: `__host__ __device__` under nvcc; on the host with
 *        GCC or Clang, always inlined, so that the CPU's row loops that call
 *        it vectorise whatever the compiler's size heuristics decide.
 */
#ifdef __CUDACC__
#define HRENET_HD __host__ __device__
#elif defined(__GNUC__)
#define HRENET_HD __attribute__((always_inline))
#else
#define HRENET_HD
#endif

/**
 * @brief Compiles a CPU function once per listed instruction set, e.g.
 *        HRENET_TARGET_CLONES("avx2", "default"); the dynamic loader picks
 *        the clone for the CPU it runs on (the default build targets plain
 *        x86-64, i.e. SSE2). GCC on x86-64 Linux only (it needs ifunc);
 *        elsewhere the one default build.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(__CUDACC__)
#define HRENET_TARGET_CLONES(...) __attribute__((target_clones(__VA_ARGS__)))
#else
#define HRENET_TARGET_CLONES(...)
#endif

namespace caffe {

/**
 * @brief exp for float without a library call: Cephes' degree-6
 *        polynomial for exp(r) on x = k ln2 + r, |r| <= ln2 / 2, and 2^k
 *        built in the exponent bits; about 1 ulp for |x| <= 87 (|x| is
 *        clamped to 87). Integer-only clamping and rounding keep the loops
 *        that call it free of branches, so that the compiler vectorises
 *        them; the CUDA kernels run the same code.
 */
HRENET_HD inline float FastExp(float x) {
  int bits;
  memcpy(&bits, &x, sizeof(bits));  // NOLINT(caffe/alt_fn): a bit cast
  const int sign = bits & static_cast<int>(0x80000000u);
  const int mag = bits & 0x7fffffff;
  bits = sign | (mag < 0x42ae0000 ? mag : 0x42ae0000);  // 0x42ae0000: 87.f
  memcpy(&x, &bits, sizeof(bits));  // NOLINT(caffe/alt_fn): a bit cast
  const float fx = x * 1.44269504088896341f;
  const float kf = (fx + 12582912.0f) - 12582912.0f;  // round to nearest
  const int k = static_cast<int>(kf);
  const float r = x - kf * 0.693359375f + kf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int scale_bits = (k + 127) << 23;  // 2^k
  float scale;
  memcpy(&scale, &scale_bits, sizeof(scale));  // NOLINT(caffe/alt_fn)
  return p * scale;
}

/// exp for double: the library's.
HRENET_HD inline double FastExp(double x) { return exp(x); }

}  // namespace caffe

#endif  // CAFFE_UTIL_FAST_MATH_HPP_
