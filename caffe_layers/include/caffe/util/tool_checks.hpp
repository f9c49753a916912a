#ifndef CAFFE_UTIL_TOOL_CHECKS_HPP_
#define CAFFE_UTIL_TOOL_CHECKS_HPP_

#include <csignal>
#include <string>
#include <vector>

#include "caffe/net.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/solver.hpp"

namespace caffe {

/**
 * @brief Checks the `caffe` tool (tools/caffe.cpp, patch 0013) runs on its
 *        inputs before upstream code would CHECK-fail on them.
 *
 * Upstream answers a missing or garbled solver, net, snapshot or weights
 * file, or -gpu on a CPU-only build, with a CHECK failure: a glog line
 * buried under "Check failure stack trace" and an abort. Each function here
 * throws UserError instead, with one sentence naming the file or flag and
 * the fix; the tool prints it as one line and exits with status 1.
 */

/// Reads the text-format solver `path` (-solver) into `param`, upgraded as
/// upstream's reader does, and checks that its net file exists and parses.
void ToolReadSolver(const std::string& path, SolverParameter* param);

/// Checks that the text-format net `path` exists and parses; `flag` names
/// where it came from (e.g. "-model", or "the solver's net").
void ToolCheckNetFile(const std::string& path, const std::string& flag);

/// Parses -gpu (ids separated by ',' or "all"); throws on a CPU-only build,
/// on a malformed id and on a device that does not exist. `why` says where
/// a GPU was asked for when not by -gpu (the solver's solver_mode).
std::vector<int> ToolGpus(const std::string& flag, const std::string& why);

/// Checks that `path` (-snapshot) is a whole .solverstate whose weights file
/// exists and whose history fits `solver`'s learnable parameters.
void ToolCheckSnapshot(const std::string& path, Solver<float>* solver);

/// Checks every file of `list` (-weights, separated by ',') against `net`:
/// it exists, parses, shares at least one layer with parameters with the
/// net, and every shared layer has the net's blob count and shapes.
void ToolCheckWeights(const std::string& list, const Net<float>& net);

/**
 * @brief While alive, SIGINT and SIGTERM both ask the solver to stop (the
 *        -sigint_effect action, by default: stop, snapshot, return), and the
 *        signal is remembered for the exit status (128 + signal).
 *
 * Construct it after upstream's SignalHandler: its SIGINT handler is
 * chained, and SIGTERM (otherwise glog's failure handler: a stack dump and
 * no snapshot) is routed to it too. Restores the previous handlers.
 */
class ToolStopSignals {
 public:
  ToolStopSignals();
  ~ToolStopSignals();
  /// SIGINT or SIGTERM if one arrived, else 0.
  int signal() const;

 private:
  struct sigaction old_int_, old_term_;
};

}  // namespace caffe

#endif  // CAFFE_UTIL_TOOL_CHECKS_HPP_
