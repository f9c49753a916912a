#ifndef CAFFE_BILINEAR_RESIZE_LAYER_HPP_
#define CAFFE_BILINEAR_RESIZE_LAYER_HPP_

#include <math.h>

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/fast_math.hpp"

namespace caffe {

/**
 * @brief Source coordinates of output index @p o along one axis of an
 *        align-corners bilinear resize from @p in to @p out samples.
 *
 * The output's first and last samples sit exactly on the input's first and
 * last: @f$ s = (in - 1)\, o / (out - 1) @f$ (0 when out == 1), in the
 * H-ReNet authors' order of operations. @p lo = floor(s),
 * @p hi = min(lo + 1, in - 1), @p frac = s - lo (the weight of @p hi).
 */
template <typename Dtype>
HRENET_HD inline void BilinearResizeCoord(int o, int in, int out, int* lo,
    int* hi, Dtype* frac) {
  const Dtype s = out > 1 ?
      Dtype(in - 1) * Dtype(o) / Dtype(out - 1) : Dtype(0);
  int l = static_cast<int>(floor(s));
  l = l < in - 1 ? l : in - 1;
  *lo = l;
  *hi = l + 1 < in ? l + 1 : l;
  *frac = s - Dtype(l);
}

/**
 * @brief Element @p index of a stack of out_h x out_w output planes: returns
 *        its plane, and sets @p taps to the offsets (within an in_h x in_w
 *        input plane) of its four neighbours (lo, lo), (lo, hi), (hi, lo),
 *        (hi, hi) and @p a, @p b to its row and column fractions. The CPU
 *        loops and the CUDA kernels both walk the output with it.
 */
template <typename Dtype>
HRENET_HD inline int BilinearResizeTaps(int index, int in_h, int in_w,
    int out_h, int out_w, int* taps, Dtype* a, Dtype* b) {
  const int x = index % out_w, y = (index / out_w) % out_h;
  int y0, y1, x0, x1;
  BilinearResizeCoord(y, in_h, out_h, &y0, &y1, a);
  BilinearResizeCoord(x, in_w, out_w, &x0, &x1, b);
  taps[0] = y0 * in_w + x0;
  taps[1] = y0 * in_w + x1;
  taps[2] = y1 * in_w + x0;
  taps[3] = y1 * in_w + x1;
  return index / (out_w * out_h);
}

/**
 * @brief Output value of one pixel from its four neighbours @p v00 (lo, lo),
 *        @p v01 (lo, hi), @p v10 (hi, lo), @p v11 (hi, hi) and the fractions
 *        @p a (rows) and @p b (columns).
 */
template <typename Dtype>
HRENET_HD inline Dtype BilinearResizeMix(Dtype v00, Dtype v01, Dtype v10,
    Dtype v11, Dtype a, Dtype b) {
  return (1 - a) * (1 - b) * v00 + (1 - a) * b * v01 + a * (1 - b) * v10 +
      a * b * v11;
}

/**
 * @brief Bilinear interpolation with aligned corners ("align_corners" in
 *        PyTorch and ONNX), forward and backward.
 *
 * Each channel of each image is resized from @f$ H \times W @f$ to
 * @f$ H' \times W' @f$: output pixel (y, x) reads the input at
 * @f$ (s_y, s_x) = ((H - 1) y / (H' - 1), (W - 1) x / (W' - 1)) @f$ and
 * mixes its four neighbours with weights
 * @f$ (1 - a)(1 - b), (1 - a) b, a (1 - b), a b @f$ (a, b the fractional
 * parts of @f$ s_y, s_x @f$). Corner pixels of the output equal corner
 * pixels of the input, so nothing is attenuated at the image border (a
 * fixed bilinear Deconvolution + Crop gives a border pixel a partial sum
 * of its taps). This is the upsampling of the H-ReNet paper ("the output
 * is upsampled by bilinear interpolation") as its authors' released
 * `BilinearInterpolation` layer computes it; the layer has no parameters.
 *
 * The output size, in order of precedence:
 * - two bottoms: the height and width of bottom[1] (e.g. the data blob, so
 *   that scores land exactly on the image; only its shape is read);
 * - `bilinear_resize_param { height width }` (both non-zero);
 * - `zoom_factor` z (default 1): @f$ H' = z H, W' = z W @f$.
 *
 * @param bottom input Blob vector (length 1 or 2)
 *   -# @f$ (N \times C \times H \times W) @f$ the maps to resize
 *   -# @f$ (N' \times C' \times H' \times W') @f$ optional: the size
 * @param top output Blob vector (length 1)
 *   -# @f$ (N \times C \times H' \times W') @f$
 *
 * Backward: bottom[0] receives the transpose of the interpolation applied to
 * the top's diff (each output pixel's gradient split over its four
 * neighbours with the same weights). The output does not depend on the
 * values of bottom[1]: when a gradient is asked for it, it is exactly zero.
 */
template <typename Dtype>
class BilinearResizeLayer : public Layer<Dtype> {
 public:
  explicit BilinearResizeLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "BilinearResize"; }
  virtual inline int MinBottomBlobs() const { return 1; }
  virtual inline int MaxBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }
  /// bottom[1] gives only a size.
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  int zoom_, fixed_h_, fixed_w_;
  int channels_, in_h_, in_w_, out_h_, out_w_;
  int num_threads_;  // CPU: HrenetThreads(), one (N, C) plane per job
  // CPU: BilinearResizeCoord of every output row and column.
  vector<int> row_lo_, row_hi_, col_lo_, col_hi_;
  vector<Dtype> row_frac_, col_frac_;
};

}  // namespace caffe

#endif  // CAFFE_BILINEAR_RESIZE_LAYER_HPP_
