#ifndef CAFFE_DNNL_POOLING_LAYER_HPP_
#define CAFFE_DNNL_POOLING_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/pooling_layer.hpp"

namespace caffe {

#ifdef USE_DNNL

/**
 * @brief Pooling on the CPU through oneDNN (``engine: DNNL``), the engine
 *        that ``DEFAULT`` picks on a build with oneDNN.
 *
 * The same function as PoolingLayer (the Caffe engine), output size and
 * window placement included (CEIL or FLOOR rounding, pad, the last window
 * clipped as Caffe clips it): oneDNN gets Caffe's left padding and, on the
 * right, whatever padding makes its output size Caffe's. MAX pooling never
 * takes a padded value, as in Caffe. AVE pooling divides by what Caffe
 * divides by: the window clipped to the padded input; oneDNN's
 * ``pooling_avg_include_padding`` is that when no window reaches past the
 * padding, ``pooling_avg_exclude_padding`` when there is no padding.
 *
 * Blobs stay NCHW and oneDNN works on them in place, multi-threaded and
 * vectorised (upstream's loop is single-threaded). MAX backward sends each
 * output's gradient to the input its forward chose (oneDNN's workspace
 * replaces Caffe's index mask); where several inputs of a window tie, the
 * one chosen may differ from the Caffe engine's (either is a gradient of
 * the max).
 *
 * A pass whose input holds a NaN runs the Caffe engine (oneDNN's max
 * skips NaN; Caffe's passes it on, and a diverged net must show it).
 *
 * The Caffe engine's code (inherited) runs for double, for STOCHASTIC
 * pooling, for MAX with a second (mask) top, for AVE windows oneDNN cannot
 * divide as Caffe does (padding and a window past it), on the GPU, and for
 * any shape oneDNN refuses.
 */
template <typename Dtype>
class DnnlPoolingLayer : public PoolingLayer<Dtype> {
 public:
  explicit DnnlPoolingLayer(const LayerParameter& param);
  virtual ~DnnlPoolingLayer();

  /// True when the last forward pass ran through oneDNN.
  bool uses_dnnl() const { return !caffe_pass_; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down,
      const vector<Blob<Dtype>*>& bottom);

 private:
  struct Primitives;  // oneDNN objects, kept out of this header

  vector<int> built_for_;  // bottom shape, pooled size and padding of prim_
  Primitives* prim_;       // NULL: the Caffe engine
  bool caffe_pass_;        // the last forward ran the Caffe engine

  // Builds the primitives when the shape changed; false: the Caffe engine.
  bool Ready(const vector<Blob<Dtype>*>& bottom,
             const vector<Blob<Dtype>*>& top);
  void Build(const vector<int>& shape);

  DISABLE_COPY_AND_ASSIGN(DnnlPoolingLayer);
};

#endif  // USE_DNNL

}  // namespace caffe

#endif  // CAFFE_DNNL_POOLING_LAYER_HPP_
