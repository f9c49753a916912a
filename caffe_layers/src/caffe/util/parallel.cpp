#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "caffe/common.hpp"
#include "caffe/util/parallel.hpp"
#include "caffe/util/user_error.hpp"

// The BLAS's thread controls, when the linked BLAS has them (weak symbols:
// null with another BLAS).
extern "C" {
void openblas_set_num_threads(int num_threads) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
int MKL_Set_Num_Threads_Local(int num_threads) __attribute__((weak));
// OpenMP's, where libcaffe's libraries load it (oneDNN's libgomp).
void omp_set_num_threads(int num_threads) __attribute__((weak));
}

namespace caffe {

namespace {

// The CPUs this process may run on.
int AvailableCpus() {
#ifdef CPU_COUNT
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) {
      return count;
    }
  }
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

// OpenBLAS's thread count while no BlasSingleThreaded lives, and how many
// live; guarded by BlasMutex().
int blas_holders = 0;
int blas_saved_threads = 0;

std::atomic<int64_t> threaded_runs(0);

std::mutex& BlasMutex() {
  static std::mutex* mutex = new std::mutex();
  return *mutex;
}

// HRENET_THREADS as a number; 0 when unset or not a valid count.
int ThreadsFromEnvironment(const char* env) {
  if (env == NULL || *env == '\0') {
    return 0;
  }
  char* end = NULL;
  errno = 0;
  const long value = std::strtol(env, &end, 10);  // NOLINT(runtime/int)
  return errno == 0 && *end == '\0' && value >= 1 && value <= kMaxThreads ?
      static_cast<int>(value) : 0;
}

// The value HRENET_THREADS had when libcaffe was loaded (0: none).
const int kThreadSetting = ThreadsFromEnvironment(
    std::getenv("HRENET_THREADS"));

// At load: one thread count for the BLAS and OpenMP too (an invalid value
// is left to HrenetThreads() to report, when a layer is set up).
struct ApplyThreadSetting {
  ApplyThreadSetting() {
    if (kThreadSetting > 0 && openblas_set_num_threads) {
      openblas_set_num_threads(kThreadSetting);
    }
    UseHrenetThreadsHere();
  }
} apply_thread_setting;

}  // namespace

void UseHrenetThreadsHere() {
  if (kThreadSetting > 0 && omp_set_num_threads) {
    omp_set_num_threads(kThreadSetting);
  }
}

int HrenetThreads() {
  const char* env = std::getenv("HRENET_THREADS");
  if (env == NULL || *env == '\0') {
    return AvailableCpus();
  }
  const int value = ThreadsFromEnvironment(env);
  HRENET_USER_CHECK(value > 0,
      "HRENET_THREADS is '" << env << "'; set it to a whole number of "
      << "threads >= 1, or unset it to use the " << AvailableCpus()
      << " CPUs this process may run on");
  return value;
}

int LayerThreads(uint32_t threads, const std::string& layer) {
  if (threads == 0) {
    return HrenetThreads();
  }
  HRENET_USER_CHECK(threads <= static_cast<uint32_t>(kMaxThreads),
      "layer '" << layer << "': threads is " << threads << "; give at most "
      << kMaxThreads << ", or 0 for HRENET_THREADS / the usable CPUs");
  return static_cast<int>(threads);
}

int WorkParts(double work, double min_part_work, int max_parts) {
  int parts = 1;
  while (parts * 2 <= max_parts && work >= 2 * parts * min_part_work) {
    parts *= 2;
  }
  return parts;
}

void CountThreadedRun() { ++threaded_runs; }

int64_t ThreadedRuns() { return threaded_runs; }

void ParallelWorkerEnter() {
  if (MKL_Set_Num_Threads_Local) {
    MKL_Set_Num_Threads_Local(1);
  }
}

void ParallelWorkerLeave() {
  if (MKL_Set_Num_Threads_Local) {
    MKL_Set_Num_Threads_Local(0);  // back to the global setting
  }
}

BlasSingleThreaded::BlasSingleThreaded() : mkl_local_(0) {
  if (MKL_Set_Num_Threads_Local) {
    mkl_local_ = MKL_Set_Num_Threads_Local(1);
  }
  if (!openblas_get_num_threads || !openblas_set_num_threads) {
    return;
  }
  std::lock_guard<std::mutex> lock(BlasMutex());
  if (blas_holders++ == 0) {
    blas_saved_threads = openblas_get_num_threads();
    if (blas_saved_threads > 1) {
      openblas_set_num_threads(1);
    }
  }
}

BlasSingleThreaded::~BlasSingleThreaded() {
  if (MKL_Set_Num_Threads_Local) {
    MKL_Set_Num_Threads_Local(mkl_local_);
  }
  if (!openblas_get_num_threads || !openblas_set_num_threads) {
    return;
  }
  std::lock_guard<std::mutex> lock(BlasMutex());
  if (--blas_holders == 0 && blas_saved_threads > 1) {
    openblas_set_num_threads(blas_saved_threads);
  }
}

int OpenBlasThreads() {
  if (!openblas_get_num_threads) {
    return 0;
  }
  std::lock_guard<std::mutex> lock(BlasMutex());
  return openblas_get_num_threads();
}

}  // namespace caffe
