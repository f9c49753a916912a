#ifndef CAFFE_UTIL_DNNL_UTIL_HPP_
#define CAFFE_UTIL_DNNL_UTIL_HPP_

#ifdef USE_DNNL
#include "oneapi/dnnl/dnnl.hpp"

namespace caffe {

/// The process's oneDNN CPU engine, created on first use; every DNNL layer
/// (convolution, pooling, ReLU) runs its primitives on it.
const dnnl::engine& DnnlCpuEngine();

/// oneDNN memory over @p data (a blob's buffer) described by @p md: a view,
/// no copy.
dnnl::memory DnnlWrap(const dnnl::memory::desc& md, const void* data);

/**
 * @brief Whether @p x[0 .. count) holds a NaN (on HrenetThreads() threads).
 *
 * oneDNN's max pooling skips NaN and its ReLU maps NaN to 0, where Caffe's
 * layers pass NaN on (a diverged net must show a NaN loss): the pooling and
 * ReLU layers let the Caffe engine compute a pass whose input has one.
 */
bool DnnlAnyNaN(const float* x, int count);

/**
 * @brief C = alpha op(A) op(B) + beta C (row-major; op transposes where
 *        @p trans_a, @p trans_b) by oneDNN's sgemm on the calling thread
 *        alone, whatever OpenMP's count there (it is restored afterwards):
 *        for callers that run their products on threads of their own.
 */
void DnnlSgemmOneThread(bool trans_a, bool trans_b, int m, int n, int k,
    float alpha, const float* a, int lda, const float* b, int ldb, float beta,
    float* c, int ldc);

}  // namespace caffe

#endif  // USE_DNNL
#endif  // CAFFE_UTIL_DNNL_UTIL_HPP_
