#include <string>
#include <vector>

#include "caffe/layers/bilinear_resize_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/parallel.hpp"
#include "caffe/util/user_error.hpp"

namespace caffe {

template <typename Dtype>
void BilinearResizeLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const BilinearResizeParameter& p =
      this->layer_param_.bilinear_resize_param();
  const string& name = this->layer_param_.name();
  zoom_ = p.zoom_factor();
  fixed_h_ = p.height();
  fixed_w_ = p.width();
  HRENET_USER_CHECK(zoom_ > 0,
      "BilinearResize layer " << name
      << ": zoom_factor must be at least 1");
  HRENET_USER_CHECK((fixed_h_ > 0) == (fixed_w_ > 0),
      "BilinearResize layer " << name
      << ": give both height and width, or neither");
  num_threads_ = HrenetThreads();
  if (bottom.size() == 2) {
    HRENET_USER_CHECK(fixed_h_ == 0 && zoom_ == 1,
        "BilinearResize layer " << name
        << ": with a second bottom the size is that bottom's; remove "
        << "height, width and zoom_factor");
  }
}

template <typename Dtype>
void BilinearResizeLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  HRENET_USER_CHECK(bottom[0]->num_axes() == 4,
      "BilinearResize layer " << name
      << ": bottom[0] must be N x C x H x W, got "
      << bottom[0]->shape_string());
  channels_ = bottom[0]->shape(1);
  in_h_ = bottom[0]->shape(2);
  in_w_ = bottom[0]->shape(3);
  HRENET_USER_CHECK(in_h_ > 0 && in_w_ > 0,
      "BilinearResize layer " << name
      << ": bottom[0] " << bottom[0]->shape_string() << " is empty");
  if (bottom.size() == 2) {
    HRENET_USER_CHECK(bottom[1]->num_axes() == 4,
        "BilinearResize layer " << name
        << ": bottom[1] (the size) must be N x C x H x W, got "
        << bottom[1]->shape_string());
    out_h_ = bottom[1]->shape(2);
    out_w_ = bottom[1]->shape(3);
  } else if (fixed_h_ > 0) {
    out_h_ = fixed_h_;
    out_w_ = fixed_w_;
  } else {
    out_h_ = in_h_ * zoom_;
    out_w_ = in_w_ * zoom_;
  }
  HRENET_USER_CHECK(out_h_ > 0 && out_w_ > 0,
      "BilinearResize layer " << name
      << ": output size " << out_h_ << " x " << out_w_ << " is empty");
  vector<int> shape = bottom[0]->shape();
  shape[2] = out_h_;
  shape[3] = out_w_;
  top[0]->Reshape(shape);
  row_lo_.resize(out_h_);
  row_hi_.resize(out_h_);
  row_frac_.resize(out_h_);
  for (int y = 0; y < out_h_; ++y) {
    BilinearResizeCoord(y, in_h_, out_h_, &row_lo_[y], &row_hi_[y],
                        &row_frac_[y]);
  }
  col_lo_.resize(out_w_);
  col_hi_.resize(out_w_);
  col_frac_.resize(out_w_);
  for (int x = 0; x < out_w_; ++x) {
    BilinearResizeCoord(x, in_w_, out_w_, &col_lo_[x], &col_hi_[x],
                        &col_frac_[x]);
  }
}

template <typename Dtype>
void BilinearResizeLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // The taps of BilinearResizeTaps, from the tables: per (N, C) plane,
  // the same values as the GPU kernel's, bit for bit.
  const int in_hw = in_h_ * in_w_, out_hw = out_h_ * out_w_;
  const Dtype* in = bottom[0]->cpu_data();
  Dtype* out = top[0]->mutable_cpu_data();
  ParallelJobs(bottom[0]->count(0, 2), num_threads_, [&](int plane) {
    const Dtype* src = in + static_cast<int64_t>(plane) * in_hw;
    Dtype* dst = out + static_cast<int64_t>(plane) * out_hw;
    for (int y = 0; y < out_h_; ++y) {
      const Dtype* r0 = src + row_lo_[y] * in_w_;
      const Dtype* r1 = src + row_hi_[y] * in_w_;
      const Dtype a = row_frac_[y];
      for (int x = 0; x < out_w_; ++x) {
        const int x0 = col_lo_[x], x1 = col_hi_[x];
        dst[y * out_w_ + x] = BilinearResizeMix(r0[x0], r0[x1], r1[x0],
                                                r1[x1], a, col_frac_[x]);
      }
    }
  });
}

template <typename Dtype>
void BilinearResizeLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (bottom.size() == 2 && propagate_down[1]) {
    caffe_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_cpu_diff());
  }
  if (!propagate_down[0]) {
    return;
  }
  // Each plane's gradient stays in its plane: one job per plane, its
  // outputs in index order (the sums do not depend on the thread count).
  const int in_hw = in_h_ * in_w_, out_hw = out_h_ * out_w_;
  const Dtype* top_diff = top[0]->cpu_diff();
  Dtype* diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), diff);
  ParallelJobs(bottom[0]->count(0, 2), num_threads_, [&](int plane) {
    const Dtype* g = top_diff + static_cast<int64_t>(plane) * out_hw;
    Dtype* d = diff + static_cast<int64_t>(plane) * in_hw;
    for (int y = 0; y < out_h_; ++y) {
      Dtype* r0 = d + row_lo_[y] * in_w_;
      Dtype* r1 = d + row_hi_[y] * in_w_;
      const Dtype a = row_frac_[y];
      for (int x = 0; x < out_w_; ++x) {
        const int x0 = col_lo_[x], x1 = col_hi_[x];
        const Dtype b = col_frac_[x], v = g[y * out_w_ + x];
        r0[x0] += (1 - a) * (1 - b) * v;
        r0[x1] += (1 - a) * b * v;
        r1[x0] += a * (1 - b) * v;
        r1[x1] += a * b * v;
      }
    }
  });
}

#ifdef CPU_ONLY
STUB_GPU(BilinearResizeLayer);
#endif

INSTANTIATE_CLASS(BilinearResizeLayer);
REGISTER_LAYER_CLASS(BilinearResize);

}  // namespace caffe
