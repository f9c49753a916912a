// The oneDNN engines of Pooling and ReLU against the Caffe engines.
#ifdef USE_DNNL
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/layers/dnnl_pooling_layer.hpp"
#include "caffe/layers/dnnl_relu_layer.hpp"
#include "caffe/layers/pooling_layer.hpp"
#include "caffe/layers/relu_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

namespace {

typedef float Dtype;

// One pooling's settings.
struct PoolCase {
  int num, channels, height, width;
  PoolingParameter_PoolMethod pool;
  int kernel_h, kernel_w, stride, pad;
  bool ceil;       // round_mode CEIL (Caffe's default), else FLOOR
  bool global;     // global_pooling
  bool dnnl;       // whether oneDNN can compute it as Caffe does
};

LayerParameter PoolParam(const PoolCase& c, PoolingParameter_Engine engine) {
  LayerParameter param;
  param.set_name("pool");
  param.set_type("Pooling");
  PoolingParameter* p = param.mutable_pooling_param();
  p->set_pool(c.pool);
  if (c.global) {
    p->set_global_pooling(true);
  } else {
    p->set_kernel_h(c.kernel_h);
    p->set_kernel_w(c.kernel_w);
    p->set_stride(c.stride);
    p->set_pad(c.pad);
  }
  p->set_round_mode(c.ceil ? PoolingParameter_RoundMode_CEIL :
                    PoolingParameter_RoundMode_FLOOR);
  p->set_engine(engine);
  return param;
}

void Gaussian(Blob<Dtype>* blob) {
  FillerParameter f;
  f.set_std(1);
  GaussianFiller<Dtype> filler(f);
  filler.Fill(blob);
}

// |a - b| <= tol * max(1, |b|) for every element.
void ExpectClose(const Blob<Dtype>& a, const Blob<Dtype>& b, bool diff,
                 double tol, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const Dtype* x = diff ? a.cpu_diff() : a.cpu_data();
  const Dtype* y = diff ? b.cpu_diff() : b.cpu_data();
  int bad = 0;
  for (int i = 0; i < a.count() && bad < 5; ++i) {
    const double scale = std::max(1.0, std::fabs(static_cast<double>(y[i])));
    if (!(std::fabs(static_cast<double>(x[i]) - y[i]) <= tol * scale)) {
      ADD_FAILURE() << what << "[" << i << "]: oneDNN " << x[i]
                    << ", Caffe " << y[i];
      ++bad;
    }
  }
}

// Forward and backward of both engines on the same input and top diff.
template <typename Ours, typename Ref>
void CompareEngines(Ours* ours, Ref* ref, const vector<int>& shape,
                    double tol) {
  Blob<Dtype> bottom_a(shape), bottom_b, top_a, top_b;
  Gaussian(&bottom_a);
  bottom_b.CopyFrom(bottom_a, false, true);
  vector<Blob<Dtype>*> ba(1, &bottom_a), bb(1, &bottom_b);
  vector<Blob<Dtype>*> ta(1, &top_a), tb(1, &top_b);
  ours->SetUp(ba, ta);
  ref->SetUp(bb, tb);
  ours->Forward(ba, ta);
  ref->Forward(bb, tb);
  ExpectClose(top_a, top_b, false, tol, "top");
  Gaussian(&top_b);  // a random top diff, the same for both
  caffe_copy(top_b.count(), top_b.cpu_data(), top_a.mutable_cpu_diff());
  caffe_copy(top_b.count(), top_b.cpu_data(), top_b.mutable_cpu_diff());
  // Garbage in the bottom diffs: backward must overwrite it.
  caffe_set(bottom_a.count(), Dtype(7), bottom_a.mutable_cpu_diff());
  caffe_set(bottom_b.count(), Dtype(7), bottom_b.mutable_cpu_diff());
  const vector<bool> down(1, true);
  ours->Backward(ta, down, ba);
  ref->Backward(tb, down, bb);
  ExpectClose(bottom_a, bottom_b, true, tol, "bottom diff");
}

class DnnlPoolingLayerTest : public ::testing::Test {
 protected:
  DnnlPoolingLayerTest() { Caffe::set_mode(Caffe::CPU); }
};

TEST_F(DnnlPoolingLayerTest, TestMatchesCaffeEngine) {
  typedef PoolingParameter P;
  const PoolCase cases[] = {
    // n, c, h, w, pool, kh, kw, s, pad, ceil, global, dnnl
    {2, 3, 8, 10, P::MAX, 2, 2, 2, 0, true, false, true},    // VGG's pool
    {1, 4, 375, 500, P::MAX, 2, 2, 2, 0, true, false, true},  // paper size
    {1, 5, 47, 63, P::MAX, 2, 2, 2, 0, true, false, true},   // CEIL, odd
    {2, 3, 9, 11, P::MAX, 3, 3, 2, 1, true, false, true},    // padded
    {1, 3, 9, 11, P::MAX, 3, 3, 1, 1, true, false, true},    // stride 1
    {1, 3, 9, 11, P::MAX, 2, 3, 2, 0, false, false, true},   // FLOOR, 2x3
    {1, 3, 10, 13, P::MAX, 3, 3, 3, 0, false, false, true},  // skips input
    {2, 6, 7, 9, P::MAX, 0, 0, 1, 0, true, true, true},      // global
    {2, 3, 9, 11, P::AVE, 2, 2, 2, 0, true, false, true},    // CEIL: clipped
    {1, 4, 8, 10, P::AVE, 3, 3, 1, 1, true, false, true},    // pad counted
    {1, 4, 8, 10, P::AVE, 3, 3, 2, 1, false, false, true},   // FLOOR, pad
    {2, 5, 6, 7, P::AVE, 0, 0, 1, 0, true, true, true},      // global
    // padding and a window past it: Caffe's divisor has no oneDNN twin
    {1, 3, 8, 10, P::AVE, 3, 3, 2, 1, true, false, false},
  };
  for (const PoolCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.num << "x" << c.channels << "x"
        << c.height << "x" << c.width << " "
        << (c.pool == P::MAX ? "MAX" : "AVE") << " k" << c.kernel_h << "x"
        << c.kernel_w << " s" << c.stride << " p" << c.pad
        << (c.ceil ? " CEIL" : " FLOOR") << (c.global ? " global" : ""));
    DnnlPoolingLayer<Dtype> ours(PoolParam(c, P::DNNL));
    PoolingLayer<Dtype> ref(PoolParam(c, P::CAFFE));
    CompareEngines(&ours, &ref, {c.num, c.channels, c.height, c.width},
                   1e-5);
    EXPECT_EQ(c.dnnl, ours.uses_dnnl());
  }
}

TEST_F(DnnlPoolingLayerTest, TestGradient) {
  typedef PoolingParameter P;
  const PoolCase cases[] = {
    {2, 2, 5, 6, P::MAX, 2, 2, 2, 0, true, false, true},
    {1, 2, 6, 5, P::MAX, 3, 3, 2, 1, true, false, true},
    {2, 2, 5, 6, P::AVE, 2, 2, 2, 0, true, false, true},
    {1, 2, 6, 5, P::AVE, 3, 3, 1, 1, true, false, true},
  };
  for (const PoolCase& c : cases) {
    DnnlPoolingLayer<Dtype> layer(PoolParam(c, P::DNNL));
    Blob<Dtype> bottom(c.num, c.channels, c.height, c.width), top;
    Gaussian(&bottom);
    vector<Blob<Dtype>*> bottom_vec(1, &bottom), top_vec(1, &top);
    GradientChecker<Dtype> checker(1e-4, 1e-2);
    checker.CheckGradientExhaustive(&layer, bottom_vec, top_vec);
    EXPECT_TRUE(layer.uses_dnnl());
  }
}

TEST_F(DnnlPoolingLayerTest, TestReshapeBetweenPasses) {
  typedef PoolingParameter P;
  const PoolCase c = {1, 3, 8, 10, P::MAX, 3, 3, 2, 1, true, false, true};
  DnnlPoolingLayer<Dtype> ours(PoolParam(c, P::DNNL));
  PoolingLayer<Dtype> ref(PoolParam(c, P::CAFFE));
  const int shapes[][4] = {{1, 3, 8, 10}, {2, 3, 13, 7}, {1, 3, 8, 10}};
  for (const auto& s : shapes) {
    CompareEngines(&ours, &ref, {s[0], s[1], s[2], s[3]}, 1e-5);
    EXPECT_TRUE(ours.uses_dnnl());
  }
}

TEST_F(DnnlPoolingLayerTest, TestMaskTopAndDoubleUseCaffeEngine) {
  typedef PoolingParameter P;
  const PoolCase c = {1, 2, 6, 6, P::MAX, 2, 2, 2, 0, true, false, false};
  DnnlPoolingLayer<Dtype> layer(PoolParam(c, P::DNNL));
  Blob<Dtype> bottom(1, 2, 6, 6), top, mask;
  Gaussian(&bottom);
  vector<Blob<Dtype>*> bottom_vec(1, &bottom), top_vec;
  top_vec.push_back(&top);
  top_vec.push_back(&mask);
  layer.SetUp(bottom_vec, top_vec);
  layer.Forward(bottom_vec, top_vec);
  EXPECT_FALSE(layer.uses_dnnl());
  for (int i = 0; i < mask.count(); ++i) {  // the Caffe engine's mask
    EXPECT_EQ(bottom.cpu_data()[static_cast<int>(mask.cpu_data()[i]) +
                                (i / 9) * 36], top.cpu_data()[i]);
  }
  DnnlPoolingLayer<double> twin(PoolParam(c, P::DNNL));
  Blob<double> b(1, 2, 6, 6), t;
  vector<Blob<double>*> bv(1, &b), tv(1, &t);
  twin.SetUp(bv, tv);
  twin.Forward(bv, tv);
  EXPECT_FALSE(twin.uses_dnnl());
}

TEST_F(DnnlPoolingLayerTest, TestNaNPassesOn) {
  // A window with a NaN (diverged weights) gives NaN, as in the Caffe
  // engine (patch 0014), so that the loss shows the divergence: oneDNN's
  // max would skip it, so such a pass runs the Caffe engine.
  typedef PoolingParameter P;
  const PoolCase c = {1, 1, 4, 4, P::MAX, 2, 2, 2, 0, true, false, true};
  DnnlPoolingLayer<Dtype> layer(PoolParam(c, P::DNNL));
  Blob<Dtype> bottom(1, 1, 4, 4), top;
  Gaussian(&bottom);
  bottom.mutable_cpu_data()[5] = std::numeric_limits<Dtype>::quiet_NaN();
  vector<Blob<Dtype>*> bottom_vec(1, &bottom), top_vec(1, &top);
  layer.SetUp(bottom_vec, top_vec);
  layer.Forward(bottom_vec, top_vec);
  EXPECT_FALSE(layer.uses_dnnl());
  EXPECT_TRUE(std::isnan(top.cpu_data()[0]));
  for (int i = 1; i < top.count(); ++i) {
    EXPECT_FALSE(std::isnan(top.cpu_data()[i])) << i;
  }
  caffe_set(top.count(), Dtype(1), top.mutable_cpu_diff());
  layer.Backward(top_vec, vector<bool>(1, true), bottom_vec);
  Dtype sum = 0;
  for (int i = 0; i < bottom.count(); ++i) {
    sum += bottom.cpu_diff()[i];
  }
  EXPECT_EQ(top.count(), sum);  // each window's gradient lands in it once
  Gaussian(&bottom);  // finite again: oneDNN again
  layer.Forward(bottom_vec, top_vec);
  EXPECT_TRUE(layer.uses_dnnl());
}

class DnnlReLULayerTest : public ::testing::Test {
 protected:
  DnnlReLULayerTest() { Caffe::set_mode(Caffe::CPU); }

  static LayerParameter Param(float slope, ReLUParameter_Engine engine) {
    LayerParameter param;
    param.set_name("relu");
    param.set_type("ReLU");
    param.mutable_relu_param()->set_negative_slope(slope);
    param.mutable_relu_param()->set_engine(engine);
    return param;
  }
};

TEST_F(DnnlReLULayerTest, TestMatchesCaffeEngine) {
  for (float slope : {0.f, 0.1f}) {
    SCOPED_TRACE(::testing::Message() << "negative_slope " << slope);
    DnnlReLULayer<Dtype> ours(Param(slope, ReLUParameter::DNNL));
    ReLULayer<Dtype> ref(Param(slope, ReLUParameter::CAFFE));
    CompareEngines(&ours, &ref, {2, 3, 17, 19}, 0);
    EXPECT_TRUE(ours.uses_dnnl());
    CompareEngines(&ours, &ref, {3, 5}, 0);  // a reshape, any axes
  }
}

TEST_F(DnnlReLULayerTest, TestInPlace) {
  // top == bottom, as the nets use it: backward then sees the top.
  Blob<Dtype> blob(2, 4, 5, 6), ref_blob, ref_top;
  Gaussian(&blob);
  ref_blob.CopyFrom(blob, false, true);
  DnnlReLULayer<Dtype> ours(Param(0.2f, ReLUParameter::DNNL));
  ReLULayer<Dtype> ref(Param(0.2f, ReLUParameter::CAFFE));
  vector<Blob<Dtype>*> v(1, &blob), rb(1, &ref_blob), rt(1, &ref_top);
  ours.SetUp(v, v);
  ref.SetUp(rb, rt);
  ours.Forward(v, v);
  ref.Forward(rb, rt);
  ExpectClose(blob, ref_top, false, 0, "top");
  Gaussian(&ref_top);
  caffe_copy(blob.count(), ref_top.cpu_data(), blob.mutable_cpu_diff());
  caffe_copy(blob.count(), ref_top.cpu_data(), ref_top.mutable_cpu_diff());
  ours.Backward(v, vector<bool>(1, true), v);
  ref.Backward(rt, vector<bool>(1, true), rb);
  ExpectClose(blob, ref_blob, true, 0, "bottom diff");
}

TEST_F(DnnlReLULayerTest, TestNaNPassesOn) {
  DnnlReLULayer<Dtype> layer(Param(0.f, ReLUParameter::DNNL));
  Blob<Dtype> bottom(1, 2, 3, 4), top;
  Gaussian(&bottom);
  bottom.mutable_cpu_data()[7] = std::numeric_limits<Dtype>::quiet_NaN();
  vector<Blob<Dtype>*> bottom_vec(1, &bottom), top_vec(1, &top);
  layer.SetUp(bottom_vec, top_vec);
  layer.Forward(bottom_vec, top_vec);
  EXPECT_FALSE(layer.uses_dnnl());
  EXPECT_TRUE(std::isnan(top.cpu_data()[7]));
  Gaussian(&bottom);
  layer.Forward(bottom_vec, top_vec);
  EXPECT_TRUE(layer.uses_dnnl());
}

TEST_F(DnnlReLULayerTest, TestGradient) {
  DnnlReLULayer<Dtype> layer(Param(0.05f, ReLUParameter::DNNL));
  Blob<Dtype> bottom(2, 3, 4, 5), top;
  Gaussian(&bottom);
  vector<Blob<Dtype>*> bottom_vec(1, &bottom), top_vec(1, &top);
  GradientChecker<Dtype> checker(1e-2, 1e-3, 1701, 0., 0.01);
  checker.CheckGradientEltwise(&layer, bottom_vec, top_vec);
}

TEST(DnnlEngineDefaultTest, TestDefaultPicksDnnl) {
  Caffe::set_mode(Caffe::CPU);
  LayerParameter pool;
  pool.set_name("pool");
  pool.set_type("Pooling");
  pool.mutable_pooling_param()->set_kernel_size(2);
  shared_ptr<Layer<Dtype> > p = LayerRegistry<Dtype>::CreateLayer(pool);
  EXPECT_TRUE(dynamic_cast<DnnlPoolingLayer<Dtype>*>(p.get()) != NULL);
  pool.mutable_pooling_param()->set_engine(PoolingParameter::CAFFE);
  p = LayerRegistry<Dtype>::CreateLayer(pool);
  EXPECT_TRUE(dynamic_cast<DnnlPoolingLayer<Dtype>*>(p.get()) == NULL);
  LayerParameter relu;
  relu.set_name("relu");
  relu.set_type("ReLU");
  shared_ptr<Layer<Dtype> > r = LayerRegistry<Dtype>::CreateLayer(relu);
  EXPECT_TRUE(dynamic_cast<DnnlReLULayer<Dtype>*>(r.get()) != NULL);
  relu.mutable_relu_param()->set_engine(ReLUParameter::CAFFE);
  r = LayerRegistry<Dtype>::CreateLayer(relu);
  EXPECT_TRUE(dynamic_cast<DnnlReLULayer<Dtype>*>(r.get()) == NULL);
}

}  // namespace

}  // namespace caffe
#endif  // USE_DNNL
