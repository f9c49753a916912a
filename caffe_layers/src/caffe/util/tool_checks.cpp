#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/text_format.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>  // NOLINT(readability/streams)
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "boost/algorithm/string.hpp"
#include "boost/filesystem.hpp"
#include "boost/lexical_cast.hpp"
#include "caffe/util/io.hpp"
#include "caffe/util/tool_checks.hpp"
#include "caffe/util/upgrade_proto.hpp"
#include "caffe/util/user_error.hpp"

namespace caffe {

namespace {

std::string Cwd() {
  boost::system::error_code error;
  return boost::filesystem::current_path(error).string();
}

void CheckReadable(const std::string& path, const std::string& flag) {
  HRENET_USER_CHECK(!path.empty(), flag << " is empty; give a file");
  boost::system::error_code error;
  HRENET_USER_CHECK(boost::filesystem::exists(path, error), flag << " "
      << path << ": no such file (cwd: " << Cwd() << ")");
  HRENET_USER_CHECK(boost::filesystem::is_regular_file(path, error), flag
      << " " << path << " is not a file");
  std::ifstream probe(path.c_str());
  HRENET_USER_CHECK(probe.good(), flag << " " << path << " cannot be read: "
      << std::strerror(errno));
}

// Keeps the first error of a text-format parse (protobuf would print every
// error on its own lines).
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  virtual void AddError(int line, google::protobuf::io::ColumnNumber column,
      const std::string& message) {
    if (message_.empty()) {
      std::ostringstream s;
      s << "line " << line + 1 << ", column " << column + 1 << ": "
        << message;
      message_ = s.str();
    }
  }
  virtual void AddWarning(int line, google::protobuf::io::ColumnNumber column,
      const std::string& message) {}
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

void ParseText(const std::string& path, const std::string& flag,
    const std::string& what, google::protobuf::Message* proto) {
  CheckReadable(path, flag);
  std::ifstream in(path.c_str());
  std::stringstream text;
  text << in.rdbuf();
  FirstError errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  HRENET_USER_CHECK(parser.ParseFromString(text.str(), proto), flag << " "
      << path << " is not a valid " << what << " (" << errors.message()
      << "); fix the file");
}

std::string ShapeString(const std::vector<int>& shape) {
  std::ostringstream s;
  for (int i = 0; i < shape.size(); ++i) {
    s << (i ? "x" : "") << shape[i];
  }
  return s.str();
}

std::vector<int> ProtoShape(const BlobProto& blob) {
  std::vector<int> shape;
  if (blob.has_shape()) {
    for (int i = 0; i < blob.shape().dim_size(); ++i) {
      shape.push_back(static_cast<int>(blob.shape().dim(i)));
    }
  } else if (blob.has_num() || blob.has_channels() || blob.has_height() ||
             blob.has_width()) {
    shape.push_back(blob.num());
    shape.push_back(blob.channels());
    shape.push_back(blob.height());
    shape.push_back(blob.width());
  }
  return shape;
}

// Whether a blob of `shape` can take the stored `blob` (upstream's
// Blob::ShapeEquals also accepts a legacy num/channels/height/width shape
// padded with ones, and only that).
bool ShapeFits(const std::vector<int>& shape, const BlobProto& blob) {
  const std::vector<int> stored = ProtoShape(blob);
  if (shape == stored) {
    return true;
  }
  if (blob.has_shape() || stored.size() != 4 || shape.size() > 4) {
    return false;
  }
  for (int i = 0; i < 4; ++i) {
    const int axis = i - (4 - static_cast<int>(shape.size()));
    const int want = axis < 0 ? 1 : shape[axis];
    if (stored[i] != want) {
      return false;
    }
  }
  return true;
}

volatile sig_atomic_t stop_signal = 0;
struct sigaction chained_int;

void StopOnSignal(int sig) {
  if (stop_signal == 0) {
    stop_signal = sig;
  }
  // Upstream's SIGINT handler turns the signal into the solver's action
  // (a plain handler; one installed with SA_SIGINFO is not ours to call).
  if (!(chained_int.sa_flags & SA_SIGINFO) &&
      chained_int.sa_handler != SIG_DFL && chained_int.sa_handler != SIG_IGN &&
      chained_int.sa_handler != NULL) {
    chained_int.sa_handler(SIGINT);
  }
}

}  // namespace

void ToolCheckNetFile(const std::string& path, const std::string& flag) {
  NetParameter net;
  ParseText(path, flag, "net prototxt", &net);
}

void ToolReadSolver(const std::string& path, SolverParameter* param) {
  HRENET_USER_CHECK(!path.empty(), "caffe train needs a solver: pass "
      "-solver FILE.prototxt");
  ParseText(path, "-solver", "solver prototxt", param);
  UpgradeSolverAsNeeded(path, param);
  if (param->has_net()) {
    ToolCheckNetFile(param->net(), "the net of solver " + path + ",");
  } else if (param->has_train_net()) {
    ToolCheckNetFile(param->train_net(), "the train_net of solver " + path +
                     ",");
  } else {
    HRENET_USER_CHECK(param->has_net_param() || param->has_train_net_param(),
        "-solver " << path << " names no net; add net: \"FILE.prototxt\"");
  }
}

std::vector<int> ToolGpus(const std::string& flag, const std::string& why) {
  std::vector<int> gpus;
  if (flag.empty()) {
    return gpus;
  }
#ifdef CPU_ONLY
  HRENET_USER_CHECK(false, (why.empty() ? "-gpu " + flag : why)
      << ": this caffe was built without CUDA (CPU only); "
      << (why.empty() ? "drop -gpu" : "remove it") << ", or build the CUDA "
      << "variant (scripts/setup.sh --cuda)");
#else
  int count = 0;
  HRENET_USER_CHECK(cudaGetDeviceCount(&count) == cudaSuccess && count > 0,
      (why.empty() ? "-gpu " + flag : why) << ": no CUDA device is "
      << "visible; drop -gpu to train on the CPU");
  if (flag == "all") {
    for (int i = 0; i < count; ++i) {
      gpus.push_back(i);
    }
    return gpus;
  }
  std::vector<std::string> ids;
  boost::split(ids, flag, boost::is_any_of(","));
  for (int i = 0; i < ids.size(); ++i) {
    int id = -1;
    try {
      id = boost::lexical_cast<int>(ids[i]);
    } catch (const boost::bad_lexical_cast&) {
      id = -1;
    }
    HRENET_USER_CHECK(id >= 0 && id < count, "-gpu " << flag << ": '"
        << ids[i] << "' is not a device of this machine (0 to " << count - 1
        << ", or all)");
    gpus.push_back(id);
  }
#endif
  return gpus;
}

void ToolCheckSnapshot(const std::string& path, Solver<float>* solver) {
  CheckReadable(path, "-snapshot");
  if (boost::algorithm::ends_with(path, ".h5")) {
    return;  // HDF5 states are read by upstream's code as they are
  }
  SolverState state;
  HRENET_USER_CHECK(ReadProtoFromBinaryFile(path, &state), "-snapshot "
      << path << " is not a complete .solverstate (truncated or damaged); "
      << "resume from an earlier snapshot");
  const std::vector<Blob<float>*>& params = solver->net()->learnable_params();
  HRENET_USER_CHECK(state.history_size() > 0 || params.empty(),
      "-snapshot " << path << " is not a .solverstate (it holds no solver "
      << "history; a .caffemodel?): pass weights with -weights to "
      << "fine-tune, or the .solverstate written beside them to resume");
  HRENET_USER_CHECK(state.has_learned_net(), "-snapshot " << path
      << " names no weights file (learned_net); it is not a .solverstate "
      << "written by Caffe");
  boost::system::error_code error;
  HRENET_USER_CHECK(boost::filesystem::exists(state.learned_net(), error),
      "-snapshot " << path << " refers to its weights "
      << state.learned_net() << ", which does not exist (cwd: " << Cwd()
      << "); run from the folder the snapshot was written from");
  const int n = params.size();
  const int k = state.history_size();
  HRENET_USER_CHECK(n > 0 && (k == n || k == 2 * n), "-snapshot " << path
      << " holds " << k << " history blobs, but this solver's net has " << n
      << " learnable parameters; resume with the solver and net the "
      << "snapshot was taken with");
  for (int i = 0; i < k; ++i) {
    const std::vector<int> stored = ProtoShape(state.history(i));
    HRENET_USER_CHECK(ShapeFits(params[i % n]->shape(), state.history(i)),
        "-snapshot "
        << path << ": history blob " << i << " is " << ShapeString(stored)
        << " but the net's parameter is " << ShapeString(
            params[i % n]->shape()) << "; resume with the net the snapshot "
        << "was taken with");
  }
}

void ToolCheckWeights(const std::string& list, const Net<float>& net) {
  std::vector<std::string> files;
  boost::split(files, list, boost::is_any_of(","));
  std::map<std::string, int> index;
  for (int i = 0; i < net.layers().size(); ++i) {
    index[net.layer_names()[i]] = i;
  }
  for (int f = 0; f < files.size(); ++f) {
    std::string path = files[f];
    boost::trim(path);
    CheckReadable(path, "-weights");
    if (boost::algorithm::ends_with(path, ".h5")) {
      continue;
    }
    NetParameter weights;
    HRENET_USER_CHECK(ReadProtoFromBinaryFile(path, &weights), "-weights "
        << path << " is not a complete .caffemodel (truncated or damaged)");
    UpgradeNetAsNeeded(path, &weights);
    int shared = 0;
    for (int i = 0; i < weights.layer_size(); ++i) {
      const LayerParameter& layer = weights.layer(i);
      std::map<std::string, int>::const_iterator it = index.find(
          layer.name());
      if (layer.blobs_size() == 0 || it == index.end()) {
        continue;
      }
      const std::vector<shared_ptr<Blob<float> > >& blobs =
          net.layers()[it->second]->blobs();
      HRENET_USER_CHECK(blobs.size() == layer.blobs_size(), "-weights "
          << path << ": layer " << layer.name() << " has "
          << layer.blobs_size() << " blobs, the net's has " << blobs.size()
          << "; these are weights of another net");
      for (int b = 0; b < blobs.size(); ++b) {
        const std::vector<int> stored = ProtoShape(layer.blobs(b));
        HRENET_USER_CHECK(ShapeFits(blobs[b]->shape(), layer.blobs(b)),
            "-weights "
            << path << ": layer " << layer.name() << " blob " << b << " is "
            << ShapeString(stored) << ", the net's is "
            << ShapeString(blobs[b]->shape()) << "; these are weights of "
            << "another net (or rename the layer to start it afresh)");
      }
      ++shared;
    }
    HRENET_USER_CHECK(shared > 0, "-weights " << path << " shares no layer "
        << "with parameters with the net (no layer name matches); these are "
        << "weights of another net");
  }
}

ToolStopSignals::ToolStopSignals() {
  stop_signal = 0;
  struct sigaction stop;
  std::memset(&stop, 0, sizeof(stop));  // NOLINT(caffe/alt_fn)
  stop.sa_handler = &StopOnSignal;
  sigfillset(&stop.sa_mask);
  stop.sa_flags = SA_RESTART;
  sigaction(SIGINT, &stop, &old_int_);
  chained_int = old_int_;
  sigaction(SIGTERM, &stop, &old_term_);
}

ToolStopSignals::~ToolStopSignals() {
  sigaction(SIGINT, &old_int_, NULL);
  sigaction(SIGTERM, &old_term_, NULL);
}

int ToolStopSignals::signal() const { return stop_signal; }

}  // namespace caffe
