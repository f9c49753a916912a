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

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_scoped_env.hpp"

namespace caffe {

struct CRFParams {
  int max_iter;
  double pos_w, pos_xy_std, bi_w, bi_xy_std, bi_rgb_std;
};

// Dense mean-field with explicit kernel matrices (double precision, O(n^2)):
// K_ij = exp(-|f_i - f_j|^2 / 2) with i = j included, as on the lattice,
// symmetric normalisation D^-1/2 K D^-1/2, Potts messages, softmax.
// scores: L x HW, rgb: HW x 3 colours in 0-255 (R, G, B); returns L x HW.
static std::vector<double> BruteForceMeanField(
    const std::vector<double>& scores, const std::vector<double>& rgb,
    int num_labels, int height, int width, const CRFParams& p) {
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
      feature[1][i * 5 + 2 + c] = rgb[i * 3 + c] / p.bi_rgb_std;
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
      norm[k][i] = 1 / std::sqrt(norm[k][i]);
    }
  }
  std::vector<double> q(num_labels * hw), energy(num_labels * hw);
  for (int it = 0; it <= p.max_iter; ++it) {
    for (int i = 0; i < hw; ++i) {
      for (int l = 0; l < num_labels; ++l) {
        energy[l * hw + i] = scores[l * hw + i];
        if (it == 0) {
          continue;
        }
        for (int k = 0; k < 2; ++k) {
          double msg = 0;
          for (int j = 0; j < hw; ++j) {
            msg += kernel[k][i * hw + j] * norm[k][j] * q[l * hw + j];
          }
          energy[l * hw + i] += weight[k] * norm[k][i] * msg;
        }
      }
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
#endif

// Bad inputs die with a message naming the problem.
TYPED_TEST(DenseCRFLayerTest, TestBadInputs) {
  typedef typename TypeParam::Dtype Dtype;
  const std::string style = ::testing::FLAGS_gtest_death_test_style;
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  std::vector<double> rgb, scores;
  std::vector<int> truth;
  this->MakeScene(1, 3, 6, 8, 0.3, &rgb, &scores, &truth);
  this->SetImage(rgb, 1, 6, 8);
  this->SetScores(scores, 1, 3, 6, 8);
  {
    CRFParams p = kSmallParams;
    p.max_iter = 0;
    DenseCRFLayer<Dtype> layer(this->MakeParam(p));
    EXPECT_DEATH(layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_),
                 "max_iter is 0");
  }
  DenseCRFLayer<Dtype> layer(this->MakeParam(kSmallParams));
  this->blob_score_->Reshape(1, 3, 6, 7);
  EXPECT_DEATH(layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_),
               "differ in N, H or W");
  this->blob_score_->Reshape(1, 1, 6, 8);
  EXPECT_DEATH(layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_),
               "at least 2 labels");
  this->blob_score_->Reshape(1, 3, 6, 8);
  this->blob_image_->Reshape(1, 1, 6, 8);
  EXPECT_DEATH(layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_),
               "3-channel BGR image");
  this->SetImage(rgb, 1, 6, 8);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_DEATH(layer.Backward(this->blob_top_vec_, vector<bool>(2, true),
                              this->blob_bottom_vec_), "forward only");
  ::testing::FLAGS_gtest_death_test_style = style;
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
