#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layers/renet_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/parallel.hpp"
#include "caffe/util/renet_cpu.hpp"
#include "caffe/util/user_error.hpp"

namespace caffe {

// The CPU machinery: caffe/util/renet_cpu.hpp.
using renet_cpu::BackwardStepProduct;
using renet_cpu::CopyAllImageRows;
using renet_cpu::CopyImageRows;
using renet_cpu::ForwardStepProduct;
using renet_cpu::Gemm;
using renet_cpu::HrenetPortable;
using renet_cpu::RowLayout;
using renet_cpu::RunBothDirections;
using renet_cpu::RunJobs;
using renet_cpu::SetStepPackBuffers;
using renet_cpu::SplitGemm;
using renet_cpu::StepProduct;
using renet_cpu::Sweep;
using renet_cpu::SweepBackward;
using renet_cpu::SweepForward;
using renet_cpu::SweepParamGradients;
using renet_cpu::kStepProjectionMaxK;

template <typename Dtype>
void ReNetLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const ReNetParameter& p = this->layer_param_.renet_param();
  const string& name = this->layer_param_.name();
  HRENET_USER_CHECK(bottom.size() == 1,
      "ReNet layer '" << name << "' has "
      << bottom.size() << " bottoms; it takes exactly 1 (N x C x H x W)");
  HRENET_USER_CHECK(top.size() == 1,
      "ReNet layer '" << name << "' has "
      << top.size() << " tops; it produces exactly 1 (N x 2d x h x w)");
  HRENET_USER_CHECK(bottom[0]->num_axes() == 4,
      "ReNet layer '" << name
      << "': bottom must be N x C x H x W (4 axes), got "
      << bottom[0]->shape_string());
  HRENET_USER_CHECK(p.num_output() > 0,
      "ReNet layer '" << name
      << "': renet_param.num_output is " << p.num_output()
      << "; set it to the number of hidden units per direction (> 0)");
  HRENET_USER_CHECK(p.patch_h() > 0,
      "ReNet layer '" << name
      << "': renet_param.patch_h is 0; a patch must be at least 1 pixel");
  HRENET_USER_CHECK(p.patch_w() > 0,
      "ReNet layer '" << name
      << "': renet_param.patch_w is 0; a patch must be at least 1 pixel");
  num_threads_ = LayerThreads(p.threads(), name);
  HRENET_USER_CHECK(!p.has_forget_bias_long() ||
                    p.unit() == ReNetParameter_Unit_LSTM,
      "ReNet layer '" << name << "': forget_bias_long is for LSTM units; "
      << "remove it (a GRU or IRNN has no forget gate)");
  step_kernel_ = !HrenetPortable();
  onednn_gemm_ = renet_cpu::OnednnGemm(sizeof(Dtype) == sizeof(float));
  unit_ = p.unit();
  vertical_ = p.direction() == ReNetParameter_Direction_VERTICAL;
  d_ = p.num_output();
  G_ = renet_num_gates(unit_);
  ph_ = p.patch_h();
  pw_ = p.patch_w();
  C_ = bottom[0]->channels();
  K_ = C_ * ph_ * pw_;
  const int gd = G_ * d_;
  if (this->blobs_.size() > 0) {
    HRENET_USER_CHECK(this->blobs_.size() == 6,
        "ReNet layer '" << name
        << "': expected 6 parameter blobs (W, U, b per direction), got "
        << this->blobs_.size());
    LOG(INFO) << "Skipping parameter initialization";
  } else {
    this->blobs_.resize(6);
    FillerParameter wf;
    if (p.has_weight_filler()) {
      wf = p.weight_filler();
    } else {
      wf.set_type("uniform");
      wf.set_min(-0.2);
      wf.set_max(0.2);
    }
    FillerParameter bf;
    if (p.has_bias_filler()) {
      bf = p.bias_filler();
    } else {
      bf.set_type("constant");
      bf.set_value(0);
    }
    shared_ptr<Filler<Dtype> > weight_filler(GetFiller<Dtype>(wf));
    shared_ptr<Filler<Dtype> > bias_filler(GetFiller<Dtype>(bf));
    for (int dir = 0; dir < 2; ++dir) {
      Blob<Dtype>* w = new Blob<Dtype>(vector<int>{gd, K_});
      Blob<Dtype>* u = new Blob<Dtype>(vector<int>{gd, d_});
      Blob<Dtype>* b = new Blob<Dtype>(vector<int>{gd});
      weight_filler->Fill(w);
      if (unit_ == ReNetParameter_Unit_IRNN) {
        Dtype* ud = u->mutable_cpu_data();
        caffe_set(u->count(), Dtype(0), ud);
        for (int j = 0; j < d_; ++j) {
          ud[j * d_ + j] = p.irnn_scale();
        }
      } else {
        weight_filler->Fill(u);
      }
      bias_filler->Fill(b);
      if (unit_ == ReNetParameter_Unit_LSTM) {
        // f-gate rows [d, 2d); with forget_bias_long, the second half of
        // the units get it instead
        const int half = p.has_forget_bias_long() ? d_ / 2 : d_;
        caffe_add_scalar(half, Dtype(p.forget_bias()),
            b->mutable_cpu_data() + d_);
        caffe_add_scalar(d_ - half, Dtype(p.forget_bias_long()),
            b->mutable_cpu_data() + d_ + half);
      }
      this->blobs_[3 * dir].reset(w);
      this->blobs_[3 * dir + 1].reset(u);
      this->blobs_[3 * dir + 2].reset(b);
    }
  }
  for (int dir = 0; dir < 2; ++dir) {
    HRENET_USER_CHECK(this->blobs_[3 * dir]->shape() == (vector<int>{gd, K_}),
        "ReNet layer '" << name << "': W has shape "
        << this->blobs_[3 * dir]->shape_string() << ", expected " << gd
        << " " << K_ << " (G d x C patch_h patch_w)");
    HRENET_USER_CHECK(
        this->blobs_[3 * dir + 1]->shape() == (vector<int>{gd, d_}),
        "ReNet layer '" << name << "': U has shape "
        << this->blobs_[3 * dir + 1]->shape_string() << ", expected " << gd
        << " " << d_ << " (G d x d)");
    HRENET_USER_CHECK(this->blobs_[3 * dir + 2]->count() == gd,
        "ReNet layer '" << name << "': b has shape "
        << this->blobs_[3 * dir + 2]->shape_string() << ", expected " << gd);
  }
  this->param_propagate_down_.resize(this->blobs_.size(), true);
}

template <typename Dtype>
void ReNetLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  HRENET_USER_CHECK(bottom[0]->num_axes() == 4,
      "ReNet layer '" << name
      << "': bottom must be N x C x H x W (4 axes), got "
      << bottom[0]->shape_string());
  HRENET_USER_CHECK(bottom[0]->channels() == C_,
      "ReNet layer '" << name
      << "': bottom has " << bottom[0]->channels() << " channels but the "
      << "layer was set up (and its weights shaped) for " << C_);
  N_ = bottom[0]->num();
  H_ = bottom[0]->height();
  W_ = bottom[0]->width();
  gh_ = (H_ + ph_ - 1) / ph_;
  gw_ = (W_ + pw_ - 1) / pw_;
  T_ = vertical_ ? gh_ : gw_;
  B_ = N_ * (vertical_ ? gw_ : gh_);
  // The CPU stores the sequences in blocks of one image each (image-major)
  // and reads VERTICAL 1 x 1 patches from the bottom in place (its image n
  // is X^T of n's w sequences); other patches it copies into X. The GPU
  // keeps one time-major block and reads the bottom in place for N = 1.
  direct_ = vertical_ && ph_ == 1 && pw_ == 1;
  const int Bs = B_ / N_;
  // Row of patch (n, gy, gx): sequence b (n w + gx or n h + gy) at step t
  // (gy or gx) is row (k T + t) Bs + b % Bs of block k = b / Bs.
  pos_y_.resize(gh_);
  pos_x_.resize(gw_);
  for (int gy = 0; gy < gh_; ++gy) {
    pos_y_[gy] = vertical_ ? gy * Bs : gy;
  }
  for (int gx = 0; gx < gw_; ++gx) {
    pos_x_[gx] = vertical_ ? gx : gx * Bs;
  }
  pos_n_ = T_ * Bs;
  pos_.resize(gh_ * gw_);
  for (int gy = 0; gy < gh_; ++gy) {
    for (int gx = 0; gx < gw_; ++gx) {
      pos_[gy * gw_ + gx] = pos_y_[gy] + pos_x_[gx];
    }
  }
  const int gd = G_ * d_;
  top[0]->Reshape(N_, 2 * d_, gh_, gw_);
  // X, also for the GPU with N > 1 (a blob's memory is allocated on first
  // use, so the CPU allocates none when direct_).
  if (!direct_ || N_ > 1) {
    x_.Reshape(vector<int>{T_, B_, K_});
  }
  gates_.Reshape(vector<int>{2, T_, B_, gd});
  hidden_.Reshape(vector<int>{2, T_, B_, d_});
  if (unit_ == ReNetParameter_Unit_LSTM) {
    cell_.Reshape(vector<int>{2, T_, B_, d_});
    carry_.Reshape(vector<int>{2, 2, B_, d_});
    if (gate_scale_.count() != gd) {
      gate_scale_.Reshape(vector<int>{gd});
      Dtype* s = gate_scale_.mutable_cpu_data();
      caffe_set(3 * d_, Dtype(1), s);
      caffe_set(d_, Dtype(2), s + 3 * d_);
    }
    step_.Reshape(vector<int>{!direct_ && K_ <= kStepProjectionMaxK ? 2 : 0,
                              B_, gd});
  }
  if (unit_ == ReNetParameter_Unit_GRU) {
    rec_.Reshape(vector<int>{2, T_, B_, gd});
    if (zeros_.count() != gd) {
      zeros_.Reshape(vector<int>{gd});
      caffe_set(gd, Dtype(0), zeros_.mutable_cpu_data());
    }
  }
  if (bias_multiplier_.count() != T_ * B_) {
    bias_multiplier_.Reshape(vector<int>{T_ * B_});
    caffe_set(T_ * B_, Dtype(1), bias_multiplier_.mutable_cpu_data());
  }
}

template <typename Dtype>
void ReNetLayer<Dtype>::SetUpSweeps(const vector<Blob<Dtype>*>& bottom,
    bool backward, ReNetSweep<Dtype>* w) {
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  for (int dir = 0; dir < 2; ++dir) {
    ReNetSweep<Dtype>& v = w[dir];
    v = ReNetSweep<Dtype>();
    v.unit = unit_; v.dir = dir; v.T = T_; v.B = B_; v.d = d_; v.gd = gd;
    v.K = K_; v.Bs = B_ / N_;
    v.N = N_; v.plane = gh_ * gw_; v.pos_n = pos_n_; v.pos = pos_.data();
    v.x = direct_ ? bottom[0]->cpu_data() : x_.cpu_data();
    v.x_trans = direct_;
    v.onednn = onednn_gemm_;
    v.W = this->blobs_[3 * dir]->cpu_data();
    v.U = this->blobs_[3 * dir + 1]->cpu_data();
    v.bias = this->blobs_[3 * dir + 2]->cpu_data();
    v.a = gates_.mutable_cpu_data() + dir * TB * gd;
    v.h = hidden_.mutable_cpu_data() + dir * TB * d_;
    if (unit_ == ReNetParameter_Unit_LSTM) {
      v.c = cell_.mutable_cpu_data() + dir * TB * d_;
      v.scale = gate_scale_.cpu_data();
      v.z = step_.count() ? step_.mutable_cpu_data() + dir * B_ * gd : NULL;
    }
    if (unit_ == ReNetParameter_Unit_GRU) {
      v.u = rec_.mutable_cpu_data() + dir * TB * gd;
      v.zeros = zeros_.cpu_data();
    }
    if (!backward) {
      continue;  // no diff memory for inference
    }
    v.da = gates_.mutable_cpu_diff() + dir * TB * gd;
    v.dh = hidden_.mutable_cpu_diff() + dir * TB * d_;
    if (unit_ == ReNetParameter_Unit_LSTM) {
      v.dc = carry_.mutable_cpu_data() + dir * B_ * d_;
      v.dc_stride = 2 * B_ * d_;
    }
    if (unit_ == ReNetParameter_Unit_GRU) {
      v.du = rec_.mutable_cpu_diff() + dir * TB * gd;
    }
    v.ones = bias_multiplier_.cpu_data();
    v.grad_W = this->param_propagate_down_[3 * dir];
    v.grad_U = this->param_propagate_down_[3 * dir + 1];
    v.grad_b = this->param_propagate_down_[3 * dir + 2];
    v.dW = v.grad_W ? this->blobs_[3 * dir]->mutable_cpu_diff() : NULL;
    v.dU = v.grad_U ? this->blobs_[3 * dir + 1]->mutable_cpu_diff() : NULL;
    v.db = v.grad_b ? this->blobs_[3 * dir + 2]->mutable_cpu_diff() : NULL;
  }
}

template <typename Dtype>
void ReNetLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  BlasSingleThreaded blas_single_threaded;
  const int gd = G_ * d_;
  const Dtype* in = bottom[0]->cpu_data();
  Dtype* x = direct_ ? NULL : x_.mutable_cpu_data();
  // Patch extraction into X (zero padding where needed).
  if (!direct_) {
    if (gh_ * ph_ != H_ || gw_ * pw_ != W_) {
      caffe_set(x_.count(), Dtype(0), x);
    }
    const RowLayout layout = {C_, H_, W_, ph_, pw_, gh_, gw_, K_, pos_n_,
        pos_.data(), pos_y_.data(), pos_x_.data()};
    CopyAllImageRows<true>(num_threads_, layout, N_,
                           const_cast<Dtype*>(in) /* only read */, x);
  }
  // Each direction's input projection and recurrence.
  Sweep<Dtype> w[2];
  SetUpSweeps(bottom, false, w);
  SetStepPackBuffers(step_kernel_, &packed_u_, gd, d_, step_.count() ? K_ : 0,
      B_ / N_, w);
  Dtype* out = top[0]->mutable_cpu_data();
  const StepProduct<Dtype> product[2] = {ForwardStepProduct(w[0]),
                                         ForwardStepProduct(w[1])};
  const double macs = static_cast<double>(T_) * B_ * gd * d_;
  if (N_ > 1) {
    // One job per direction and block (image): its projection, recurrence
    // and top copy.
    RunJobs(num_threads_, 2 * N_, macs, [&w, &product, out](int j) {
      SweepForward(w[j % 2], product[j % 2], j / 2, j / 2 + 1, out);
    });
    return;
  }
  RunBothDirections(num_threads_, [&product, out](const Sweep<Dtype>& v) {
        SweepForward(v, product[v.dir], 0, 1, out);
      }, w[0], w[1]);
}

template <typename Dtype>
void ReNetLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  BlasSingleThreaded blas_single_threaded;
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  Sweep<Dtype> w[2];
  SetUpSweeps(bottom, true, w);
  Dtype* da = gates_.mutable_cpu_diff();
  SetStepPackBuffers(step_kernel_, &packed_u_, gd, d_, 0, B_ / N_, w);
  const Dtype* top_diff = top[0]->cpu_diff();
  const StepProduct<Dtype> product[2] = {BackwardStepProduct(w[0]),
                                         BackwardStepProduct(w[1])};
  Dtype* din = propagate_down[0] ? bottom[0]->mutable_cpu_diff() : NULL;
  const Dtype* W[2] = {this->blobs_[0]->cpu_data(),
                       this->blobs_[3]->cpu_data()};
  const int K = K_;
  const bool onednn = onednn_gemm_;
  const double macs = static_cast<double>(TB) * K * gd;
  const RowLayout layout = {C_, H_, W_, ph_, pw_, gh_, gw_, K_, pos_n_,
      pos_.data(), pos_y_.data(), pos_x_.data()};
  Dtype* dxm = direct_ || !propagate_down[0] ? NULL : x_.mutable_cpu_diff();
  if (N_ > 1) {
    // One job per direction and block (image) for the back-propagation
    // through time; then each direction's parameter gradients (blocks in
    // order: the sums do not depend on which thread took what) and each
    // image's bottom diff, the larger jobs first.
    const double step_macs = static_cast<double>(T_) * B_ * gd * d_;
    RunJobs(num_threads_, 2 * N_, step_macs, [&w, &product, top_diff](int j) {
      SweepBackward(w[j % 2], product[j % 2], j / 2, j / 2 + 1, top_diff);
    });
    const bool direct = direct_;
    const int P = pos_n_;  // rows (positions) of an image's block
    RunJobs(num_threads_, 2 + (propagate_down[0] ? N_ : 0), macs,
        [&w, &W, &layout, direct, onednn, da, din, dxm, K, P, gd, TB](int j) {
      if (j < 2) {
        SweepParamGradients(w[j]);
        return;
      }
      // Image n's bottom diff: read in place, its C x H W = sum over
      // directions of W^T dA^T; else its rows of dX = sum of dA W, copied
      // to the bottom's layout.
      const int n = j - 2;
      for (int dir = 0; dir < 2; ++dir) {
        const Dtype* dan = da + (dir * TB + n * P) * gd;
        if (direct) {
          Gemm(onednn, CblasTrans, CblasTrans, K, P, gd, Dtype(1), W[dir],
              K, dan, gd, Dtype(dir), din + n * K * P, P);
        } else {
          Gemm(onednn, CblasNoTrans, CblasNoTrans, P, K, gd,
              Dtype(1), dan, W[dir], Dtype(dir), dxm + n * P * K);
        }
      }
      if (!direct) {
        CopyImageRows<false>(layout, n, 0, layout.parts(), din, dxm);
      }
    });
    return;
  }
  RunBothDirections(num_threads_, [&product, top_diff](const Sweep<Dtype>& v) {
        SweepBackward(v, product[v.dir], 0, 1, top_diff);
        SweepParamGradients(v);
      }, w[0], w[1]);
  if (!propagate_down[0]) {
    return;
  }
  if (direct_) {
    // The image's bottom diff (C x H W) = sum over directions of W^T dA^T,
    // in parts of its columns (positions: rows of dA), so that each part
    // packs its own rows of dA and all of W (K x G d, less than the H W x
    // G d of dA in the layers this path serves).
    const int HW = H_ * W_;
    SplitGemm(num_threads_, HW, macs, [=](int p0, int p1) {
      for (int dir = 0; dir < 2; ++dir) {
        Gemm(onednn, CblasTrans, CblasTrans, K, p1 - p0, gd, Dtype(1),
            W[dir], K, da + (dir * TB + p0) * gd, gd, Dtype(dir), din + p0,
            HW);
      }
    });
    return;
  }
  // dX (T B x K) = sum over directions of dA W, in parts of its rows.
  SplitGemm(num_threads_, TB, macs, [=](int r0, int r1) {
    for (int dir = 0; dir < 2; ++dir) {
      Gemm(onednn, CblasNoTrans, CblasNoTrans, r1 - r0, K, gd,
          Dtype(1), da + (dir * TB + r0) * gd, W[dir], Dtype(dir),
          dxm + r0 * K);
    }
  });
  CopyAllImageRows<false>(num_threads_, layout, N_, din, dxm);
}

#ifdef CPU_ONLY
STUB_GPU(ReNetLayer);
#endif

INSTANTIATE_CLASS(ReNetLayer);
REGISTER_LAYER_CLASS(ReNet);

}  // namespace caffe
