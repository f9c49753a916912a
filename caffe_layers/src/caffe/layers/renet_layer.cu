#include <vector>

#include "caffe/layers/renet_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// Row p = t B + b of X / of a direction's hidden block for patch (n, gy, gx).
__device__ inline int renet_row(bool vertical, int n, int gy, int gx,
    int gh, int gw, int B) {
  return vertical ? gy * B + n * gw + gx : gx * B + n * gh + gy;
}

template <typename Dtype>
__global__ void ReNetIm2Col(const int count, const Dtype* in, bool vertical,
    int N, int C, int H, int W, int ph, int pw, int gh, int gw, int B,
    Dtype* x) {
  const int K = C * ph * pw;
  CUDA_KERNEL_LOOP(index, count) {
    const int k = index % K, row = index / K;
    const int t = row / B, b = row % B;
    int n, gy, gx;
    if (vertical) {
      gy = t; n = b / gw; gx = b % gw;
    } else {
      gx = t; n = b / gh; gy = b % gh;
    }
    const int c = k / (ph * pw), r = k % (ph * pw);
    const int y = gy * ph + r / pw, xx = gx * pw + r % pw;
    x[index] = (y < H && xx < W) ? in[((n * C + c) * H + y) * W + xx] :
        Dtype(0);
  }
}

template <typename Dtype>
__global__ void ReNetCol2Im(const int count, const Dtype* dx, bool vertical,
    int C, int H, int W, int ph, int pw, int gh, int gw, int B,
    Dtype* din) {
  const int K = C * ph * pw;
  CUDA_KERNEL_LOOP(index, count) {
    const int xx = index % W, y = (index / W) % H;
    const int c = (index / W / H) % C, n = index / W / H / C;
    const int row = renet_row(vertical, n, y / ph, xx / pw, gh, gw, B);
    const int k = (c * ph + y % ph) * pw + xx % pw;
    din[index] = dx[row * K + k];
  }
}

// Copies between the top (N x 2d x gh x gw) and the hidden blocks
// (2 x T x B x d); to_top selects the direction.
template <typename Dtype>
__global__ void ReNetHiddenTop(const int count, bool to_top, bool vertical,
    int d, int gh, int gw, int T, int B, Dtype* h, Dtype* top) {
  CUDA_KERNEL_LOOP(index, count) {
    const int gx = index % gw, gy = (index / gw) % gh;
    const int ch = (index / gw / gh) % (2 * d), n = index / gw / gh / (2 * d);
    const int dir = ch / d, j = ch % d;
    const int hi = ((dir * T * B) +
        renet_row(vertical, n, gy, gx, gh, gw, B)) * d + j;
    if (to_top) {
      top[index] = h[hi];
    } else {
      h[hi] = top[index];
    }
  }
}

// One step of both directions: thread (dir, b, j).
template <typename Dtype>
__global__ void ReNetForwardStep(const int count, int unit, int s, int T,
    int B, int d, Dtype* a, Dtype* h, Dtype* c, const Dtype* u,
    const Dtype* zeros, const Dtype* bias0, const Dtype* bias1) {
  const int gd = renet_num_gates(unit) * d;
  CUDA_KERNEL_LOOP(index, count) {
    const int dir = index / (B * d), b = (index / d) % B, j = index % d;
    const int t = dir == 0 ? s : T - 1 - s;
    const int tp = dir == 0 ? t - 1 : t + 1;
    const int row = (dir * T + t) * B + b, row_p = (dir * T + tp) * B + b;
    const bool has_prev = s > 0;
    const Dtype* bias = dir == 0 ? bias0 : bias1;
    Dtype* ab = a + row * gd;
    Dtype* hb = h + row * d;
    if (unit == ReNetParameter_Unit_LSTM) {
      renet_lstm_forward(j, d, ab, bias, has_prev ? c[row_p * d + j] : Dtype(0),
          c + row * d, hb);
    } else if (unit == ReNetParameter_Unit_GRU) {
      renet_gru_forward(j, d, ab, bias, has_prev ? u + row * gd : zeros,
          has_prev ? h[row_p * d + j] : Dtype(0), hb);
    } else {
      renet_irnn_forward(j, ab, bias, hb);
    }
  }
}

template <typename Dtype>
__global__ void ReNetBackwardStep(const int count, int unit, int s, int T,
    int B, int d, const Dtype* a, const Dtype* h, const Dtype* c,
    const Dtype* u, const Dtype* zeros, Dtype* da, Dtype* dh, Dtype* dc,
    Dtype* du) {
  const int gd = renet_num_gates(unit) * d;
  CUDA_KERNEL_LOOP(index, count) {
    const int dir = index / (B * d), b = (index / d) % B, j = index % d;
    const int t = dir == 0 ? s : T - 1 - s;
    const int tp = dir == 0 ? t - 1 : t + 1;
    const int row = (dir * T + t) * B + b, row_p = (dir * T + tp) * B + b;
    const bool has_prev = s > 0;
    const Dtype dhj = dh[row * d + j];
    if (unit == ReNetParameter_Unit_LSTM) {
      renet_lstm_backward(j, d, a + row * gd,
          has_prev ? c[row_p * d + j] : Dtype(0), c + row * d, dhj,
          dc[(dir * B + b) * d + j], dc + (dir * B + b) * d, da + row * gd);
    } else if (unit == ReNetParameter_Unit_GRU) {
      const Dtype direct = renet_gru_backward(j, d, a + row * gd,
          has_prev ? u + row * gd : zeros,
          has_prev ? h[row_p * d + j] : Dtype(0), dhj, da + row * gd,
          du + row * gd);
      if (has_prev) dh[row_p * d + j] += direct;
    } else {
      renet_irnn_backward(j, a + row * gd, dhj, da + row * gd);
    }
  }
}

template <typename Dtype>
void ReNetLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  // The GPU reads the bottom in place only with N = 1 (one block of
  // sequences, time-major; see pos_n_).
  const bool direct = gpu_direct();
  const Dtype* x = bottom[0]->gpu_data();
  if (!direct) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    ReNetIm2Col<Dtype><<<CAFFE_GET_BLOCKS(x_.count()),
        CAFFE_CUDA_NUM_THREADS>>>(x_.count(), bottom[0]->gpu_data(),
        vertical_, N_, C_, H_, W_, ph_, pw_, gh_, gw_, B_,
        x_.mutable_gpu_data());
    CUDA_POST_KERNEL_CHECK;
    x = x_.gpu_data();
  }
  Dtype* a = gates_.mutable_gpu_data();
  for (int dir = 0; dir < 2; ++dir) {
    caffe_gpu_gemm<Dtype>(direct ? CblasTrans : CblasNoTrans, CblasTrans, TB,
        gd, K_, Dtype(1), x, this->blobs_[3 * dir]->gpu_data(), Dtype(0),
        a + dir * TB * gd);
  }
  Dtype* h = hidden_.mutable_gpu_data();
  Dtype* c = unit_ == ReNetParameter_Unit_LSTM ? cell_.mutable_gpu_data() :
      NULL;
  Dtype* u = NULL;
  const Dtype* zeros = NULL;
  if (unit_ == ReNetParameter_Unit_GRU) {
    u = rec_.mutable_gpu_data();
    zeros = zeros_.gpu_data();
  }
  const int step_count = 2 * B_ * d_;
  for (int s = 0; s < T_; ++s) {
    if (s > 0) {
      for (int dir = 0; dir < 2; ++dir) {
        const int t = dir == 0 ? s : T_ - 1 - s;
        const int tp = dir == 0 ? t - 1 : t + 1;
        const Dtype* hp = h + (dir * T_ + tp) * B_ * d_;
        const Dtype* U = this->blobs_[3 * dir + 1]->gpu_data();
        if (u) {
          caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasTrans, B_, gd, d_,
              Dtype(1), hp, U, Dtype(0), u + (dir * T_ + t) * B_ * gd);
        } else {
          caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasTrans, B_, gd, d_,
              Dtype(1), hp, U, Dtype(1), a + (dir * T_ + t) * B_ * gd);
        }
      }
    }
    // NOLINT_NEXT_LINE(whitespace/operators)
    ReNetForwardStep<Dtype><<<CAFFE_GET_BLOCKS(step_count),
        CAFFE_CUDA_NUM_THREADS>>>(step_count, unit_, s, T_, B_, d_, a, h, c,
        u, zeros, this->blobs_[2]->gpu_data(), this->blobs_[5]->gpu_data());
    CUDA_POST_KERNEL_CHECK;
  }
  // NOLINT_NEXT_LINE(whitespace/operators)
  ReNetHiddenTop<Dtype><<<CAFFE_GET_BLOCKS(top[0]->count()),
      CAFFE_CUDA_NUM_THREADS>>>(top[0]->count(), true, vertical_, d_, gh_,
      gw_, T_, B_, h, top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void ReNetLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int gd = G_ * d_;
  const int TB = T_ * B_;
  const Dtype* h = hidden_.gpu_data();
  Dtype* dh = hidden_.mutable_gpu_diff();
  // NOLINT_NEXT_LINE(whitespace/operators)
  ReNetHiddenTop<Dtype><<<CAFFE_GET_BLOCKS(top[0]->count()),
      CAFFE_CUDA_NUM_THREADS>>>(top[0]->count(), false, vertical_, d_, gh_,
      gw_, T_, B_, dh, const_cast<Dtype*>(top[0]->gpu_diff()));
  CUDA_POST_KERNEL_CHECK;
  const Dtype* a = gates_.gpu_data();
  Dtype* da = gates_.mutable_gpu_diff();
  const Dtype* cl = NULL;
  Dtype* dc = NULL;
  if (unit_ == ReNetParameter_Unit_LSTM) {
    cl = cell_.gpu_data();
    dc = carry_.mutable_gpu_data();
    caffe_gpu_set(carry_.count(), Dtype(0), dc);
  }
  const Dtype* u = NULL;
  const Dtype* zeros = NULL;
  Dtype* du = NULL;
  if (unit_ == ReNetParameter_Unit_GRU) {
    u = rec_.gpu_data();
    zeros = zeros_.gpu_data();
    du = rec_.mutable_gpu_diff();
  }
  const int step_count = 2 * B_ * d_;
  for (int s = T_ - 1; s >= 0; --s) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    ReNetBackwardStep<Dtype><<<CAFFE_GET_BLOCKS(step_count),
        CAFFE_CUDA_NUM_THREADS>>>(step_count, unit_, s, T_, B_, d_, a, h, cl,
        u, zeros, da, dh, dc, du);
    CUDA_POST_KERNEL_CHECK;
    if (s > 0) {
      for (int dir = 0; dir < 2; ++dir) {
        const int t = dir == 0 ? s : T_ - 1 - s;
        const int tp = dir == 0 ? t - 1 : t + 1;
        const Dtype* drt = (du ? du : da) + (dir * T_ + t) * B_ * gd;
        caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, B_, d_, gd,
            Dtype(1), drt, this->blobs_[3 * dir + 1]->gpu_data(), Dtype(1),
            dh + (dir * T_ + tp) * B_ * d_);
      }
    }
  }
  const bool direct = gpu_direct();
  const Dtype* x = direct ? bottom[0]->gpu_data() : x_.gpu_data();
  for (int dir = 0; dir < 2; ++dir) {
    const Dtype* dad = da + dir * TB * gd;
    if (this->param_propagate_down_[3 * dir]) {
      caffe_gpu_gemm<Dtype>(CblasTrans, direct ? CblasTrans : CblasNoTrans,
          gd, K_, TB, Dtype(1), dad, x, Dtype(1),
          this->blobs_[3 * dir]->mutable_gpu_diff());
    }
    if (this->param_propagate_down_[3 * dir + 1] && T_ > 1) {
      const Dtype* drd = (du ? du : da) + dir * TB * gd + (1 - dir) * B_ * gd;
      const Dtype* hd = h + dir * TB * d_ + dir * B_ * d_;
      caffe_gpu_gemm<Dtype>(CblasTrans, CblasNoTrans, gd, d_, TB - B_,
          Dtype(1), drd, hd, Dtype(1),
          this->blobs_[3 * dir + 1]->mutable_gpu_diff());
    }
    if (this->param_propagate_down_[3 * dir + 2]) {
      caffe_gpu_gemv<Dtype>(CblasTrans, TB, gd, Dtype(1), dad,
          bias_multiplier_.gpu_data(), Dtype(1),
          this->blobs_[3 * dir + 2]->mutable_gpu_diff());
    }
  }
  if (!propagate_down[0]) {
    return;
  }
  if (direct) {
    for (int dir = 0; dir < 2; ++dir) {
      caffe_gpu_gemm<Dtype>(CblasTrans, CblasTrans, K_, TB, gd, Dtype(1),
          this->blobs_[3 * dir]->gpu_data(), da + dir * TB * gd, Dtype(dir),
          bottom[0]->mutable_gpu_diff());
    }
    return;
  }
  Dtype* dxm = x_.mutable_gpu_diff();
  for (int dir = 0; dir < 2; ++dir) {
    caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, TB, K_, gd, Dtype(1),
        da + dir * TB * gd, this->blobs_[3 * dir]->gpu_data(), Dtype(dir),
        dxm);
  }
  // NOLINT_NEXT_LINE(whitespace/operators)
  ReNetCol2Im<Dtype><<<CAFFE_GET_BLOCKS(bottom[0]->count()),
      CAFFE_CUDA_NUM_THREADS>>>(bottom[0]->count(), dxm, vertical_, C_, H_,
      W_, ph_, pw_, gh_, gw_, B_, bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(ReNetLayer);

}  // namespace caffe
