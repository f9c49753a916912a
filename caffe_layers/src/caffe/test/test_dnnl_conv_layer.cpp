#ifdef USE_DNNL
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/layers/dnnl_conv_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

// One convolution's settings.
struct ConvCase {
  int num, channels, height, width;
  int num_output, kernel, stride, pad, dilation, group;
  bool bias;
};

static LayerParameter ConvParam(const ConvCase& c,
    ConvolutionParameter_Engine engine) {
  LayerParameter param;
  param.set_name("conv");
  param.set_type("Convolution");
  ConvolutionParameter* p = param.mutable_convolution_param();
  p->set_num_output(c.num_output);
  p->add_kernel_size(c.kernel);
  p->add_stride(c.stride);
  p->add_pad(c.pad);
  p->add_dilation(c.dilation);
  p->set_group(c.group);
  p->set_bias_term(c.bias);
  p->mutable_weight_filler()->set_type("gaussian");
  p->mutable_weight_filler()->set_std(0.1);
  p->mutable_bias_filler()->set_type("gaussian");
  p->mutable_bias_filler()->set_std(0.5);
  p->set_engine(engine);
  return param;
}

// |a - b| <= tol * max(1, |b|) for every element.
template <typename Dtype>
static void ExpectClose(const Dtype* a, const Dtype* b, int count,
    double tol, const std::string& what) {
  int bad = 0;
  for (int i = 0; i < count && bad < 5; ++i) {
    const double scale = std::max(1.0, std::fabs(static_cast<double>(b[i])));
    if (std::fabs(static_cast<double>(a[i]) - b[i]) > tol * scale) {
      ADD_FAILURE() << what << "[" << i << "]: oneDNN " << a[i]
                    << ", Caffe " << b[i];
      ++bad;
    }
  }
}

class DnnlConvolutionLayerTest : public ::testing::Test {
 protected:
  typedef float Dtype;

  DnnlConvolutionLayerTest() {
    Caffe::set_mode(Caffe::CPU);
  }

  // Fills `blob` from N(0, std).
  static void Gaussian(Blob<Dtype>* blob, Dtype std) {
    FillerParameter f;
    f.set_std(std);
    GaussianFiller<Dtype> filler(f);
    filler.Fill(blob);
  }

  // Runs forward and backward of the oneDNN and the Caffe engine on the same
  // inputs and weights over `bottoms` bottom/top pairs and compares the tops
  // and every gradient.
  void CompareEngines(const ConvCase& c, int bottoms = 1) {
    SCOPED_TRACE(::testing::Message() << "conv " << c.num << "x"
        << c.channels << "x" << c.height << "x" << c.width << " -> "
        << c.num_output << " k" << c.kernel << " s" << c.stride << " p"
        << c.pad << " d" << c.dilation << " g" << c.group
        << (c.bias ? "" : " no bias") << ", " << bottoms << " bottom(s)");
    DnnlConvolutionLayer<Dtype> ours(
        ConvParam(c, ConvolutionParameter_Engine_DNNL));
    ConvolutionLayer<Dtype> ref(
        ConvParam(c, ConvolutionParameter_Engine_CAFFE));
    vector<shared_ptr<Blob<Dtype> > > owned;
    vector<Blob<Dtype>*> bottom_a, bottom_b, top_a, top_b;
    for (int i = 0; i < bottoms; ++i) {
      Blob<Dtype>* a = new Blob<Dtype>(c.num, c.channels, c.height, c.width);
      Gaussian(a, 1);
      Blob<Dtype>* b = new Blob<Dtype>();
      b->CopyFrom(*a, false, true);
      Blob<Dtype>* ta = new Blob<Dtype>();
      Blob<Dtype>* tb = new Blob<Dtype>();
      for (Blob<Dtype>* x : {a, b, ta, tb}) {
        owned.push_back(shared_ptr<Blob<Dtype> >(x));
      }
      bottom_a.push_back(a);
      bottom_b.push_back(b);
      top_a.push_back(ta);
      top_b.push_back(tb);
    }
    ours.SetUp(bottom_a, top_a);
    ref.SetUp(bottom_b, top_b);
    ASSERT_TRUE(ours.uses_dnnl());
    for (int k = 0; k < ours.blobs().size(); ++k) {
      ref.blobs()[k]->CopyFrom(*ours.blobs()[k]);
      // Nonzero diffs to start from: backward must add to them.
      caffe_set(ours.blobs()[k]->count(), Dtype(0.25),
                ours.blobs()[k]->mutable_cpu_diff());
      caffe_set(ref.blobs()[k]->count(), Dtype(0.25),
                ref.blobs()[k]->mutable_cpu_diff());
    }
    ours.Forward(bottom_a, top_a);
    ref.Forward(bottom_b, top_b);
    for (int i = 0; i < bottoms; ++i) {
      ASSERT_EQ(top_a[i]->shape(), top_b[i]->shape());
      ExpectClose(top_a[i]->cpu_data(), top_b[i]->cpu_data(),
                  top_a[i]->count(), 1e-4, "top");
      Gaussian(top_a[i], 1);
      caffe_copy(top_a[i]->count(), top_a[i]->cpu_data(),
                 top_a[i]->mutable_cpu_diff());
      caffe_copy(top_a[i]->count(), top_a[i]->cpu_diff(),
                 top_b[i]->mutable_cpu_diff());
    }
    const vector<bool> down(bottoms, true);
    ours.Backward(top_a, down, bottom_a);
    ref.Backward(top_b, down, bottom_b);
    for (int i = 0; i < bottoms; ++i) {
      ExpectClose(bottom_a[i]->cpu_diff(), bottom_b[i]->cpu_diff(),
                  bottom_a[i]->count(), 1e-4, "bottom diff");
    }
    ExpectClose(ours.blobs()[0]->cpu_diff(), ref.blobs()[0]->cpu_diff(),
                ours.blobs()[0]->count(), 1e-4, "weight diff");
    if (c.bias) {
      ExpectClose(ours.blobs()[1]->cpu_diff(), ref.blobs()[1]->cpu_diff(),
                  ours.blobs()[1]->count(), 1e-4, "bias diff");
    }
  }
};

TEST_F(DnnlConvolutionLayerTest, TestMatchesCaffeEngine) {
  const ConvCase cases[] = {
    // n, c, h, w, out, k, s, p, d, g, bias
    {2, 3, 9, 11, 4, 3, 1, 1, 1, 1, true},     // batch > 1, odd sizes
    {1, 8, 16, 16, 16, 3, 1, 1, 1, 1, true},   // a blocked layout
    {2, 6, 10, 12, 4, 3, 2, 1, 1, 2, true},    // groups, stride 2
    {1, 16, 13, 15, 8, 3, 1, 2, 2, 1, true},   // dilation 2
    {1, 4, 30, 31, 6, 3, 1, 12, 12, 1, true},  // dilation 12 (fc6 of (d))
    {2, 5, 7, 9, 3, 1, 1, 0, 1, 1, false},     // 1x1, no bias
    {1, 3, 11, 10, 5, 4, 3, 0, 1, 1, true},    // the stride skips columns
    {1, 3, 8, 8, 2, 7, 1, 3, 1, 1, false},     // a 7x7 kernel, padded
    {3, 4, 5, 6, 4, 3, 2, 2, 1, 4, true},      // depthwise, pad > stride
  };
  for (const ConvCase& c : cases) {
    CompareEngines(c);
  }
}

TEST_F(DnnlConvolutionLayerTest, TestSharedWeightsTwoBottoms) {
  CompareEngines({2, 4, 8, 9, 6, 3, 1, 1, 1, 1, true}, 2);
}

TEST_F(DnnlConvolutionLayerTest, TestGradient) {
  const ConvCase cases[] = {
    {2, 3, 6, 5, 4, 3, 2, 1, 1, 1, true},
    {1, 4, 7, 7, 2, 3, 1, 2, 2, 2, false},
  };
  for (const ConvCase& c : cases) {
    LayerParameter param = ConvParam(c, ConvolutionParameter_Engine_DNNL);
    DnnlConvolutionLayer<Dtype> layer(param);
    Blob<Dtype> bottom(c.num, c.channels, c.height, c.width), top;
    Gaussian(&bottom, 1);
    vector<Blob<Dtype>*> bottom_vec(1, &bottom), top_vec(1, &top);
    GradientChecker<Dtype> checker(1e-2, 1e-3);
    checker.CheckGradientExhaustive(&layer, bottom_vec, top_vec);
    EXPECT_TRUE(layer.uses_dnnl());
  }
}

TEST_F(DnnlConvolutionLayerTest, TestReshapeBetweenPasses) {
  const ConvCase c = {1, 3, 8, 10, 4, 3, 1, 1, 1, 1, true};
  DnnlConvolutionLayer<Dtype> ours(
      ConvParam(c, ConvolutionParameter_Engine_DNNL));
  ConvolutionLayer<Dtype> ref(ConvParam(c, ConvolutionParameter_Engine_CAFFE));
  Blob<Dtype> bottom(1, 3, 8, 10), top_a, top_b;
  vector<Blob<Dtype>*> b(1, &bottom), ta(1, &top_a), tb(1, &top_b);
  ours.SetUp(b, ta);
  ref.SetUp(b, tb);
  for (int k = 0; k < 2; ++k) {
    ref.blobs()[k]->CopyFrom(*ours.blobs()[k]);
  }
  const int shapes[][4] = {{1, 3, 8, 10}, {2, 3, 13, 7}, {1, 3, 8, 10}};
  for (const auto& s : shapes) {
    bottom.Reshape(s[0], s[1], s[2], s[3]);
    Gaussian(&bottom, 1);
    ours.Reshape(b, ta);
    ref.Reshape(b, tb);
    ours.Forward(b, ta);
    ref.Forward(b, tb);
    ASSERT_EQ(top_a.shape(), top_b.shape());
    ExpectClose(top_a.cpu_data(), top_b.cpu_data(), top_a.count(), 1e-4,
                "top after reshape");
  }
}

TEST_F(DnnlConvolutionLayerTest, TestBackwardAccumulatesParamDiffs) {
  // Two backward passes without clearing the diffs (iter_size 2) give
  // twice one pass's weight and bias gradients; the bottom diff is written.
  const ConvCase c = {2, 4, 9, 9, 5, 3, 1, 1, 1, 1, true};
  DnnlConvolutionLayer<Dtype> layer(
      ConvParam(c, ConvolutionParameter_Engine_DNNL));
  Blob<Dtype> bottom(2, 4, 9, 9), top;
  Gaussian(&bottom, 1);
  vector<Blob<Dtype>*> b(1, &bottom), t(1, &top);
  layer.SetUp(b, t);
  layer.Forward(b, t);
  Gaussian(&top, 1);
  caffe_copy(top.count(), top.cpu_data(), top.mutable_cpu_diff());
  const vector<bool> down(1, true);
  for (int k = 0; k < 2; ++k) {
    caffe_set(layer.blobs()[k]->count(), Dtype(0),
              layer.blobs()[k]->mutable_cpu_diff());
  }
  layer.Backward(t, down, b);
  // One pass's gradients (CopyFrom with copy_diff copies diff to diff).
  Blob<Dtype> once_w, once_b, once_bottom;
  once_w.CopyFrom(*layer.blobs()[0], true, true);
  once_b.CopyFrom(*layer.blobs()[1], true, true);
  once_bottom.CopyFrom(bottom, true, true);
  const Dtype* w1 = once_w.cpu_diff();
  const Dtype* b1 = once_b.cpu_diff();
  const Dtype* x1 = once_bottom.cpu_diff();
  layer.Backward(t, down, b);
  for (int i = 0; i < once_w.count(); ++i) {
    EXPECT_NEAR(layer.blobs()[0]->cpu_diff()[i], 2 * w1[i],
                1e-5 * std::max(1.0f, std::fabs(w1[i])));
  }
  for (int i = 0; i < once_b.count(); ++i) {
    EXPECT_NEAR(layer.blobs()[1]->cpu_diff()[i], 2 * b1[i],
                1e-5 * std::max(1.0f, std::fabs(b1[i])));
  }
  for (int i = 0; i < bottom.count(); ++i) {
    EXPECT_EQ(bottom.cpu_diff()[i], x1[i]);
  }
}

TEST_F(DnnlConvolutionLayerTest, TestDefaultEnginePicksDnnl) {
  const ConvCase c = {1, 3, 8, 8, 4, 3, 1, 1, 1, 1, true};
  shared_ptr<Layer<Dtype> > dflt = LayerRegistry<Dtype>::CreateLayer(
      ConvParam(c, ConvolutionParameter_Engine_DEFAULT));
  EXPECT_TRUE(dynamic_cast<DnnlConvolutionLayer<Dtype>*>(dflt.get()));
  shared_ptr<Layer<Dtype> > caffe_engine = LayerRegistry<Dtype>::CreateLayer(
      ConvParam(c, ConvolutionParameter_Engine_CAFFE));
  EXPECT_FALSE(
      dynamic_cast<DnnlConvolutionLayer<Dtype>*>(caffe_engine.get()));
}

TEST_F(DnnlConvolutionLayerTest, TestDoubleRunsTheCaffeEngine) {
  // oneDNN's path is float only: double is the inherited Caffe code.
  const ConvCase c = {1, 2, 5, 6, 3, 3, 1, 1, 1, 1, true};
  DnnlConvolutionLayer<double> layer(
      ConvParam(c, ConvolutionParameter_Engine_DNNL));
  Blob<double> bottom(1, 2, 5, 6), top;
  FillerParameter f;
  GaussianFiller<double> filler(f);
  filler.Fill(&bottom);
  vector<Blob<double>*> b(1, &bottom), t(1, &top);
  layer.SetUp(b, t);
  EXPECT_FALSE(layer.uses_dnnl());
  layer.Forward(b, t);
  // Output (0, 0, 0, 0) from the definition.
  const double* w = layer.blobs()[0]->cpu_data();
  double want = layer.blobs()[1]->cpu_data()[0];
  for (int ch = 0; ch < 2; ++ch) {
    for (int y = 0; y < 2; ++y) {
      for (int x = 0; x < 2; ++x) {
        want += w[(ch * 3 + y + 1) * 3 + x + 1] *
            bottom.cpu_data()[(ch * 5 + y) * 6 + x];
      }
    }
  }
  EXPECT_NEAR(top.cpu_data()[0], want, 1e-12);
}

}  // namespace caffe
#endif  // USE_DNNL
