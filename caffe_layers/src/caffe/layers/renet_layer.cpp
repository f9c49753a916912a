#include <string>
#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layers/renet_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

// Row helpers for the CPU step loops: restrict-qualified and kept out of line
// (inlined, GCC loses the restrict and does not vectorise) so that the loops
// over the hidden units vectorise; split on the first step (no predecessor)
// so that the loop bodies carry no branch. On x86-64 GCC also builds AVX-512
// and AVX2 clones of them, picked at load time by the CPU (the default build
// targets plain x86-64, i.e. SSE2).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define RENET_ROW_ATTRIBUTES \
  __attribute__((noinline, target_clones("avx512f", "avx2", "default")))
#else
#define RENET_ROW_ATTRIBUTES __attribute__((noinline))
#endif

template <typename Dtype>
RENET_ROW_ATTRIBUTES
void LstmForwardRow(int d, Dtype* __restrict__ a,
    const Dtype* __restrict__ b,
    const Dtype* __restrict__ cp, Dtype* __restrict__ c,
    Dtype* __restrict__ h) {
  if (cp) {
    for (int j = 0; j < d; ++j) renet_lstm_forward(j, d, a, b, cp[j], c, h);
  } else {
    for (int j = 0; j < d; ++j) renet_lstm_forward(j, d, a, b, Dtype(0), c, h);
  }
}

template <typename Dtype>
RENET_ROW_ATTRIBUTES
void LstmBackwardRow(int d, const Dtype* __restrict__ a,
    const Dtype* __restrict__ cp, const Dtype* __restrict__ c,
    const Dtype* __restrict__ dh, Dtype* __restrict__ dc,
    Dtype* __restrict__ da) {
  if (cp) {
    for (int j = 0; j < d; ++j) {
      renet_lstm_backward(j, d, a, cp[j], c, dh[j], dc, da);
    }
  } else {
    for (int j = 0; j < d; ++j) {
      renet_lstm_backward(j, d, a, Dtype(0), c, dh[j], dc, da);
    }
  }
}

// u: U h_{t-1}, or a row of zeros with hp == NULL at the first step.
template <typename Dtype>
RENET_ROW_ATTRIBUTES
void GruForwardRow(int d, Dtype* __restrict__ a,
    const Dtype* __restrict__ b,
    const Dtype* __restrict__ u, const Dtype* __restrict__ hp,
    Dtype* __restrict__ h) {
  if (hp) {
    for (int j = 0; j < d; ++j) renet_gru_forward(j, d, a, b, u, hp[j], h);
  } else {
    for (int j = 0; j < d; ++j) renet_gru_forward(j, d, a, b, u, Dtype(0), h);
  }
}

template <typename Dtype>
RENET_ROW_ATTRIBUTES
void GruBackwardRow(int d, const Dtype* __restrict__ a,
    const Dtype* __restrict__ u, const Dtype* __restrict__ hp,
    const Dtype* __restrict__ dh, Dtype* __restrict__ da,
    Dtype* __restrict__ du, Dtype* __restrict__ dhp) {
  if (hp) {
    for (int j = 0; j < d; ++j) {
      dhp[j] += renet_gru_backward(j, d, a, u, hp[j], dh[j], da, du);
    }
  } else {
    for (int j = 0; j < d; ++j) {
      renet_gru_backward(j, d, a, u, Dtype(0), dh[j], da, du);
    }
  }
}

template <typename Dtype>
RENET_ROW_ATTRIBUTES
void IrnnForwardRow(int d, Dtype* __restrict__ a,
    const Dtype* __restrict__ b,
    Dtype* __restrict__ h) {
  for (int j = 0; j < d; ++j) renet_irnn_forward(j, a, b, h);
}

template <typename Dtype>
RENET_ROW_ATTRIBUTES
void IrnnBackwardRow(int d, const Dtype* __restrict__ a,
    const Dtype* __restrict__ dh, Dtype* __restrict__ da) {
  for (int j = 0; j < d; ++j) renet_irnn_backward(j, a, dh[j], da);
}

}  // namespace

template <typename Dtype>
void ReNetLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const ReNetParameter& p = this->layer_param_.renet_param();
  const string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "ReNet layer '" << name
      << "': bottom must be N x C x H x W (4 axes), got "
      << bottom[0]->shape_string();
  CHECK_GT(p.num_output(), 0) << "ReNet layer '" << name
      << "': renet_param.num_output is " << p.num_output()
      << "; set it to the number of hidden units per direction (> 0)";
  CHECK_GT(p.patch_h(), 0) << "ReNet layer '" << name
      << "': renet_param.patch_h is 0; a patch must be at least 1 pixel";
  CHECK_GT(p.patch_w(), 0) << "ReNet layer '" << name
      << "': renet_param.patch_w is 0; a patch must be at least 1 pixel";
  unit_ = p.unit();
  vertical_ = p.direction() == ReNetParameter_Direction_VERTICAL;
  d_ = p.num_output();
  G_ = unit_ == ReNetParameter_Unit_LSTM ? 4 :
       (unit_ == ReNetParameter_Unit_GRU ? 3 : 1);
  ph_ = p.patch_h();
  pw_ = p.patch_w();
  C_ = bottom[0]->channels();
  K_ = C_ * ph_ * pw_;
  const int gd = G_ * d_;
  if (this->blobs_.size() > 0) {
    CHECK_EQ(this->blobs_.size(), 6) << "ReNet layer '" << name
        << "': expected 6 parameter blobs (W, U, b per direction), got "
        << this->blobs_.size();
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
      if (unit_ == ReNetParameter_Unit_LSTM && p.forget_bias() != 0) {
        caffe_add_scalar(d_, Dtype(p.forget_bias()),
            b->mutable_cpu_data() + d_);
      }
      this->blobs_[3 * dir].reset(w);
      this->blobs_[3 * dir + 1].reset(u);
      this->blobs_[3 * dir + 2].reset(b);
    }
  }
  for (int dir = 0; dir < 2; ++dir) {
    CHECK(this->blobs_[3 * dir]->shape() == (vector<int>{gd, K_}))
        << "ReNet layer '" << name << "': W has shape "
        << this->blobs_[3 * dir]->shape_string() << ", expected " << gd
        << " " << K_ << " (G d x C patch_h patch_w)";
    CHECK(this->blobs_[3 * dir + 1]->shape() == (vector<int>{gd, d_}))
        << "ReNet layer '" << name << "': U has shape "
        << this->blobs_[3 * dir + 1]->shape_string() << ", expected " << gd
        << " " << d_ << " (G d x d)";
    CHECK_EQ(this->blobs_[3 * dir + 2]->count(), gd)
        << "ReNet layer '" << name << "': b has shape "
        << this->blobs_[3 * dir + 2]->shape_string() << ", expected " << gd;
  }
  this->param_propagate_down_.resize(this->blobs_.size(), true);
}

template <typename Dtype>
void ReNetLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "ReNet layer '" << name
      << "': bottom must be N x C x H x W (4 axes), got "
      << bottom[0]->shape_string();
  CHECK_EQ(bottom[0]->channels(), C_) << "ReNet layer '" << name
      << "': bottom has " << bottom[0]->channels() << " channels but the "
      << "layer was set up (and its weights shaped) for " << C_;
  N_ = bottom[0]->num();
  H_ = bottom[0]->height();
  W_ = bottom[0]->width();
  gh_ = (H_ + ph_ - 1) / ph_;
  gw_ = (W_ + pw_ - 1) / pw_;
  T_ = vertical_ ? gh_ : gw_;
  B_ = N_ * (vertical_ ? gw_ : gh_);
  pos_y_.resize(gh_);
  pos_x_.resize(gw_);
  for (int gy = 0; gy < gh_; ++gy) {
    pos_y_[gy] = vertical_ ? gy * B_ : gy;
  }
  for (int gx = 0; gx < gw_; ++gx) {
    pos_x_[gx] = vertical_ ? gx : gx * B_;
  }
  pos_n_ = vertical_ ? gw_ : gh_;
  const int gd = G_ * d_;
  top[0]->Reshape(N_, 2 * d_, gh_, gw_);
  x_.Reshape(vector<int>{T_, B_, K_});
  gates_.Reshape(vector<int>{2, T_, B_, gd});
  hidden_.Reshape(vector<int>{2, T_, B_, d_});
  if (unit_ == ReNetParameter_Unit_LSTM) {
    cell_.Reshape(vector<int>{2, T_, B_, d_});
    carry_.Reshape(vector<int>{2, B_, d_});
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
void ReNetLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  const Dtype* in = bottom[0]->cpu_data();
  Dtype* x = x_.mutable_cpu_data();
  // Patch extraction into the time-major X (zero padding where needed).
  if (gh_ * ph_ != H_ || gw_ * pw_ != W_) {
    caffe_set(x_.count(), Dtype(0), x);
  }
  for (int n = 0; n < N_; ++n) {
    for (int c = 0; c < C_; ++c) {
      for (int y = 0; y < H_; ++y) {
        const int gy = y / ph_, dy = y - gy * ph_;
        Dtype* xr = x + (n * pos_n_ + pos_y_[gy]) * K_ + (c * ph_ + dy) * pw_;
        const Dtype* src = in + ((n * C_ + c) * H_ + y) * W_;
        for (int gx = 0, xx = 0; gx < gw_; ++gx) {
          Dtype* dst = xr + pos_x_[gx] * K_;
          for (int dx = 0; dx < pw_ && xx < W_; ++dx, ++xx) {
            dst[dx] = src[xx];
          }
        }
      }
    }
  }
  // Input projections of every position, one GEMM per direction.
  Dtype* a = gates_.mutable_cpu_data();
  for (int dir = 0; dir < 2; ++dir) {
    caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, TB, gd, K_, Dtype(1), x,
        this->blobs_[3 * dir]->cpu_data(), Dtype(0), a + dir * TB * gd);
  }
  Dtype* h = hidden_.mutable_cpu_data();
  Dtype* cl = unit_ == ReNetParameter_Unit_LSTM ?
      cell_.mutable_cpu_data() : NULL;
  Dtype* u = NULL;
  const Dtype* zeros = NULL;
  if (unit_ == ReNetParameter_Unit_GRU) {
    u = rec_.mutable_cpu_data();
    zeros = zeros_.cpu_data();
  }
  // The recurrence; both directions advance in the same step loop.
  for (int s = 0; s < T_; ++s) {
    for (int dir = 0; dir < 2; ++dir) {
      const int t = dir == 0 ? s : T_ - 1 - s;
      const int tp = dir == 0 ? t - 1 : t + 1;
      const int blk = dir * T_ + t, blk_p = dir * T_ + tp;
      Dtype* at = a + blk * B_ * gd;
      Dtype* ut = NULL;
      const Dtype* hp = s > 0 ? h + blk_p * B_ * d_ : NULL;
      const Dtype* U = this->blobs_[3 * dir + 1]->cpu_data();
      if (hp) {
        if (u) {
          ut = u + blk * B_ * gd;
          caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, B_, gd, d_,
              Dtype(1), hp, U, Dtype(0), ut);
        } else {
          caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, B_, gd, d_,
              Dtype(1), hp, U, Dtype(1), at);
        }
      }
      const Dtype* bias = this->blobs_[3 * dir + 2]->cpu_data();
      Dtype* ht = h + blk * B_ * d_;
      for (int b = 0; b < B_; ++b) {
        Dtype* ab = at + b * gd;
        Dtype* hb = ht + b * d_;
        const Dtype* hpb = hp ? hp + b * d_ : NULL;
        if (unit_ == ReNetParameter_Unit_LSTM) {
          LstmForwardRow(d_, ab, bias,
              hp ? cl + (blk_p * B_ + b) * d_ : NULL, cl + (blk * B_ + b) * d_,
              hb);
        } else if (unit_ == ReNetParameter_Unit_GRU) {
          GruForwardRow(d_, ab, bias, ut ? ut + b * gd : zeros,
              hpb, hb);
        } else {
          IrnnForwardRow(d_, ab, bias, hb);
        }
      }
    }
  }
  // Hidden states to the top: channels [0, d) forward, [d, 2d) backward.
  Dtype* out = top[0]->mutable_cpu_data();
  for (int n = 0; n < N_; ++n) {
    for (int dir = 0; dir < 2; ++dir) {
      for (int j = 0; j < d_; ++j) {
        const Dtype* hd = h + dir * TB * d_ + j;
        Dtype* o = out + ((n * 2 + dir) * d_ + j) * gh_ * gw_;
        for (int gy = 0; gy < gh_; ++gy) {
          const Dtype* hr = hd + (n * pos_n_ + pos_y_[gy]) * d_;
          for (int gx = 0; gx < gw_; ++gx) {
            *o++ = hr[pos_x_[gx] * d_];
          }
        }
      }
    }
  }
}

template <typename Dtype>
void ReNetLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  const Dtype* h = hidden_.cpu_data();
  Dtype* dh = hidden_.mutable_cpu_diff();
  const Dtype* dout = top[0]->cpu_diff();
  for (int n = 0; n < N_; ++n) {
    for (int dir = 0; dir < 2; ++dir) {
      for (int j = 0; j < d_; ++j) {
        Dtype* dhd = dh + dir * TB * d_ + j;
        const Dtype* o = dout + ((n * 2 + dir) * d_ + j) * gh_ * gw_;
        for (int gy = 0; gy < gh_; ++gy) {
          Dtype* dhr = dhd + (n * pos_n_ + pos_y_[gy]) * d_;
          for (int gx = 0; gx < gw_; ++gx) {
            dhr[pos_x_[gx] * d_] = *o++;
          }
        }
      }
    }
  }
  const Dtype* a = gates_.cpu_data();
  Dtype* da = gates_.mutable_cpu_diff();
  const Dtype* cl = NULL;
  Dtype* dc = NULL;
  if (unit_ == ReNetParameter_Unit_LSTM) {
    cl = cell_.cpu_data();
    dc = carry_.mutable_cpu_data();
    caffe_set(carry_.count(), Dtype(0), dc);
  }
  const Dtype* u = NULL;
  const Dtype* zeros = NULL;
  Dtype* du = NULL;
  if (unit_ == ReNetParameter_Unit_GRU) {
    u = rec_.cpu_data();
    zeros = zeros_.cpu_data();
    du = rec_.mutable_cpu_diff();
  }
  // Back-propagation through time, steps in reverse order of the forward.
  for (int s = T_ - 1; s >= 0; --s) {
    for (int dir = 0; dir < 2; ++dir) {
      const int t = dir == 0 ? s : T_ - 1 - s;
      const int tp = dir == 0 ? t - 1 : t + 1;
      const int blk = dir * T_ + t, blk_p = dir * T_ + tp;
      const bool has_prev = s > 0;
      const Dtype* at = a + blk * B_ * gd;
      Dtype* dat = da + blk * B_ * gd;
      const Dtype* dht = dh + blk * B_ * d_;
      Dtype* dhp = has_prev ? dh + blk_p * B_ * d_ : NULL;
      for (int b = 0; b < B_; ++b) {
        const Dtype* ab = at + b * gd;
        Dtype* dab = dat + b * gd;
        const Dtype* dhb = dht + b * d_;
        if (unit_ == ReNetParameter_Unit_LSTM) {
          LstmBackwardRow(d_, ab,
              has_prev ? cl + (blk_p * B_ + b) * d_ : NULL,
              cl + (blk * B_ + b) * d_, dhb, dc + (dir * B_ + b) * d_, dab);
        } else if (unit_ == ReNetParameter_Unit_GRU) {
          GruBackwardRow(d_, ab,
              has_prev ? u + (blk * B_ + b) * gd : zeros,
              has_prev ? h + (blk_p * B_ + b) * d_ : NULL, dhb, dab,
              du + (blk * B_ + b) * gd, has_prev ? dhp + b * d_ : NULL);
        } else {
          IrnnBackwardRow(d_, ab, dhb, dab);
        }
      }
      if (has_prev) {
        const Dtype* drt = du ? du + blk * B_ * gd : dat;
        caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, B_, d_, gd,
            Dtype(1), drt, this->blobs_[3 * dir + 1]->cpu_data(), Dtype(1),
            dhp);
      }
    }
  }
  // Parameter gradients, accumulated, one GEMM over all steps.
  const Dtype* x = x_.cpu_data();
  for (int dir = 0; dir < 2; ++dir) {
    const Dtype* dad = da + dir * TB * gd;
    if (this->param_propagate_down_[3 * dir]) {
      caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, gd, K_, TB, Dtype(1),
          dad, x, Dtype(1), this->blobs_[3 * dir]->mutable_cpu_diff());
    }
    if (this->param_propagate_down_[3 * dir + 1] && T_ > 1) {
      // dU += sum over steps with a predecessor of dR_t^T h_{t-1}; forward:
      // t = 1..T-1 with t-1, backward: t = 0..T-2 with t+1.
      const Dtype* drd = (du ? du : da) + dir * TB * gd + (1 - dir) * B_ * gd;
      const Dtype* hd = h + dir * TB * d_ + dir * B_ * d_;
      caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, gd, d_, TB - B_,
          Dtype(1), drd, hd, Dtype(1),
          this->blobs_[3 * dir + 1]->mutable_cpu_diff());
    }
    if (this->param_propagate_down_[3 * dir + 2]) {
      caffe_cpu_gemv<Dtype>(CblasTrans, TB, gd, Dtype(1), dad,
          bias_multiplier_.cpu_data(), Dtype(1),
          this->blobs_[3 * dir + 2]->mutable_cpu_diff());
    }
  }
  if (!propagate_down[0]) {
    return;
  }
  Dtype* dxm = x_.mutable_cpu_diff();
  for (int dir = 0; dir < 2; ++dir) {
    caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TB, K_, gd, Dtype(1),
        da + dir * TB * gd, this->blobs_[3 * dir]->cpu_data(),
        Dtype(dir), dxm);
  }
  Dtype* din = bottom[0]->mutable_cpu_diff();
  for (int n = 0; n < N_; ++n) {
    for (int c = 0; c < C_; ++c) {
      for (int y = 0; y < H_; ++y) {
        const int gy = y / ph_, dy = y - gy * ph_;
        const Dtype* xr = dxm + (n * pos_n_ + pos_y_[gy]) * K_ +
            (c * ph_ + dy) * pw_;
        Dtype* dst = din + ((n * C_ + c) * H_ + y) * W_;
        for (int gx = 0, xx = 0; gx < gw_; ++gx) {
          const Dtype* src = xr + pos_x_[gx] * K_;
          for (int dx = 0; dx < pw_ && xx < W_; ++dx, ++xx) {
            dst[xx] = src[dx];
          }
        }
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(ReNetLayer);
#endif

INSTANTIATE_CLASS(ReNetLayer);
REGISTER_LAYER_CLASS(ReNet);

}  // namespace caffe
