#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/renet_layer.hpp"
#include "caffe/util/parallel.hpp"
#include "caffe/util/renet_cpu.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_scoped_env.hpp"
#include "caffe/test/test_user_error.hpp"

// OpenMP's per-thread count (libgomp, loaded with oneDNN; weak: the test
// binary does not link it itself).
extern "C" {
int omp_get_max_threads(void) __attribute__((weak));
void omp_set_num_threads(int num_threads) __attribute__((weak));
}

namespace caffe {

namespace {

double RefSigmoid(double x) { return 1. / (1. + std::exp(-x)); }

// Everything a forward and backward pass produce: the top, the bottom diff
// and the six parameter diffs, one after the other.
template <typename Dtype>
struct PassResult {
  vector<Dtype> values;
  bool operator==(const PassResult& o) const {
    return values.size() == o.values.size() && (values.empty() ||
        memcmp(&values[0], &o.values[0], values.size() * sizeof(Dtype)) == 0);
  }
};

// One forward and backward pass of a layer set up for `lp` with the given
// weights, bottom and top diff (its own blobs, so that several can run at
// once): top, bottom diff, parameter diffs.
template <typename Dtype>
PassResult<Dtype> RunPass(const LayerParameter& lp,
    const vector<shared_ptr<Blob<Dtype> > >& weights,
    const Blob<Dtype>& bottom_in, const Blob<Dtype>& top_diff) {
  Blob<Dtype> bottom, top;
  bottom.CopyFrom(bottom_in, false, true);
  vector<Blob<Dtype>*> bottom_vec(1, &bottom), top_vec(1, &top);
  ReNetLayer<Dtype> layer(lp);
  layer.SetUp(bottom_vec, top_vec);
  for (int i = 0; i < 6; ++i) {
    layer.blobs()[i]->CopyFrom(*weights[i]);
    caffe_set(layer.blobs()[i]->count(), Dtype(0),
        layer.blobs()[i]->mutable_cpu_diff());
  }
  layer.Forward(bottom_vec, top_vec);
  caffe_copy(top.count(), top_diff.cpu_data(), top.mutable_cpu_diff());
  layer.Backward(top_vec, vector<bool>(1, true), bottom_vec);
  PassResult<Dtype> r;
  r.values.assign(top.cpu_data(), top.cpu_data() + top.count());
  r.values.insert(r.values.end(), bottom.cpu_diff(),
                  bottom.cpu_diff() + bottom.count());
  for (int i = 0; i < 6; ++i) {
    const Blob<Dtype>& b = *layer.blobs()[i];
    r.values.insert(r.values.end(), b.cpu_diff(), b.cpu_diff() + b.count());
  }
  return r;
}

// Shapes that take every threaded path of the CPU: one image (directions
// on two threads, the input gradient's GEMM split by rows, the layout
// copies split) read in place (vertical 1 x 1) or copied (2 x 2 patches,
// with the LSTM's step projection for 8 channels), and several images as
// jobs.
struct PassCase { int unit, dir, N, C, H, W, patch, d; };
const PassCase kPassCases[] = {
  // Direct: din GEMM T B K G d = 32 * 40 * 64 * 128 > 4 * 2^19 (4 parts).
  {ReNetParameter_Unit_LSTM, ReNetParameter_Direction_VERTICAL,
    1, 64, 32, 40, 1, 32},
  // Copies of 32 * 64 * 64 = 2^17 elements (two parts or more), dX GEMM
  // 32 * 32 * 128 * 96 > 4 * 2^19.
  {ReNetParameter_Unit_GRU, ReNetParameter_Direction_HORIZONTAL,
    1, 32, 64, 64, 2, 32},
  // The LSTM's step projection (K = 32), zero padding (33 x 47).
  {ReNetParameter_Unit_LSTM, ReNetParameter_Direction_VERTICAL,
    1, 8, 65, 47, 2, 32},
  // Jobs, per image and direction.
  {ReNetParameter_Unit_IRNN, ReNetParameter_Direction_HORIZONTAL,
    3, 16, 20, 24, 1, 64},
  {ReNetParameter_Unit_LSTM, ReNetParameter_Direction_VERTICAL,
    3, 8, 33, 31, 2, 32},
};
const int kNumPassCases = sizeof(kPassCases) / sizeof(kPassCases[0]);

// A plain per-position reference of the ReNet forward pass, written from the
// equations in renet_layer.hpp without the layer's layout tricks.
template <typename Dtype>
void ReferenceForward(const Blob<Dtype>& bottom,
    const vector<shared_ptr<Blob<Dtype> > >& blobs, const ReNetParameter& p,
    Blob<Dtype>* top) {
  const int N = bottom.num(), C = bottom.channels();
  const int H = bottom.height(), W = bottom.width();
  const int s = p.patch_h(), t = p.patch_w(), d = p.num_output();
  const int gh = (H + s - 1) / s, gw = (W + t - 1) / t, K = C * s * t;
  const bool vertical = p.direction() == ReNetParameter_Direction_VERTICAL;
  const int G = p.unit() == ReNetParameter_Unit_LSTM ? 4 :
      (p.unit() == ReNetParameter_Unit_GRU ? 3 : 1);
  top->Reshape(N, 2 * d, gh, gw);
  const int nseq = vertical ? gw : gh, len = vertical ? gh : gw;
  for (int n = 0; n < N; ++n) {
    for (int dir = 0; dir < 2; ++dir) {
      const Dtype* Wm = blobs[3 * dir]->cpu_data();
      const Dtype* Um = blobs[3 * dir + 1]->cpu_data();
      const Dtype* bv = blobs[3 * dir + 2]->cpu_data();
      for (int q = 0; q < nseq; ++q) {
        vector<double> h(d, 0.), c(d, 0.);
        for (int k = 0; k < len; ++k) {
          const int pos = dir == 0 ? k : len - 1 - k;
          const int gy = vertical ? pos : q, gx = vertical ? q : pos;
          vector<double> x(K, 0.);
          for (int ch = 0; ch < C; ++ch) {
            for (int dy = 0; dy < s; ++dy) {
              for (int dx = 0; dx < t; ++dx) {
                const int y = gy * s + dy, xx = gx * t + dx;
                if (y < H && xx < W) {
                  x[(ch * s + dy) * t + dx] = bottom.data_at(n, ch, y, xx);
                }
              }
            }
          }
          vector<double> wx(G * d), uh(G * d);
          for (int g = 0; g < G * d; ++g) {
            wx[g] = bv[g];
            for (int i = 0; i < K; ++i) wx[g] += Wm[g * K + i] * x[i];
            uh[g] = 0;
            for (int j = 0; j < d; ++j) uh[g] += Um[g * d + j] * h[j];
          }
          vector<double> hn(d);
          for (int j = 0; j < d; ++j) {
            if (p.unit() == ReNetParameter_Unit_LSTM) {
              const double i = RefSigmoid(wx[j] + uh[j]);
              const double f = RefSigmoid(wx[d + j] + uh[d + j]);
              const double o = RefSigmoid(wx[2 * d + j] + uh[2 * d + j]);
              const double g = std::tanh(wx[3 * d + j] + uh[3 * d + j]);
              c[j] = f * c[j] + i * g;
              hn[j] = o * std::tanh(c[j]);
            } else if (p.unit() == ReNetParameter_Unit_GRU) {
              const double r = RefSigmoid(wx[j] + uh[j]);
              const double z = RefSigmoid(wx[d + j] + uh[d + j]);
              const double nn = std::tanh(wx[2 * d + j] + r * uh[2 * d + j]);
              hn[j] = (1 - z) * nn + z * h[j];
            } else {
              hn[j] = std::max(0., wx[j] + uh[j]);
            }
          }
          h = hn;
          for (int j = 0; j < d; ++j) {
            top->mutable_cpu_data()[top->offset(n, dir * d + j, gy, gx)] =
                h[j];
          }
        }
      }
    }
  }
}

}  // namespace

template <typename TypeParam>
class ReNetLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  ReNetLayerTest()
      : blob_bottom_(new Blob<Dtype>(2, 2, 3, 4)),
        blob_top_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillBottom();
    blob_bottom_vec_.push_back(blob_bottom_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~ReNetLayerTest() {
    delete blob_bottom_;
    delete blob_top_;
  }

  void FillBottom() {
    FillerParameter fp;
    fp.set_min(-1);
    fp.set_max(1);
    UniformFiller<Dtype> filler(fp);
    filler.Fill(blob_bottom_);
  }

  LayerParameter MakeParam(ReNetParameter_Unit unit,
      ReNetParameter_Direction dir, int d, int ph, int pw) {
    LayerParameter lp;
    lp.set_name("renet_test");
    ReNetParameter* p = lp.mutable_renet_param();
    p->set_unit(unit);
    p->set_direction(dir);
    p->set_num_output(d);
    p->set_patch_h(ph);
    p->set_patch_w(pw);
    // Non-zero biases so that the tests see them.
    p->mutable_bias_filler()->set_type("uniform");
    p->mutable_bias_filler()->set_min(-0.3);
    p->mutable_bias_filler()->set_max(0.3);
    return lp;
  }

  // Forward through the layer and compare with the reference loop.
  void CheckForward(const LayerParameter& lp) {
    ReNetLayer<Dtype> layer(lp);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    layer.Forward(blob_bottom_vec_, blob_top_vec_);
    Blob<Dtype> expected;
    ReferenceForward(*blob_bottom_, layer.blobs(), lp.renet_param(),
        &expected);
    ASSERT_EQ(expected.shape(), blob_top_->shape());
    const Dtype tol = sizeof(Dtype) == 4 ? 2e-5 : 1e-10;
    for (int i = 0; i < expected.count(); ++i) {
      EXPECT_NEAR(expected.cpu_data()[i], blob_top_->cpu_data()[i], tol)
          << "at " << i;
    }
  }

  // Backward against central differences of loss = <top_diff, top> on
  // sampled elements of the bottom and of the six parameter blobs: six
  // spread elements each, plus the given extra indices per parameter blob
  // (for rows of hidden units the other tests' sampling may miss). The
  // layer is set up and run here.
  void CheckSampledGradients(const LayerParameter& lp,
      const vector<int>& extra, const string& what) {
    const bool is_float = sizeof(Dtype) == 4;
    ReNetLayer<Dtype> layer(lp);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    layer.Forward(blob_bottom_vec_, blob_top_vec_);
    Blob<Dtype> top_diff(blob_top_->shape());
    FillerParameter fp;
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(&top_diff);
    caffe_copy(top_diff.count(), top_diff.cpu_data(),
        blob_top_->mutable_cpu_diff());
    for (int i = 0; i < 6; ++i) {
      caffe_set(layer.blobs()[i]->count(), Dtype(0),
          layer.blobs()[i]->mutable_cpu_diff());
    }
    layer.Backward(blob_top_vec_, vector<bool>(1, true), blob_bottom_vec_);
    vector<Blob<Dtype>*> blobs(1, blob_bottom_);
    for (int i = 0; i < 6; ++i) blobs.push_back(layer.blobs()[i].get());
    const Dtype step = is_float ? 1e-2 : 1e-4;
    const Dtype tol = is_float ? 1e-2 : 1e-5;
    for (int bi = 0; bi < blobs.size(); ++bi) {
      Blob<Dtype>* blob = blobs[bi];
      vector<Dtype> analytic(blob->cpu_diff(),
          blob->cpu_diff() + blob->count());
      vector<int> idx;
      for (int k = 0; k < 6; ++k) {
        idx.push_back((k * 7919 + 13 * bi) % blob->count());
      }
      for (int k = 0; bi > 0 && k < extra.size(); ++k) {
        idx.push_back(std::min(extra[k], blob->count() - 1));
      }
      for (int k = 0; k < idx.size(); ++k) {
        const Dtype orig = blob->cpu_data()[idx[k]];
        Dtype loss[2];
        for (int sign = 0; sign < 2; ++sign) {
          blob->mutable_cpu_data()[idx[k]] = orig + (sign ? -step : step);
          layer.Forward(blob_bottom_vec_, blob_top_vec_);
          loss[sign] = caffe_cpu_dot(top_diff.count(), top_diff.cpu_data(),
              blob_top_->cpu_data());
        }
        blob->mutable_cpu_data()[idx[k]] = orig;
        const Dtype numeric = (loss[0] - loss[1]) / (2 * step);
        const Dtype scale = std::max<Dtype>(1,
            std::max(std::abs(numeric), std::abs(analytic[idx[k]])));
        EXPECT_NEAR(numeric, analytic[idx[k]], tol * scale)
            << what << " blob " << bi << " element " << idx[k];
      }
    }
  }

  void CheckForwardAll(ReNetParameter_Unit unit) {
    const ReNetParameter_Direction dirs[] = {
      ReNetParameter_Direction_VERTICAL, ReNetParameter_Direction_HORIZONTAL};
    const int patches[][2] = {{1, 1}, {2, 2}, {2, 3}};
    for (int di = 0; di < 2; ++di) {
      for (int pi = 0; pi < 3; ++pi) {
        // 5 x 7 is a multiple of none of the patch sizes but 1 x 1.
        blob_bottom_->Reshape(2, 2, 5, 7);
        FillBottom();
        CheckForward(MakeParam(unit, dirs[di], 3, patches[pi][0],
            patches[pi][1]));
      }
    }
  }

  void CheckGradients(ReNetParameter_Unit unit) {
    const ReNetParameter_Direction dirs[] = {
      ReNetParameter_Direction_VERTICAL, ReNetParameter_Direction_HORIZONTAL};
    for (int di = 0; di < 2; ++di) {
      for (int patch = 1; patch <= 2; ++patch) {
        // 2 x 2 patches on 4 x 3: the last patch column is padded.
        if (patch == 1) {
          blob_bottom_->Reshape(2, 2, 3, 4);
        } else {
          blob_bottom_->Reshape(2, 2, 4, 3);
        }
        FillBottom();
        LayerParameter lp = MakeParam(unit, dirs[di], 2, patch, patch);
        if (unit == ReNetParameter_Unit_IRNN) {
          // Keep the pre-activations away from ReLU's kink.
          lp.mutable_renet_param()->mutable_bias_filler()->set_min(0.5);
          lp.mutable_renet_param()->mutable_bias_filler()->set_max(0.8);
          lp.mutable_renet_param()->set_irnn_scale(0.5);
        }
        ReNetLayer<Dtype> layer(lp);
        GradientChecker<Dtype> checker(1e-2, 1e-3, 1701);
        checker.CheckGradientExhaustive(&layer, blob_bottom_vec_,
            blob_top_vec_);
      }
    }
  }

  // Checks the layer on a bottom of the given shape with HRENET_THREADS =
  // threads: forward against the reference, backward against finite
  // differences on sampled elements, for LSTM and GRU, both directions,
  // 1 x 1 patches; and that the CPU path started threads.
  void CheckThreadedSweeps(int N, int H, int W, const char* threads) {
    const ReNetParameter_Unit units[] = {ReNetParameter_Unit_LSTM,
        ReNetParameter_Unit_GRU};
    const ReNetParameter_Direction dirs[] = {
        ReNetParameter_Direction_VERTICAL,
        ReNetParameter_Direction_HORIZONTAL};
    ScopedEnv env("HRENET_THREADS", threads);
    for (int ui = 0; ui < 2; ++ui) {
      for (int di = 0; di < 2; ++di) {
        blob_bottom_->Reshape(N, 2, H, W);
        FillBottom();
        LayerParameter lp = MakeParam(units[ui], dirs[di], 32, 1, 1);
        const int64_t runs = ThreadedRuns();
        CheckForward(lp);
        if (Caffe::mode() == Caffe::CPU) {
          EXPECT_GT(ThreadedRuns(), runs) << "the forward ran on one thread";
        }
        std::ostringstream what;
        what << "unit " << ui << " direction " << di;
        CheckSampledGradients(lp, vector<int>(), what.str());
      }
    }
  }

  // Case k: a random bottom of its shape, the layer's parameter (returned),
  // the initial weights in *init and a random top diff in *top_diff.
  LayerParameter PreparePass(const PassCase& k,
      shared_ptr<ReNetLayer<Dtype> >* init, Blob<Dtype>* top_diff) {
    blob_bottom_->Reshape(k.N, k.C, k.H, k.W);
    FillBottom();
    LayerParameter lp = MakeParam(static_cast<ReNetParameter_Unit>(k.unit),
        static_cast<ReNetParameter_Direction>(k.dir), k.d, k.patch, k.patch);
    init->reset(new ReNetLayer<Dtype>(lp));
    (*init)->SetUp(blob_bottom_vec_, blob_top_vec_);
    top_diff->Reshape(blob_top_->shape());
    FillerParameter fp;
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(top_diff);
    return lp;
  }

  Blob<Dtype>* const blob_bottom_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(ReNetLayerTest, TestDtypesAndDevices);

TYPED_TEST(ReNetLayerTest, TestSetUpShapes) {
  typedef typename TypeParam::Dtype Dtype;
  struct Case { int dir, ph, pw, H, W, gh, gw; };
  const Case cases[] = {
    {0, 1, 1, 5, 7, 5, 7}, {1, 1, 1, 5, 7, 5, 7},
    {0, 2, 2, 4, 6, 2, 3}, {1, 2, 2, 4, 6, 2, 3},
    {0, 2, 3, 4, 6, 2, 2}, {1, 2, 3, 4, 6, 2, 2},
    {0, 2, 2, 5, 7, 3, 4}, {1, 2, 3, 5, 7, 3, 3},
  };
  for (int i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    const Case& k = cases[i];
    this->blob_bottom_->Reshape(2, 3, k.H, k.W);
    LayerParameter lp = this->MakeParam(ReNetParameter_Unit_LSTM,
        static_cast<ReNetParameter_Direction>(k.dir), 5, k.ph, k.pw);
    ReNetLayer<Dtype> layer(lp);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    EXPECT_EQ(this->blob_top_->num(), 2);
    EXPECT_EQ(this->blob_top_->channels(), 10);
    EXPECT_EQ(this->blob_top_->height(), k.gh) << "case " << i;
    EXPECT_EQ(this->blob_top_->width(), k.gw) << "case " << i;
    ASSERT_EQ(layer.blobs().size(), 6);
    for (int dir = 0; dir < 2; ++dir) {
      EXPECT_EQ(layer.blobs()[3 * dir]->shape(),
          (vector<int>{20, 3 * k.ph * k.pw}));
      EXPECT_EQ(layer.blobs()[3 * dir + 1]->shape(), (vector<int>{20, 5}));
      EXPECT_EQ(layer.blobs()[3 * dir + 2]->shape(), vector<int>{20});
    }
  }
}

TYPED_TEST(ReNetLayerTest, TestInitialisation) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter lp;
  lp.mutable_renet_param()->set_num_output(4);
  lp.mutable_renet_param()->set_forget_bias(2);
  ReNetLayer<Dtype> lstm(lp);
  lstm.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int dir = 0; dir < 2; ++dir) {
    const Blob<Dtype>& w = *lstm.blobs()[3 * dir];
    Dtype lo = 1, hi = -1;
    for (int i = 0; i < w.count(); ++i) {
      lo = std::min(lo, w.cpu_data()[i]);
      hi = std::max(hi, w.cpu_data()[i]);
    }
    EXPECT_GE(lo, -0.2);
    EXPECT_LE(hi, 0.2);
    EXPECT_LT(lo, -0.05);  // really filled, not zero
    EXPECT_GT(hi, 0.05);
    const Dtype* b = lstm.blobs()[3 * dir + 2]->cpu_data();
    for (int g = 0; g < 4; ++g) {
      for (int j = 0; j < 4; ++j) {
        EXPECT_EQ(b[g * 4 + j], g == 1 ? 2 : 0);
      }
    }
  }
  lp.mutable_renet_param()->set_unit(ReNetParameter_Unit_IRNN);
  lp.mutable_renet_param()->set_irnn_scale(0.75);
  ReNetLayer<Dtype> irnn(lp);
  irnn.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int dir = 0; dir < 2; ++dir) {
    const Dtype* u = irnn.blobs()[3 * dir + 1]->cpu_data();
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) {
        EXPECT_EQ(u[i * 4 + j], i == j ? Dtype(0.75) : Dtype(0));
      }
    }
    EXPECT_EQ(irnn.blobs()[3 * dir]->shape(), (vector<int>{4, 2}));
  }
}

TYPED_TEST(ReNetLayerTest, TestForgetBiasLong) {
  // d = 5: units 0, 1 keep forget_bias, units 2-4 get forget_bias_long
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter lp;
  lp.mutable_renet_param()->set_num_output(5);
  lp.mutable_renet_param()->set_forget_bias(1);
  lp.mutable_renet_param()->set_forget_bias_long(5);
  lp.mutable_renet_param()->mutable_bias_filler()->set_type("constant");
  lp.mutable_renet_param()->mutable_bias_filler()->set_value(0.5);
  ReNetLayer<Dtype> lstm(lp);
  lstm.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int dir = 0; dir < 2; ++dir) {
    const Dtype* b = lstm.blobs()[3 * dir + 2]->cpu_data();
    for (int g = 0; g < 4; ++g) {
      for (int j = 0; j < 5; ++j) {
        const Dtype f = j < 2 ? 1 : 5;
        EXPECT_EQ(b[g * 5 + j], Dtype(0.5) + (g == 1 ? f : 0));
      }
    }
  }
  // a GRU has no forget gate
  lp.mutable_renet_param()->set_unit(ReNetParameter_Unit_GRU);
  ReNetLayer<Dtype> gru(lp);
  ExpectUserError([&] {
      gru.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    }, "forget_bias_long is for LSTM units");
}

TYPED_TEST(ReNetLayerTest, TestForwardLSTM) {
  this->CheckForwardAll(ReNetParameter_Unit_LSTM);
}

TYPED_TEST(ReNetLayerTest, TestForwardIRNN) {
  this->CheckForwardAll(ReNetParameter_Unit_IRNN);
}

TYPED_TEST(ReNetLayerTest, TestForwardGRU) {
  this->CheckForwardAll(ReNetParameter_Unit_GRU);
}

TYPED_TEST(ReNetLayerTest, TestGradientLSTM) {
  this->CheckGradients(ReNetParameter_Unit_LSTM);
}

TYPED_TEST(ReNetLayerTest, TestGradientIRNN) {
  this->CheckGradients(ReNetParameter_Unit_IRNN);
}

TYPED_TEST(ReNetLayerTest, TestGradientGRU) {
  this->CheckGradients(ReNetParameter_Unit_GRU);
}

// One image (batch-1 inference): the two directions sweep on two threads
// when a sweep has at least 2^20 recurrent multiply-adds:
// T B G d d >= 24 * 25 * 96 * 32 > 2^20 (GRU, the smaller G).
TYPED_TEST(ReNetLayerTest, TestLargeTwoThreadSweeps) {
  this->CheckThreadedSweeps(1, 24, 25, "2");
}

// Several images: the work runs as jobs (per direction and image, then
// parameter gradients and bottom diffs) that three threads take in turn;
// all sweeps together over 2^20 multiply-adds (3 * 16 * 17 * 96 * 32).
TYPED_TEST(ReNetLayerTest, TestLargeImageJobs) {
  this->CheckThreadedSweeps(3, 16, 17, "3");
}

// The same forward and backward pass with 1, 2, 3 and 5 threads gives the
// same bits: top, bottom diff and parameter diffs, on every kPassCases
// shape.
TYPED_TEST(ReNetLayerTest, TestThreadCountBitIdentical) {
  typedef typename TypeParam::Dtype Dtype;
  if (Caffe::mode() != Caffe::CPU) {
    return;
  }
  const char* threads[] = {"1", "2", "3", "5"};
  for (int ci = 0; ci < kNumPassCases; ++ci) {
    shared_ptr<ReNetLayer<Dtype> > init;
    Blob<Dtype> top_diff;
    const LayerParameter lp = this->PreparePass(kPassCases[ci], &init,
                                                &top_diff);
    PassResult<Dtype> first;
    for (int ti = 0; ti < 4; ++ti) {
      ScopedEnv env("HRENET_THREADS", threads[ti]);
      const int64_t runs = ThreadedRuns();
      const PassResult<Dtype> r = RunPass(lp, init->blobs(),
          *this->blob_bottom_, top_diff);
      if (ti == 0) {
        EXPECT_EQ(ThreadedRuns(), runs) << "one thread started others";
        first = r;
        continue;
      }
      EXPECT_GT(ThreadedRuns(), runs) << "case " << ci << " ran on one "
          << "thread with HRENET_THREADS=" << threads[ti];
      EXPECT_TRUE(r == first) << "case " << ci << ": " << threads[ti]
          << " threads give other bits than 1";
    }
  }
}

// The products' two libraries agree: the same passes (every kPassCases
// shape) with the default products (oneDNN's sgemm in float where the
// build has it, the packed kernel on an AVX-512 CPU) and with
// HRENET_PORTABLE=1 (the BLAS for all) differ by rounding alone.
TYPED_TEST(ReNetLayerTest, TestProductLibrariesAgree) {
  typedef typename TypeParam::Dtype Dtype;
  if (Caffe::mode() != Caffe::CPU) {
    return;
  }
  for (int ci = 0; ci < kNumPassCases; ++ci) {
    shared_ptr<ReNetLayer<Dtype> > init;
    Blob<Dtype> top_diff;
    const LayerParameter lp = this->PreparePass(kPassCases[ci], &init,
                                                &top_diff);
    PassResult<Dtype> fast, blas;
    {
      ScopedEnv env("HRENET_PORTABLE", "0");
      fast = RunPass(lp, init->blobs(), *this->blob_bottom_, top_diff);
    }
    {
      ScopedEnv env("HRENET_PORTABLE", "1");
      blas = RunPass(lp, init->blobs(), *this->blob_bottom_, top_diff);
    }
    ASSERT_EQ(fast.values.size(), blas.values.size());
    for (int i = 0; i < fast.values.size(); ++i) {
      const Dtype scale = std::max(Dtype(1), std::fabs(blas.values[i]));
      ASSERT_NEAR(fast.values[i], blas.values[i], Dtype(1e-4) * scale)
          << "case " << ci << ", value " << i;
    }
  }
}

// renet_cpu::Gemm through either library: every transpose pair, leading
// dimensions wider than the operands, beta 0 and 1, against a plain loop.
// Through oneDNN it runs on the calling thread and leaves that thread's
// OpenMP count as it found it.
TEST(ReNetGemmTest, TestAgainstLoops) {
  using renet_cpu::Gemm;
  const int m = 37, n = 29, k = 45, pad = 3;
  Caffe::set_random_seed(1701);
  vector<float> a((k + pad) * (k + pad)), b((k + pad) * (k + pad));
  caffe_rng_uniform<float>(a.size(), -1.f, 1.f, &a[0]);
  caffe_rng_uniform<float>(b.size(), -1.f, 1.f, &b[0]);
  bool onednn = false;
  {
    ScopedEnv env("HRENET_PORTABLE", "0");
    onednn = renet_cpu::OnednnGemm(true);
  }
  const bool libraries[] = {false, onednn};
  for (int li = 0; li < 2; ++li) {
    for (int t = 0; t < 8; ++t) {
      const bool ta = t & 1, tb = t & 2;
      const float beta = (t & 4) ? 1.f : 0.f;
      const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad;
      const int ldc = n + pad;
      vector<float> c(m * ldc, 0.5f), ref(c);
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < n; ++j) {
          double sum = 0;
          for (int q = 0; q < k; ++q) {
            sum += static_cast<double>(ta ? a[q * lda + i] : a[i * lda + q])
                * (tb ? b[j * ldb + q] : b[q * ldb + j]);
          }
          ref[i * ldc + j] = 2 * sum + beta * ref[i * ldc + j];
        }
      }
      Gemm(libraries[li], ta ? CblasTrans : CblasNoTrans,
          tb ? CblasTrans : CblasNoTrans, m, n, k, 2.f, &a[0], lda, &b[0],
          ldb, beta, &c[0], ldc);
      for (int i = 0; i < m * ldc; ++i) {
        ASSERT_NEAR(c[i], ref[i], 1e-4) << "library " << li << ", case "
            << t << ", element " << i;
      }
    }
  }
#ifdef USE_DNNL
  {
    ScopedEnv env("HRENET_PORTABLE", "0");
    EXPECT_TRUE(renet_cpu::OnednnGemm(true));
    EXPECT_FALSE(renet_cpu::OnednnGemm(false));
  }
  {
    ScopedEnv env("HRENET_PORTABLE", "1");
    EXPECT_FALSE(renet_cpu::OnednnGemm(true));
  }
  // The calling thread's OpenMP count survives a product.
  ASSERT_TRUE(omp_get_max_threads && omp_set_num_threads);
  std::thread worker([&a, &b]() {
    omp_set_num_threads(3);
    vector<float> c(8 * 8);
    Gemm(true, CblasNoTrans, CblasNoTrans, 8, 8, 8, 1.f, &a[0], 8, &b[0], 8,
         0.f, &c[0], 8);
    EXPECT_EQ(omp_get_max_threads(), 3);
  });
  worker.join();
#else
  EXPECT_FALSE(renet_cpu::OnednnGemm(true));
#endif
}

// Two nets running at once in two threads, each on two threads of its own,
// give what each gives alone, and leave the BLAS's thread count as it was.
TYPED_TEST(ReNetLayerTest, TestConcurrentNets) {
  typedef typename TypeParam::Dtype Dtype;
  if (Caffe::mode() != Caffe::CPU) {
    return;
  }
  ScopedEnv env("HRENET_THREADS", "2");
  const int blas_threads = OpenBlasThreads();
  LayerParameter lp[2] = {
      this->MakeParam(ReNetParameter_Unit_LSTM,
                      ReNetParameter_Direction_VERTICAL, 32, 1, 1),
      this->MakeParam(ReNetParameter_Unit_GRU,
                      ReNetParameter_Direction_HORIZONTAL, 32, 2, 2)};
  const int shapes[2][4] = {{1, 16, 24, 25}, {2, 8, 30, 34}};
  Blob<Dtype> bottom[2], top_diff[2];
  vector<shared_ptr<Blob<Dtype> > > weights[2];
  PassResult<Dtype> alone[2];
  for (int i = 0; i < 2; ++i) {
    this->blob_bottom_->Reshape(shapes[i][0], shapes[i][1], shapes[i][2],
                                shapes[i][3]);
    this->FillBottom();
    bottom[i].CopyFrom(*this->blob_bottom_, false, true);
    ReNetLayer<Dtype> init(lp[i]);
    init.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    weights[i] = init.blobs();
    top_diff[i].Reshape(this->blob_top_->shape());
    FillerParameter fp;
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(&top_diff[i]);
    alone[i] = RunPass(lp[i], weights[i], bottom[i], top_diff[i]);
  }
  const int kRepeats = 4;
  vector<PassResult<Dtype> > together[2];
  std::thread second([&]() {
    for (int r = 0; r < kRepeats; ++r) {
      together[1].push_back(RunPass(lp[1], weights[1], bottom[1],
                                    top_diff[1]));
    }
  });
  for (int r = 0; r < kRepeats; ++r) {
    together[0].push_back(RunPass(lp[0], weights[0], bottom[0], top_diff[0]));
  }
  second.join();
  for (int i = 0; i < 2; ++i) {
    for (int r = 0; r < kRepeats; ++r) {
      EXPECT_TRUE(together[i][r] == alone[i]) << "net " << i << " pass "
          << r << " differs when run beside the other";
    }
  }
  EXPECT_EQ(OpenBlasThreads(), blas_threads);
}

// Rows of d hidden units that are no whole number of 16-unit vectors: the
// CPU's LSTM rows run their last 16 units again on copies (d = 20: units
// 4..19, of which 16..19 are kept; d = 37: 21..36, 32..36 kept). Forward
// against the reference loop; backward against finite differences on
// sampled elements, among them the last units' gate rows of W, U and b.
TYPED_TEST(ReNetLayerTest, TestRowTails) {
  const ReNetParameter_Unit units[] = {ReNetParameter_Unit_LSTM,
      ReNetParameter_Unit_GRU};
  const ReNetParameter_Direction dirs[] = {
      ReNetParameter_Direction_VERTICAL, ReNetParameter_Direction_HORIZONTAL};
  const int sizes[] = {16, 20, 37};
  for (int ui = 0; ui < 2; ++ui) {
    for (int di = 0; di < 2; ++di) {
      for (int si = 0; si < 3; ++si) {
        const int d = sizes[si];
        this->blob_bottom_->Reshape(2, 2, 3, 4);
        this->FillBottom();
        LayerParameter lp = this->MakeParam(units[ui], dirs[di], d, 1, 2);
        this->CheckForward(lp);
        // The last unit of the first gate and of the last gate: row d - 1
        // and the last row of W (4 columns) and U (d columns), entry d - 1
        // and the last of b (the minimum with each count picks it).
        vector<int> extra;
        extra.push_back((d - 1) * 4);
        extra.push_back((d - 1) * d);
        extra.push_back(d - 1);
        extra.push_back(1 << 30);  // the last element
        std::ostringstream what;
        what << "unit " << ui << " direction " << di << " d " << d;
        this->CheckSampledGradients(lp, extra, what.str());
      }
    }
  }
}

// VERTICAL, 1 x 1 patches and N = 1: the GEMMs use the bottom directly.
TYPED_TEST(ReNetLayerTest, TestDirectInputPath) {
  typedef typename TypeParam::Dtype Dtype;
  const ReNetParameter_Unit units[] = {ReNetParameter_Unit_LSTM,
      ReNetParameter_Unit_GRU};
  for (int ui = 0; ui < 2; ++ui) {
    this->blob_bottom_->Reshape(1, 3, 4, 3);
    this->FillBottom();
    LayerParameter lp = this->MakeParam(units[ui],
        ReNetParameter_Direction_VERTICAL, 2, 1, 1);
    this->CheckForward(lp);
    ReNetLayer<Dtype> layer(lp);
    GradientChecker<Dtype> checker(1e-2, 1e-3, 1701);
    checker.CheckGradientExhaustive(&layer, this->blob_bottom_vec_,
        this->blob_top_vec_);
  }
}

TYPED_TEST(ReNetLayerTest, TestGradientAccumulation) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter lp = this->MakeParam(ReNetParameter_Unit_LSTM,
      ReNetParameter_Direction_VERTICAL, 3, 1, 2);
  ReNetLayer<Dtype> layer(lp);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  FillerParameter fp;
  GaussianFiller<Dtype> filler(fp);
  Blob<Dtype> top_diff(this->blob_top_->shape());
  filler.Fill(&top_diff);
  caffe_copy(top_diff.count(), top_diff.cpu_data(),
      this->blob_top_->mutable_cpu_diff());
  for (int i = 0; i < 6; ++i) {
    caffe_set(layer.blobs()[i]->count(), Dtype(0),
        layer.blobs()[i]->mutable_cpu_diff());
  }
  vector<bool> prop(1, true);
  layer.Backward(this->blob_top_vec_, prop, this->blob_bottom_vec_);
  vector<vector<Dtype> > once(6);
  for (int i = 0; i < 6; ++i) {
    const Blob<Dtype>& b = *layer.blobs()[i];
    once[i].assign(b.cpu_diff(), b.cpu_diff() + b.count());
  }
  vector<Dtype> bottom_once(this->blob_bottom_->cpu_diff(),
      this->blob_bottom_->cpu_diff() + this->blob_bottom_->count());
  layer.Backward(this->blob_top_vec_, prop, this->blob_bottom_vec_);
  for (int i = 0; i < 6; ++i) {
    const Blob<Dtype>& b = *layer.blobs()[i];
    Dtype norm = 0;
    for (int k = 0; k < b.count(); ++k) {
      EXPECT_NEAR(b.cpu_diff()[k], 2 * once[i][k], 1e-5) << "blob " << i;
      norm += std::abs(once[i][k]);
    }
    EXPECT_GT(norm, 0) << "blob " << i << " got no gradient";
  }
  // The bottom diff is overwritten, not accumulated.
  for (int k = 0; k < this->blob_bottom_->count(); ++k) {
    EXPECT_NEAR(this->blob_bottom_->cpu_diff()[k], bottom_once[k], 1e-6);
  }
}

TYPED_TEST(ReNetLayerTest, TestNoPropagateDown) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter lp = this->MakeParam(ReNetParameter_Unit_GRU,
      ReNetParameter_Direction_HORIZONTAL, 2, 1, 1);
  ReNetLayer<Dtype> layer(lp);
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
  caffe_set(this->blob_top_->count(), Dtype(1),
      this->blob_top_->mutable_cpu_diff());
  caffe_set(this->blob_bottom_->count(), Dtype(7),
      this->blob_bottom_->mutable_cpu_diff());
  layer.Backward(this->blob_top_vec_, vector<bool>(1, false),
      this->blob_bottom_vec_);
  for (int k = 0; k < this->blob_bottom_->count(); ++k) {
    EXPECT_EQ(this->blob_bottom_->cpu_diff()[k], 7);
  }
  EXPECT_GT(layer.blobs()[0]->asum_diff(), 0);
}

// A new size (and number of images) per pass, which on the CPU changes the
// layout (one block of sequences per image, time-major for one image):
// horizontal 2 x 2 patches (copied into X), and vertical 1 x 1 patches,
// which the CPU reads from the bottom in place.
TYPED_TEST(ReNetLayerTest, TestReshape) {
  typedef typename TypeParam::Dtype Dtype;
  for (int config = 0; config < 2; ++config) {
    LayerParameter lp = this->MakeParam(ReNetParameter_Unit_LSTM,
        config == 0 ? ReNetParameter_Direction_HORIZONTAL :
        ReNetParameter_Direction_VERTICAL, 3, 2 - config, 2 - config);
    this->blob_bottom_->Reshape(2, 2, 3, 4);
    ReNetLayer<Dtype> layer(lp);
    layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
    const int shapes[][3] = {{2, 3, 4}, {1, 5, 3}, {3, 6, 6}, {2, 3, 4}};
    for (int i = 0; i < 4; ++i) {
      this->blob_bottom_->Reshape(shapes[i][0], 2, shapes[i][1],
          shapes[i][2]);
      this->FillBottom();
      layer.Reshape(this->blob_bottom_vec_, this->blob_top_vec_);
      layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
      Blob<Dtype> expected;
      ReferenceForward(*this->blob_bottom_, layer.blobs(), lp.renet_param(),
          &expected);
      ASSERT_EQ(expected.shape(), this->blob_top_->shape());
      for (int k = 0; k < expected.count(); ++k) {
        EXPECT_NEAR(expected.cpu_data()[k], this->blob_top_->cpu_data()[k],
            2e-5);
      }
      caffe_set(this->blob_top_->count(), Dtype(1),
          this->blob_top_->mutable_cpu_diff());
      layer.Backward(this->blob_top_vec_, vector<bool>(1, true),
          this->blob_bottom_vec_);
      EXPECT_GT(this->blob_bottom_->asum_diff(), 0);
      // The same input gradient as a layer set up for this size only.
      Blob<Dtype> reshaped_diff;
      reshaped_diff.CopyFrom(*this->blob_bottom_, true, true);
      ReNetLayer<Dtype> fresh(lp);
      fresh.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      for (int b = 0; b < 6; ++b) {
        fresh.blobs()[b]->CopyFrom(*layer.blobs()[b]);
      }
      fresh.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
      caffe_set(this->blob_top_->count(), Dtype(1),
          this->blob_top_->mutable_cpu_diff());
      fresh.Backward(this->blob_top_vec_, vector<bool>(1, true),
          this->blob_bottom_vec_);
      for (int k = 0; k < reshaped_diff.count(); ++k) {
        EXPECT_NEAR(this->blob_bottom_->cpu_diff()[k],
            reshaped_diff.cpu_diff()[k], 1e-6);
      }
    }
  }
}

TYPED_TEST(ReNetLayerTest, TestBadInputDies) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter lp = this->MakeParam(ReNetParameter_Unit_LSTM,
      ReNetParameter_Direction_VERTICAL, 0, 1, 1);
  {
    ReNetLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      }, "renet_test.*num_output is 0");
  }
  lp.mutable_renet_param()->set_num_output(2);
  lp.mutable_renet_param()->set_patch_w(0);
  {
    ReNetLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      }, "renet_test.*patch_w is 0");
  }
  lp.mutable_renet_param()->set_patch_w(1);
  lp.mutable_renet_param()->set_threads(4000000000u);
  {
    ReNetLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      }, "renet_test.*threads is 4000000000; give at most 65536");
  }
  lp.mutable_renet_param()->set_threads(0);
  Blob<Dtype> flat(vector<int>{2, 6});
  vector<Blob<Dtype>*> flat_vec(1, &flat);
  {
    ReNetLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(flat_vec, this->blob_top_vec_);
      }, "renet_test.*4 axes.*got 2 6");
  }
  vector<Blob<Dtype>*> two_bottoms(2, this->blob_bottom_);
  {
    ReNetLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(two_bottoms, this->blob_top_vec_);
      }, "renet_test' has 2 bottoms; it takes exactly 1");
  }
  Blob<Dtype> top2;
  vector<Blob<Dtype>*> two_tops(this->blob_top_vec_);
  two_tops.push_back(&top2);
  {
    ReNetLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(this->blob_bottom_vec_, two_tops);
      }, "renet_test' has 2 tops; it produces exactly 1");
  }
  {
    ScopedEnv env("HRENET_PORTABLE", "yes");
    ReNetLayer<Dtype> layer(lp);
    ExpectUserError([&] {
        layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
      }, "HRENET_PORTABLE is 'yes'; set it to 1");
  }
}

}  // namespace caffe
