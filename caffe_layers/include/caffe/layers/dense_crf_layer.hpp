#ifndef CAFFE_DENSE_CRF_LAYER_HPP_
#define CAFFE_DENSE_CRF_LAYER_HPP_

#include <cmath>
#include <cstring>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/permutohedral.hpp"

namespace caffe {

/// Smallest probability the PROB unary takes the log of (-log: 46.05).
const double kDenseCRFProbFloor = 1e-20;

/**
 * @brief -unary of one score: the score itself for LOGIT, log(max(p, floor))
 *        for PROB (so that the unary is -log p).
 */
template <typename Dtype>
HRENET_HD inline Dtype DenseCRFNegUnary(Dtype score, bool prob) {
  if (!prob) {
    return score;
  }
  return log(score > Dtype(kDenseCRFProbFloor) ? score
                                                : Dtype(kDenseCRFProbFloor));
}

/// In-place softmax of one pixel's L contiguous label values.
template <typename Dtype>
HRENET_HD inline void DenseCRFSoftmax(Dtype* x, int num_labels) {
  // Four independent lanes for the max and the sum (short dependency
  // chains; the compiler may pack them into one vector).
  Dtype m[4] = {x[0], x[0], x[0], x[0]};
  int l = 0;
  for (; l + 4 <= num_labels; l += 4) {
    for (int k = 0; k < 4; ++k) {
      m[k] = x[l + k] > m[k] ? x[l + k] : m[k];
    }
  }
  for (; l < num_labels; ++l) {
    m[0] = x[l] > m[0] ? x[l] : m[0];
  }
  const Dtype mx01 = m[0] > m[1] ? m[0] : m[1];
  const Dtype mx23 = m[2] > m[3] ? m[2] : m[3];
  const Dtype mx = mx01 > mx23 ? mx01 : mx23;
  for (l = 0; l < num_labels; ++l) {
    x[l] = FastExp(x[l] - mx);
  }
  Dtype s[4] = {0, 0, 0, 0};
  for (l = 0; l + 4 <= num_labels; l += 4) {
    for (int k = 0; k < 4; ++k) {
      s[k] += x[l + k];
    }
  }
  for (; l < num_labels; ++l) {
    s[0] += x[l];
  }
  const Dtype inv = Dtype(1) / ((s[0] + s[1]) + (s[2] + s[3]));
  for (l = 0; l < num_labels; ++l) {
    x[l] *= inv;
  }
}

/**
 * @brief Normalisation factor of one pixel from its filtered ones
 *        @f$ (K 1)_i @f$: @f$ 1 / \sqrt{(K 1)_i + 10^{-20}} @f$ (SYMMETRIC,
 *        applied before and after filtering) or @f$ 1 / ((K 1)_i + 10^{-20})
 *        @f$ (ROW, applied after).
 */
template <typename Dtype>
HRENET_HD inline Dtype DenseCRFNorm(Dtype filtered_ones, bool row) {
  const Dtype k1 = filtered_ones + Dtype(1e-20);
  return row ? Dtype(1) / k1 : Dtype(1) / sqrt(k1);
}

/**
 * @brief One pixel's scores after a message with a general label
 *        compatibility: out[l] = -unary[l] - sum_l' mu[l][l'] m[l'], with
 *        @p compat the L x L matrix mu (row-major) and @p message m.
 */
template <typename Dtype>
HRENET_HD inline void DenseCRFCompatibility(const Dtype* compat,
    const Dtype* message, const Dtype* neg_unary, int num_labels,
    Dtype* out) {
  for (int l = 0; l < num_labels; ++l) {
    Dtype v = neg_unary[l];
    const Dtype* row = compat + l * num_labels;
    for (int k = 0; k < num_labels; ++k) {
      v -= row[k] * message[k];
    }
    out[l] = v;
  }
}

/**
 * @brief Features of pixel (x, y) for the spatial (2) and bilateral (5)
 *        kernels: (x, y) / theta_gamma and (x / theta_alpha, y / theta_alpha,
 *        R / theta_beta, G / theta_beta, B / theta_beta), with the 0-255
 *        colour recovered from the net's BGR input as v / scale + mean_c.
 *        The order (x, y, R, G, B) is the one pydensecrf uses for an RGB
 *        image, which keeps the two lattices identical. With
 *        @p data_planes the last three are instead the image's three planes
 *        as given (v_0, v_1, v_2) / theta_beta, with no mean or scale (the
 *        features of the H-ReNet authors' DenseCRFMeanfield layer).
 *
 * @param bgr  the three colour planes of the image, plane stride @p hw
 * @param mean B, G, R means
 */
template <typename Dtype>
HRENET_HD inline void DenseCRFFeatures(const Dtype* bgr, int hw,
    int index, int width, const Dtype* mean, Dtype inv_scale,
    Dtype inv_pos_std, Dtype inv_bi_xy_std, Dtype inv_bi_rgb_std,
    bool data_planes, Dtype* pos_feature, Dtype* bi_feature) {
  const Dtype x = index % width;
  const Dtype y = index / width;
  pos_feature[0] = x * inv_pos_std;
  pos_feature[1] = y * inv_pos_std;
  bi_feature[0] = x * inv_bi_xy_std;
  bi_feature[1] = y * inv_bi_xy_std;
  for (int c = 0; c < 3; ++c) {
    if (data_planes) {
      bi_feature[2 + c] = bgr[c * hw + index] * inv_bi_rgb_std;
      continue;
    }
    const int bgr_c = 2 - c;
    bi_feature[2 + c] = (bgr[bgr_c * hw + index] * inv_scale + mean[bgr_c]) *
        inv_bi_rgb_std;
  }
}

/**
 * @brief Fully connected CRF with Gaussian edge potentials: mean-field
 *        inference on the permutohedral lattice (Kraehenbuehl & Koltun,
 *        "Efficient Inference in Fully Connected CRFs with Gaussian Edge
 *        Potentials", NIPS 2011), as the H-ReNet paper's post-processing.
 *
 * The energy of a labelling x is
 * @f$ E(x) = \sum_i \psi_u(x_i) + \sum_{i<j} \mu(x_i, x_j) k(f_i, f_j) @f$
 * with the Potts compatibility @f$ \mu(l, l') = [l \ne l'] @f$ and
 * @f[
 *   k(f_i, f_j) = w_b \exp\left(-\frac{|p_i - p_j|^2}{2\theta_\alpha^2}
 *                 - \frac{|I_i - I_j|^2}{2\theta_\beta^2}\right)
 *               + w_s \exp\left(-\frac{|p_i - p_j|^2}{2\theta_\gamma^2}
 *                 \right).
 * @f]
 * Each Gaussian is applied with the permutohedral lattice
 * (util/permutohedral.hpp) on the features divided by the standard
 * deviations, and normalised symmetrically as in Kraehenbuehl's densecrf
 * (NORMALIZE_SYMMETRIC): @f$ \tilde K v = D^{-1/2} K D^{-1/2} v @f$ with
 * @f$ D = \mathrm{diag}(K 1) @f$. Mean-field follows densecrf's loop:
 * @f$ Q^0 = \mathrm{softmax}(-\psi_u) @f$, then @p max_iter times
 * @f$ Q = \mathrm{softmax}(-\psi_u + \sum_k w_k \tilde K_k Q) @f$
 * (the lattice includes each pixel's own contribution, as densecrf's
 * does). With the Potts compatibility the message to label l,
 * @f$ -w \sum_{l' \ne l} (\tilde K Q)_{l'} @f$, equals
 * @f$ w (\tilde K Q)_l @f$ up to a per-pixel constant that the softmax
 * removes; this is the form densecrf's PottsCompatibility computes
 * (@f$ \mu = -w [l = l'] @f$, energy -= mu * filtered). Each iteration
 * splats and blurs Q on both lattices, then one pass over the pixels
 * slices both (scaled by @f$ w_k D_k^{-1/2} @f$), adds @f$ -\psi_u @f$ and
 * takes the softmax.
 * Both lattices are built once per image and reused for every label and
 * iteration; the work is linear in pixels x labels.
 *
 * Parameters (DenseCRFParameter): max_iter (> 0), pos_w / pos_xy_std
 * (spatial kernel weight and theta_gamma), bi_w / bi_xy_std / bi_rgb_std
 * (bilateral weight, theta_alpha, theta_beta), unary_type (LOGIT: bottom[0]
 * holds scores before the softmax, the unary is -score; PROB: probabilities,
 * the unary is -log(max(p, 1e-20))), mean_value (0, 1 or 3 BGR values) and
 * scale: pixel colours are recovered as bottom[1] / scale + mean.
 *
 * Options (the defaults are densecrf's inference above; the other values
 * reproduce the H-ReNet authors' `DenseCRFMeanfield` layer, a CRF-as-RNN
 * variant, so that their trained model runs here):
 * - `normalization: ROW`: @f$ \tilde K = D^{-1} K @f$ (each row of the
 *   kernel sums to 1, the pixel itself included: @f$ 1 / ((K 1)_i +
 *   10^{-20}) @f$) instead of SYMMETRIC.
 * - `feature_source: DATA`: the bilateral kernel's colour features are the
 *   image blob's three planes as the net sees them, in their order
 *   (e.g. mean-subtracted B, G, R), divided by theta_beta; mean_value and
 *   scale are then unused. The lattice approximates the Gaussian
 *   differently for shifted or reordered features, so a model's exact
 *   output depends on this choice.
 * - `param_blobs: true`: the kernel weights and the label compatibility
 *   are parameter blobs, so that a caffemodel carries their trained
 *   values: blobs_[0] @f$ w_s @f$ (1 x 1 x 1 x 1, initialised to pos_w),
 *   blobs_[1] @f$ w_b @f$ (initialised to bi_w), blobs_[2] @f$ \mu @f$
 *   (1 x 1 x L x L, initialised to @f$ -I @f$, i.e. Potts). An iteration
 *   then computes @f$ -\psi_u - \mu (w_s \tilde K_s Q + w_b \tilde K_b Q)
 *   @f$ (with @f$ \mu = -I @f$ exactly the Potts step above). They get no
 *   gradient: a backward pass that would update them stops the net (give
 *   them lr_mult: 0).
 * - `output: LOGITS`: top holds the last iteration's scores before their
 *   softmax (follow it with a Softmax layer for the marginals).
 * - three bottoms (scores, initial scores, image): @f$ Q^0 @f$ is the
 *   softmax of bottom[1] instead of bottom[0]'s, and the image is bottom[2]
 *   (the authors' layer takes its unary and its initial Q apart).
 *
 * CPU threads: `threads`, or when it is 0 HrenetThreads() (the environment
 * variable HRENET_THREADS, default: the CPUs the process may run on), read
 * at set-up, bounds the threads the CPU path uses; results do not depend on
 * it.
 *
 * @param bottom input Blob vector (length 2 or 3)
 *   -# @f$ (N \times L \times H \times W) @f$ class scores (L >= 2)
 *   -# (three bottoms only) @f$ (N \times L \times H \times W) @f$ the
 *      scores whose softmax is the initial Q
 *   -# @f$ (N \times 3 \times H \times W) @f$ the image as the net sees it
 *      (BGR, mean subtracted and scaled by the data layer)
 * @param top output Blob vector (length 1)
 *   -# @f$ (N \times L \times H \times W) @f$ the marginals Q (or, with
 *      output: LOGITS, the scores before the last softmax)
 *
 * Forward only: no bottom receives a gradient (Backward throws a UserError
 * when one is asked for); with param_blobs in a TRAIN net, set-up requires
 * three `param { lr_mult: 0 }`.
 */
template <typename Dtype>
class DenseCRFLayer : public Layer<Dtype> {
 public:
  explicit DenseCRFLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "DenseCRF"; }
  virtual inline int MinBottomBlobs() const { return 2; }
  virtual inline int MaxBottomBlobs() const { return 3; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  int max_iter_;
  bool prob_, row_norm_, data_planes_, logits_, param_blobs_;
  Dtype pos_w_, bi_w_;
  Dtype inv_pos_std_, inv_bi_xy_std_, inv_bi_rgb_std_;
  Dtype inv_scale_;
  int num_threads_;
  int num_, num_labels_, height_, width_;

  Blob<Dtype> mean_;       // (3): B, G, R means
  Blob<Dtype> pos_feature_;  // (H W x 2)
  Blob<Dtype> bi_feature_;   // (H W x 5)
  Blob<Dtype> norm_;       // (4 x H W): the input and the output scale
                           // (SYMMETRIC: 1/sqrt(K 1) and w/sqrt(K 1); ROW:
                           // unused and w/(K 1)) of the spatial, then of
                           // the bilateral kernel
  Blob<Dtype> neg_unary_;  // (H W x L) pixel-major -unary of one image
  Blob<Dtype> q_;          // (H W x L) marginals
  Blob<Dtype> message_;    // (H W x L) messages (general compatibility)
  PermutohedralLattice<Dtype> pos_lattice_, bi_lattice_;
#ifndef CPU_ONLY
  PermutohedralLatticeGPU<Dtype> pos_lattice_gpu_, bi_lattice_gpu_;
#endif
};

}  // namespace caffe

#endif  // CAFFE_DENSE_CRF_LAYER_HPP_
