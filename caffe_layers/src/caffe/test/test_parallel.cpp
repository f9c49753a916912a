#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/common.hpp"
#include "caffe/util/parallel.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_scoped_env.hpp"
#include "caffe/test/test_user_error.hpp"

namespace caffe {

namespace {

// Waits until stage reaches s.
void WaitFor(const std::atomic<int>& stage, int s) {
  while (stage < s) {
    std::this_thread::yield();
  }
}

}  // namespace

TEST(ParallelTest, TestJobsRunOnceEach) {
  for (int threads = 1; threads <= 5; ++threads) {
    for (int n = 0; n <= 9; ++n) {
      std::vector<std::atomic<int> > runs(n);
      for (int j = 0; j < n; ++j) runs[j] = 0;
      ParallelJobs(n, threads, [&runs](int j) { ++runs[j]; });
      for (int j = 0; j < n; ++j) {
        EXPECT_EQ(runs[j], 1) << "job " << j << " of " << n << ", "
            << threads << " threads";
      }
    }
  }
}

TEST(ParallelTest, TestJobsUseThreads) {
  // Each job waits until three jobs have started: only three threads
  // running at once get past it.
  std::atomic<int> started(0);
  std::mutex mutex;
  std::set<std::thread::id> ids;
  ParallelJobs(3, 3, [&](int j) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ids.insert(std::this_thread::get_id());
    }
    ++started;
    while (started < 3) {
      std::this_thread::yield();
    }
  });
  EXPECT_EQ(ids.size(), 3);
  const int64_t runs = ThreadedRuns();
  ParallelJobs(2, 2, [](int j) {});
  EXPECT_EQ(ThreadedRuns(), runs + 1);
  ParallelJobs(2, 1, [](int j) {});
  ParallelJobs(1, 4, [](int j) {});
  EXPECT_EQ(ThreadedRuns(), runs + 1) << "one thread or one job: no threads";
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 1)
      << "the caller takes jobs too";
  // One thread: all jobs here, in order.
  std::vector<int> order;
  ParallelJobs(4, 1, [&order](int j) { order.push_back(j); });
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
}

TEST(ParallelTest, TestPartsCoverTheRange) {
  for (int n = 0; n <= 20; ++n) {
    for (int parts = 1; parts <= 8; ++parts) {
      std::vector<std::atomic<int> > hits(n);
      for (int i = 0; i < n; ++i) hits[i] = 0;
      std::atomic<int> calls(0);
      ParallelParts(n, parts, 3, [&](int begin, int end) {
        EXPECT_LT(begin, end);
        ++calls;
        for (int i = begin; i < end; ++i) ++hits[i];
      });
      for (int i = 0; i < n; ++i) {
        EXPECT_EQ(hits[i], 1) << "n " << n << " parts " << parts;
      }
      EXPECT_EQ(calls, std::min(n, parts)) << "n " << n << " parts " << parts;
    }
  }
  // The cut depends on n and the parts only.
  EXPECT_EQ(PartBegin(10, 4, 1), 2);
  EXPECT_EQ(PartBegin(10, 4, 2), 5);
  EXPECT_EQ(PartBegin(10, 4, 3), 7);
  EXPECT_EQ(PartBegin(10, 4, 4), 10);
}

TEST(ParallelTest, TestParallelForPartsPerThread) {
  std::atomic<int> calls(0);
  ParallelFor(10000, 4, [&calls](int begin, int end) { ++calls; }, 2048);
  EXPECT_EQ(calls, 4);
  calls = 0;
  ParallelFor(5000, 4, [&calls](int begin, int end) { ++calls; }, 2048);
  EXPECT_EQ(calls, 2);  // parts of at least 2048
  calls = 0;
  ParallelFor(100, 4, [&calls](int begin, int end) { ++calls; }, 2048);
  EXPECT_EQ(calls, 1);
}

TEST(ParallelTest, TestWorkParts) {
  EXPECT_EQ(WorkParts(0, 100, 8), 1);
  EXPECT_EQ(WorkParts(199, 100, 8), 1);
  EXPECT_EQ(WorkParts(200, 100, 8), 2);
  EXPECT_EQ(WorkParts(399, 100, 8), 2);
  EXPECT_EQ(WorkParts(400, 100, 8), 4);
  EXPECT_EQ(WorkParts(800, 100, 8), 8);
  EXPECT_EQ(WorkParts(1e9, 100, 8), 8);
  EXPECT_EQ(WorkParts(1e9, 100, 1), 1);
}

TEST(ParallelTest, TestHrenetThreadsSetting) {
  {
    ScopedEnv env("HRENET_THREADS", "3");
    EXPECT_EQ(HrenetThreads(), 3);
  }
  {
    ScopedEnv env("HRENET_THREADS", "");
    EXPECT_GE(HrenetThreads(), 1);
  }
  const char* bad[] = {"0", "-2", "two", "4x"};
  for (int i = 0; i < 4; ++i) {
    ScopedEnv env("HRENET_THREADS", bad[i]);
    ExpectUserError([&] {
        HrenetThreads();
      }, "HRENET_THREADS is '.*'; set it to a whole "
                 "number of threads >= 1");
  }
}

// Two scopes in two threads, overlapping, the first to enter leaving first
// (order 0) or last (order 1): OpenBLAS runs on one thread while either
// lives, and has its old count back when both have gone.
TEST(ParallelTest, TestBlasSingleThreadedNests) {
  const int before = OpenBlasThreads();
  if (before == 0) {
    std::printf("[  SKIPPED ] the BLAS is not OpenBLAS\n");
    return;
  }
  for (int order = 0; order < 2; ++order) {
    std::atomic<int> stage(0);
    std::atomic<int> seen[4];
    for (int i = 0; i < 4; ++i) seen[i] = -1;
    std::thread a([&]() {
      {
        BlasSingleThreaded scope;
        seen[0] = OpenBlasThreads();
        stage = 1;
        WaitFor(stage, order == 0 ? 2 : 3);  // b entered (and, order 1, left)
        seen[1] = OpenBlasThreads();
      }
      if (order == 0) stage = 3;  // a left first
    });
    std::thread b([&]() {
      WaitFor(stage, 1);
      {
        BlasSingleThreaded scope;
        seen[2] = OpenBlasThreads();
        stage = 2;
        if (order == 0) WaitFor(stage, 3);  // a has left
        seen[3] = OpenBlasThreads();
      }
      if (order == 1) stage = 3;  // b left first
    });
    a.join();
    b.join();
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(seen[i], 1) << "order " << order << " observation " << i;
    }
    EXPECT_EQ(OpenBlasThreads(), before) << "order " << order;
  }
}

}  // namespace caffe
