// Regression tests for patch 0014 (MAX pooling's mask always names an
// element of its window): a window of NaN or -inf used to keep mask -1, and
// Backward_cpu then wrote to bottom_diff[-1].
#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/pooling_layer.hpp"
#include "caffe/util/math_functions.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

template <typename TypeParam>
class PoolingNaNTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  PoolingNaNTest()
      : bottom_(new Blob<Dtype>(1, 2, 4, 4)), top_(new Blob<Dtype>()),
        mask_(new Blob<Dtype>()) {
    bottom_vec_.push_back(bottom_);
    top_vec_.push_back(top_);
  }
  virtual ~PoolingNaNTest() {
    delete bottom_;
    delete top_;
    delete mask_;
  }

  // 2 x 2 windows, stride 2, on a 2-channel 4 x 4 blob whose channel 0 is
  // all `fill` and channel 1 holds 1..16 except `fill` at (0, 1).
  void Run(Dtype fill, bool top_mask) {
    Dtype* data = bottom_->mutable_cpu_data();
    for (int i = 0; i < 16; ++i) {
      data[i] = fill;
      data[16 + i] = i + 1;
    }
    data[16 + 1] = fill;
    LayerParameter lp;
    PoolingParameter* p = lp.mutable_pooling_param();
    p->set_pool(PoolingParameter_PoolMethod_MAX);
    p->set_kernel_size(2);
    p->set_stride(2);
    if (top_mask) {
      top_vec_.push_back(mask_);
    }
    PoolingLayer<Dtype> layer(lp);
    layer.SetUp(bottom_vec_, top_vec_);
    layer.Forward(bottom_vec_, top_vec_);
    caffe_set(top_->count(), Dtype(1), top_->mutable_cpu_diff());
    layer.Backward(top_vec_, vector<bool>(1, true), bottom_vec_);
  }

  Blob<Dtype>* const bottom_;
  Blob<Dtype>* const top_;
  Blob<Dtype>* const mask_;
  vector<Blob<Dtype>*> bottom_vec_;
  vector<Blob<Dtype>*> top_vec_;
};

TYPED_TEST_CASE(PoolingNaNTest, TestDtypesAndDevices);

// NaN propagates; every top gradient lands inside its own window.
TYPED_TEST(PoolingNaNTest, TestNaNWindows) {
  typedef typename TypeParam::Dtype Dtype;
  for (int top_mask = 0; top_mask < 2; ++top_mask) {
    this->Run(std::numeric_limits<Dtype>::quiet_NaN(), top_mask);
    const Dtype* top = this->top_->cpu_data();
    for (int k = 0; k < 4; ++k) {
      EXPECT_TRUE(std::isnan(top[k])) << k;  // channel 0: all NaN
    }
    EXPECT_TRUE(std::isnan(top[4]));  // channel 1, window 0 holds a NaN
    EXPECT_EQ(top[5], 8);
    EXPECT_EQ(top[6], 14);
    EXPECT_EQ(top[7], 16);
    // Each window's diff sums to its top diff (1), in the right channel.
    const Dtype* diff = this->bottom_->cpu_diff();
    for (int c = 0; c < 2; ++c) {
      for (int wy = 0; wy < 2; ++wy) {
        for (int wx = 0; wx < 2; ++wx) {
          Dtype sum = 0;
          for (int y = 2 * wy; y < 2 * wy + 2; ++y) {
            for (int x = 2 * wx; x < 2 * wx + 2; ++x) {
              sum += diff[c * 16 + y * 4 + x];
            }
          }
          EXPECT_EQ(sum, 1) << "channel " << c << " window " << wy << wx;
        }
      }
    }
    EXPECT_EQ(diff[16 + 1], 1);  // the NaN took window 0's gradient
    if (top_mask) {
      const Dtype* mask = this->mask_->cpu_data();
      for (int k = 0; k < 8; ++k) {
        EXPECT_GE(mask[k], 0) << k;
        EXPECT_LT(mask[k], 16) << k;
      }
      this->top_vec_.pop_back();
    }
  }
}

// A window of -inf (below upstream's -FLT_MAX start) keeps its value and a
// mask inside the window; finite inputs pool as before.
TYPED_TEST(PoolingNaNTest, TestMinusInfinityWindows) {
  typedef typename TypeParam::Dtype Dtype;
  this->Run(-std::numeric_limits<Dtype>::infinity(), false);
  const Dtype* top = this->top_->cpu_data();
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(top[k], -std::numeric_limits<Dtype>::infinity()) << k;
  }
  EXPECT_EQ(top[4], 6);
  const Dtype* diff = this->bottom_->cpu_diff();
  EXPECT_EQ(diff[0], 1);  // the first of four equal values wins
  EXPECT_EQ(diff[16 + 5], 1);
  EXPECT_EQ(diff[16 + 1], 0);
}

}  // namespace caffe
