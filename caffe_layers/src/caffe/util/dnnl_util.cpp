#ifdef USE_DNNL
#include <atomic>

#include "caffe/common.hpp"
#include "caffe/util/dnnl_util.hpp"
#include "caffe/util/parallel.hpp"

// OpenMP's thread count of the calling thread (libgomp, which oneDNN loads;
// weak: absent with a oneDNN built on another threading runtime).
extern "C" {
int omp_get_max_threads(void) __attribute__((weak));
void omp_set_num_threads(int num_threads) __attribute__((weak));
}

namespace caffe {

const dnnl::engine& DnnlCpuEngine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::memory DnnlWrap(const dnnl::memory::desc& md, const void* data) {
  return dnnl::memory(md, DnnlCpuEngine(), const_cast<void*>(data));
}

bool DnnlAnyNaN(const float* x, int count) {
  static const int threads = HrenetThreads();
  std::atomic<bool> found(false);
  ParallelFor(count, threads, [&](int begin, int end) {
    int nan = 0;
    for (int i = begin; i < end; ++i) {
      nan |= x[i] != x[i];
    }
    if (nan) {
      found = true;
    }
  }, 1 << 16);
  return found;
}

void DnnlSgemmOneThread(bool trans_a, bool trans_b, int m, int n, int k,
    float alpha, const float* a, int lda, const float* b, int ldb, float beta,
    float* c, int ldc) {
  // oneDNN sizes its team by omp_get_max_threads() of the calling thread,
  // an OpenMP setting of that thread alone.
  const int saved = omp_get_max_threads && omp_set_num_threads
      ? omp_get_max_threads() : 1;
  if (saved != 1) {
    omp_set_num_threads(1);
  }
  const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N',
      trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (saved != 1) {
    omp_set_num_threads(saved);
  }
  CHECK_EQ(status, dnnl_success) << "oneDNN sgemm " << m << " x " << n
      << " x " << k << " failed";
}

}  // namespace caffe
#endif  // USE_DNNL
