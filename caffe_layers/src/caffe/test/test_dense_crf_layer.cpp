#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/dense_crf_layer.hpp"
#include "caffe/util/math_functions.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_scoped_env.hpp"
#include "caffe/test/test_user_error.hpp"

namespace caffe {

struct CRFParams {
  int max_iter;
  double pos_w, pos_xy_std, bi_w, bi_xy_std, bi_rgb_std;
};

// The layer's options, for the dense reference below.
struct CRFOptions {
  CRFOptions() : row(false), logits(false), compat(NULL), init(NULL) {}
  bool row;                            // ROW normalisation D^-1 K
  bool logits;                         // return the last pre-softmax scores
  const std::vector<double>* compat;   // L x L compatibility (NULL: Potts)
  const std::vector<double>* init;     // L x HW initial scores (NULL: scores)
};

// Dense mean-field with explicit kernel matrices (double precision, O(n^2)):
// K_ij = exp(-|f_i - f_j|^2 / 2) with i = j included, as on the lattice,
// normalised symmetrically D^-1/2 K D^-1/2 (or by rows D^-1 K), messages
// m = sum_k w_k K~_k Q, Potts (+m) or a compatibility mu (-mu m), softmax.
// scores: L x HW; colour: HW x 3 colour features before the division by
// bi_rgb_std (R, G, B in 0-255, or the data planes as given); returns L x HW.
static std::vector<double> BruteForceMeanField(
    const std::vector<double>& scores, const std::vector<double>& colour,
    int num_labels, int height, int width, const CRFParams& p,
    const CRFOptions& o = CRFOptions()) {
  const int hw = height * width;
  std::vector<double> feature[2];
  feature[0].resize(hw * 2);
  feature[1].resize(hw * 5);
  for (int i = 0; i < hw; ++i) {
    const double x = i % width, y = i / width;
    feature[0][i * 2] = x / p.pos_xy_std;
    feature[0][i * 2 + 1] = y / p.pos_xy_std;
    feature[1][i * 5] = x / p.bi_xy_std;
    feature[1][i * 5 + 1] = y / p.bi_xy_std;
    for (int c = 0; c < 3; ++c) {
      feature[1][i * 5 + 2 + c] = colour[i * 3 + c] / p.bi_rgb_std;
    }
  }
  const int dim[2] = {2, 5};
  const double weight[2] = {p.pos_w, p.bi_w};
  std::vector<double> kernel[2], norm[2];
  for (int k = 0; k < 2; ++k) {
    kernel[k].resize(hw * hw);
    norm[k].assign(hw, 0);
    for (int i = 0; i < hw; ++i) {
      for (int j = 0; j < hw; ++j) {
        double dist2 = 0;
        for (int e = 0; e < dim[k]; ++e) {
          const double t = feature[k][i * dim[k] + e] -
              feature[k][j * dim[k] + e];
          dist2 += t * t;
        }
        kernel[k][i * hw + j] = std::exp(-dist2 / 2);
        norm[k][i] += kernel[k][i * hw + j];
      }
      norm[k][i] = o.row ? 1 / norm[k][i] : 1 / std::sqrt(norm[k][i]);
    }
  }
  std::vector<double> q(num_labels * hw), energy(num_labels * hw);
  std::vector<double> message(num_labels);
  for (int it = 0; it <= p.max_iter; ++it) {
    for (int i = 0; i < hw; ++i) {
      for (int l = 0; l < num_labels; ++l) {
        message[l] = 0;
        energy[l * hw + i] = scores[l * hw + i];
        if (it == 0) {
          if (o.init) {
            energy[l * hw + i] = (*o.init)[l * hw + i];
          }
          continue;
        }
        for (int k = 0; k < 2; ++k) {
          double msg = 0;
          for (int j = 0; j < hw; ++j) {
            msg += kernel[k][i * hw + j] * (o.row ? 1 : norm[k][j]) *
                q[l * hw + j];
          }
          message[l] += weight[k] * norm[k][i] * msg;
        }
      }
      if (it == 0) {
        continue;
      }
      for (int l = 0; l < num_labels; ++l) {
        if (!o.compat) {
          energy[l * hw + i] += message[l];
          continue;
        }
        for (int m = 0; m < num_labels; ++m) {
          energy[l * hw + i] -= (*o.compat)[l * num_labels + m] * message[m];
        }
      }
    }
    if (o.logits && it == p.max_iter) {
      return energy;
    }
    for (int i = 0; i < hw; ++i) {
      double mx = energy[i], sum = 0;
      for (int l = 1; l < num_labels; ++l) {
        mx = std::max(mx, energy[l * hw + i]);
      }
      for (int l = 0; l < num_labels; ++l) {
        q[l * hw + i] = std::exp(energy[l * hw + i] - mx);
        sum += q[l * hw + i];
      }
      for (int l = 0; l < num_labels; ++l) {
        q[l * hw + i] /= sum;
      }
    }
  }
  return q;
}

template <typename TypeParam>
class DenseCRFLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  DenseCRFLayerTest()
      : blob_score_(new Blob<Dtype>()), blob_image_(new Blob<Dtype>()),
        blob_top_(new Blob<Dtype>()), rng_(1701) {
    blob_bottom_vec_.push_back(blob_score_);
    blob_bottom_vec_.push_back(blob_image_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~DenseCRFLayerTest() {
    delete blob_score_;
    delete blob_image_;
    delete blob_top_;
  }

  LayerParameter MakeParam(const CRFParams& p) {
    LayerParameter param;
    param.set_name("crf");
    param.set_phase(TEST);  // the CRF is post-processing
    DenseCRFParameter* crf = param.mutable_dense_crf_param();
    crf->set_max_iter(p.max_iter);
    crf->set_pos_w(p.pos_w);
    crf->set_pos_xy_std(p.pos_xy_std);
    crf->set_bi_w(p.bi_w);
    crf->set_bi_xy_std(p.bi_xy_std);
    crf->set_bi_rgb_std(p.bi_rgb_std);
    crf->add_mean_value(104);
    crf->add_mean_value(117);
    crf->add_mean_value(123);
    crf->set_scale(0.5);
    return param;
  }

  // Fills the image blob (N x 3 x H x W, BGR, (colour - mean) * scale as a
  // data layer with mean_value 104/117/123 and scale 0.5 produces) from
  // rgb (N x HW x 3 colours, R, G, B).
  void SetImage(const std::vector<double>& rgb, int num, int height,
      int width) {
    const int hw = height * width;
    const double mean[3] = {104, 117, 123};
    blob_image_->Reshape(num, 3, height, width);
    Dtype* data = blob_image_->mutable_cpu_data();
    for (int n = 0; n < num; ++n) {
      for (int c = 0; c < 3; ++c) {
        for (int i = 0; i < hw; ++i) {
          data[(n * 3 + c) * hw + i] =
              (rgb[(n * hw + i) * 3 + (2 - c)] - mean[c]) * 0.5;
        }
      }
    }
  }

  // Three colour regions (left, top-right, bottom-right) with colour noise,
  // or with flat_halves two flat colours (left, right); scores favour each
  // pixel's region label, except at a fraction `noise` of the pixels where
  // they favour a wrong one. rgb is N x HW x 3, scores N x L x HW.
  void MakeScene(int num, int num_labels, int height, int width,
      double noise, std::vector<double>* rgb, std::vector<double>* scores,
      std::vector<int>* truth, bool flat_halves = false) {
    const int hw = height * width;
    const double colour[3][3] = {{200, 40, 40}, {40, 180, 60},
                                 {30, 50, 210}};
    std::normal_distribution<double> gauss(0, 1);
    std::uniform_real_distribution<double> uniform(0, 1);
    rgb->resize(num * hw * 3);
    scores->resize(num * num_labels * hw);
    truth->resize(num * hw);
    for (int n = 0; n < num; ++n) {
      for (int i = 0; i < hw; ++i) {
        const int x = i % width, y = i / width;
        int region = x < width / 2 ? 0 : (y < height / 2 ? 1 : 2);
        if (flat_halves) {
          region = x < width / 2 ? 0 : 2;
        }
        const int label = flat_halves ? region / 2 : region % num_labels;
        (*truth)[n * hw + i] = label;
        for (int c = 0; c < 3; ++c) {
          (*rgb)[(n * hw + i) * 3 + c] = colour[region][c] +
              (flat_halves ? 0 : 4 * gauss(rng_));
        }
        // With probability `noise` the unary favours a wrong label.
        int favoured = label;
        if (uniform(rng_) < noise) {
          favoured = (label + 1 + static_cast<int>(uniform(rng_) *
              (num_labels - 1))) % num_labels;
        }
        for (int l = 0; l < num_labels; ++l) {
          (*scores)[(n * num_labels + l) * hw + i] =
              (l == favoured ? 1.0 : 0.0) + 0.3 * gauss(rng_);
        }
      }
    }
  }

  void SetScores(const std::vector<double>& scores, int num, int num_labels,
      int height, int width) {
    blob_score_->Reshape(num, num_labels, height, width);
    std::copy(scores.begin(), scores.end(), blob_score_->mutable_cpu_data());
  }

  // The top against a dense reference (L x HW): >= 99% of the argmax
  // labels agree, values within max_tol (mean absolute difference below
  // mean_tol); the lattice's kernel is a slightly narrower truncated
  // Gaussian, which is where the difference comes from.
  void ExpectNearReference(const std::vector<double>& exact, int num_labels,
      int hw, double max_tol, double mean_tol) {
    const Dtype* q = blob_top_->cpu_data();
    int agree = 0;
    double max_diff = 0, sum_diff = 0;
    for (int i = 0; i < hw; ++i) {
      int a = 0, b = 0;
      for (int l = 0; l < num_labels; ++l) {
        if (q[l * hw + i] > q[a * hw + i]) a = l;
        if (exact[l * hw + i] > exact[b * hw + i]) b = l;
        const double diff = std::fabs(q[l * hw + i] - exact[l * hw + i]);
        max_diff = std::max(max_diff, diff);
        sum_diff += diff;
      }
      agree += a == b;
    }
    EXPECT_GE(agree, 0.99 * hw);
    EXPECT_LT(max_diff, max_tol);
    EXPECT_LT(sum_diff / (hw * num_labels), mean_tol);
  }

  // The image blob's planes as the layer's DATA features see them (HW x 3).
  std::vector<double> DataPlanes() const {
    const int hw = blob_image_->height() * blob_image_->width();
    std::vector<double> planes(hw * 3);
    for (int i = 0; i < hw; ++i) {
      for (int c = 0; c < 3; ++c) {
        planes[i * 3 + c] = blob_image_->cpu_data()[c * hw + i];
      }
    }
    return planes;
  }

  Blob<Dtype>* const blob_score_;
  Blob<Dtype>* const blob_image_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
  std::mt19937 rng_;
};

TYPED_TEST_CASE(DenseCRFLayerTest, TestDtypesAndDevices);

static const CRFParams kSmallParams = {5, 3, 2, 5, 6, 15};

TYPED_TEST(DenseCRFLayerTest, TestSetUpAndMarginals) {
  typedef typename TypeParam::Dtype Dtype;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(2, 4, 7, 9, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 2, 7, 9);
  this->SetScores(scores, 2, 4, 7, 9);
  DenseCRFLayer<Dtype> layer(this->MakeParam(kSmallParams));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_EQ(this->blob_top_->shape(), this->blob_score_->shape());
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype* q = this->blob_top_->cpu_data();
  for (int n = 0; n < 2; ++n) {
    for (int i = 0; i < 63; ++i) {
      Dtype sum = 0;
      for (int l = 0; l < 4; ++l) {
        const Dtype v = q[(n * 4 + l) * 63 + i];
        EXPECT_GE(v, 0);
        EXPECT_LE(v, 1);
        sum += v;
      }
      EXPECT_NEAR(sum, 1, 1e-5);
    }
  }
}

// The lattice mean-field against the dense one with explicit kernels on a
// 20 x 16 image: >= 99% of the labels agree, marginals within 0.1 (mean
// absolute difference < 0.02); the lattice's kernel is a slightly narrower
// truncated Gaussian, which is where the difference comes from.
TYPED_TEST(DenseCRFLayerTest, TestAgainstBruteForceMeanField) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 16, width = 20, num_labels = 3, hw = height * width;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  DenseCRFLayer<Dtype> layer(this->MakeParam(kSmallParams));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const std::vector<double> exact = BruteForceMeanField(scores, rgb,
      num_labels, height, width, kSmallParams);
  const Dtype* q = this->blob_top_->cpu_data();
  int agree = 0;
  double max_diff = 0, sum_diff = 0;
  for (int i = 0; i < hw; ++i) {
    int a = 0, b = 0;
    for (int l = 0; l < num_labels; ++l) {
      if (q[l * hw + i] > q[a * hw + i]) a = l;
      if (exact[l * hw + i] > exact[b * hw + i]) b = l;
      const double diff = std::fabs(q[l * hw + i] - exact[l * hw + i]);
      max_diff = std::max(max_diff, diff);
      sum_diff += diff;
    }
    agree += a == b;
  }
  EXPECT_GE(agree, 0.99 * hw);
  EXPECT_LT(max_diff, 0.1);
  EXPECT_LT(sum_diff / (hw * num_labels), 0.02);
}

// Known answer: two flat colour halves, a unary that favours the wrong
// label at 30% of the pixels; the CRF labels every pixel by its region
// (noise cleaned, colour edge kept), with the default parameters.
TYPED_TEST(DenseCRFLayerTest, TestCleansNoiseKeepsEdge) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 24, width = 24, hw = height * width, num_labels = 2;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth,
                  true);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  int unary_errors = 0;
  for (int i = 0; i < hw; ++i) {
    unary_errors += (scores[hw + i] > scores[i]) != (truth[i] == 1);
  }
  EXPECT_GT(unary_errors, hw / 5);
  LayerParameter param;
  param.set_name("crf");
  // The released model's defaults; the image was made with mean
  // 104/117/123 and scale 0.5.
  param.mutable_dense_crf_param()->add_mean_value(104);
  param.mutable_dense_crf_param()->add_mean_value(117);
  param.mutable_dense_crf_param()->add_mean_value(123);
  param.mutable_dense_crf_param()->set_scale(0.5);
  DenseCRFLayer<Dtype> crf(param);
  crf.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  crf.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype* q = this->blob_top_->cpu_data();
  for (int i = 0; i < hw; ++i) {
    EXPECT_EQ(q[hw + i] > q[i], truth[i] == 1) << "pixel " << i;
  }
}

// A batch of two equals two batches of one; PROB input of softmax(scores)
// equals LOGIT input of scores.
TYPED_TEST(DenseCRFLayerTest, TestBatchAndUnaryType) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 10, width = 13, num_labels = 5, hw = height * width;
  const int count = num_labels * hw;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(2, num_labels, height, width, 0.4, &rgb, &scores, &truth);
  this->SetImage(rgb, 2, height, width);
  this->SetScores(scores, 2, num_labels, height, width);
  LayerParameter param = this->MakeParam(kSmallParams);
  DenseCRFLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const std::vector<Dtype> batch(this->blob_top_->cpu_data(),
                                 this->blob_top_->cpu_data() + 2 * count);
  for (int n = 0; n < 2; ++n) {
    this->SetImage(std::vector<double>(rgb.begin() + n * hw * 3,
        rgb.begin() + (n + 1) * hw * 3), 1, height, width);
    this->SetScores(std::vector<double>(scores.begin() + n * count,
        scores.begin() + (n + 1) * count), 1, num_labels, height, width);
    layer.Reshape(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    for (int k = 0; k < count; ++k) {
      EXPECT_NEAR(this->blob_top_->cpu_data()[k], batch[n * count + k], 1e-6);
    }
  }
  // Softmax of the last image's scores as PROB input.
  std::vector<double> prob(scores.begin() + count, scores.end());
  for (int i = 0; i < hw; ++i) {
    double sum = 0;
    for (int l = 0; l < num_labels; ++l) {
      prob[l * hw + i] = std::exp(prob[l * hw + i]);
      sum += prob[l * hw + i];
    }
    for (int l = 0; l < num_labels; ++l) {
      prob[l * hw + i] /= sum;
    }
  }
  this->SetScores(prob, 1, num_labels, height, width);
  param.mutable_dense_crf_param()->set_unary_type(
      DenseCRFParameter_UnaryType_PROB);
  DenseCRFLayer<Dtype> prob_layer(param);
  prob_layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  prob_layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int k = 0; k < count; ++k) {
    EXPECT_NEAR(this->blob_top_->cpu_data()[k], batch[count + k], 1e-4);
  }
}

// With both kernel weights 0 no message flows: Q = softmax(scores).
TYPED_TEST(DenseCRFLayerTest, TestZeroWeightsGiveSoftmax) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 5, width = 7, num_labels = 4, hw = height * width;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  CRFParams p = kSmallParams;
  p.pos_w = 0;
  p.bi_w = 0;
  DenseCRFLayer<Dtype> layer(this->MakeParam(p));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int i = 0; i < hw; ++i) {
    double sum = 0;
    for (int l = 0; l < num_labels; ++l) {
      sum += std::exp(scores[l * hw + i]);
    }
    for (int l = 0; l < num_labels; ++l) {
      EXPECT_NEAR(this->blob_top_->cpu_data()[l * hw + i],
                  std::exp(scores[l * hw + i]) / sum, 1e-5);
    }
  }
}


// ROW normalisation (D^-1 K, the authors' layer) against the dense
// reference.
TYPED_TEST(DenseCRFLayerTest, TestRowNormalisationAgainstBruteForce) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 16, width = 20, num_labels = 3, hw = height * width;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  LayerParameter param = this->MakeParam(kSmallParams);
  param.mutable_dense_crf_param()->set_normalization(
      DenseCRFParameter_Normalization_ROW);
  DenseCRFLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  CRFOptions o;
  o.row = true;
  this->ExpectNearReference(BruteForceMeanField(scores, rgb, num_labels,
      height, width, kSmallParams, o), num_labels, hw, 0.1, 0.02);
  // Row and symmetric normalisation are different operators.
  DenseCRFLayer<Dtype> symmetric(this->MakeParam(kSmallParams));
  Blob<Dtype> sym_top;
  vector<Blob<Dtype>*> sym_top_vec(1, &sym_top);
  symmetric.SetUp(this->blob_bottom_vec_, sym_top_vec);
  symmetric.Forward(this->blob_bottom_vec_, sym_top_vec);
  double diff = 0;
  for (int k = 0; k < sym_top.count(); ++k) {
    diff = std::max(diff, std::fabs(static_cast<double>(
        sym_top.cpu_data()[k] - this->blob_top_->cpu_data()[k])));
  }
  EXPECT_GT(diff, 1e-3);
}

// feature_source: DATA takes the image blob's planes as given (no mean, no
// scale, no reordering to R, G, B).
TYPED_TEST(DenseCRFLayerTest, TestDataFeaturesAgainstBruteForce) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 16, width = 20, num_labels = 3, hw = height * width;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  LayerParameter param = this->MakeParam(kSmallParams);
  param.mutable_dense_crf_param()->set_feature_source(
      DenseCRFParameter_FeatureSource_DATA);
  DenseCRFLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  this->ExpectNearReference(BruteForceMeanField(scores, this->DataPlanes(),
      num_labels, height, width, kSmallParams), num_labels, hw, 0.1, 0.02);
}

// param_blobs: weights pos_w, bi_w and the Potts compatibility -I as blobs
// give what the fixed parameters give.
TYPED_TEST(DenseCRFLayerTest, TestParamBlobsPotts) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 12, width = 14, num_labels = 4;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(2, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 2, height, width);
  this->SetScores(scores, 2, num_labels, height, width);
  DenseCRFLayer<Dtype> plain(this->MakeParam(kSmallParams));
  plain.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  plain.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const std::vector<Dtype> expected(this->blob_top_->cpu_data(),
      this->blob_top_->cpu_data() + this->blob_top_->count());
  LayerParameter param = this->MakeParam(kSmallParams);
  param.mutable_dense_crf_param()->set_param_blobs(true);
  DenseCRFLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  ASSERT_EQ(layer.blobs().size(), 3);
  EXPECT_EQ(layer.blobs()[0]->shape_string(), "1 1 1 1 (1)");
  EXPECT_EQ(layer.blobs()[0]->cpu_data()[0], Dtype(kSmallParams.pos_w));
  EXPECT_EQ(layer.blobs()[1]->cpu_data()[0], Dtype(kSmallParams.bi_w));
  EXPECT_EQ(layer.blobs()[2]->shape_string(), "1 1 4 4 (16)");
  for (int l = 0; l < 16; ++l) {
    EXPECT_EQ(layer.blobs()[2]->cpu_data()[l], l % 5 == 0 ? -1 : 0);
  }
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int k = 0; k < this->blob_top_->count(); ++k) {
    EXPECT_NEAR(this->blob_top_->cpu_data()[k], expected[k], 1e-5);
  }
}

// A general compatibility and learned weights, as a caffemodel carries
// them, against the dense reference.
TYPED_TEST(DenseCRFLayerTest, TestCompatibilityAgainstBruteForce) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 16, width = 20, num_labels = 3, hw = height * width;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  LayerParameter param = this->MakeParam(kSmallParams);
  param.mutable_dense_crf_param()->set_param_blobs(true);
  param.mutable_dense_crf_param()->set_normalization(
      DenseCRFParameter_Normalization_ROW);
  DenseCRFLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  const double compat[9] = {-1.2, 0.3, 0.1, 0.2, -0.8, 0.4, -0.1, 0.5, -1.5};
  std::vector<double> mu(compat, compat + 9);
  for (int k = 0; k < 9; ++k) {
    layer.blobs()[2]->mutable_cpu_data()[k] = compat[k];
  }
  CRFParams p = kSmallParams;
  p.pos_w = 2.5;
  p.bi_w = 4;
  layer.blobs()[0]->mutable_cpu_data()[0] = p.pos_w;
  layer.blobs()[1]->mutable_cpu_data()[0] = p.bi_w;
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  CRFOptions o;
  o.row = true;
  o.compat = &mu;
  this->ExpectNearReference(BruteForceMeanField(scores, rgb, num_labels,
      height, width, p, o), num_labels, hw, 0.1, 0.02);
}

// output: LOGITS gives the last iteration's scores: their softmax is the
// marginals, and they agree with the dense reference's scores.
TYPED_TEST(DenseCRFLayerTest, TestLogitsOutput) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 16, width = 20, num_labels = 3, hw = height * width;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  DenseCRFLayer<Dtype> plain(this->MakeParam(kSmallParams));
  plain.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  plain.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const std::vector<Dtype> marginals(this->blob_top_->cpu_data(),
      this->blob_top_->cpu_data() + this->blob_top_->count());
  LayerParameter param = this->MakeParam(kSmallParams);
  param.mutable_dense_crf_param()->set_output(
      DenseCRFParameter_Output_LOGITS);
  DenseCRFLayer<Dtype> layer(param);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype* logits = this->blob_top_->cpu_data();
  for (int i = 0; i < hw; ++i) {
    double mx = logits[i], sum = 0;
    for (int l = 1; l < num_labels; ++l) {
      mx = std::max(mx, static_cast<double>(logits[l * hw + i]));
    }
    for (int l = 0; l < num_labels; ++l) {
      sum += std::exp(logits[l * hw + i] - mx);
    }
    for (int l = 0; l < num_labels; ++l) {
      EXPECT_NEAR(std::exp(logits[l * hw + i] - mx) / sum,
                  marginals[l * hw + i], 1e-5);
    }
  }
  CRFOptions o;
  o.logits = true;
  this->ExpectNearReference(BruteForceMeanField(scores, rgb, num_labels,
      height, width, kSmallParams, o), num_labels, hw, 1.0, 0.1);
}

// Three bottoms: Q0 from bottom[1]'s softmax, the image from bottom[2].
TYPED_TEST(DenseCRFLayerTest, TestInitialScoresBottom) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 16, width = 20, num_labels = 3, hw = height * width;
  std::vector<double> rgb, scores, other;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->MakeScene(1, num_labels, height, width, 0.5, &rgb, &other, &truth);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  DenseCRFLayer<Dtype> plain(this->MakeParam(kSmallParams));
  plain.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  plain.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const std::vector<Dtype> expected(this->blob_top_->cpu_data(),
      this->blob_top_->cpu_data() + this->blob_top_->count());
  Blob<Dtype> init;
  init.CopyFrom(*this->blob_score_, false, true);
  vector<Blob<Dtype>*> bottom(3);
  bottom[0] = this->blob_score_;
  bottom[1] = &init;
  bottom[2] = this->blob_image_;
  DenseCRFLayer<Dtype> layer(this->MakeParam(kSmallParams));
  layer.SetUp(bottom, this->blob_top_vec_);
  layer.Forward(bottom, this->blob_top_vec_);
  for (int k = 0; k < this->blob_top_->count(); ++k) {
    EXPECT_EQ(this->blob_top_->cpu_data()[k], expected[k]);
  }
  std::copy(other.begin(), other.end(), init.mutable_cpu_data());
  layer.Forward(bottom, this->blob_top_vec_);
  CRFOptions o;
  o.init = &other;
  this->ExpectNearReference(BruteForceMeanField(scores, rgb, num_labels,
      height, width, kSmallParams, o), num_labels, hw, 0.1, 0.02);
}

// dense_crf_param { threads } overrides HRENET_THREADS; the result is the
// same bits.
TYPED_TEST(DenseCRFLayerTest, TestThreadsParameter) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 40, width = 50, num_labels = 3;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  ScopedEnv env("HRENET_THREADS", "1");
  std::vector<Dtype> out[2];
  for (int t = 0; t < 2; ++t) {
    LayerParameter param = this->MakeParam(kSmallParams);
    param.mutable_dense_crf_param()->set_threads(t + 1);
    DenseCRFLayer<Dtype> layer(param);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    out[t].assign(this->blob_top_->cpu_data(),
                  this->blob_top_->cpu_data() + this->blob_top_->count());
  }
  for (int k = 0; k < out[0].size(); ++k) {
    ASSERT_EQ(out[0][k], out[1][k]);
  }
}

#ifndef CPU_ONLY
// The CUDA forward agrees with the CPU forward.
TYPED_TEST(DenseCRFLayerTest, TestCPUGPUAgreement) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 30, width = 40, num_labels = 6;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(2, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 2, height, width);
  this->SetScores(scores, 2, num_labels, height, width);
  DenseCRFLayer<Dtype> layer(this->MakeParam(kSmallParams));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  Caffe::set_mode(Caffe::CPU);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const std::vector<Dtype> cpu(this->blob_top_->cpu_data(),
      this->blob_top_->cpu_data() + this->blob_top_->count());
  Caffe::set_mode(Caffe::GPU);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype* gpu = this->blob_top_->cpu_data();
  for (int k = 0; k < this->blob_top_->count(); ++k) {
    EXPECT_NEAR(gpu[k], cpu[k], 1e-4);
  }
}

// The same with the authors' options: ROW, DATA features, a general
// compatibility, LOGITS, initial scores from a second bottom.
TYPED_TEST(DenseCRFLayerTest, TestCPUGPUAgreementOptions) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 30, width = 40, num_labels = 6;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(2, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 2, height, width);
  this->SetScores(scores, 2, num_labels, height, width);
  Blob<Dtype> init;
  init.CopyFrom(*this->blob_score_, false, true);
  caffe_scal(init.count(), Dtype(0.5), init.mutable_cpu_data());
  vector<Blob<Dtype>*> bottom(3);
  bottom[0] = this->blob_score_;
  bottom[1] = &init;
  bottom[2] = this->blob_image_;
  LayerParameter param = this->MakeParam(kSmallParams);
  DenseCRFParameter* p = param.mutable_dense_crf_param();
  p->set_normalization(DenseCRFParameter_Normalization_ROW);
  p->set_feature_source(DenseCRFParameter_FeatureSource_DATA);
  p->set_output(DenseCRFParameter_Output_LOGITS);
  p->set_param_blobs(true);
  DenseCRFLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->blob_top_vec_);
  for (int k = 0; k < num_labels * num_labels; ++k) {
    layer.blobs()[2]->mutable_cpu_data()[k] = (k % 7 == 0) ? -1.0 : 0.05 * k;
  }
  Caffe::set_mode(Caffe::CPU);
  layer.Forward(bottom, this->blob_top_vec_);
  const std::vector<Dtype> cpu(this->blob_top_->cpu_data(),
      this->blob_top_->cpu_data() + this->blob_top_->count());
  Caffe::set_mode(Caffe::GPU);
  layer.Forward(bottom, this->blob_top_vec_);
  const Dtype* gpu = this->blob_top_->cpu_data();
  for (int k = 0; k < this->blob_top_->count(); ++k) {
    EXPECT_NEAR(gpu[k], cpu[k], 1e-4 * std::max(Dtype(1), std::fabs(cpu[k])));
  }
}
#endif

// Bad inputs throw a UserError naming the problem.
TYPED_TEST(DenseCRFLayerTest, TestBadInputs) {
  typedef typename TypeParam::Dtype Dtype;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, 3, 6, 8, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, 6, 8);
  this->SetScores(scores, 1, 3, 6, 8);
  {
    CRFParams p = kSmallParams;
    p.max_iter = 0;
    DenseCRFLayer<Dtype> layer(this->MakeParam(p));
    ExpectUserError([&] {
        layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      }, "max_iter is 0");
  }
  DenseCRFLayer<Dtype> layer(this->MakeParam(kSmallParams));
  this->blob_score_->Reshape(1, 3, 6, 7);
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    }, "differ in N, H or W");
  this->blob_score_->Reshape(1, 1, 6, 8);
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    }, "at least 2 labels");
  this->blob_score_->Reshape(1, 3, 6, 8);
  this->blob_image_->Reshape(1, 1, 6, 8);
  ExpectUserError([&] {
      layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    }, "3-channel BGR image");
  this->SetImage(rgb, 1, 6, 8);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  ExpectUserError([&] {
      layer.Backward(this->blob_top_vec_, vector<bool>(2, true),
                                this->blob_bottom_vec_);
    }, "forward only");
  {
    LayerParameter param = this->MakeParam(kSmallParams);
    param.mutable_dense_crf_param()->set_param_blobs(true);
    DenseCRFLayer<Dtype> blobs_layer(param);
    blobs_layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    blobs_layer.set_param_propagate_down(2, true);
    ExpectUserError([&] {
        blobs_layer.Backward(this->blob_top_vec_,
          vector<bool>(2, false), this->blob_bottom_vec_);
      }, "lr_mult: 0");
    // In a TRAIN net, param_blobs without lr_mult 0 is refused at set-up.
    param.set_phase(TRAIN);
    DenseCRFLayer<Dtype> train_layer(param);
    ExpectUserError([&] {
        train_layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      }, "give it three param");
    for (int i = 0; i < 3; ++i) {
      param.add_param()->set_lr_mult(0);
    }
    DenseCRFLayer<Dtype> frozen(param);
    frozen.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    // A model's compatibility for another number of labels.
    this->blob_score_->Reshape(1, 4, 6, 8);
    ExpectUserError([&] {
        blobs_layer.Reshape(this->blob_bottom_vec_,
          this->blob_top_vec_);
      }, "it must be L x L");
    this->blob_score_->Reshape(1, 3, 6, 8);
  }
  {
    // Blobs from a model, but param_blobs off.
    LayerParameter param = this->MakeParam(kSmallParams);
    BlobProto* blob = param.add_blobs();
    blob->mutable_shape()->add_dim(1);
    blob->add_data(3);
    DenseCRFLayer<Dtype> blobs_layer(param);
    ExpectUserError([&] {
        blobs_layer.SetUp(this->blob_bottom_vec_,
          this->blob_top_vec_);
      }, "param_blobs is false");
  }
}

// The CPU thread count does not change the result.
TYPED_TEST(DenseCRFLayerTest, TestThreadCountInvariance) {
  typedef typename TypeParam::Dtype Dtype;
  const int height = 60, width = 80, num_labels = 3;
  const int count = num_labels * height * width;
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, num_labels, height, width, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, height, width);
  this->SetScores(scores, 1, num_labels, height, width);
  std::vector<Dtype> out[2];
  for (int t = 0; t < 2; ++t) {
    ScopedEnv env("HRENET_THREADS", t == 0 ? "1" : "2");
    DenseCRFLayer<Dtype> layer(this->MakeParam(kSmallParams));
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    out[t].assign(this->blob_top_->cpu_data(),
                  this->blob_top_->cpu_data() + count);
  }
  for (int k = 0; k < count; ++k) {
    ASSERT_EQ(out[0][k], out[1][k]);
  }
}

}  // namespace caffe
