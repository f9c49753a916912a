#include <vector>

#include "caffe/layers/bilinear_resize_layer.hpp"
#include "caffe/util/gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
__global__ void BilinearResizeForward(const int count, const Dtype* in,
    const int in_h, const int in_w, const int out_h, const int out_w,
    Dtype* out) {
  CUDA_KERNEL_LOOP(index, count) {
    int t[4];
    Dtype a, b;
    const Dtype* src = in + in_h * in_w * BilinearResizeTaps(index, in_h,
        in_w, out_h, out_w, t, &a, &b);
    out[index] = BilinearResizeMix(src[t[0]], src[t[1]], src[t[2]],
                                   src[t[3]], a, b);
  }
}

// One thread per top element adds its four shares into the bottom's diff.
template <typename Dtype>
__global__ void BilinearResizeBackward(const int count, const Dtype* top_diff,
    const int in_h, const int in_w, const int out_h, const int out_w,
    Dtype* diff) {
  CUDA_KERNEL_LOOP(index, count) {
    int t[4];
    Dtype a, b;
    Dtype* dst = diff + in_h * in_w * BilinearResizeTaps(index, in_h, in_w,
        out_h, out_w, t, &a, &b);
    const Dtype g = top_diff[index];
    caffe_gpu_atomic_add((1 - a) * (1 - b) * g, dst + t[0]);
    caffe_gpu_atomic_add((1 - a) * b * g, dst + t[1]);
    caffe_gpu_atomic_add(a * (1 - b) * g, dst + t[2]);
    caffe_gpu_atomic_add(a * b * g, dst + t[3]);
  }
}

template <typename Dtype>
void BilinearResizeLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  BilinearResizeForward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, bottom[0]->gpu_data(), in_h_, in_w_,
      out_h_, out_w_, top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void BilinearResizeLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (bottom.size() == 2 && propagate_down[1]) {
    caffe_gpu_set(bottom[1]->count(), Dtype(0),
        bottom[1]->mutable_gpu_diff());
  }
  if (!propagate_down[0]) {
    return;
  }
  caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_gpu_diff());
  const int count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  BilinearResizeBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, top[0]->gpu_diff(), in_h_, in_w_,
      out_h_, out_w_, bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(BilinearResizeLayer);

}  // namespace caffe
