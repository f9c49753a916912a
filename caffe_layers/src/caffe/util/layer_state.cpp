#include <unistd.h>

#include <cstdio>
#include <fstream>  // NOLINT(readability/streams)
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "caffe/util/layer_state.hpp"
#include "caffe/util/user_error.hpp"

namespace caffe {

std::string LayerStateFilename(const std::string& solver_state_file) {
  std::string base = solver_state_file;
  const char* suffixes[] = {".solverstate.h5", ".solverstate"};
  for (int i = 0; i < 2; ++i) {
    const std::string s = suffixes[i];
    if (base.size() > s.size() &&
        base.compare(base.size() - s.size(), s.size(), s) == 0) {
      base.resize(base.size() - s.size());
      break;
    }
  }
  return base + ".datastate";
}

template <typename Dtype>
void SaveLayerStates(const Net<Dtype>& net, const std::string& state_file) {
  std::ostringstream text;
  int count = 0;
  const vector<shared_ptr<Layer<Dtype> > >& layers = net.layers();
  for (int i = 0; i < layers.size(); ++i) {
    const StatefulLayer* stateful =
        dynamic_cast<const StatefulLayer*>(layers[i].get());
    if (stateful) {
      text << net.layer_names()[i] << "\t" << stateful->SaveState() << "\n";
      ++count;
    }
  }
  if (count == 0) {
    return;
  }
  const std::string path = LayerStateFilename(state_file);
  std::ostringstream tmp_name;
  tmp_name << path << ".tmp-" << getpid();
  const std::string tmp = tmp_name.str();
  {
    std::ofstream out(tmp.c_str());
    out << text.str();
    out.close();
    HRENET_USER_CHECK(!out.fail(), "cannot write the data state " << tmp
        << " beside the snapshot; check that its folder is writable and "
        << "not full");
  }
  HRENET_USER_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0,
      "cannot rename " << tmp << " to " << path);
  LOG(INFO) << "Snapshotting the data layers' state to " << path;
}

template <typename Dtype>
void RestoreLayerStates(Net<Dtype>* net, const std::string& state_file) {
  std::map<std::string, StatefulLayer*> stateful;
  const vector<shared_ptr<Layer<Dtype> > >& layers = net->layers();
  for (int i = 0; i < layers.size(); ++i) {
    StatefulLayer* s = dynamic_cast<StatefulLayer*>(layers[i].get());
    if (s) {
      stateful[net->layer_names()[i]] = s;
    }
  }
  const std::string path = LayerStateFilename(state_file);
  std::ifstream in(path.c_str());
  if (!in) {
    LOG_IF(WARNING, !stateful.empty()) << "No data state " << path
        << " beside " << state_file << " (a snapshot of an older build?): "
        << "the data layers start their streams anew, so the resumed run "
        << "reads other batches than an uninterrupted one would";
    return;
  }
  std::string line;
  int restored = 0;
  while (std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    const size_t tab = line.find('\t');
    HRENET_USER_CHECK(tab != std::string::npos, "data state " << path
        << " is damaged (a line without a layer name); delete it to resume "
        << "without it");
    const std::string name = line.substr(0, tab);
    HRENET_USER_CHECK(stateful.count(name), "data state " << path
        << " is for a layer '" << name << "' that this net has no stateful "
        << "layer of; resume with the net the snapshot was taken from");
    stateful[name]->RestoreState(line.substr(tab + 1));
    ++restored;
  }
  LOG(INFO) << "Restored the state of " << restored << " data layer(s) from "
            << path;
}

template void SaveLayerStates(const Net<float>& net,
                              const std::string& state_file);
template void SaveLayerStates(const Net<double>& net,
                              const std::string& state_file);
template void RestoreLayerStates(Net<float>* net,
                                 const std::string& state_file);
template void RestoreLayerStates(Net<double>* net,
                                 const std::string& state_file);

}  // namespace caffe
