#ifndef CAFFE_DNNL_RELU_LAYER_HPP_
#define CAFFE_DNNL_RELU_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/relu_layer.hpp"

namespace caffe {

#ifdef USE_DNNL

/**
 * @brief ReLU (and leaky ReLU, ``negative_slope``) on the CPU, multi-
 *        threaded, its backward through oneDNN's element-wise primitive
 *        (``engine: DNNL``, what ``DEFAULT`` picks on a build with oneDNN).
 *
 * The same function as ReLULayer: forward y = max(x, 0) + negative_slope
 * * min(x, 0), Caffe's own expression on HrenetThreads() threads (the same
 * bits, a NaN passed on); backward dx = dy where x > 0, negative_slope * dy
 * elsewhere, by oneDNN (also in place, where x is then the top: its sign is
 * x's), over the blob as one flat array, so any shape works. A pass whose
 * input held a NaN takes Caffe's backward (0 there, where oneDNN's would
 * be negative_slope * dy). Double and the GPU run the Caffe engine's code
 * (inherited).
 */
template <typename Dtype>
class DnnlReLULayer : public ReLULayer<Dtype> {
 public:
  explicit DnnlReLULayer(const LayerParameter& param);
  virtual ~DnnlReLULayer();

  /// True when the backward of the last forward pass runs through oneDNN.
  bool uses_dnnl() const { return !caffe_pass_; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down,
      const vector<Blob<Dtype>*>& bottom);

 private:
  struct Primitives;  // oneDNN objects, kept out of this header

  int built_for_;      // the element count prim_ was built for
  Primitives* prim_;
  bool caffe_pass_;    // the Caffe engine's backward for the last forward
  int num_threads_;    // HrenetThreads()

  void Build(int count);

  DISABLE_COPY_AND_ASSIGN(DnnlReLULayer);
};

#endif  // USE_DNNL

}  // namespace caffe

#endif  // CAFFE_DNNL_RELU_LAYER_HPP_
