// A warning, once, when libcaffe is loaded with an OpenBLAS that did not
// recognise the CPU and fell back to kernels older than it can run.
//
// Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) picks its kernels by CPU model at
// load time; Intel models newer than the release (Emerald Rapids, say) get
// its generic "Prescott" SSE3 kernels, five to seven times slower than the
// AVX-512 ones. It reads OPENBLAS_CORETYPE in its own library constructor,
// before this code runs, so all this file can do is say so and how to fix
// it. The venv's `caffe` and python set the variable themselves
// (python/hrenet/blas_env.py); this warns whoever loads libcaffe otherwise.
#include <cstdio>
#include <cstring>

extern "C" char* openblas_get_corename(void) __attribute__((weak));

namespace caffe {
namespace {

// OpenBLAS's names for cores without AVX2.
const char* const kPreAvx2Cores[] = {"Prescott", "Core2", "Penryn",
    "Dunnington", "Nehalem", "Sandybridge", "Atom", "Katmai", "Coppermine",
    "Northwood", "Banias"};

struct OpenBlasCoreCheck {
  OpenBlasCoreCheck() {
#if defined(__x86_64__) && defined(__GNUC__)
    if (openblas_get_corename == NULL || !__builtin_cpu_supports("avx2") ||
        !__builtin_cpu_supports("fma")) {
      return;
    }
    const char* core = openblas_get_corename();
    if (core == NULL) {
      return;
    }
    for (const char* old : kPreAvx2Cores) {
      if (std::strcmp(core, old) == 0) {
        const bool avx512 = __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512cd");
        // Not "Cooperlake": 0.3.21 does not accept that name.
        const char* fix = avx512 ? "SkylakeX" : "Haswell";
        std::fprintf(stderr, "caffe: warning: OpenBLAS did not recognise "
            "this CPU and runs its generic '%s' kernels, several times "
            "slower than the %s ones the CPU supports; set "
            "OPENBLAS_CORETYPE=%s in the environment before starting the "
            "program (the venv's caffe and python do it themselves: see "
            "python/hrenet/blas_env.py)\n", core, avx512 ? "AVX-512" : "AVX2",
            fix);
        return;
      }
    }
#endif
  }
};

const OpenBlasCoreCheck openblas_core_check;

}  // namespace
}  // namespace caffe
