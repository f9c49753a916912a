#ifdef USE_DNNL
#include <atomic>

#include "caffe/util/dnnl_util.hpp"
#include "caffe/util/parallel.hpp"

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

}  // namespace caffe
#endif  // USE_DNNL
