#include <algorithm>
#include <string>
#include <vector>

#include "caffe/layers/dense_crf_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/parallel.hpp"
#include "caffe/util/user_error.hpp"

namespace caffe {

namespace {

// The per-pixel mean-field step and softmax are compiled for AVX2 and for
// the baseline (HRENET_TARGET_CLONES; the softmax's exp runs 8 wide instead
// of 4).

// q_i = -unary_i + m_i (Potts) or -unary_i - compat m_i (a general
// compatibility), m_i = sum_k scale_k[i] * slice_k(i), for i in [begin,
// end), then its softmax unless !softmax; lattice[k] is NULL for a kernel of
// weight 0. message: H W x L scratch for m (general compatibility only).
template <typename Dtype>
inline void MeanFieldRows(int begin, int end, int num_labels,
    const Dtype* neg_unary, const PermutohedralLattice<Dtype>* const* lattice,
    const Dtype* const* scale, const Dtype* compat, bool softmax,
    Dtype* message, Dtype* q) {
  for (int i = begin; i < end; ++i) {
    Dtype* q_i = q + i * num_labels;
    Dtype* m_i = compat ? message + i * num_labels : q_i;
    if (compat) {
      std::fill(m_i, m_i + num_labels, Dtype(0));
    } else {
      std::copy(neg_unary + i * num_labels,
                neg_unary + (i + 1) * num_labels, q_i);
    }
    for (int k = 0; k < 2; ++k) {
      if (lattice[k] && i + 4 < end) {
        lattice[k]->PrefetchSlice(i + 4);
      }
      if (lattice[k]) {
        lattice[k]->SliceAccumulate(i, scale[k][i], m_i);
      }
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

HRENET_TARGET_CLONES("avx2", "default")
void MeanFieldRowsCloned(int begin, int end, int num_labels,
    const float* neg_unary, const PermutohedralLattice<float>* const* lattice,
    const float* const* scale, const float* compat, bool softmax,
    float* message, float* q) {
  MeanFieldRows(begin, end, num_labels, neg_unary, lattice, scale, compat,
                softmax, message, q);
}

HRENET_TARGET_CLONES("avx2", "default")
void MeanFieldRowsCloned(int begin, int end, int num_labels,
    const double* neg_unary,
    const PermutohedralLattice<double>* const* lattice,
    const double* const* scale, const double* compat, bool softmax,
    double* message, double* q) {
  MeanFieldRows(begin, end, num_labels, neg_unary, lattice, scale, compat,
                softmax, message, q);
}

// q_i = softmax(neg_unary_i) for i in [begin, end) (in place when
// neg_unary == q).
template <typename Dtype>
inline void SoftmaxRows(int begin, int end, int num_labels,
    const Dtype* neg_unary, Dtype* q) {
  if (neg_unary != q) {
    std::copy(neg_unary + begin * num_labels, neg_unary + end * num_labels,
              q + begin * num_labels);
  }
  for (int i = begin; i < end; ++i) {
    DenseCRFSoftmax(q + i * num_labels, num_labels);
  }
}

HRENET_TARGET_CLONES("avx2", "default")
void SoftmaxRowsCloned(int begin, int end, int num_labels,
    const float* neg_unary, float* q) {
  SoftmaxRows(begin, end, num_labels, neg_unary, q);
}

HRENET_TARGET_CLONES("avx2", "default")
void SoftmaxRowsCloned(int begin, int end, int num_labels,
    const double* neg_unary, double* q) {
  SoftmaxRows(begin, end, num_labels, neg_unary, q);
}

}  // namespace

template <typename Dtype>
void DenseCRFLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const DenseCRFParameter& p = this->layer_param_.dense_crf_param();
  const string& name = this->layer_param_.name();
  HRENET_USER_CHECK(p.max_iter() > 0,
      "DenseCRF layer " << name << ": max_iter is 0; "
      << "set dense_crf_param { max_iter: 5 } (at least one iteration)");
  HRENET_USER_CHECK(p.pos_xy_std() > 0,
      "DenseCRF layer " << name
      << ": pos_xy_std must be > 0, got " << p.pos_xy_std());
  HRENET_USER_CHECK(p.bi_xy_std() > 0,
      "DenseCRF layer " << name
      << ": bi_xy_std must be > 0, got " << p.bi_xy_std());
  HRENET_USER_CHECK(p.bi_rgb_std() > 0,
      "DenseCRF layer " << name
      << ": bi_rgb_std must be > 0, got " << p.bi_rgb_std());
  HRENET_USER_CHECK(p.pos_w() >= 0,
      "DenseCRF layer " << name
      << ": pos_w must be >= 0 (0 disables the spatial kernel), got "
      << p.pos_w());
  HRENET_USER_CHECK(p.bi_w() >= 0,
      "DenseCRF layer " << name
      << ": bi_w must be >= 0 (0 disables the bilateral kernel), got "
      << p.bi_w());
  HRENET_USER_CHECK(p.scale() > 0,
      "DenseCRF layer " << name << ": scale must be > 0 "
      << "(the data layer's scale), got " << p.scale());
  const int num_mean = p.mean_value_size();
  HRENET_USER_CHECK(num_mean == 0 || num_mean == 1 || num_mean == 3,
      "DenseCRF layer "
      << name << ": give 0, 1 or 3 (B, G, R) mean_value entries, got "
      << num_mean);
  max_iter_ = p.max_iter();
  prob_ = p.unary_type() == DenseCRFParameter_UnaryType_PROB;
  row_norm_ = p.normalization() == DenseCRFParameter_Normalization_ROW;
  data_planes_ = p.feature_source() == DenseCRFParameter_FeatureSource_DATA;
  logits_ = p.output() == DenseCRFParameter_Output_LOGITS;
  param_blobs_ = p.param_blobs();
  pos_w_ = p.pos_w();
  bi_w_ = p.bi_w();
  inv_pos_std_ = Dtype(1) / p.pos_xy_std();
  inv_bi_xy_std_ = Dtype(1) / p.bi_xy_std();
  inv_bi_rgb_std_ = Dtype(1) / p.bi_rgb_std();
  inv_scale_ = Dtype(1) / p.scale();
  mean_.Reshape(vector<int>(1, 3));
  Dtype* mean = mean_.mutable_cpu_data();
  for (int c = 0; c < 3; ++c) {
    mean[c] = num_mean == 0 ? Dtype(0) : p.mean_value(num_mean == 1 ? 0 : c);
  }
  num_threads_ = LayerThreads(p.threads(), name);
  if (param_blobs_ && this->phase_ == TRAIN) {
    // the blobs get no gradient: say so now, not at the first backward
    for (int i = 0; i < 3; ++i) {
      HRENET_USER_CHECK(i < this->layer_param_.param_size() &&
                        this->layer_param_.param(i).lr_mult() == 0,
          "DenseCRF layer " << name << " is forward only: its parameter "
          << "blobs get no gradient; give it three param { lr_mult: 0 }");
    }
  }
  const int num_labels = bottom[0]->num_axes() > 1 ? bottom[0]->shape(1) : 0;
  if (!param_blobs_) {
    HRENET_USER_CHECK(this->blobs_.size() == 0,
        "DenseCRF layer " << name << " has "
        << this->blobs_.size() << " parameter blobs (from a model?) but "
        << "param_blobs is false; set dense_crf_param { param_blobs: true }");
  } else if (this->blobs_.size() > 0) {
    HRENET_USER_CHECK(this->blobs_.size() == 3,
        "DenseCRF layer " << name
        << ": param_blobs needs 3 blobs (spatial weight, bilateral weight, "
        << "compatibility), the model gives " << this->blobs_.size());
    HRENET_USER_CHECK(this->blobs_[0]->count() == 1 &&
                      this->blobs_[1]->count() == 1,
        "DenseCRF layer " << name << ": the kernel weights must be "
        << "single values, got " << this->blobs_[0]->shape_string() << " and "
        << this->blobs_[1]->shape_string());
  } else {
    this->blobs_.resize(3);
    for (int k = 0; k < 2; ++k) {
      this->blobs_[k].reset(new Blob<Dtype>(vector<int>(4, 1)));
      this->blobs_[k]->mutable_cpu_data()[0] = k == 0 ? pos_w_ : bi_w_;
    }
    vector<int> shape(4, 1);
    shape[2] = shape[3] = num_labels;
    this->blobs_[2].reset(new Blob<Dtype>(shape));
    Dtype* compat = this->blobs_[2]->mutable_cpu_data();
    caffe_set(this->blobs_[2]->count(), Dtype(0), compat);
    for (int l = 0; l < num_labels; ++l) {
      compat[l * num_labels + l] = Dtype(-1);
    }
  }
}

template <typename Dtype>
void DenseCRFLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  const Blob<Dtype>& image = *bottom.back();
  HRENET_USER_CHECK(bottom[0]->num_axes() == 4,
      "DenseCRF layer " << name
      << ": bottom[0] (scores) must be N x L x H x W, got "
      << bottom[0]->shape_string());
  HRENET_USER_CHECK(image.num_axes() == 4,
      "DenseCRF layer " << name
      << ": the image (last bottom) must be N x 3 x H x W, got "
      << image.shape_string());
  HRENET_USER_CHECK(bottom[0]->channels() >= 2,
      "DenseCRF layer " << name
      << ": scores have " << bottom[0]->channels() << " label channel; a CRF "
      << "needs at least 2 labels");
  HRENET_USER_CHECK(image.channels() == 3,
      "DenseCRF layer " << name
      << ": the image (last bottom) must be a 3-channel BGR image, got "
      << image.shape_string());
  HRENET_USER_CHECK(bottom[0]->num() == image.num() &&
        bottom[0]->height() == image.height() &&
        bottom[0]->width() == image.width(),
      "DenseCRF layer " << name
      << ": scores " << bottom[0]->shape_string() << " and image "
      << image.shape_string() << " differ in N, H or W; crop or "
      << "upsample the scores to the image size");
  if (bottom.size() == 3) {
    HRENET_USER_CHECK(bottom[1]->shape() == bottom[0]->shape(),
        "DenseCRF layer "
        << name << ": the initial scores (bottom[1]) "
        << bottom[1]->shape_string() << " must have the shape of bottom[0] "
        << bottom[0]->shape_string());
  }
  num_ = bottom[0]->num();
  num_labels_ = bottom[0]->channels();
  height_ = bottom[0]->height();
  width_ = bottom[0]->width();
  if (param_blobs_) {
    HRENET_USER_CHECK(this->blobs_[2]->count() == num_labels_ * num_labels_ &&
          this->blobs_[2]->shape(-1) == num_labels_,
        "DenseCRF layer "
        << name << ": the compatibility blob is "
        << this->blobs_[2]->shape_string() << ", the scores have "
        << num_labels_ << " labels (it must be L x L)");
  }
  top[0]->ReshapeLike(*bottom[0]);
  const int hw = height_ * width_;
  vector<int> shape(2);
  shape[0] = hw;
  shape[1] = 2;
  pos_feature_.Reshape(shape);
  shape[1] = 5;
  bi_feature_.Reshape(shape);
  shape[1] = num_labels_;
  neg_unary_.Reshape(shape);
  q_.Reshape(shape);
  if (param_blobs_) {
    message_.Reshape(shape);
  }
  shape[0] = 4;
  shape[1] = hw;
  norm_.Reshape(shape);
}

template <typename Dtype>
void DenseCRFLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int hw = height_ * width_;
  const int num_labels = num_labels_;
  const int threads = num_threads_;
  const bool init_scores = bottom.size() == 3;
  const Blob<Dtype>& image_blob = *bottom.back();
  const Dtype* mean = mean_.cpu_data();
  Dtype* pos_feature = pos_feature_.mutable_cpu_data();
  Dtype* bi_feature = bi_feature_.mutable_cpu_data();
  Dtype* norm = norm_.mutable_cpu_data();
  Dtype* neg_unary = neg_unary_.mutable_cpu_data();
  Dtype* q = q_.mutable_cpu_data();
  Dtype* message = param_blobs_ ? message_.mutable_cpu_data() : NULL;
  PermutohedralLattice<Dtype>* lattice[2] = {&pos_lattice_, &bi_lattice_};
  Dtype weight[2] = {pos_w_, bi_w_};
  const Dtype* compat = NULL;
  if (param_blobs_) {
    weight[0] = this->blobs_[0]->cpu_data()[0];
    weight[1] = this->blobs_[1]->cpu_data()[0];
    compat = this->blobs_[2]->cpu_data();
  }
  for (int n = 0; n < num_; ++n) {
    const Dtype* score = bottom[0]->cpu_data() + bottom[0]->offset(n);
    const Dtype* init = init_scores ?
        bottom[1]->cpu_data() + bottom[1]->offset(n) : NULL;
    const Dtype* image = image_blob.cpu_data() + image_blob.offset(n);
    ParallelFor(hw, threads, [&](int begin, int end) {
      for (int i = begin; i < end; ++i) {
        DenseCRFFeatures(image, hw, i, width_, mean, inv_scale_, inv_pos_std_,
            inv_bi_xy_std_, inv_bi_rgb_std_, data_planes_,
            pos_feature + i * 2, bi_feature + i * 5);
      }
      // Transpose in blocks of pixels whose rows stay in the L1 cache.
      for (int b = begin; b < end; b += 64) {
        const int b_end = std::min(end, b + 64);
        for (int l = 0; l < num_labels; ++l) {
          for (int i = b; i < b_end; ++i) {
            neg_unary[i * num_labels + l] =
                DenseCRFNegUnary(score[l * hw + i], prob_);
            if (init) {
              q[i * num_labels + l] = init[l * hw + i];
            }
          }
        }
      }
      SoftmaxRowsCloned(begin, end, num_labels, init ? q : neg_unary, q);
    });
    const Dtype* feature[2] = {pos_feature, bi_feature};
    for (int k = 0; k < 2; ++k) {
      if (weight[k] != 0) {
        lattice[k]->Init(feature[k], k == 0 ? 2 : 5, hw, threads);
        Dtype* norm_k = norm + 2 * k * hw;
        Dtype* weighted_norm_k = norm_k + hw;
        std::fill(norm_k, norm_k + hw, Dtype(1));
        lattice[k]->Filter(norm_k, norm_k, 1, threads);
        for (int i = 0; i < hw; ++i) {
          norm_k[i] = DenseCRFNorm(norm_k[i], row_norm_);
          weighted_norm_k[i] = weight[k] * norm_k[i];
        }
      }
    }
    // Q = softmax(-unary + sum_k w_k N_k K_k M_k Q) (N, M: the output and
    // input normalisation; with a compatibility matrix -mu times the sum):
    // splat and blur on both lattices, then slice both, add and normalise
    // per pixel.
    for (int it = 0; it < max_iter_; ++it) {
      for (int k = 0; k < 2; ++k) {
        if (weight[k] != 0) {
          lattice[k]->SplatBlur(q, num_labels, threads,
                                row_norm_ ? NULL : norm + 2 * k * hw);
        }
      }
      const PermutohedralLattice<Dtype>* used[2] = {
          weight[0] != 0 ? lattice[0] : NULL,
          weight[1] != 0 ? lattice[1] : NULL};
      const Dtype* scale[2] = {norm + hw, norm + 3 * hw};
      const bool softmax = !(logits_ && it == max_iter_ - 1);
      ParallelFor(hw, threads, [&](int begin, int end) {
        MeanFieldRowsCloned(begin, end, num_labels, neg_unary, used, scale,
                            compat, softmax, message, q);
      }, 1024);
    }
    Dtype* top_data = top[0]->mutable_cpu_data() + top[0]->offset(n);
    // Transpose in blocks of pixels whose rows of Q stay in the L1 cache.
    ParallelFor(hw, threads, [&](int begin, int end) {
      for (int b = begin; b < end; b += 64) {
        const int b_end = std::min(end, b + 64);
        for (int l = 0; l < num_labels; ++l) {
          for (int i = b; i < b_end; ++i) {
            top_data[l * hw + i] = q[i * num_labels + l];
          }
        }
      }
    });
  }
}

template <typename Dtype>
void DenseCRFLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  for (int i = 0; i < propagate_down.size(); ++i) {
    HRENET_USER_CHECK(!propagate_down[i],
        "DenseCRF layer "
        << this->layer_param_.name() << " is forward only and cannot "
        << "back-propagate to bottom[" << i << "]; set propagate_down: false "
        << "or stop the gradient before it");
  }
  for (int i = 0; i < this->blobs_.size(); ++i) {
    HRENET_USER_CHECK(!this->param_propagate_down(i),
        "DenseCRF layer "
        << this->layer_param_.name() << " is forward only: its parameter "
        << "blobs get no gradient; give them param { lr_mult: 0 }");
  }
}

#ifdef CPU_ONLY
STUB_GPU(DenseCRFLayer);
#endif

INSTANTIATE_CLASS(DenseCRFLayer);
REGISTER_LAYER_CLASS(DenseCRF);

}  // namespace caffe
