#ifndef CAFFE_DNNL_CONV_LAYER_HPP_
#define CAFFE_DNNL_CONV_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/conv_layer.hpp"

namespace caffe {

#ifdef USE_DNNL

/**
 * @brief Convolution on the CPU through oneDNN (``engine: DNNL``), the
 *        engine that ``DEFAULT`` picks on a build with oneDNN.
 *
 * The same function, parameters and blobs as ConvolutionLayer (the Caffe
 * engine): weights (num_output, channels / group, kernel_h, kernel_w) and an
 * optional bias, groups, stride, pad and dilation, every bottom/top pair
 * through the same weights. The blobs stay Caffe's NCHW; the layer wraps
 * them in oneDNN memory and lets oneDNN choose its own (blocked) layouts for
 * the primitives, reordering into and out of them. Primitives and their
 * buffers are built for one bottom shape and rebuilt after a Reshape to
 * another one.
 *
 * Forward computes every image of the batch in one primitive. Backward
 * writes the bottom diff (as the Caffe engine does) and *adds* the weight
 * and bias gradients to the blobs' diffs, so ``iter_size`` > 1 and shared
 * weights accumulate exactly as with the Caffe engine.
 *
 * The oneDNN path runs for float on the CPU with two spatial axes and the
 * channel axis 1. Everything else (double, N-D convolution, the GPU) is the
 * Caffe engine's code, inherited. oneDNN's threads are its OpenMP pool:
 * ``HRENET_THREADS`` sets their number (see HrenetThreads(); default:
 * ``OMP_NUM_THREADS``, else all cores).
 */
template <typename Dtype>
class DnnlConvolutionLayer : public ConvolutionLayer<Dtype> {
 public:
  explicit DnnlConvolutionLayer(const LayerParameter& param);
  virtual ~DnnlConvolutionLayer();

  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  /// True when this layer's CPU passes run through oneDNN.
  bool uses_dnnl() const { return dnnl_path_; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down,
      const vector<Blob<Dtype>*>& bottom);

 private:
  struct Primitives;  // oneDNN objects, kept out of this header

  bool dnnl_path_;         // float, 2-D, channels on axis 1
  vector<int> built_for_;  // the bottom shape prim_ was built for
  Primitives* prim_;       // NULL: the Caffe engine for this shape
  bool backward_fallback_;  // no oneDNN backward for this shape
  Blob<Dtype> weight_diff_;  // one pass's weight gradient, then added
  Blob<Dtype> bias_diff_;

  // Builds the primitives when the shape changed; false: the Caffe engine.
  bool Ready(const vector<int>& shape);
  void Build(const vector<int>& shape);
  bool BuildBackward();

  DISABLE_COPY_AND_ASSIGN(DnnlConvolutionLayer);
};

#endif  // USE_DNNL

}  // namespace caffe

#endif  // CAFFE_DNNL_CONV_LAYER_HPP_
