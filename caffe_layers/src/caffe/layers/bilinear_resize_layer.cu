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
    const int x = index % out_w, y = (index / out_w) % out_h;
    const int p = index / (out_w * out_h);
    int y0, y1, x0, x1;
    Dtype a, b;
    BilinearResizeCoord(y, in_h, out_h, &y0, &y1, &a);
    BilinearResizeCoord(x, in_w, out_w, &x0, &x1, &b);
    const Dtype* src = in + p * in_h * in_w;
    out[index] = BilinearResizeMix(src[y0 * in_w + x0], src[y0 * in_w + x1],
        src[y1 * in_w + x0], src[y1 * in_w + x1], a, b);
  }
}

// One thread per top element adds its four shares into the bottom's diff.
template <typename Dtype>
__global__ void BilinearResizeBackward(const int count, const Dtype* top_diff,
    const int in_h, const int in_w, const int out_h, const int out_w,
    Dtype* diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int x = index % out_w, y = (index / out_w) % out_h;
    const int p = index / (out_w * out_h);
    int y0, y1, x0, x1;
    Dtype a, b;
    BilinearResizeCoord(y, in_h, out_h, &y0, &y1, &a);
    BilinearResizeCoord(x, in_w, out_w, &x0, &x1, &b);
    const Dtype g = top_diff[index];
    Dtype* dst = diff + p * in_h * in_w;
    caffe_gpu_atomic_add((1 - a) * (1 - b) * g, dst + y0 * in_w + x0);
    caffe_gpu_atomic_add((1 - a) * b * g, dst + y0 * in_w + x1);
    caffe_gpu_atomic_add(a * (1 - b) * g, dst + y1 * in_w + x0);
    caffe_gpu_atomic_add(a * b * g, dst + y1 * in_w + x1);
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
