#include <vector>

#include "caffe/layers/dense_crf_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
__global__ void DenseCRFPrepareKernel(const int hw, const int width,
    const int num_labels, const bool prob, const Dtype* score,
    const Dtype* image, const Dtype* mean, const Dtype inv_scale,
    const Dtype inv_pos_std, const Dtype inv_bi_xy_std,
    const Dtype inv_bi_rgb_std, Dtype* pos_feature, Dtype* bi_feature,
    Dtype* energy, Dtype* q) {
  CUDA_KERNEL_LOOP(i, hw) {
    DenseCRFFeatures(image, hw, i, width, mean, inv_scale, inv_pos_std,
        inv_bi_xy_std, inv_bi_rgb_std, pos_feature + i * 2,
        bi_feature + i * 5);
    for (int l = 0; l < num_labels; ++l) {
      energy[i * num_labels + l] = DenseCRFNegUnary(score[l * hw + i], prob);
    }
    DenseCRFSoftmaxAndReset(energy + i * num_labels, energy + i * num_labels,
                            num_labels, q + i * num_labels);
  }
}

template <typename Dtype>
__global__ void DenseCRFNormKernel(const int hw, const Dtype weight,
    Dtype* norm) {
  CUDA_KERNEL_LOOP(i, hw) {
    norm[i] = DenseCRFNorm(norm[i]);
    norm[hw + i] = weight * norm[i];
  }
}

template <typename Dtype>
__global__ void DenseCRFSoftmaxKernel(const int hw, const int num_labels,
    const Dtype* neg_unary, Dtype* energy, Dtype* q) {
  CUDA_KERNEL_LOOP(i, hw) {
    DenseCRFSoftmaxAndReset(energy + i * num_labels,
        neg_unary + i * num_labels, num_labels, q + i * num_labels);
  }
}

template <typename Dtype>
__global__ void DenseCRFTransposeKernel(const int hw, const int num_labels,
    const Dtype* q, Dtype* top) {
  CUDA_KERNEL_LOOP(index, hw * num_labels) {
    const int l = index / hw;
    const int i = index % hw;
    top[index] = q[i * num_labels + l];
  }
}

template <typename Dtype>
void DenseCRFLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int hw = height_ * width_;
  const int num_labels = num_labels_;
  const Dtype* mean = mean_.gpu_data();
  Dtype* pos_feature = pos_feature_.mutable_gpu_data();
  Dtype* bi_feature = bi_feature_.mutable_gpu_data();
  Dtype* norm = norm_.mutable_gpu_data();
  Dtype* neg_unary = neg_unary_.mutable_gpu_data();
  Dtype* q = q_.mutable_gpu_data();
  Dtype* energy = energy_.mutable_gpu_data();
  PermutohedralLatticeGPU<Dtype>* lattice[2] = {&pos_lattice_gpu_,
                                                &bi_lattice_gpu_};
  const Dtype* feature[2] = {pos_feature, bi_feature};
  const int dim[2] = {2, 5};
  const Dtype weight[2] = {pos_w_, bi_w_};
  for (int n = 0; n < num_; ++n) {
    const Dtype* score = bottom[0]->gpu_data() + bottom[0]->offset(n);
    const Dtype* image = bottom[1]->gpu_data() + bottom[1]->offset(n);
    // NOLINT_NEXT_LINE(whitespace/operators)
    DenseCRFPrepareKernel<Dtype><<<CAFFE_GET_BLOCKS(hw),
        CAFFE_CUDA_NUM_THREADS>>>(hw, width_, num_labels, prob_, score, image,
        mean, inv_scale_, inv_pos_std_, inv_bi_xy_std_, inv_bi_rgb_std_,
        pos_feature, bi_feature, energy, q);
    CUDA_POST_KERNEL_CHECK;
    caffe_copy(hw * num_labels, energy, neg_unary);
    for (int k = 0; k < 2; ++k) {
      if (weight[k] > 0) {
        Dtype* norm_k = norm + 2 * k * hw;
        lattice[k]->Init(feature[k], dim[k], hw);
        caffe_gpu_set(hw, Dtype(1), norm_k);
        lattice[k]->Filter(norm_k, norm_k, 1);
        // NOLINT_NEXT_LINE(whitespace/operators)
        DenseCRFNormKernel<Dtype><<<CAFFE_GET_BLOCKS(hw),
            CAFFE_CUDA_NUM_THREADS>>>(hw, weight[k], norm_k);
        CUDA_POST_KERNEL_CHECK;
      }
    }
    for (int it = 0; it < max_iter_; ++it) {
      for (int k = 0; k < 2; ++k) {
        if (weight[k] > 0) {
          const Dtype* norm_k = norm + 2 * k * hw;
          lattice[k]->Filter(q, energy, num_labels, norm_k, norm_k + hw,
                             true);
        }
      }
      // NOLINT_NEXT_LINE(whitespace/operators)
      DenseCRFSoftmaxKernel<Dtype><<<CAFFE_GET_BLOCKS(hw),
          CAFFE_CUDA_NUM_THREADS>>>(hw, num_labels, neg_unary, energy, q);
      CUDA_POST_KERNEL_CHECK;
    }
    Dtype* top_data = top[0]->mutable_gpu_data() + top[0]->offset(n);
    // NOLINT_NEXT_LINE(whitespace/operators)
    DenseCRFTransposeKernel<Dtype><<<CAFFE_GET_BLOCKS(hw * num_labels),
        CAFFE_CUDA_NUM_THREADS>>>(hw, num_labels, q, top_data);
    CUDA_POST_KERNEL_CHECK;
  }
}

template <typename Dtype>
void DenseCRFLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  Backward_cpu(top, propagate_down, bottom);
}

INSTANTIATE_LAYER_GPU_FUNCS(DenseCRFLayer);

}  // namespace caffe
