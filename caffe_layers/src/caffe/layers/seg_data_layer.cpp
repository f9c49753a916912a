#if defined(USE_OPENCV) && defined(USE_LMDB)
#include <lmdb.h>
#include <opencv2/core/core.hpp>
#include <opencv2/imgcodecs/imgcodecs.hpp>
#include <opencv2/imgproc/imgproc.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "boost/filesystem.hpp"
#include "boost/scoped_ptr.hpp"
#include "boost/thread/mutex.hpp"
#include "caffe/layers/seg_data_layer.hpp"
#include "caffe/util/db.hpp"
#include "caffe/util/rng.hpp"

namespace caffe {

namespace {

// The permutation seed of `seed: -1` with `shuffle` on several solvers:
// rank 0 leaves its *seed under `key` ("layer name\nsource"); another rank
// takes it from there, or gets false when rank 0 left none.
bool SharePermutationSeed(const string& key, int rank, unsigned int* seed) {
  static boost::mutex mutex;
  static std::map<string, unsigned int> seeds;
  boost::mutex::scoped_lock lock(mutex);
  if (rank == 0) {
    seeds[key] = *seed;
    return true;
  }
  std::map<string, unsigned int>::const_iterator it = seeds.find(key);
  if (it == seeds.end()) {
    return false;
  }
  *seed = it->second;
  return true;
}

}  // namespace

// Read-only keyed access to one LMDB. The read transaction is begun here
// and then used by the prefetch thread only (MDB_NOTLS allows that).
class SegDataLMDB {
 public:
  explicit SegDataLMDB(const string& path) : path_(path) {
    CHECK_EQ(mdb_env_create(&env_), MDB_SUCCESS);
    int rc = mdb_env_open(env_, path.c_str(),
                          MDB_RDONLY | MDB_NOTLS | MDB_NOLOCK, 0664);
    CHECK_EQ(rc, MDB_SUCCESS) << "SegData: cannot open LMDB " << path << ": "
                              << mdb_strerror(rc);
    CHECK_EQ(mdb_txn_begin(env_, NULL, MDB_RDONLY, &txn_), MDB_SUCCESS);
    CHECK_EQ(mdb_dbi_open(txn_, NULL, 0, &dbi_), MDB_SUCCESS);
  }
  ~SegDataLMDB() {
    mdb_txn_abort(txn_);
    mdb_env_close(env_);
  }
  string Get(const string& key) const {
    MDB_val k, v;
    k.mv_size = key.size();
    k.mv_data = const_cast<char*>(key.data());
    const int rc = mdb_get(txn_, dbi_, &k, &v);
    CHECK_EQ(rc, MDB_SUCCESS) << "SegData: key " << key << " cannot be read "
                              << "from " << path_ << ": " << mdb_strerror(rc);
    return string(static_cast<const char*>(v.mv_data), v.mv_size);
  }

 private:
  string path_;
  MDB_env* env_;
  MDB_txn* txn_;
  MDB_dbi dbi_;
  DISABLE_COPY_AND_ASSIGN(SegDataLMDB);
};

template <typename Dtype>
SegDataLayer<Dtype>::SegDataLayer(const LayerParameter& param)
    : BasePrefetchingDataLayer<Dtype>(param), position_(0),
      solver_count_(1), solver_rank_(0), turn_(0), crop_h_(0), crop_w_(0) {
  // The base class sized the prefetch queue from data_param; use ours.
  const int prefetch = param.seg_data_param().prefetch();
  CHECK_GT(prefetch, 0) << "SegData layer " << param.name()
                        << ": prefetch must be at least 1";
  Batch<Dtype>* batch;
  while (this->prefetch_free_.try_pop(&batch)) {}
  this->prefetch_.clear();
  for (int i = 0; i < prefetch; ++i) {
    this->prefetch_.push_back(shared_ptr<Batch<Dtype> >(new Batch<Dtype>()));
    this->prefetch_free_.push(this->prefetch_.back().get());
  }
}

template <typename Dtype>
SegDataLayer<Dtype>::~SegDataLayer() {
  this->StopInternalThread();
}

template <typename Dtype>
void SegDataLayer<Dtype>::CheckSourceExists(const string& source) {
  namespace fs = boost::filesystem;
  boost::system::error_code error;
  string problem;
  if (!fs::exists(source, error)) {
    problem = "does not exist";
  } else if (!fs::is_directory(source, error)) {
    problem = "is not a folder";
  } else {
    const char* subs[] = {"image_lmdb", "label_lmdb"};
    for (int i = 0; i < 2 && problem.empty(); ++i) {
      if (!fs::is_regular_file(source + "/" + subs[i] + "/data.mdb", error)) {
        problem = string("has no ") + subs[i] + "/data.mdb, so it is not a "
            "folder written by tools/build_lmdb.py --out";
      }
    }
  }
  if (problem.empty()) {
    return;
  }
  const string& hint = this->layer_param_.seg_data_param().missing_hint();
  std::ostringstream message;
  message << "SegData layer '" << this->layer_param_.name()
          << "': LMDB folder '" << source << "' " << problem << " (cwd: "
          << fs::current_path(error).string() << "). "
          << (hint.empty() ? "Build it with tools/build_lmdb.py --out " +
              source + " (see docs/DATA.md)." : hint);
  // A missing LMDB is the first error most users meet (a path typed wrong,
  // a data set not built yet), so it gets one line with the fix and exit
  // status 1. Not CHECK/LOG(FATAL): they add "Check failure stack trace"
  // and abort() (SIGABRT, perhaps a core dump), which buries the line. Not
  // std::exit: layers set up earlier may already run prefetch threads (the
  // train net's while a test net sets up), and static destructors must not
  // run under them; so flush the logs and stdio, then std::_Exit. The line
  // goes through glog (stderr and the log file) when glog shows errors on
  // stderr, else straight to stderr: exactly once there either way.
  const bool glog_to_stderr = FLAGS_minloglevel <= google::GLOG_ERROR &&
      (FLAGS_logtostderr || FLAGS_alsologtostderr ||
       FLAGS_stderrthreshold <= google::GLOG_ERROR);
  if (glog_to_stderr) {
    LOG(ERROR) << message.str();
    google::FlushLogFiles(google::GLOG_INFO);
  } else {
    fprintf(stderr, "%s\n", message.str().c_str());
  }
  fflush(NULL);
  std::_Exit(1);
}

template <typename Dtype>
void SegDataLayer<Dtype>::ScanSource(const string& source) {
  const string& name = this->layer_param_.name();
  const string image_path = source + "/image_lmdb";
  const string label_path = source + "/label_lmdb";
  boost::scoped_ptr<db::DB> image_db(db::GetDB("lmdb"));
  boost::scoped_ptr<db::DB> label_db(db::GetDB("lmdb"));
  image_db->Open(image_path, db::READ);
  label_db->Open(label_path, db::READ);
  boost::scoped_ptr<db::Cursor> ic(image_db->NewCursor());
  boost::scoped_ptr<db::Cursor> lc(label_db->NewCursor());
  Datum image, label;
  keys_.clear();
  sizes_.clear();
  for (; ic->valid() && lc->valid(); ic->Next(), lc->Next()) {
    const string key = ic->key();
    CHECK_EQ(key, lc->key()) << "SegData layer " << name << ": entry "
        << keys_.size() << " of " << image_path << " and " << label_path
        << " have different keys; rebuild " << source
        << " with tools/build_lmdb.py";
    CHECK(image.ParseFromString(ic->value()) &&
          label.ParseFromString(lc->value()))
        << "SegData layer " << name << ": key " << key
        << " does not hold a Datum in " << source;
    CHECK(image.encoded() && label.encoded()) << "SegData layer " << name
        << ": key " << key << " is not an encoded image/label Datum in "
        << source << "; rebuild it with tools/build_lmdb.py";
    CHECK(image.height() == label.height() && image.width() == label.width())
        << "SegData layer " << name << ": size mismatch at key " << key
        << ": image " << image.height() << "x" << image.width()
        << ", label " << label.height() << "x" << label.width();
    keys_.push_back(key);
    sizes_.push_back(std::make_pair(image.height(), image.width()));
  }
  CHECK(!ic->valid() && !lc->valid()) << "SegData layer " << name
      << ": " << image_path << " and " << label_path
      << " hold different numbers of entries; rebuild " << source;
  CHECK(!keys_.empty()) << "SegData layer " << name << ": " << source
                        << " is empty";
}

// cpp_lint's data_layer_setup rule allows only upstream's class names here.
template <typename Dtype>
void SegDataLayer<Dtype>::DataLayerSetUp(  // NOLINT(caffe/data_layer_setup)
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const SegDataParameter& p = this->layer_param_.seg_data_param();
  const string& name = this->layer_param_.name();
  CHECK(!this->layer_param_.has_transform_param()) << "SegData layer "
      << name << ": use seg_data_param (crop_h, crop_w, mirror, mean_value, "
      << "scale), not transform_param";
  CHECK(!p.source().empty()) << "SegData layer " << name
      << ": seg_data_param.source is not set";
  const int batch_size = p.batch_size();
  CHECK_GT(batch_size, 0) << "SegData layer " << name
                          << ": batch_size must be positive";
  crop_h_ = p.crop_h();
  crop_w_ = p.crop_w();
  CHECK_EQ(crop_h_ == 0, crop_w_ == 0) << "SegData layer " << name
      << ": crop_h " << crop_h_ << " and crop_w " << crop_w_
      << ": set both (crop) or neither (whole images)";
  CHECK_LE(p.ignore_label(), 255) << "SegData layer " << name
      << ": ignore_label " << p.ignore_label() << " must fit in 8 bits";
  const int num_mean = p.mean_value_size();
  CHECK(num_mean == 0 || num_mean == 1 || num_mean == 3) << "SegData layer "
      << name << ": give 0, 1 or 3 (B, G, R) mean_values, not " << num_mean;
  mean_.assign(3, Dtype(0));
  for (int c = 0; c < 3 && num_mean > 0; ++c) {
    mean_[c] = p.mean_value(num_mean == 1 ? 0 : c);
  }

  CheckSourceExists(p.source());
  ScanSource(p.source());
  if (crop_h_ == 0 && batch_size > 1) {
    for (int i = 1; i < keys_.size(); ++i) {
      CHECK(sizes_[i] == sizes_[0]) << "SegData layer " << name
          << ": batch_size " << batch_size << " without a crop needs images "
          << "of one size, but " << keys_[0] << " is " << sizes_[0].first
          << "x" << sizes_[0].second << " and " << keys_[i] << " is "
          << sizes_[i].first << "x" << sizes_[i].second << "; use "
          << "batch_size 1 (whole images) or set crop_h and crop_w";
    }
  }
  image_db_.reset(new SegDataLMDB(p.source() + "/image_lmdb"));
  label_db_.reset(new SegDataLMDB(p.source() + "/label_lmdb"));

  // Read here, on the thread that builds this rank's net (see the header).
  const bool shared = this->phase_ == TRAIN && Caffe::solver_count() > 1;
  solver_count_ = shared ? Caffe::solver_count() : 1;
  solver_rank_ = shared ? Caffe::solver_rank() : 0;
  CHECK(solver_rank_ >= 0 && solver_rank_ < solver_count_) << "SegData "
      << "layer " << name << ": solver rank " << solver_rank_ << " of "
      << solver_count_;
  SeedGenerators();
  order_.resize(keys_.size());
  for (int i = 0; i < order_.size(); ++i) {
    order_[i] = i;
  }
  if (p.shuffle()) {
    shuffle(order_.begin(), order_.end(),
            static_cast<caffe::rng_t*>(perm_rng_->generator()));
  }
  position_ = 0;
  turn_ = 0;

  const int h = crop_h_ > 0 ? crop_h_ : sizes_[order_[0]].first;
  const int w = crop_w_ > 0 ? crop_w_ : sizes_[order_[0]].second;
  vector<int> shape(4);
  shape[0] = batch_size;
  shape[1] = 3;
  shape[2] = h;
  shape[3] = w;
  top[0]->Reshape(shape);
  for (int i = 0; i < this->prefetch_.size(); ++i) {
    this->prefetch_[i]->data_.Reshape(shape);
  }
  shape[1] = 1;
  if (this->output_labels_) {
    top[1]->Reshape(shape);
    for (int i = 0; i < this->prefetch_.size(); ++i) {
      this->prefetch_[i]->label_.Reshape(shape);
    }
  }
  LOG_IF(INFO, Caffe::root_solver()) << "SegData layer " << name << ": "
      << keys_.size() << " pairs from " << p.source() << ", output "
      << batch_size << "x3x" << h << "x" << w
      << (crop_h_ > 0 ? "" : " (whole images)");
  LOG_IF(INFO, solver_count_ > 1) << "SegData layer " << name
      << ": solver rank " << solver_rank_ << " of " << solver_count_
      << " reads items " << solver_rank_ << ", " << solver_rank_ +
      solver_count_ << ", ... of the epochs' common sequence";
}

template <typename Dtype>
void SegDataLayer<Dtype>::SeedGenerators() {
  const SegDataParameter& p = this->layer_param_.seg_data_param();
  if (solver_count_ == 1) {
    const unsigned int seed = p.seed() >= 0 ?
        static_cast<unsigned int>(p.seed()) : caffe_rng_rand();
    perm_rng_.reset(new Caffe::RNG(seed));
    crop_rng_ = perm_rng_;
    return;
  }
  unsigned int perm_seed = 0, crop_seed = 0;
  if (p.seed() >= 0) {
    perm_seed = static_cast<unsigned int>(p.seed());
    // Rank r crops with draw r + 1 of a generator seeded with `seed`.
    caffe::rng_t seeder(perm_seed);
    for (int i = 0; i <= solver_rank_; ++i) {
      crop_seed = seeder();
    }
  } else {
    crop_seed = caffe_rng_rand();
    if (p.shuffle()) {
      const string key = this->layer_param_.name() + "\n" + p.source();
      perm_seed = caffe_rng_rand();
      CHECK(SharePermutationSeed(key, solver_rank_, &perm_seed))
          << "SegData layer "
          << this->layer_param_.name() << ": solver rank " << solver_rank_
          << " of " << solver_count_ << " found no permutation seed from "
          << "rank 0 in this process, so the ranks would shuffle "
          << "differently; set seg_data_param.seed (any value >= 0)";
    }
  }
  perm_rng_.reset(new Caffe::RNG(perm_seed));
  crop_rng_.reset(new Caffe::RNG(crop_seed));
}

template <typename Dtype>
int SegDataLayer<Dtype>::Rand(int n) {
  CHECK_GT(n, 0);
  caffe::rng_t* rng = static_cast<caffe::rng_t*>(crop_rng_->generator());
  return static_cast<int>((*rng)() % n);
}

template <typename Dtype>
int SegDataLayer<Dtype>::NextIndex() {
  for (;;) {
    if (position_ == order_.size()) {
      position_ = 0;
      if (this->layer_param_.seg_data_param().shuffle()) {
        shuffle(order_.begin(), order_.end(),
                static_cast<caffe::rng_t*>(perm_rng_->generator()));
      }
    }
    const int index = order_[position_++];
    const bool mine = turn_ == solver_rank_;
    turn_ = (turn_ + 1) % solver_count_;
    if (mine) {
      return index;
    }
  }
}

template <typename Dtype>
void SegDataLayer<Dtype>::LoadPair(int index, int item, Batch<Dtype>* batch) {
  const SegDataParameter& p = this->layer_param_.seg_data_param();
  const string& name = this->layer_param_.name();
  const string& key = keys_[index];
  Datum image_datum, label_datum;
  CHECK(image_datum.ParseFromString(image_db_->Get(key)) &&
        label_datum.ParseFromString(label_db_->Get(key)))
      << "SegData layer " << name << ": key " << key
      << " does not hold a Datum in " << p.source();
  const string& image_bytes = image_datum.data();
  const string& label_bytes = label_datum.data();
  cv::Mat image = cv::imdecode(cv::Mat(1, image_bytes.size(), CV_8UC1,
      const_cast<char*>(image_bytes.data())), cv::IMREAD_COLOR);
  CHECK(image.data) << "SegData layer " << name << ": the image of key "
      << key << " in " << p.source() << " cannot be decoded (corrupt JPEG/"
      << "PNG); rebuild with tools/build_lmdb.py, which validates images";
  cv::Mat label = cv::imdecode(cv::Mat(1, label_bytes.size(), CV_8UC1,
      const_cast<char*>(label_bytes.data())), cv::IMREAD_UNCHANGED);
  CHECK(label.data) << "SegData layer " << name << ": the label of key "
      << key << " in " << p.source() << " cannot be decoded";
  CHECK_EQ(label.type(), CV_8UC1) << "SegData layer " << name
      << ": the label of key " << key << " is not a single-channel 8-bit "
      << "image";
  CHECK(image.rows == label.rows && image.cols == label.cols &&
        image.rows == sizes_[index].first &&
        image.cols == sizes_[index].second)
      << "SegData layer " << name << ": size mismatch at key " << key
      << ": image " << image.rows << "x" << image.cols << ", label "
      << label.rows << "x" << label.cols << ", Datum "
      << sizes_[index].first << "x" << sizes_[index].second;

  const int out_h = crop_h_ > 0 ? crop_h_ : image.rows;
  const int out_w = crop_w_ > 0 ? crop_w_ : image.cols;
  const int pad_h = std::max(0, out_h - image.rows);
  const int pad_w = std::max(0, out_w - image.cols);
  if (pad_h > 0 || pad_w > 0) {
    cv::copyMakeBorder(image, image, pad_h / 2, pad_h - pad_h / 2,
                       pad_w / 2, pad_w - pad_w / 2, cv::BORDER_REFLECT_101);
    cv::copyMakeBorder(label, label, pad_h / 2, pad_h - pad_h / 2,
                       pad_w / 2, pad_w - pad_w / 2, cv::BORDER_CONSTANT,
                       cv::Scalar(p.ignore_label()));
  }
  const bool train = this->phase_ == TRAIN;
  int h_off = (image.rows - out_h) / 2;
  int w_off = (image.cols - out_w) / 2;
  if (train) {
    h_off = Rand(image.rows - out_h + 1);
    w_off = Rand(image.cols - out_w + 1);
  }
  const bool mirror = train && p.mirror() && Rand(2);

  const Dtype scale = p.scale();
  Dtype* data = batch->data_.mutable_cpu_data() + batch->data_.offset(item);
  Dtype* labels = this->output_labels_ ?
      batch->label_.mutable_cpu_data() + batch->label_.offset(item) : NULL;
  for (int h = 0; h < out_h; ++h) {
    const uchar* image_row = image.ptr<uchar>(h + h_off);
    const uchar* label_row = label.ptr<uchar>(h + h_off);
    for (int w = 0; w < out_w; ++w) {
      const int x = w_off + (mirror ? out_w - 1 - w : w);
      for (int c = 0; c < 3; ++c) {
        data[(c * out_h + h) * out_w + w] =
            (static_cast<Dtype>(image_row[x * 3 + c]) - mean_[c]) * scale;
      }
      if (labels) {
        labels[h * out_w + w] = label_row[x];
      }
    }
  }
}

// This function is called on the prefetch thread.
template <typename Dtype>
void SegDataLayer<Dtype>::load_batch(Batch<Dtype>* batch) {
  const int batch_size = this->layer_param_.seg_data_param().batch_size();
  for (int item = 0; item < batch_size; ++item) {
    const int index = NextIndex();
    if (item == 0 && crop_h_ == 0) {
      vector<int> shape(4);
      shape[0] = batch_size;
      shape[1] = 3;
      shape[2] = sizes_[index].first;
      shape[3] = sizes_[index].second;
      batch->data_.Reshape(shape);
      shape[1] = 1;
      if (this->output_labels_) {
        batch->label_.Reshape(shape);
      }
    }
    LoadPair(index, item, batch);
  }
}

INSTANTIATE_CLASS(SegDataLayer);
REGISTER_LAYER_CLASS(SegData);

}  // namespace caffe
#endif  // USE_OPENCV && USE_LMDB
