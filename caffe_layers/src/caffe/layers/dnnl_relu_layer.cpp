#ifdef USE_DNNL
#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

#include "caffe/layers/dnnl_relu_layer.hpp"
#include "caffe/util/dnnl_util.hpp"
#include "caffe/util/parallel.hpp"

namespace caffe {

// The primitives for one element count: the blob as a flat array.
template <typename Dtype>
struct DnnlReLULayer<Dtype>::Primitives {
  dnnl::stream stream{DnnlCpuEngine()};
  dnnl::memory::desc flat;
  dnnl::eltwise_forward fwd;
  dnnl::eltwise_backward bwd;
};

template <typename Dtype>
DnnlReLULayer<Dtype>::DnnlReLULayer(const LayerParameter& param)
    : ReLULayer<Dtype>(param), built_for_(-1), prim_(NULL),
      caffe_pass_(true), num_threads_(HrenetThreads()) {}

template <typename Dtype>
DnnlReLULayer<Dtype>::~DnnlReLULayer() {
  delete prim_;
}

template <typename Dtype>
void DnnlReLULayer<Dtype>::Build(int count) {
  delete prim_;
  prim_ = NULL;
  const float slope = this->layer_param_.relu_param().negative_slope();
  std::unique_ptr<Primitives> p(new Primitives());
  p->flat = dnnl::memory::desc({count}, dnnl::memory::data_type::f32,
                               dnnl::memory::format_tag::x);
  const dnnl::eltwise_forward::primitive_desc fwd_pd(
      dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training,
          dnnl::algorithm::eltwise_relu, p->flat, slope), DnnlCpuEngine());
  p->fwd = dnnl::eltwise_forward(fwd_pd);
  p->bwd = dnnl::eltwise_backward(dnnl::eltwise_backward::primitive_desc(
      dnnl::eltwise_backward::desc(dnnl::algorithm::eltwise_relu, p->flat,
          p->flat, slope), DnnlCpuEngine(), fwd_pd));
  prim_ = p.release();
  built_for_ = count;
}

template <typename Dtype>
void DnnlReLULayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  // Caffe's expression, bit for bit (a NaN passes on), on HrenetThreads()
  // threads, noting a NaN on the way: in one pass over memory, faster than
  // oneDNN's forward after a NaN scan.
  const Dtype* x = bottom[0]->cpu_data();
  Dtype* y = top[0]->mutable_cpu_data();
  const Dtype slope = this->layer_param_.relu_param().negative_slope();
  std::atomic<bool> nan(false);
  ParallelFor(bottom[0]->count(), num_threads_, [&](int begin, int end) {
    int seen = 0;
    for (int i = begin; i < end; ++i) {
      const Dtype v = x[i];
      seen |= v != v;
      y[i] = std::max(v, Dtype(0)) + slope * std::min(v, Dtype(0));
    }
    if (seen) {
      nan = true;
    }
  }, 1 << 16);
  caffe_pass_ = sizeof(Dtype) != sizeof(float) || nan;
}

template <typename Dtype>
void DnnlReLULayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  UseHrenetThreadsHere();  // oneDNN's OpenMP threads
  const int count = bottom[0]->count();
  if (!propagate_down[0]) {
    return;
  }
  // oneDNN's backward, unless the input held a NaN (oneDNN's gradient
  // there is negative_slope * dy, Caffe's 0) or the type is double.
  if (caffe_pass_ || count == 0) {
    ReLULayer<Dtype>::Backward_cpu(top, propagate_down, bottom);
    return;
  }
  if (built_for_ != count) {
    Build(count);
  }
  prim_->bwd.execute(prim_->stream,
      {{DNNL_ARG_SRC, DnnlWrap(prim_->flat, bottom[0]->cpu_data())},
       {DNNL_ARG_DIFF_DST, DnnlWrap(prim_->flat, top[0]->cpu_diff())},
       {DNNL_ARG_DIFF_SRC,
        DnnlWrap(prim_->flat, bottom[0]->mutable_cpu_diff())}});
  prim_->stream.wait();
}

INSTANTIATE_CLASS(DnnlReLULayer);

}  // namespace caffe
#endif  // USE_DNNL
