#if defined(USE_OPENCV) && defined(USE_LMDB)
#include <lmdb.h>
#include <opencv2/core/core.hpp>
#include <opencv2/imgcodecs/imgcodecs.hpp>
#include <opencv2/imgproc/imgproc.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "boost/filesystem.hpp"
#include "boost/thread/mutex.hpp"
#include "caffe/layers/seg_data_layer.hpp"
#include "caffe/util/rng.hpp"
#include "caffe/util/user_error.hpp"

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

// Read-only access to one LMDB: by key, and in key order with a cursor.
// The read transaction is begun here and then used by one thread at a time
// (MDB_NOTLS allows that): ScanSource's cursor at set-up, then the prefetch
// thread's Get. Every failure is a UserError naming the file.
class SegDataLMDB {
 public:
  SegDataLMDB(const string& path, const string& layer)
      : path_(path), layer_(layer), env_(NULL), txn_(NULL), cursor_(NULL) {
    CheckComplete();
    HRENET_USER_CHECK(mdb_env_create(&env_) == MDB_SUCCESS, Where()
        << "cannot create an LMDB environment");
    int rc = mdb_env_open(env_, path.c_str(),
                          MDB_RDONLY | MDB_NOTLS | MDB_NOLOCK, 0664);
    if (rc != MDB_SUCCESS) {
      mdb_env_close(env_);
      HRENET_USER_CHECK(false, Where() << "cannot open it: "
          << mdb_strerror(rc) << "; rebuild it with tools/build_lmdb.py");
    }
    rc = mdb_txn_begin(env_, NULL, MDB_RDONLY, &txn_);
    if (rc == MDB_SUCCESS) {
      rc = mdb_dbi_open(txn_, NULL, 0, &dbi_);
    }
    if (rc != MDB_SUCCESS) {
      Close();
      HRENET_USER_CHECK(false, Where() << "cannot read it: "
          << mdb_strerror(rc) << "; rebuild it with tools/build_lmdb.py");
    }
  }
  ~SegDataLMDB() { Close(); }

  string Get(const string& key) const {
    MDB_val k, v;
    k.mv_size = key.size();
    k.mv_data = const_cast<char*>(key.data());
    const int rc = mdb_get(txn_, dbi_, &k, &v);
    HRENET_USER_CHECK(rc == MDB_SUCCESS, Where() << "key " << key
        << " cannot be read: " << mdb_strerror(rc)
        << "; rebuild the LMDBs with tools/build_lmdb.py");
    return string(static_cast<const char*>(v.mv_data), v.mv_size);
  }

  /// The next (key, value) in key order; false after the last.
  bool Next(string* key, string* value) {
    if (!cursor_) {
      HRENET_USER_CHECK(mdb_cursor_open(txn_, dbi_, &cursor_) == MDB_SUCCESS,
          Where() << "cannot open a cursor");
    }
    MDB_val k, v;
    const int rc = mdb_cursor_get(cursor_, &k, &v, MDB_NEXT);
    if (rc == MDB_NOTFOUND) {
      return false;
    }
    HRENET_USER_CHECK(rc == MDB_SUCCESS, Where() << "reading it failed: "
        << mdb_strerror(rc) << "; rebuild it with tools/build_lmdb.py");
    key->assign(static_cast<const char*>(k.mv_data), k.mv_size);
    value->assign(static_cast<const char*>(v.mv_data), v.mv_size);
    return true;
  }

  /// Closes the set-up cursor (the prefetch thread reads by key only).
  void EndScan() {
    if (cursor_) {
      mdb_cursor_close(cursor_);
      cursor_ = NULL;
    }
  }

 private:
  string Where() const {
    return "SegData layer '" + layer_ + "': LMDB " + path_ + ": ";
  }

  // LMDB maps data.mdb and would read a page past the end of a truncated
  // file (SIGBUS): compare the file's size with the last page its meta
  // page names before anything is mapped.
  void CheckComplete() const {
    const string data = path_ + "/data.mdb";
    struct stat st;
    HRENET_USER_CHECK(stat(data.c_str(), &st) == 0, Where() << data
        << " is missing; rebuild it with tools/build_lmdb.py");
    MDB_env* env = NULL;
    HRENET_USER_CHECK(mdb_env_create(&env) == MDB_SUCCESS, Where()
        << "cannot create an LMDB environment");
    // Opening reads the meta pages with read(), not through the map.
    const int rc = mdb_env_open(env, path_.c_str(),
                                MDB_RDONLY | MDB_NOTLS | MDB_NOLOCK, 0664);
    MDB_envinfo info;
    MDB_stat stat_info;
    const bool ok = rc == MDB_SUCCESS &&
        mdb_env_info(env, &info) == MDB_SUCCESS &&
        mdb_env_stat(env, &stat_info) == MDB_SUCCESS;
    mdb_env_close(env);
    HRENET_USER_CHECK(ok, Where() << data << " is not a readable LMDB ("
        << mdb_strerror(rc) << "); rebuild it with tools/build_lmdb.py");
    const double needed = (static_cast<double>(info.me_last_pgno) + 1) *
        stat_info.ms_psize;
    HRENET_USER_CHECK(st.st_size >= needed, Where() << data << " is "
        << "truncated (" << st.st_size << " bytes, its pages need "
        << static_cast<int64_t>(needed) << "); rebuild it with "
        << "tools/build_lmdb.py");
  }

  void Close() {
    EndScan();
    if (txn_) {
      mdb_txn_abort(txn_);
      txn_ = NULL;
    }
    if (env_) {
      mdb_env_close(env_);
      env_ = NULL;
    }
  }

  string path_, layer_;
  MDB_env* env_;
  MDB_txn* txn_;
  MDB_dbi dbi_;
  MDB_cursor* cursor_;
  DISABLE_COPY_AND_ASSIGN(SegDataLMDB);
};

template <typename Dtype>
SegDataLayer<Dtype>::SegDataLayer(const LayerParameter& param)
    : BasePrefetchingDataLayer<Dtype>(param), position_(0),
      solver_count_(1), solver_rank_(0), turn_(0), perm_seed_(0),
      crop_seed_(0), consumed_items_(0), crop_h_(0), crop_w_(0) {
  // The base class sized the prefetch queue from data_param; use ours.
  const int prefetch = param.seg_data_param().prefetch();
  HRENET_USER_CHECK(prefetch > 0, "SegData layer '" << param.name()
                    << "': prefetch must be at least 1");
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
  // The first error most users meet (a path typed wrong, a data set not
  // built yet): a UserError, so `caffe` prints this one line and exits 1
  // and pycaffe raises it as a Python exception.
  HRENET_USER_CHECK(false, "SegData layer '" << this->layer_param_.name()
      << "': LMDB folder '" << source << "' " << problem << " (cwd: "
      << fs::current_path(error).string() << "). "
      << (hint.empty() ? "Build it with tools/build_lmdb.py --out " +
          source + " (see docs/DATA.md)." : hint));
}

template <typename Dtype>
void SegDataLayer<Dtype>::ScanSource(const string& source) {
  const string& name = this->layer_param_.name();
  const string image_path = source + "/image_lmdb";
  const string label_path = source + "/label_lmdb";
  image_db_.reset(new SegDataLMDB(image_path, name));
  label_db_.reset(new SegDataLMDB(label_path, name));
  string image_key, label_key, image_value, label_value;
  Datum image, label;
  keys_.clear();
  sizes_.clear();
  for (;;) {
    const bool more_images = image_db_->Next(&image_key, &image_value);
    const bool more_labels = label_db_->Next(&label_key, &label_value);
    HRENET_USER_CHECK(more_images == more_labels, "SegData layer '" << name
        << "': " << image_path << " and " << label_path << " hold different "
        << "numbers of entries (" << (more_images ? "the labels" :
        "the images") << " end after " << keys_.size() << "); rebuild "
        << source << " with tools/build_lmdb.py");
    if (!more_images) {
      break;
    }
    const string& key = image_key;
    HRENET_USER_CHECK(key == label_key, "SegData layer '" << name
        << "': entry " << keys_.size() << " is " << key << " in "
        << image_path << " but " << label_key << " in " << label_path
        << " (a record is missing); rebuild " << source
        << " with tools/build_lmdb.py");
    HRENET_USER_CHECK(image.ParseFromString(image_value) &&
                      label.ParseFromString(label_value), "SegData layer '"
        << name << "': key " << key << " does not hold a Datum in " << source
        << " (damaged record); rebuild it with tools/build_lmdb.py");
    HRENET_USER_CHECK(image.encoded() && label.encoded(), "SegData layer '"
        << name << "': key " << key << " is not an encoded image/label Datum "
        << "in " << source << "; rebuild it with tools/build_lmdb.py");
    HRENET_USER_CHECK(image.height() == label.height() &&
                      image.width() == label.width() && image.height() > 0 &&
                      image.width() > 0, "SegData layer '" << name
        << "': size mismatch at key " << key << " in " << source
        << ": image " << image.height() << "x" << image.width() << ", label "
        << label.height() << "x" << label.width()
        << "; rebuild it with tools/build_lmdb.py");
    keys_.push_back(key);
    sizes_.push_back(std::make_pair(image.height(), image.width()));
  }
  image_db_->EndScan();
  label_db_->EndScan();
  HRENET_USER_CHECK(!keys_.empty(), "SegData layer '" << name << "': "
                    << source << " is empty; build it with "
                    << "tools/build_lmdb.py from a split with images");
}

// cpp_lint's data_layer_setup rule allows only upstream's class names here.
template <typename Dtype>
void SegDataLayer<Dtype>::DataLayerSetUp(  // NOLINT(caffe/data_layer_setup)
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const SegDataParameter& p = this->layer_param_.seg_data_param();
  const string& name = this->layer_param_.name();
  HRENET_USER_CHECK(!this->layer_param_.has_transform_param(), "SegData "
      << "layer '" << name << "': use seg_data_param (crop_h, crop_w, "
      << "mirror, mean_value, scale), not transform_param");
  HRENET_USER_CHECK(!p.source().empty(), "SegData layer '" << name
      << "': seg_data_param.source is not set; give the folder written by "
      << "tools/build_lmdb.py --out");
  const int batch_size = p.batch_size();
  HRENET_USER_CHECK(batch_size > 0, "SegData layer '" << name
      << "': batch_size must be positive");
  crop_h_ = p.crop_h();
  crop_w_ = p.crop_w();
  HRENET_USER_CHECK((crop_h_ == 0) == (crop_w_ == 0), "SegData layer '"
      << name << "': crop_h " << crop_h_ << " and crop_w " << crop_w_
      << ": set both (crop) or neither (whole images)");
  HRENET_USER_CHECK(p.ignore_label() <= 255, "SegData layer '" << name
      << "': ignore_label " << p.ignore_label() << " must fit in 8 bits");
  const int num_mean = p.mean_value_size();
  HRENET_USER_CHECK(num_mean == 0 || num_mean == 1 || num_mean == 3,
      "SegData layer '" << name << "': give 0, 1 or 3 (B, G, R) "
      << "mean_values, not " << num_mean);
  mean_.assign(3, Dtype(0));
  for (int c = 0; c < 3 && num_mean > 0; ++c) {
    mean_[c] = p.mean_value(num_mean == 1 ? 0 : c);
  }

  CheckSourceExists(p.source());
  ScanSource(p.source());
  if (crop_h_ == 0 && batch_size > 1) {
    for (int i = 1; i < keys_.size(); ++i) {
      HRENET_USER_CHECK(sizes_[i] == sizes_[0], "SegData layer '" << name
          << "': batch_size " << batch_size << " without a crop needs "
          << "images of one size, but " << keys_[0] << " is "
          << sizes_[0].first << "x" << sizes_[0].second << " and "
          << keys_[i] << " is " << sizes_[i].first << "x" << sizes_[i].second
          << "; use batch_size 1 (whole images) or set crop_h and crop_w");
    }
  }

  // Read here, on the thread that builds this rank's net (see the header).
  const bool shared = this->phase_ == TRAIN && Caffe::solver_count() > 1;
  solver_count_ = shared ? Caffe::solver_count() : 1;
  solver_rank_ = shared ? Caffe::solver_rank() : 0;
  CHECK(solver_rank_ >= 0 && solver_rank_ < solver_count_) << "SegData "
      << "layer " << name << ": solver rank " << solver_rank_ << " of "
      << solver_count_;
  SeedGenerators();
  ResetStream();

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
    perm_seed_ = p.seed() >= 0 ?
        static_cast<unsigned int>(p.seed()) : caffe_rng_rand();
    crop_seed_ = perm_seed_;
    ApplySeeds();
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
      HRENET_USER_CHECK(SharePermutationSeed(key, solver_rank_, &perm_seed),
          "SegData layer '" << this->layer_param_.name() << "': solver rank "
          << solver_rank_ << " of " << solver_count_ << " found no "
          << "permutation seed from rank 0 in this process, so the ranks "
          << "would shuffle differently; set seg_data_param.seed (any value "
          << ">= 0)");
    }
  }
  perm_seed_ = perm_seed;
  crop_seed_ = crop_seed;
  ApplySeeds();
}

template <typename Dtype>
void SegDataLayer<Dtype>::ApplySeeds() {
  perm_rng_.reset(new Caffe::RNG(perm_seed_));
  // One generator for both when N = 1 (the layer's original stream).
  crop_rng_ = solver_count_ == 1 ? perm_rng_ :
      shared_ptr<Caffe::RNG>(new Caffe::RNG(crop_seed_));
}

template <typename Dtype>
void SegDataLayer<Dtype>::ResetStream() {
  order_.resize(keys_.size());
  for (int i = 0; i < order_.size(); ++i) {
    order_[i] = i;
  }
  if (this->layer_param_.seg_data_param().shuffle()) {
    shuffle(order_.begin(), order_.end(),
            static_cast<caffe::rng_t*>(perm_rng_->generator()));
  }
  position_ = 0;
  turn_ = 0;
  consumed_items_ = 0;
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
typename SegDataLayer<Dtype>::Draws SegDataLayer<Dtype>::Draw(int index) {
  // From the sizes recorded at set-up (the decoded image is checked to have
  // them), so that RestoreState can replay the draws without decoding.
  const int out_h = crop_h_ > 0 ? crop_h_ : sizes_[index].first;
  const int out_w = crop_w_ > 0 ? crop_w_ : sizes_[index].second;
  const int rows = std::max(sizes_[index].first, out_h);
  const int cols = std::max(sizes_[index].second, out_w);
  Draws d;
  d.h_off = (rows - out_h) / 2;
  d.w_off = (cols - out_w) / 2;
  d.mirror = false;
  if (this->phase_ == TRAIN) {
    d.h_off = Rand(rows - out_h + 1);
    d.w_off = Rand(cols - out_w + 1);
    d.mirror = this->layer_param_.seg_data_param().mirror() && Rand(2);
  }
  return d;
}

template <typename Dtype>
void SegDataLayer<Dtype>::LoadPair(int index, const Draws& draws, int item,
    Batch<Dtype>* batch) {
  const SegDataParameter& p = this->layer_param_.seg_data_param();
  const string& name = this->layer_param_.name();
  const string& key = keys_[index];
  Datum image_datum, label_datum;
  HRENET_USER_CHECK(image_datum.ParseFromString(image_db_->Get(key)) &&
                    label_datum.ParseFromString(label_db_->Get(key)),
      "SegData layer '" << name << "': key " << key << " does not hold a "
      << "Datum in " << p.source() << " (damaged record); rebuild it with "
      << "tools/build_lmdb.py");
  const string& image_bytes = image_datum.data();
  const string& label_bytes = label_datum.data();
  cv::Mat image, label;
  try {
    image = cv::imdecode(cv::Mat(1, image_bytes.size(), CV_8UC1,
        const_cast<char*>(image_bytes.data())), cv::IMREAD_COLOR);
    label = cv::imdecode(cv::Mat(1, label_bytes.size(), CV_8UC1,
        const_cast<char*>(label_bytes.data())), cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    image = label = cv::Mat();
  }
  HRENET_USER_CHECK(image.data, "SegData layer '" << name << "': the image "
      << "of key " << key << " in " << p.source() << " cannot be decoded "
      << "(corrupt JPEG/PNG); rebuild with tools/build_lmdb.py, which "
      << "validates images");
  HRENET_USER_CHECK(label.data, "SegData layer '" << name << "': the label "
      << "of key " << key << " in " << p.source() << " cannot be decoded; "
      << "rebuild with tools/build_lmdb.py");
  HRENET_USER_CHECK(label.type() == CV_8UC1, "SegData layer '" << name
      << "': the label of key " << key << " in " << p.source() << " is not "
      << "a single-channel 8-bit image; rebuild with tools/build_lmdb.py");
  HRENET_USER_CHECK(image.rows == label.rows && image.cols == label.cols &&
                    image.rows == sizes_[index].first &&
                    image.cols == sizes_[index].second, "SegData layer '"
      << name << "': size mismatch at key " << key << " in " << p.source()
      << ": image " << image.rows << "x" << image.cols << ", label "
      << label.rows << "x" << label.cols << ", Datum "
      << sizes_[index].first << "x" << sizes_[index].second
      << "; rebuild with tools/build_lmdb.py");

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
  const int h_off = draws.h_off, w_off = draws.w_off;
  const bool mirror = draws.mirror;

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

// This function is called on the prefetch thread. A UserError cannot cross
// the thread: it is kept with the batch, which Forward then raises on the
// net's thread when it reaches that batch; later batches carry it too.
template <typename Dtype>
void SegDataLayer<Dtype>::load_batch(Batch<Dtype>* batch) {
  {
    boost::mutex::scoped_lock lock(error_mutex_);
    if (!first_error_.empty()) {
      errors_[batch] = first_error_;
      return;
    }
  }
  try {
    const int batch_size = this->layer_param_.seg_data_param().batch_size();
    for (int item = 0; item < batch_size; ++item) {
      const int index = NextIndex();
      const Draws draws = Draw(index);
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
      LoadPair(index, draws, item, batch);
    }
  } catch (const UserError& e) {
    boost::mutex::scoped_lock lock(error_mutex_);
    first_error_ = e.what();
    errors_[batch] = first_error_;
  }
}

template <typename Dtype>
void SegDataLayer<Dtype>::CheckBatch() {
  boost::mutex::scoped_lock lock(error_mutex_);
  typename std::map<Batch<Dtype>*, string>::iterator it =
      errors_.find(this->prefetch_current_);
  if (it != errors_.end()) {
    const string message = it->second;
    throw UserError(message);
  }
  consumed_items_ += this->layer_param_.seg_data_param().batch_size();
}

template <typename Dtype>
void SegDataLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  BasePrefetchingDataLayer<Dtype>::Forward_cpu(bottom, top);
  CheckBatch();
}

template <typename Dtype>
void SegDataLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  BasePrefetchingDataLayer<Dtype>::Forward_gpu(bottom, top);
  CheckBatch();
}

template <typename Dtype>
string SegDataLayer<Dtype>::SaveState() const {
  std::ostringstream s;
  s << "segdata1 " << perm_seed_ << " " << crop_seed_ << " "
    << consumed_items_;
  return s.str();
}

template <typename Dtype>
void SegDataLayer<Dtype>::RestoreState(const string& state) {
  const string& name = this->layer_param_.name();
  std::istringstream in(state);
  string version;
  unsigned int perm_seed = 0, crop_seed = 0;
  int64_t items = -1;
  in >> version >> perm_seed >> crop_seed >> items;
  HRENET_USER_CHECK(!in.fail() && version == "segdata1" && items >= 0,
      "SegData layer '" << name << "': the saved data state '" << state
      << "' is damaged; delete the .datastate file to resume without it");
  // Stop the prefetch thread and take back every batch it read ahead.
  this->StopInternalThread();
  Batch<Dtype>* batch;
  while (this->prefetch_full_.try_pop(&batch)) {
    this->prefetch_free_.push(batch);
  }
  if (this->prefetch_current_) {
    this->prefetch_free_.push(this->prefetch_current_);
    this->prefetch_current_ = NULL;
  }
  {
    boost::mutex::scoped_lock lock(error_mutex_);
    errors_.clear();
    first_error_.clear();
  }
  // Start the stream anew from the saved seeds and replay its draws (no
  // decoding: the draws depend only on the recorded sizes). Only rank 0
  // writes the state: with several ranks each keeps the crop seed it drew
  // at set-up (the same as before the stop when seed >= 0).
  perm_seed_ = perm_seed;
  if (solver_count_ == 1) {
    crop_seed_ = crop_seed;
  }
  ApplySeeds();
  ResetStream();
  for (int64_t i = 0; i < items; ++i) {
    Draw(NextIndex());
  }
  consumed_items_ = items;
  this->StartInternalThread();
  LOG_IF(INFO, Caffe::root_solver()) << "SegData layer " << name
      << ": resumed after " << items << " items";
}

INSTANTIATE_CLASS(SegDataLayer);
REGISTER_LAYER_CLASS(SegData);

}  // namespace caffe
#endif  // USE_OPENCV && USE_LMDB
