#ifndef CAFFE_UTIL_USER_ERROR_HPP_
#define CAFFE_UTIL_USER_ERROR_HPP_

#include <sstream>
#include <stdexcept>
#include <string>

namespace caffe {

/**
 * @brief A mistake the user can fix (a missing or damaged file, a parameter
 *        out of range, shapes that do not fit), as opposed to a bug.
 *
 * Our layers throw it instead of CHECK-failing, so that the process is not
 * aborted: pycaffe turns it into a Python RuntimeError carrying the message
 * (a notebook or a service survives it), and the `caffe` tool (patch 0013)
 * prints the message as one line and exits with status 1. The message is one
 * sentence naming the layer, the file or value, and the fix. CHECK stays for
 * internal invariants (bugs), whose stack trace is useful.
 */
class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& message)
      : std::runtime_error(message) {}
};

}  // namespace caffe

/// Throws caffe::UserError with the streamed message when cond is false:
/// HRENET_USER_CHECK(n > 0, "layer " << name << ": n must be positive").
#define HRENET_USER_CHECK(cond, message)                      \
  do {                                                        \
    if (!(cond)) {                                            \
      std::ostringstream hrenet_user_error_stream;            \
      hrenet_user_error_stream << message;                    \
      throw ::caffe::UserError(hrenet_user_error_stream.str()); \
    }                                                         \
  } while (0)

#endif  // CAFFE_UTIL_USER_ERROR_HPP_
