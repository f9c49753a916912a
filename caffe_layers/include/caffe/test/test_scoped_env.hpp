#ifndef CAFFE_TEST_TEST_SCOPED_ENV_HPP_
#define CAFFE_TEST_TEST_SCOPED_ENV_HPP_

#include <stdlib.h>

#include <string>

namespace caffe {

/**
 * @brief Sets an environment variable for its lifetime, then restores the
 *        old value (or unsets it), so that a test that sets HRENET_THREADS
 *        or HRENET_PORTABLE leaves the next test the environment it found.
 */
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value)
      : name_(name), had_(getenv(name) != NULL),
        old_(had_ ? getenv(name) : "") {
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  const std::string name_;
  const bool had_;
  const std::string old_;
};

}  // namespace caffe

#endif  // CAFFE_TEST_TEST_SCOPED_ENV_HPP_
