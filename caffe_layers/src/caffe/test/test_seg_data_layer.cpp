#if defined(USE_OPENCV) && defined(USE_LMDB)
#include <lmdb.h>
#include <opencv2/core/core.hpp>
#include <opencv2/imgcodecs/imgcodecs.hpp>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "boost/scoped_ptr.hpp"
#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/seg_data_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/db.hpp"
#include "caffe/util/io.hpp"
#include "caffe/util/rng.hpp"
#include "caffe/util/user_error.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_user_error.hpp"

namespace caffe {

// Test images encode their own coordinates: B = y, G = x, R = image id;
// labels are LabelAt(y, x). So every output pixel says where it came from,
// and the label beside it must be LabelAt of that place.
inline int LabelAt(int y, int x) { return (y * 7 + x) % 5; }

// OpenCV's BORDER_REFLECT_101 for one coordinate (dcb|abcd|cba).
inline int Reflect101(int p, int n) {
  if (n == 1) return 0;
  while (p < 0 || p >= n) {
    p = p < 0 ? -p : 2 * (n - 1) - p;
  }
  return p;
}

template <typename TypeParam>
class SegDataLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  SegDataLayerTest()
      : blob_top_data_(new Blob<Dtype>()),
        blob_top_label_(new Blob<Dtype>()) {}
  virtual void SetUp() {
    MakeTempDir(&source_);
    blob_top_vec_.push_back(blob_top_data_);
    blob_top_vec_.push_back(blob_top_label_);
  }
  virtual ~SegDataLayerTest() {
    delete blob_top_data_;
    delete blob_top_label_;
    // Tests that simulate solver ranks leave this thread as they found it.
    Caffe::set_solver_count(1);
    Caffe::set_solver_rank(0);
  }

  enum Damage { NONE, CORRUPT_IMAGE, SHORT_LABEL };

  // Writes source_/{image,label}_lmdb with one pair per (height, width);
  // pair `bad` gets `damage`.
  void Fill(const vector<std::pair<int, int> >& sizes, int bad = -1,
            Damage damage = NONE) {
    boost::scoped_ptr<db::DB> image_db(db::GetDB("lmdb"));
    boost::scoped_ptr<db::DB> label_db(db::GetDB("lmdb"));
    image_db->Open(source_ + "/image_lmdb", db::NEW);
    label_db->Open(source_ + "/label_lmdb", db::NEW);
    boost::scoped_ptr<db::Transaction> image_txn(image_db->NewTransaction());
    boost::scoped_ptr<db::Transaction> label_txn(label_db->NewTransaction());
    for (int i = 0; i < sizes.size(); ++i) {
      const int h = sizes[i].first, w = sizes[i].second;
      cv::Mat image(h, w, CV_8UC3), label(h, w, CV_8UC1);
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
          image.at<cv::Vec3b>(y, x) = cv::Vec3b(y, x, i);
          label.at<uchar>(y, x) = LabelAt(y, x);
        }
      }
      char key[32];
      snprintf(key, sizeof(key), "%08d_img%d", i, i);
      string image_value = Encode(image, 3);
      if (i == bad && damage == CORRUPT_IMAGE) {
        Datum datum;
        datum.ParseFromString(image_value);
        datum.set_data("not an image");
        datum.SerializeToString(&image_value);
      }
      if (i == bad && damage == SHORT_LABEL) {
        label = label.rowRange(0, h - 1).clone();
      }
      image_txn->Put(key, image_value);
      label_txn->Put(key, Encode(label, 1));
    }
    image_txn->Commit();
    label_txn->Commit();
    image_db->Close();
    label_db->Close();
  }

  string Encode(const cv::Mat& mat, int channels) {
    vector<uchar> buf;
    CHECK(cv::imencode(".png", mat, buf));
    Datum datum;
    datum.set_channels(channels);
    datum.set_height(mat.rows);
    datum.set_width(mat.cols);
    datum.set_encoded(true);
    datum.set_data(string(buf.begin(), buf.end()));
    string out;
    CHECK(datum.SerializeToString(&out));
    return out;
  }

  LayerParameter Param(Phase phase, int batch_size, int crop_h, int crop_w) {
    LayerParameter param;
    param.set_name("seg_data");
    param.set_phase(phase);
    SegDataParameter* p = param.mutable_seg_data_param();
    p->set_source(source_);
    p->set_batch_size(batch_size);
    p->set_crop_h(crop_h);
    p->set_crop_w(crop_w);
    p->set_seed(1701);
    p->set_prefetch(2);
    return param;
  }

  Dtype Data(int n, int c, int h, int w) {
    return blob_top_data_->data_at(n, c, h, w);
  }
  Dtype Label(int n, int h, int w) {
    return blob_top_label_->data_at(n, 0, h, w);
  }

  // Checks that item n is the window (y0, x0) of image `id`, flipped if
  // `mirrored`, and that every label matches its pixel.
  void ExpectWindow(int n, int id, int y0, int x0, bool mirrored) {
    const int h = blob_top_data_->height(), w = blob_top_data_->width();
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const int sx = x0 + (mirrored ? w - 1 - x : x);
        EXPECT_EQ(y0 + y, Data(n, 0, y, x));
        EXPECT_EQ(sx, Data(n, 1, y, x));
        EXPECT_EQ(id, Data(n, 2, y, x));
        EXPECT_EQ(LabelAt(y0 + y, sx), Label(n, y, x));
      }
    }
  }

  // One item as it came out of the layer: image id and crop window.
  struct Item {
    int id, y0, x0;
    bool mirrored;
    bool operator==(const Item& o) const {
      return id == o.id && y0 == o.y0 && x0 == o.x0 && mirrored == o.mirrored;
    }
  };

  // Runs `batches` forward passes of `layer` and returns its items, each
  // checked against its source window.
  vector<Item> Read(SegDataLayer<Dtype>* layer, int batches) {
    vector<Item> items;
    const int w = blob_top_data_->width();
    for (int b = 0; b < batches; ++b) {
      layer->Forward(blob_bottom_vec_, blob_top_vec_);
      for (int n = 0; n < blob_top_data_->num(); ++n) {
        Item item;
        item.id = Data(n, 2, 0, 0);
        item.y0 = Data(n, 0, 0, 0);
        item.mirrored = w > 1 && Data(n, 1, 0, 0) > Data(n, 1, 0, 1);
        item.x0 = item.mirrored ? Data(n, 1, 0, w - 1) : Data(n, 1, 0, 0);
        ExpectWindow(n, item.id, item.y0, item.x0, item.mirrored);
        items.push_back(item);
      }
    }
    return items;
  }

  // The ids that N ranks read, interleaved as the common sequence they
  // share: item j of rank r is item j N + r of the sequence.
  vector<int> Interleave(const vector<vector<Item> >& ranks) {
    vector<int> ids;
    for (int j = 0; j < ranks[0].size(); ++j) {
      for (int r = 0; r < ranks.size(); ++r) {
        ids.push_back(ranks[r][j].id);
      }
    }
    return ids;
  }

  // Checks that every whole epoch (num items) of `ids` holds each of the
  // num pairs exactly once; returns the epochs.
  vector<vector<int> > ExpectEpochs(const vector<int>& ids, int num) {
    vector<vector<int> > epochs;
    for (int e = 0; (e + 1) * num <= ids.size(); ++e) {
      epochs.push_back(vector<int>(ids.begin() + e * num,
                                   ids.begin() + (e + 1) * num));
      std::set<int> seen(epochs.back().begin(), epochs.back().end());
      EXPECT_EQ(num, seen.size()) << "epoch " << e;
      EXPECT_EQ(0, *seen.begin());
      EXPECT_EQ(num - 1, *seen.rbegin());
    }
    return epochs;
  }

  string source_;
  Blob<Dtype>* const blob_top_data_;
  Blob<Dtype>* const blob_top_label_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(SegDataLayerTest, TestDtypesAndDevices);

TYPED_TEST(SegDataLayerTest, TestSetupShapes) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(3, std::make_pair(10, 12)));
  SegDataLayer<Dtype> layer(this->Param(TRAIN, 2, 6, 5));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(3, layer.keys().size());
  EXPECT_EQ("00000000_img0", layer.keys()[0]);
  const int data_shape[] = {2, 3, 6, 5};
  const int label_shape[] = {2, 1, 6, 5};
  EXPECT_EQ(vector<int>(data_shape, data_shape + 4),
            this->blob_top_data_->shape());
  EXPECT_EQ(vector<int>(label_shape, label_shape + 4),
            this->blob_top_label_->shape());
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(vector<int>(data_shape, data_shape + 4),
            this->blob_top_data_->shape());
}

TYPED_TEST(SegDataLayerTest, TestTrainCropMirrorInSync) {
  typedef typename TypeParam::Dtype Dtype;
  const int num = 4, height = 9, width = 11, crop_h = 4, crop_w = 5;
  this->Fill(vector<std::pair<int, int> >(num,
                                          std::make_pair(height, width)));
  LayerParameter param = this->Param(TRAIN, 2, crop_h, crop_w);
  param.mutable_seg_data_param()->set_mirror(true);
  SegDataLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  std::set<std::pair<int, int> > offsets;
  int mirrored_count = 0, total = 0;
  for (int iter = 0; iter < 12; ++iter) {
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    for (int n = 0; n < 2; ++n) {
      // No shuffle: images come in key order.
      const int id = (iter * 2 + n) % num;
      const int y0 = this->Data(n, 0, 0, 0);
      const bool mirrored = this->Data(n, 1, 0, 0) > this->Data(n, 1, 0, 1);
      const int x0 = mirrored ? this->Data(n, 1, 0, crop_w - 1)
                              : this->Data(n, 1, 0, 0);
      ASSERT_GE(y0, 0);
      ASSERT_LE(y0, height - crop_h);
      ASSERT_GE(x0, 0);
      ASSERT_LE(x0, width - crop_w);
      this->ExpectWindow(n, id, y0, x0, mirrored);
      offsets.insert(std::make_pair(y0, x0));
      mirrored_count += mirrored;
      ++total;
    }
  }
  // Random offsets and flips, both ways (24 draws).
  EXPECT_GT(offsets.size(), 4);
  EXPECT_GT(mirrored_count, 0);
  EXPECT_LT(mirrored_count, total);
}

TYPED_TEST(SegDataLayerTest, TestTrainReflectionPadding) {
  typedef typename TypeParam::Dtype Dtype;
  // A 3x4 image and a 2x2 image for a 7x8 crop: the crop is all padding
  // and image, offset 0, and the 2x2 needs more padding than its size.
  vector<std::pair<int, int> > sizes;
  sizes.push_back(std::make_pair(3, 4));
  sizes.push_back(std::make_pair(2, 2));
  this->Fill(sizes);
  LayerParameter param = this->Param(TRAIN, 1, 7, 8);
  param.mutable_seg_data_param()->set_ignore_label(9);
  SegDataLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int id = 0; id < 2; ++id) {
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    const int h = sizes[id].first, w = sizes[id].second;
    const int top = (7 - h) / 2, left = (8 - w) / 2;
    for (int y = 0; y < 7; ++y) {
      for (int x = 0; x < 8; ++x) {
        const int sy = y - top, sx = x - left;
        EXPECT_EQ(Reflect101(sy, h), this->Data(0, 0, y, x));
        EXPECT_EQ(Reflect101(sx, w), this->Data(0, 1, y, x));
        EXPECT_EQ(id, this->Data(0, 2, y, x));
        const bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
        EXPECT_EQ(inside ? LabelAt(sy, sx) : 9, this->Label(0, y, x))
            << "at " << y << "," << x;
      }
    }
  }
}

TYPED_TEST(SegDataLayerTest, TestTrainPadOneDimensionThenCrop) {
  typedef typename TypeParam::Dtype Dtype;
  // Short (3 rows) but wide (20 columns) for a 5x6 crop: rows are padded
  // (1 above, 1 below), columns are cropped at a random offset.
  this->Fill(vector<std::pair<int, int> >(1, std::make_pair(3, 20)));
  SegDataLayer<Dtype> layer(this->Param(TRAIN, 1, 5, 6));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  std::set<int> x_offsets;
  for (int iter = 0; iter < 8; ++iter) {
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    const int x0 = this->Data(0, 1, 0, 0);
    x_offsets.insert(x0);
    for (int y = 0; y < 5; ++y) {
      for (int x = 0; x < 6; ++x) {
        EXPECT_EQ(Reflect101(y - 1, 3), this->Data(0, 0, y, x));
        EXPECT_EQ(x0 + x, this->Data(0, 1, y, x));
        const bool inside = y >= 1 && y < 4;
        EXPECT_EQ(inside ? LabelAt(y - 1, x0 + x) : 255,
                  this->Label(0, y, x));
      }
    }
  }
  EXPECT_GT(x_offsets.size(), 1);
}

TYPED_TEST(SegDataLayerTest, TestTestWholeImageMeanScale) {
  typedef typename TypeParam::Dtype Dtype;
  vector<std::pair<int, int> > sizes;
  sizes.push_back(std::make_pair(5, 7));
  sizes.push_back(std::make_pair(8, 3));
  this->Fill(sizes);
  LayerParameter param = this->Param(TEST, 1, 0, 0);
  SegDataParameter* p = param.mutable_seg_data_param();
  p->set_mirror(true);  // never applied in TEST
  p->add_mean_value(1);
  p->add_mean_value(2);
  p->add_mean_value(3);
  p->set_scale(0.5);
  SegDataLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int iter = 0; iter < 4; ++iter) {
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    const int id = iter % 2, h = sizes[id].first, w = sizes[id].second;
    ASSERT_EQ(h, this->blob_top_data_->height());
    ASSERT_EQ(w, this->blob_top_data_->width());
    ASSERT_EQ(h, this->blob_top_label_->height());
    ASSERT_EQ(w, this->blob_top_label_->width());
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        EXPECT_EQ((y - 1) * Dtype(0.5), this->Data(0, 0, y, x));
        EXPECT_EQ((x - 2) * Dtype(0.5), this->Data(0, 1, y, x));
        EXPECT_EQ((id - 3) * Dtype(0.5), this->Data(0, 2, y, x));
        EXPECT_EQ(LabelAt(y, x), this->Label(0, y, x));
      }
    }
  }
}

TYPED_TEST(SegDataLayerTest, TestTestCentreCrop) {
  typedef typename TypeParam::Dtype Dtype;
  vector<std::pair<int, int> > sizes;
  sizes.push_back(std::make_pair(9, 12));  // larger: centre crop
  sizes.push_back(std::make_pair(4, 3));   // smaller: padded, offset 0
  this->Fill(sizes);
  LayerParameter param = this->Param(TEST, 1, 5, 6);
  param.mutable_seg_data_param()->set_mirror(true);
  SegDataLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int repeat = 0; repeat < 2; ++repeat) {
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    this->ExpectWindow(0, 0, (9 - 5) / 2, (12 - 6) / 2, false);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    for (int y = 0; y < 5; ++y) {
      for (int x = 0; x < 6; ++x) {
        // pad rows 0 above / 1 below, columns 1 left / 2 right
        const int sy = y, sx = x - 1;
        EXPECT_EQ(Reflect101(sy, 4), this->Data(0, 0, y, x));
        EXPECT_EQ(Reflect101(sx, 3), this->Data(0, 1, y, x));
        const bool inside = sy < 4 && sx >= 0 && sx < 3;
        EXPECT_EQ(inside ? LabelAt(sy, sx) : 255, this->Label(0, y, x));
      }
    }
  }
}

TYPED_TEST(SegDataLayerTest, TestWholeImageBatchOfOneSize) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(3, std::make_pair(4, 6)));
  SegDataLayer<Dtype> layer(this->Param(TEST, 2, 0, 0));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  ASSERT_EQ(2, this->blob_top_data_->num());
  this->ExpectWindow(0, 0, 0, 0, false);
  this->ExpectWindow(1, 1, 0, 0, false);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  this->ExpectWindow(0, 2, 0, 0, false);  // wraps around
  this->ExpectWindow(1, 0, 0, 0, false);
}

TYPED_TEST(SegDataLayerTest, TestShuffleDeterministicPerEpoch) {
  typedef typename TypeParam::Dtype Dtype;
  const int num = 8, epochs = 3;
  this->Fill(vector<std::pair<int, int> >(num, std::make_pair(3, 4)));
  vector<vector<int> > runs;
  for (int run = 0; run < 3; ++run) {
    LayerParameter param = this->Param(TEST, 1, 0, 0);
    param.mutable_seg_data_param()->set_shuffle(true);
    param.mutable_seg_data_param()->set_seed(run < 2 ? 42 : 43);
    SegDataLayer<Dtype> layer(param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    vector<int> ids;
    for (int i = 0; i < num * epochs; ++i) {
      layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
      ids.push_back(this->Data(0, 2, 0, 0));
    }
    runs.push_back(ids);
  }
  EXPECT_EQ(runs[0], runs[1]);  // same seed, same order
  EXPECT_NE(runs[0], runs[2]);  // another seed, another order
  vector<vector<int> > epoch(epochs);
  for (int e = 0; e < epochs; ++e) {
    epoch[e].assign(runs[0].begin() + e * num,
                    runs[0].begin() + (e + 1) * num);
    // every epoch visits every pair exactly once
    EXPECT_EQ(num, std::set<int>(epoch[e].begin(), epoch[e].end()).size());
  }
  // and each epoch is a fresh permutation (8! orders: equal is a bug)
  EXPECT_NE(epoch[0], epoch[1]);
  EXPECT_NE(epoch[1], epoch[2]);
}

TYPED_TEST(SegDataLayerTest, TestSameSeedSameCrops) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(2, std::make_pair(12, 12)));
  vector<vector<Dtype> > runs(2);
  for (int run = 0; run < 2; ++run) {
    LayerParameter param = this->Param(TRAIN, 2, 5, 5);
    param.mutable_seg_data_param()->set_mirror(true);
    param.mutable_seg_data_param()->set_seed(7);
    SegDataLayer<Dtype> layer(param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    for (int iter = 0; iter < 4; ++iter) {
      layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
      const Dtype* d = this->blob_top_data_->cpu_data();
      runs[run].insert(runs[run].end(), d,
                       d + this->blob_top_data_->count());
    }
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TYPED_TEST(SegDataLayerTest, TestDataOnlyTop) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(2, std::make_pair(4, 5)));
  SegDataLayer<Dtype> layer(this->Param(TEST, 1, 0, 0));
  vector<Blob<Dtype>*> top(1, this->blob_top_data_);
  layer.SetUp(this->blob_bottom_vec_, top);
  layer.Forward(this->blob_bottom_vec_, top);
  EXPECT_EQ(4, this->blob_top_data_->height());
  EXPECT_EQ(3, this->Data(0, 0, 3, 4));
  EXPECT_EQ(4, this->Data(0, 1, 3, 4));
}

TYPED_TEST(SegDataLayerTest, TestMixedSizesNeedBatchOne) {
  typedef typename TypeParam::Dtype Dtype;
  vector<std::pair<int, int> > sizes;
  sizes.push_back(std::make_pair(4, 6));
  sizes.push_back(std::make_pair(5, 6));
  this->Fill(sizes);
  SegDataLayer<Dtype> layer(this->Param(TEST, 2, 0, 0));
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_); },
      "SegData layer 'seg_data': batch_size 2 without a crop needs "
      "images of one size, but 00000000_img0 is 4x6 and "
      "00000001_img1 is 5x6");
}

// A missing source is the first error most users meet: a UserError (one
// line from `caffe`, a Python exception from pycaffe), never an exit.
TYPED_TEST(SegDataLayerTest, TestMissingSource) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param(TRAIN, 1, 4, 4);
  param.mutable_seg_data_param()->set_source(this->source_ + "/nothing");
  SegDataLayer<Dtype> layer(param);
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_); },
      "^SegData layer 'seg_data': LMDB folder '.*/nothing' does not "
      "exist \\(cwd: /.*\\)\\. Build it with tools/build_lmdb.py "
      "--out .*/nothing \\(see docs/DATA.md\\)\\.$");
}

TYPED_TEST(SegDataLayerTest, TestIncompleteSource) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(1, std::make_pair(4, 6)));
  CHECK_EQ(0, std::remove((this->source_ + "/label_lmdb/data.mdb").c_str()));
  LayerParameter param = this->Param(TRAIN, 1, 4, 4);
  param.mutable_seg_data_param()->set_missing_hint("Run make data.");
  SegDataLayer<Dtype> layer(param);
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_); },
      "SegData layer 'seg_data': LMDB folder '.*' has no "
      "label_lmdb/data.mdb, so it is not a folder written by "
      "tools/build_lmdb.py --out \\(cwd: .*\\)\\. Run make data\\.$");
}

TYPED_TEST(SegDataLayerTest, TestSourceIsAFile) {
  typedef typename TypeParam::Dtype Dtype;
  const string file = this->source_ + "/a_file";
  FILE* f = fopen(file.c_str(), "w");
  CHECK(f);
  fclose(f);
  LayerParameter param = this->Param(TEST, 1, 0, 0);
  param.mutable_seg_data_param()->set_source(file);
  SegDataLayer<Dtype> layer(param);
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_); },
      "LMDB folder '.*/a_file' is not a folder");
}

// A data.mdb cut in half would be mapped and read past its end (SIGBUS):
// refused at set-up with the file named.
TYPED_TEST(SegDataLayerTest, TestTruncatedLMDB) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(40, std::make_pair(30, 40)));
  const string data = this->source_ + "/image_lmdb/data.mdb";
  FILE* f = fopen(data.c_str(), "rb");
  CHECK(f);
  fseek(f, 0, SEEK_END);
  const long size = ftell(f);  // NOLINT(runtime/int)
  fclose(f);
  ASSERT_EQ(0, truncate(data.c_str(), size / 2));
  SegDataLayer<Dtype> layer(this->Param(TRAIN, 1, 4, 4));
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_); },
      "SegData layer 'seg_data': LMDB .*/image_lmdb: .*/image_lmdb/data.mdb "
      "is truncated \\([0-9]+ bytes, its pages need [0-9]+\\); rebuild it "
      "with tools/build_lmdb.py");
}

// One label record deleted: the keys no longer pair up; the message names
// the entry and both keys.
TYPED_TEST(SegDataLayerTest, TestMissingLabelRecord) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(3, std::make_pair(4, 6)));
  MDB_env* env;
  MDB_txn* txn;
  MDB_dbi dbi;
  ASSERT_EQ(MDB_SUCCESS, mdb_env_create(&env));
  ASSERT_EQ(MDB_SUCCESS, mdb_env_open(env, (this->source_ +
      "/label_lmdb").c_str(), 0, 0664));
  ASSERT_EQ(MDB_SUCCESS, mdb_txn_begin(env, NULL, 0, &txn));
  ASSERT_EQ(MDB_SUCCESS, mdb_dbi_open(txn, NULL, 0, &dbi));
  string key = "00000001_img1";
  MDB_val k;
  k.mv_size = key.size();
  k.mv_data = &key[0];
  ASSERT_EQ(MDB_SUCCESS, mdb_del(txn, dbi, &k, NULL));
  ASSERT_EQ(MDB_SUCCESS, mdb_txn_commit(txn));
  mdb_env_close(env);
  SegDataLayer<Dtype> layer(this->Param(TRAIN, 1, 4, 4));
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_); },
      "SegData layer 'seg_data': entry 1 is 00000001_img1 in .*/image_lmdb "
      "but 00000002_img2 in .*/label_lmdb \\(a record is missing\\)");
}

TYPED_TEST(SegDataLayerTest, TestOneSolverDrawsAsBefore) {
  typedef typename TypeParam::Dtype Dtype;
  // One solver: permutations, offsets and flips come from one generator
  // seeded with `seed`, in the order the layer always drew them (initial
  // permutation; per item y, x, flip; a new permutation per epoch).
  const int num = 5, height = 6, width = 8, crop = 3, seed = 9;
  this->Fill(vector<std::pair<int, int> >(num,
                                          std::make_pair(height, width)));
  LayerParameter param = this->Param(TRAIN, 2, crop, crop);
  param.mutable_seg_data_param()->set_mirror(true);
  param.mutable_seg_data_param()->set_shuffle(true);
  param.mutable_seg_data_param()->set_seed(seed);
  SegDataLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  const vector<typename TestFixture::Item> got = this->Read(&layer, 9);
  caffe::rng_t rng(seed);
  vector<int> order;
  for (int i = 0; i < num; ++i) {
    order.push_back(i);
  }
  shuffle(order.begin(), order.end(), &rng);
  int position = 0;
  for (int i = 0; i < got.size(); ++i) {
    if (position == num) {
      position = 0;
      shuffle(order.begin(), order.end(), &rng);
    }
    typename TestFixture::Item want;
    want.id = order[position++];
    want.y0 = rng() % (height - crop + 1);
    want.x0 = rng() % (width - crop + 1);
    want.mirrored = rng() % 2;
    EXPECT_TRUE(want == got[i]) << "item " << i;
  }
}

TYPED_TEST(SegDataLayerTest, TestSolverRanksShareEachEpoch) {
  typedef typename TypeParam::Dtype Dtype;
  // 7 pairs: not a multiple of 2 or 3, so epochs end inside rounds.
  const int num = 7, batches = 14;
  this->Fill(vector<std::pair<int, int> >(num, std::make_pair(6, 8)));
  // The common sequence: what one reader of the same seed reads without
  // crops (TEST draws nothing but the permutations).
  LayerParameter test_param = this->Param(TEST, 1, 0, 0);
  test_param.mutable_seg_data_param()->set_shuffle(true);
  test_param.mutable_seg_data_param()->set_seed(42);
  SegDataLayer<Dtype> reference(test_param);
  reference.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  vector<int> common;
  for (int i = 0; i < 3 * 2 * batches; ++i) {
    reference.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    common.push_back(this->Data(0, 2, 0, 0));
  }
  for (int count = 2; count <= 3; ++count) {
    Caffe::set_solver_count(count);
    vector<shared_ptr<SegDataLayer<Dtype> > > layers;
    for (int rank = 0; rank < count; ++rank) {
      Caffe::set_solver_rank(rank);
      LayerParameter param = this->Param(TRAIN, 2, 3, 3);
      param.mutable_seg_data_param()->set_mirror(true);
      param.mutable_seg_data_param()->set_shuffle(true);
      param.mutable_seg_data_param()->set_seed(42);
      layers.push_back(shared_ptr<SegDataLayer<Dtype> >(
          new SegDataLayer<Dtype>(param)));
      layers.back()->SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    }
    Caffe::set_solver_rank(0);
    vector<vector<typename TestFixture::Item> > items;
    for (int rank = 0; rank < count; ++rank) {
      items.push_back(this->Read(layers[rank].get(), batches));
    }
    const vector<int> ids = this->Interleave(items);
    ASSERT_EQ(count * 2 * batches, ids.size());
    // Every epoch once across the ranks (so the ranks are disjoint within
    // an epoch), in the common sequence.
    const vector<vector<int> > epochs = this->ExpectEpochs(ids, num);
    EXPECT_EQ(count * 2 * batches / num, epochs.size());
    EXPECT_EQ(vector<int>(common.begin(), common.begin() + ids.size()), ids)
        << count << " ranks";
    EXPECT_NE(epochs[0], epochs[1]);  // still reshuffled every epoch
    // Crops and flips differ between ranks.
    vector<typename TestFixture::Item> a = items[0], b = items[1];
    for (int i = 0; i < a.size(); ++i) {
      a[i].id = b[i].id = 0;
    }
    EXPECT_FALSE(a == b);
  }
}

TYPED_TEST(SegDataLayerTest, TestSolverRanksWithoutShuffle) {
  typedef typename TypeParam::Dtype Dtype;
  const int num = 5;
  this->Fill(vector<std::pair<int, int> >(num, std::make_pair(3, 4)));
  Caffe::set_solver_count(2);
  vector<vector<typename TestFixture::Item> > items;
  for (int rank = 0; rank < 2; ++rank) {
    Caffe::set_solver_rank(rank);
    SegDataLayer<Dtype> layer(this->Param(TRAIN, 1, 0, 0));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    items.push_back(this->Read(&layer, 5));
  }
  // Key order, dealt alternately across epoch ends: 0 2 4 1 3 / 1 3 0 2 4.
  const int want[2][5] = {{0, 2, 4, 1, 3}, {1, 3, 0, 2, 4}};
  for (int rank = 0; rank < 2; ++rank) {
    for (int j = 0; j < 5; ++j) {
      EXPECT_EQ(want[rank][j], items[rank][j].id) << rank << ", " << j;
    }
  }
  this->ExpectEpochs(this->Interleave(items), num);
}

TYPED_TEST(SegDataLayerTest, TestSolverRanksDefaultSeedShared) {
  typedef typename TypeParam::Dtype Dtype;
  // seed -1: rank 0 draws the permutation seed, rank 1 (set up after it,
  // as caffe train does) takes it, so the epochs are still shared.
  const int num = 6;
  this->Fill(vector<std::pair<int, int> >(num, std::make_pair(3, 4)));
  Caffe::set_solver_count(2);
  vector<shared_ptr<SegDataLayer<Dtype> > > layers;
  for (int rank = 0; rank < 2; ++rank) {
    Caffe::set_solver_rank(rank);
    LayerParameter param = this->Param(TRAIN, 3, 0, 0);
    param.mutable_seg_data_param()->set_shuffle(true);
    param.mutable_seg_data_param()->set_seed(-1);
    layers.push_back(shared_ptr<SegDataLayer<Dtype> >(
        new SegDataLayer<Dtype>(param)));
    layers.back()->SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  }
  vector<vector<typename TestFixture::Item> > items;
  for (int rank = 0; rank < 2; ++rank) {
    items.push_back(this->Read(layers[rank].get(), 8));
  }
  EXPECT_EQ(8, this->ExpectEpochs(this->Interleave(items), num).size());
}

TYPED_TEST(SegDataLayerTest, TestSolverRankWithoutSeed) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(2, std::make_pair(3, 4)));
  LayerParameter param = this->Param(TRAIN, 1, 0, 0);
  param.set_name("lonely");
  param.mutable_seg_data_param()->set_shuffle(true);
  param.mutable_seg_data_param()->set_seed(-1);
  Caffe::set_solver_count(2);
  Caffe::set_solver_rank(1);
  SegDataLayer<Dtype> layer(param);
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_); },
      "SegData layer 'lonely': solver rank 1 of 2 found no "
      "permutation seed from rank 0 in this process");
}

TYPED_TEST(SegDataLayerTest, TestTestPhaseReadsEveryRecordOnAnyRank) {
  typedef typename TypeParam::Dtype Dtype;
  const int num = 3;
  this->Fill(vector<std::pair<int, int> >(num, std::make_pair(3, 4)));
  Caffe::set_solver_count(2);
  Caffe::set_solver_rank(1);
  SegDataLayer<Dtype> layer(this->Param(TEST, 1, 0, 0));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  const vector<typename TestFixture::Item> items = this->Read(&layer, 6);
  for (int i = 0; i < items.size(); ++i) {
    EXPECT_EQ(i % num, items[i].id);
  }
}

TYPED_TEST(SegDataLayerTest, TestSizeMismatch) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(2, std::make_pair(4, 6)), 1,
             TestFixture::SHORT_LABEL);
  SegDataLayer<Dtype> layer(this->Param(TRAIN, 1, 2, 2));
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_); },
      "SegData layer 'seg_data': size mismatch at key 00000001_img1 in .*: "
      "image 4x6, label 3x6");
}

// Decoding happens in the prefetch thread: the error travels with its
// batch and Forward raises it on this thread when that batch comes (the
// first batch is good), and again for every later batch.
TYPED_TEST(SegDataLayerTest, TestCorruptImage) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(vector<std::pair<int, int> >(2, std::make_pair(4, 6)), 1,
             TestFixture::CORRUPT_IMAGE);
  SegDataLayer<Dtype> layer(this->Param(TEST, 1, 2, 2));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int i = 0; i < 2; ++i) {
    ExpectUserError([&] {
        layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_); },
        "the image of key 00000001_img1 in .* cannot be decoded");
  }
}

// SaveState after k batches, RestoreState in a fresh layer: the next
// batches are exactly those of the uninterrupted layer (shuffled epochs,
// random crops and flips), also when the seeds came from Caffe's RNG.
TYPED_TEST(SegDataLayerTest, TestSaveRestoreState) {
  typedef typename TypeParam::Dtype Dtype;
  typedef typename TestFixture::Item Item;
  vector<std::pair<int, int> > sizes;
  for (int i = 0; i < 5; ++i) {
    sizes.push_back(std::make_pair(5 + i % 3, 7 + i % 2));
  }
  this->Fill(sizes);
  for (int seeded = 0; seeded < 2; ++seeded) {
    LayerParameter param = this->Param(TRAIN, 2, 4, 5);
    param.mutable_seg_data_param()->set_shuffle(true);
    param.mutable_seg_data_param()->set_mirror(true);
    param.mutable_seg_data_param()->set_seed(seeded ? 5 : -1);
    Caffe::set_random_seed(100);
    SegDataLayer<Dtype> whole(param);
    whole.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    const vector<Item> first = this->Read(&whole, 4);
    const string state = whole.SaveState();
    const vector<Item> rest = this->Read(&whole, 6);
    EXPECT_EQ("segdata1", state.substr(0, 8));
    Caffe::set_random_seed(200);  // other seeds at set-up
    SegDataLayer<Dtype> resumed(param);
    resumed.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    this->Read(&resumed, 1);  // some batches read before the restore
    resumed.RestoreState(state);
    const vector<Item> again = this->Read(&resumed, 6);
    ASSERT_EQ(rest.size(), again.size());
    for (int i = 0; i < rest.size(); ++i) {
      EXPECT_TRUE(rest[i] == again[i]) << "item " << i << " seeded "
                                       << seeded;
    }
    EXPECT_EQ(whole.SaveState(), resumed.SaveState());
    EXPECT_EQ(first.size(), 8);
  }
  SegDataLayer<Dtype> layer(this->Param(TRAIN, 1, 2, 2));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  ExpectUserError([&] { layer.RestoreState("segdata1 3 x"); },
                  "the saved data state 'segdata1 3 x' is damaged");
}

}  // namespace caffe
#endif  // USE_OPENCV && USE_LMDB
