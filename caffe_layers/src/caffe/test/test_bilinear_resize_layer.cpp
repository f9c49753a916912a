#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/bilinear_resize_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_user_error.hpp"

namespace caffe {

// Align-corners bilinear resize of one plane, written from the definition
// (double precision): out(y, x) = sum of the four neighbours of
// ((H-1) y / (H'-1), (W-1) x / (W'-1)) with bilinear weights.
static std::vector<double> ReferenceResize(const std::vector<double>& in,
    int in_h, int in_w, int out_h, int out_w) {
  std::vector<double> out(out_h * out_w);
  for (int y = 0; y < out_h; ++y) {
    const double sy = out_h > 1 ? (in_h - 1.0) * y / (out_h - 1.0) : 0.0;
    for (int x = 0; x < out_w; ++x) {
      const double sx = out_w > 1 ? (in_w - 1.0) * x / (out_w - 1.0) : 0.0;
      double v = 0;
      for (int i = 0; i < in_h; ++i) {
        for (int j = 0; j < in_w; ++j) {
          // The hat function max(0, 1 - |s - i|) is the bilinear weight.
          const double wy = std::max(0.0, 1.0 - std::fabs(sy - i));
          const double wx = std::max(0.0, 1.0 - std::fabs(sx - j));
          v += wy * wx * in[i * in_w + j];
        }
      }
      out[y * out_w + x] = v;
    }
  }
  return out;
}

template <typename TypeParam>
class BilinearResizeLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  BilinearResizeLayerTest()
      : blob_bottom_(new Blob<Dtype>(2, 3, 4, 5)),
        blob_size_(new Blob<Dtype>(1, 1, 7, 9)),
        blob_top_(new Blob<Dtype>()) {
    FillerParameter filler_param;
    filler_param.set_min(-1);
    filler_param.set_max(1);
    UniformFiller<Dtype> filler(filler_param);
    filler.Fill(blob_bottom_);
    blob_bottom_vec_.push_back(blob_bottom_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~BilinearResizeLayerTest() {
    delete blob_bottom_;
    delete blob_size_;
    delete blob_top_;
  }

  // Compares the top with ReferenceResize plane by plane.
  void CheckAgainstReference(double tolerance) {
    const int planes = blob_bottom_->shape(0) * blob_bottom_->shape(1);
    const int in_h = blob_bottom_->shape(2), in_w = blob_bottom_->shape(3);
    const int out_h = blob_top_->shape(2), out_w = blob_top_->shape(3);
    for (int p = 0; p < planes; ++p) {
      std::vector<double> in(blob_bottom_->cpu_data() + p * in_h * in_w,
          blob_bottom_->cpu_data() + (p + 1) * in_h * in_w);
      const std::vector<double> ref = ReferenceResize(in, in_h, in_w, out_h,
          out_w);
      const Dtype* top = blob_top_->cpu_data() + p * out_h * out_w;
      for (int k = 0; k < out_h * out_w; ++k) {
        EXPECT_NEAR(top[k], ref[k], tolerance) << "plane " << p << " at "
            << k;
      }
    }
  }

  Blob<Dtype>* const blob_bottom_;
  Blob<Dtype>* const blob_size_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(BilinearResizeLayerTest, TestDtypesAndDevices);

TYPED_TEST(BilinearResizeLayerTest, TestShapes) {
  typedef typename TypeParam::Dtype Dtype;
  {
    LayerParameter lp;
    BilinearResizeLayer<Dtype> layer(lp);
    this->blob_bottom_vec_.push_back(this->blob_size_);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_EQ(this->blob_top_->shape_string(), "2 3 7 9 (378)");
    this->blob_bottom_vec_.pop_back();
  }
  {
    LayerParameter lp;
    lp.mutable_bilinear_resize_param()->set_zoom_factor(8);
    BilinearResizeLayer<Dtype> layer(lp);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_EQ(this->blob_top_->shape_string(), "2 3 32 40 (7680)");
  }
  {
    LayerParameter lp;
    lp.mutable_bilinear_resize_param()->set_height(3);
    lp.mutable_bilinear_resize_param()->set_width(2);
    BilinearResizeLayer<Dtype> layer(lp);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_EQ(this->blob_top_->shape_string(), "2 3 3 2 (36)");
  }
}

// A 2 x 2 input zoomed to 3 x 3 by hand: corners kept, edges the mean of
// two, the centre the mean of four.
TYPED_TEST(BilinearResizeLayerTest, TestForwardByHand) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(1, 1, 2, 2);
  Dtype* in = this->blob_bottom_->mutable_cpu_data();
  in[0] = 1; in[1] = 2; in[2] = 3; in[3] = 5;
  LayerParameter lp;
  lp.mutable_bilinear_resize_param()->set_height(3);
  lp.mutable_bilinear_resize_param()->set_width(3);
  BilinearResizeLayer<Dtype> layer(lp);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  const Dtype expected[9] = {1, 1.5, 2, 2, 2.75, 3.5, 3, 4, 5};
  for (int k = 0; k < 9; ++k) {
    EXPECT_NEAR(this->blob_top_->cpu_data()[k], expected[k], 1e-6) << k;
  }
}

// Up, down, odd sizes, one row/column, the identity: against the reference.
TYPED_TEST(BilinearResizeLayerTest, TestForwardAgainstReference) {
  typedef typename TypeParam::Dtype Dtype;
  const int sizes[][4] = {{4, 5, 7, 9}, {4, 5, 32, 40}, {9, 7, 4, 3},
                          {4, 5, 1, 1}, {1, 1, 3, 4}, {1, 6, 5, 11},
                          {4, 5, 4, 5}, {47, 63, 375, 500}};
  for (int s = 0; s < 8; ++s) {
    this->blob_bottom_->Reshape(1, 2, sizes[s][0], sizes[s][1]);
    FillerParameter filler_param;
    filler_param.set_min(-3);
    filler_param.set_max(3);
    UniformFiller<Dtype> filler(filler_param);
    filler.Fill(this->blob_bottom_);
    LayerParameter lp;
    lp.mutable_bilinear_resize_param()->set_height(sizes[s][2]);
    lp.mutable_bilinear_resize_param()->set_width(sizes[s][3]);
    BilinearResizeLayer<Dtype> layer(lp);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    if (s == 7) {
      // Large sizes: only spot-check the corners (the reference is slow).
      const int h = 375, w = 500, ih = 47, iw = 63;
      const Dtype* top = this->blob_top_->cpu_data();
      const Dtype* in = this->blob_bottom_->cpu_data();
      EXPECT_EQ(top[0], in[0]);
      EXPECT_NEAR(top[w - 1], in[iw - 1], 1e-6);
      EXPECT_NEAR(top[(h - 1) * w], in[(ih - 1) * iw], 1e-6);
      EXPECT_NEAR(top[h * w - 1], in[ih * iw - 1], 1e-6);
      continue;
    }
    this->CheckAgainstReference(1e-5);
    if (sizes[s][0] == sizes[s][2] && sizes[s][1] == sizes[s][3]) {
      for (int k = 0; k < this->blob_top_->count(); ++k) {
        EXPECT_EQ(this->blob_top_->cpu_data()[k],
                  this->blob_bottom_->cpu_data()[k]);
      }
    }
  }
}

// A linear ramp is reproduced exactly, up to the image border (a bilinear
// Deconvolution + Crop would attenuate the border pixels).
TYPED_TEST(BilinearResizeLayerTest, TestRampKeepsBorder) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(1, 1, 5, 6);
  Dtype* in = this->blob_bottom_->mutable_cpu_data();
  for (int y = 0; y < 5; ++y) {
    for (int x = 0; x < 6; ++x) {
      in[y * 6 + x] = 2 * y + 3 * x + 1;
    }
  }
  LayerParameter lp;
  lp.mutable_bilinear_resize_param()->set_height(33);
  lp.mutable_bilinear_resize_param()->set_width(41);
  BilinearResizeLayer<Dtype> layer(lp);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int y = 0; y < 33; ++y) {
    for (int x = 0; x < 41; ++x) {
      const double expected = 2 * (4.0 * y / 32) + 3 * (5.0 * x / 40) + 1;
      EXPECT_NEAR(this->blob_top_->cpu_data()[y * 41 + x], expected, 1e-4);
    }
  }
}

TYPED_TEST(BilinearResizeLayerTest, TestGradientZoom) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(2, 2, 3, 4);
  FillerParameter filler_param;
  UniformFiller<Dtype> filler(filler_param);
  filler.Fill(this->blob_bottom_);
  LayerParameter lp;
  lp.mutable_bilinear_resize_param()->set_zoom_factor(3);
  BilinearResizeLayer<Dtype> layer(lp);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_);
}

TYPED_TEST(BilinearResizeLayerTest, TestGradientReferenceBottom) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(1, 2, 4, 5);
  FillerParameter filler_param;
  UniformFiller<Dtype> filler(filler_param);
  filler.Fill(this->blob_bottom_);
  this->blob_size_->Reshape(1, 1, 7, 3);  // up in height, down in width
  this->blob_bottom_vec_.push_back(this->blob_size_);
  LayerParameter lp;
  BilinearResizeLayer<Dtype> layer(lp);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_, 0);
}

TYPED_TEST(BilinearResizeLayerTest, TestGradientToOnePixel) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_->Reshape(1, 1, 3, 3);
  FillerParameter filler_param;
  UniformFiller<Dtype> filler(filler_param);
  filler.Fill(this->blob_bottom_);
  LayerParameter lp;
  lp.mutable_bilinear_resize_param()->set_height(1);
  lp.mutable_bilinear_resize_param()->set_width(5);
  BilinearResizeLayer<Dtype> layer(lp);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
      this->blob_top_vec_);
}

// The size bottom gets an exactly zero gradient when one is asked for.
TYPED_TEST(BilinearResizeLayerTest, TestSizeBottomGetsZeroDiff) {
  typedef typename TypeParam::Dtype Dtype;
  this->blob_bottom_vec_.push_back(this->blob_size_);
  LayerParameter lp;
  BilinearResizeLayer<Dtype> layer(lp);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  EXPECT_FALSE(layer.AllowForceBackward(1));
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_set(this->blob_top_->count(), Dtype(1),
            this->blob_top_->mutable_cpu_diff());
  caffe_set(this->blob_size_->count(), Dtype(7),
            this->blob_size_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(2, true),
                 this->blob_bottom_vec_);
  for (int k = 0; k < this->blob_size_->count(); ++k) {
    EXPECT_EQ(this->blob_size_->cpu_diff()[k], 0);
  }
  // The interpolation weights of every output pixel sum to 1, so a top
  // diff of ones carries the output's area into the bottom.
  double total = 0;
  for (int k = 0; k < this->blob_bottom_->count(); ++k) {
    total += this->blob_bottom_->cpu_diff()[k];
  }
  EXPECT_NEAR(total, this->blob_top_->count(), 1e-3);
}

TYPED_TEST(BilinearResizeLayerTest, TestBadParameters) {
  typedef typename TypeParam::Dtype Dtype;
  {
    LayerParameter lp;
    lp.mutable_bilinear_resize_param()->set_height(3);
    BilinearResizeLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      }, "give both height and width");
  }
  {
    LayerParameter lp;
    lp.mutable_bilinear_resize_param()->set_zoom_factor(0);
    BilinearResizeLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      }, "zoom_factor must be at least 1");
  }
  {
    LayerParameter lp;
    lp.mutable_bilinear_resize_param()->set_zoom_factor(2);
    this->blob_bottom_vec_.push_back(this->blob_size_);
    BilinearResizeLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      }, "with a second bottom");
  }
}

}  // namespace caffe
