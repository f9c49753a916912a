#ifndef CAFFE_UTIL_PARALLEL_HPP_
#define CAFFE_UTIL_PARALLEL_HPP_

#include <stdint.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace caffe {

/**
 * @brief The number of threads the HRENet CPU layers (ReNet, DenseCRF,
 *        BilinearResize) run their work on: the environment variable
 *        HRENET_THREADS when set (a whole number >= 1), else the CPUs this
 *        process may run on (its affinity mask, which `taskset` and
 *        container cpusets narrow).
 *
 * The layers read it once, when they are set up. An HRENET_THREADS that is
 * not a whole number from 1 to kMaxThreads throws a UserError saying so.
 *
 * HRENET_THREADS is the process's one thread setting: when libcaffe is
 * loaded, a valid value also becomes OpenBLAS's thread count (the Caffe
 * engine's GEMMs) and OpenMP's (oneDNN's threads), overriding
 * OPENBLAS_NUM_THREADS and OMP_NUM_THREADS; see UseHrenetThreadsHere().
 */
int HrenetThreads();

/**
 * @brief Gives OpenMP parallel regions started by the calling thread
 *        HRENET_THREADS threads (OpenMP keeps that count per thread); does
 *        nothing when it is unset. The oneDNN layers call it before their
 *        primitives run, so that a net run from any thread obeys it.
 */
void UseHrenetThreadsHere();

/// The most threads a layer or HRENET_THREADS may ask for.
const int kMaxThreads = 1 << 16;

/**
 * @brief A layer's thread count from its `threads` field: HrenetThreads()
 *        when it is 0, else the field; more than kMaxThreads throws a
 *        UserError naming the layer.
 */
int LayerThreads(uint32_t threads, const std::string& layer);

/// Per-thread bookkeeping of the job runner (BLAS threads of the worker).
void ParallelWorkerEnter();
void ParallelWorkerLeave();
/// Counts the calls of ParallelJobs that started threads.
void CountThreadedRun();
/// How many calls of ParallelJobs started threads so far (for tests).
int64_t ThreadedRuns();

/// Runs fn(j) for the jobs j < n left in *next, taking one at a time.
template <typename Fn>
void ParallelTakeJobs(std::atomic<int>* next, int n, const Fn& fn) {
  for (int j = (*next)++; j < n; j = (*next)++) {
    fn(j);
  }
}

/// The body of a job thread of ParallelJobs.
template <typename Fn>
void ParallelJobsWorker(std::atomic<int>* next, int n, const Fn* fn) {
  ParallelWorkerEnter();
  ParallelTakeJobs(next, n, *fn);
  ParallelWorkerLeave();
}

/**
 * @brief Runs fn(j) for j = 0 .. n - 1 on up to @p threads threads (the
 *        caller's among them); each thread takes the next job as it
 *        finishes its last, so that a faster core takes more of them.
 *
 * Which thread runs a job never changes what the job computes: as long as
 * the jobs write disjoint outputs, the result is the same, bit for bit, for
 * any @p threads. With one thread (or one job) everything runs here, in
 * order. Threads are started per call and joined before it returns.
 */
template <typename Fn>
void ParallelJobs(int n, int threads, const Fn& fn) {
  const int workers = std::min(n, threads);
  if (workers <= 1) {
    for (int j = 0; j < n; ++j) {
      fn(j);
    }
    return;
  }
  CountThreadedRun();
  std::atomic<int> next(0);
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int t = 1; t < workers; ++t) {
    pool.push_back(std::thread(ParallelJobsWorker<Fn>, &next, n, &fn));
  }
  ParallelTakeJobs(&next, n, fn);
  for (size_t t = 0; t < pool.size(); ++t) {
    pool[t].join();
  }
}

/// Start of part p of [0, n) cut into @p parts near-equal contiguous parts.
inline int PartBegin(int n, int parts, int p) {
  return static_cast<int>(static_cast<int64_t>(n) * p / parts);
}

/**
 * @brief fn(begin, end) over [0, n) cut into @p parts contiguous parts
 *        (at most n; none for an empty range), run as jobs on up to
 *        @p threads threads.
 *
 * The parts depend on n and @p parts only, so a computation whose result
 * depends on where the range is cut (a GEMM split by rows: the BLAS may
 * pick another kernel for another size) gives the same bits for any
 * thread count as long as @p parts does not depend on it.
 */
template <typename Fn>
void ParallelParts(int n, int parts, int threads, const Fn& fn) {
  if (n <= 0) {
    return;
  }
  parts = std::max(1, std::min(parts, n));
  ParallelJobs(parts, threads, [n, parts, &fn](int p) {
    fn(PartBegin(n, parts, p), PartBegin(n, parts, p + 1));
  });
}

/**
 * @brief fn(begin, end) over [0, n) in one part per thread (up to
 *        @p threads, each part at least @p min_part long); small ranges run
 *        here in one call. For element-wise work only, whose result does not
 *        depend on where the range is cut.
 */
template <typename Fn>
void ParallelFor(int n, int threads, const Fn& fn, int min_part = 2048) {
  const int parts = std::max(1, std::min(threads, n / std::max(1, min_part)));
  ParallelParts(n, parts, parts, fn);
}

/**
 * @brief The number of parts to cut work into, from the work alone (never
 *        from the thread count, so that the cut is the same on every
 *        machine): the largest power of two up to @p max_parts whose parts
 *        each keep at least @p min_part_work; 1 below twice that.
 */
int WorkParts(double work, double min_part_work, int max_parts);

/**
 * @brief While any instance lives, in any thread, OpenBLAS runs each call on
 *        one thread; the count it had is restored when the last one goes.
 *
 * A layer that runs its own threads, each calling the BLAS, holds one for
 * the duration of its forward or backward pass, so that the cores are not
 * oversubscribed (layer threads x BLAS threads) and OpenBLAS's threaded
 * GEMMs, which take a process-wide lock, do not serialise the layer's
 * threads. The instances are counted under a mutex: two nets running in
 * two threads at once leave the setting as they found it. OpenBLAS's
 * threads themselves are left alone. Job threads started by ParallelJobs
 * under MKL ask it for one thread locally (mkl_set_num_threads_local),
 * which affects no other thread; with other BLAS libraries (ATLAS, a
 * sequential BLAS) this does nothing.
 */
class BlasSingleThreaded {
 public:
  BlasSingleThreaded();
  ~BlasSingleThreaded();

 private:
  int mkl_local_;  // the caller's MKL local setting, restored at the end

  BlasSingleThreaded(const BlasSingleThreaded&);
  BlasSingleThreaded& operator=(const BlasSingleThreaded&);
};

/// OpenBLAS's current thread count, or 0 when the BLAS is not OpenBLAS.
int OpenBlasThreads();

}  // namespace caffe

#endif  // CAFFE_UTIL_PARALLEL_HPP_
