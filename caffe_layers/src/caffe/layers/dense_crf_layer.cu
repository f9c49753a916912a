#include <vector>

#include "caffe/layers/dense_crf_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// Features, -unary and the initial Q = softmax(init scores, or -unary).
template <typename Dtype>
__global__ void DenseCRFPrepareKernel(const int hw, const int width,
    const int num_labels, const bool prob, const Dtype* score,
    const Dtype* init, const Dtype* image, const Dtype* mean,
    const Dtype inv_scale, const Dtype inv_pos_std, const Dtype inv_bi_xy_std,
    const Dtype inv_bi_rgb_std, const bool data_planes, Dtype* pos_feature,
    Dtype* bi_feature, Dtype* neg_unary, Dtype* q) {
  CUDA_KERNEL_LOOP(i, hw) {
    DenseCRFFeatures(image, hw, i, width, mean, inv_scale, inv_pos_std,
        inv_bi_xy_std, inv_bi_rgb_std, data_planes, pos_feature + i * 2,
        bi_feature + i * 5);
    for (int l = 0; l < num_labels; ++l) {
      neg_unary[i * num_labels + l] = DenseCRFNegUnary(score[l * hw + i], prob);
      q[i * num_labels + l] = init ? init[l * hw + i] :
          neg_unary[i * num_labels + l];
    }
    DenseCRFSoftmax(q + i * num_labels, num_labels);
  }
}

template <typename Dtype>
__global__ void DenseCRFNormKernel(const int hw, const Dtype weight,
    const bool row, Dtype* norm) {
  CUDA_KERNEL_LOOP(i, hw) {
    norm[i] = DenseCRFNorm(norm[i], row);
    norm[hw + i] = weight * norm[i];
  }
}

// One pixel of a mean-field step: q = -unary + m (Potts) or -unary -
// compat m, m the slices of the (splatted and blurred) spatial and bilateral
// lattices, then its softmax unless !softmax. A lattice whose kernel weight
// is 0 passes blurred == NULL; message is H W x L scratch for a compat.
template <typename Dtype>
__global__ void DenseCRFSliceSoftmaxKernel(const int hw, const int num_labels,
    const Dtype* neg_unary, const Dtype* pos_blurred, const int* pos_offset,
    const Dtype* pos_weight, const Dtype* pos_scale, const Dtype pos_alpha,
    const Dtype* bi_blurred, const int* bi_offset, const Dtype* bi_weight,
    const Dtype* bi_scale, const Dtype bi_alpha, const Dtype* compat,
    const bool softmax, Dtype* message, Dtype* q) {
  CUDA_KERNEL_LOOP(i, hw) {
    Dtype* q_i = q + i * num_labels;
    Dtype* m_i = compat ? message + i * num_labels : q_i;
    for (int l = 0; l < num_labels; ++l) {
      m_i[l] = compat ? Dtype(0) : neg_unary[i * num_labels + l];
    }
    if (pos_blurred) {
      PermutohedralSliceRow(pos_blurred, pos_offset + i * 3, pos_weight + i * 3,
          3, num_labels, pos_alpha * pos_scale[i], true, m_i);
    }
    if (bi_blurred) {
      PermutohedralSliceRow(bi_blurred, bi_offset + i * 6, bi_weight + i * 6, 6,
          num_labels, bi_alpha * bi_scale[i], true, m_i);
    }
    if (compat) {
      DenseCRFCompatibility(compat, m_i, neg_unary + i * num_labels,
                            num_labels, q_i);
    }
    if (softmax) {
      DenseCRFSoftmax(q_i, num_labels);
    }
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
  const bool init_scores = bottom.size() == 3;
  const Blob<Dtype>& image_blob = *bottom.back();
  const Dtype* mean = mean_.gpu_data();
  Dtype* pos_feature = pos_feature_.mutable_gpu_data();
  Dtype* bi_feature = bi_feature_.mutable_gpu_data();
  Dtype* norm = norm_.mutable_gpu_data();
  Dtype* neg_unary = neg_unary_.mutable_gpu_data();
  Dtype* q = q_.mutable_gpu_data();
  Dtype* message = param_blobs_ ? message_.mutable_gpu_data() : NULL;
  PermutohedralLatticeGPU<Dtype>* lattice[2] = {&pos_lattice_gpu_,
                                                &bi_lattice_gpu_};
  const Dtype* feature[2] = {pos_feature, bi_feature};
  const int dim[2] = {2, 5};
  Dtype weight[2] = {pos_w_, bi_w_};
  const Dtype* compat = NULL;
  if (param_blobs_) {
    weight[0] = this->blobs_[0]->cpu_data()[0];
    weight[1] = this->blobs_[1]->cpu_data()[0];
    compat = this->blobs_[2]->gpu_data();
  }
  for (int n = 0; n < num_; ++n) {
    const Dtype* score = bottom[0]->gpu_data() + bottom[0]->offset(n);
    const Dtype* init = init_scores ?
        bottom[1]->gpu_data() + bottom[1]->offset(n) : NULL;
    const Dtype* image = image_blob.gpu_data() + image_blob.offset(n);
    // NOLINT_NEXT_LINE(whitespace/operators)
    DenseCRFPrepareKernel<Dtype><<<CAFFE_GET_BLOCKS(hw),
        CAFFE_CUDA_NUM_THREADS>>>(hw, width_, num_labels, prob_, score, init,
        image, mean, inv_scale_, inv_pos_std_, inv_bi_xy_std_,
        inv_bi_rgb_std_, data_planes_, pos_feature, bi_feature, neg_unary, q);
    CUDA_POST_KERNEL_CHECK;
    for (int k = 0; k < 2; ++k) {
      if (weight[k] != 0) {
        Dtype* norm_k = norm + 2 * k * hw;
        lattice[k]->Init(feature[k], dim[k], hw);
        caffe_gpu_set(hw, Dtype(1), norm_k);
        lattice[k]->Filter(norm_k, norm_k, 1);
        // NOLINT_NEXT_LINE(whitespace/operators)
        DenseCRFNormKernel<Dtype><<<CAFFE_GET_BLOCKS(hw),
            CAFFE_CUDA_NUM_THREADS>>>(hw, weight[k], row_norm_, norm_k);
        CUDA_POST_KERNEL_CHECK;
      }
    }
    for (int it = 0; it < max_iter_; ++it) {
      for (int k = 0; k < 2; ++k) {
        if (weight[k] != 0) {
          lattice[k]->SplatBlur(q, num_labels,
                                row_norm_ ? NULL : norm + 2 * k * hw);
        }
      }
      const bool pos = weight[0] != 0, bi = weight[1] != 0;
      const bool softmax = !(logits_ && it == max_iter_ - 1);
      // NOLINT_NEXT_LINE(whitespace/operators)
      DenseCRFSliceSoftmaxKernel<Dtype><<<CAFFE_GET_BLOCKS(hw),
          CAFFE_CUDA_NUM_THREADS>>>(hw, num_labels, neg_unary,
          pos ? pos_lattice_gpu_.blurred() : NULL,
          pos ? pos_lattice_gpu_.offset() : NULL,
          pos ? pos_lattice_gpu_.weight() : NULL, norm + hw,
          pos_lattice_gpu_.alpha(),
          bi ? bi_lattice_gpu_.blurred() : NULL,
          bi ? bi_lattice_gpu_.offset() : NULL,
          bi ? bi_lattice_gpu_.weight() : NULL, norm + 3 * hw,
          bi_lattice_gpu_.alpha(), compat, softmax, message, q);
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
