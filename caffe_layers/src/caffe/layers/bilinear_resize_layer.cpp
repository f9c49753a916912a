#include <string>
#include <vector>

#include "caffe/layers/bilinear_resize_layer.hpp"
#include "caffe/util/math_functions.hpp"
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
}

template <typename Dtype>
void BilinearResizeLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int in_hw = in_h_ * in_w_, count = top[0]->count();
  const Dtype* in = bottom[0]->cpu_data();
  Dtype* out = top[0]->mutable_cpu_data();
  for (int index = 0; index < count; ++index) {
    int t[4];
    Dtype a, b;
    const Dtype* src = in + in_hw * BilinearResizeTaps(index, in_h_, in_w_,
        out_h_, out_w_, t, &a, &b);
    out[index] = BilinearResizeMix(src[t[0]], src[t[1]], src[t[2]],
                                   src[t[3]], a, b);
  }
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
  const int in_hw = in_h_ * in_w_, count = top[0]->count();
  const Dtype* top_diff = top[0]->cpu_diff();
  Dtype* diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), diff);
  for (int index = 0; index < count; ++index) {
    int t[4];
    Dtype a, b;
    Dtype* dst = diff + in_hw * BilinearResizeTaps(index, in_h_, in_w_,
        out_h_, out_w_, t, &a, &b);
    const Dtype g = top_diff[index];
    dst[t[0]] += (1 - a) * (1 - b) * g;
    dst[t[1]] += (1 - a) * b * g;
    dst[t[2]] += a * (1 - b) * g;
    dst[t[3]] += a * b * g;
  }
}

#ifdef CPU_ONLY
STUB_GPU(BilinearResizeLayer);
#endif

INSTANTIATE_CLASS(BilinearResizeLayer);
REGISTER_LAYER_CLASS(BilinearResize);

}  // namespace caffe
