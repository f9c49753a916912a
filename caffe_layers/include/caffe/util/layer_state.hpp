#ifndef CAFFE_UTIL_LAYER_STATE_HPP_
#define CAFFE_UTIL_LAYER_STATE_HPP_

#include <string>

#include "caffe/net.hpp"

namespace caffe {

/**
 * @brief A layer whose state outside its parameter blobs must survive a
 *        snapshot for a resumed run to equal an uninterrupted one (a data
 *        layer's position in its shuffled stream and its random generators).
 *
 * Solver::Snapshot() (patch 0015) writes the states of the train net's
 * stateful layers to a sidecar file beside the .solverstate before writing
 * the .solverstate itself, and Solver::Restore() gives them back to the
 * layers of the same names, so `caffe train -snapshot` and pycaffe's
 * `solver.restore()` resume exactly.
 */
class StatefulLayer {
 public:
  virtual ~StatefulLayer() {}
  /// One line of printable text (no newline) that RestoreState accepts.
  virtual std::string SaveState() const = 0;
  /// Brings the layer to the saved state; throws UserError on a state
  /// that does not fit this layer.
  virtual void RestoreState(const std::string& state) = 0;
};

/// The sidecar of a solver state file: "X.solverstate" and
/// "X.solverstate.h5" -> "X.datastate".
std::string LayerStateFilename(const std::string& solver_state_file);

/// Writes "name<TAB>state" lines of every StatefulLayer of `net` to
/// LayerStateFilename(state_file) atomically (temporary file + rename);
/// writes nothing when the net has none.
template <typename Dtype>
void SaveLayerStates(const Net<Dtype>& net, const std::string& state_file);

/// Restores the layers of `net` from LayerStateFilename(state_file). A
/// missing sidecar (a snapshot of an older build, or of a net without
/// stateful layers) logs a warning when the net has stateful layers; a
/// sidecar naming a layer the net lacks throws UserError.
template <typename Dtype>
void RestoreLayerStates(Net<Dtype>* net, const std::string& state_file);

}  // namespace caffe

#endif  // CAFFE_UTIL_LAYER_STATE_HPP_
