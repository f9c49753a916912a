#ifdef USE_DNNL
#include <algorithm>
#include <memory>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

#include "caffe/layers/dnnl_pooling_layer.hpp"
#include "caffe/util/dnnl_util.hpp"
#include "caffe/util/parallel.hpp"

namespace caffe {

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

}  // namespace

// The primitives for one bottom shape (NCHW in and out, no reorders).
template <typename Dtype>
struct DnnlPoolingLayer<Dtype>::Primitives {
  dnnl::stream stream{DnnlCpuEngine()};
  memory::desc src, dst;
  memory::dims strides, kernel, pad_l, pad_r;
  dnnl::pooling_forward::primitive_desc fwd_pd;
  dnnl::pooling_forward fwd;
  memory workspace;  // MAX: which input each output took
  dnnl::pooling_backward bwd;

  // Runs `pass` (fwd or bwd) on `args` and the workspace, if any.
  void Run(const dnnl::primitive& pass,
           std::unordered_map<int, memory> args) {
    if (workspace) {
      args[DNNL_ARG_WORKSPACE] = workspace;
    }
    pass.execute(stream, args);
    stream.wait();
  }
};

template <typename Dtype>
DnnlPoolingLayer<Dtype>::DnnlPoolingLayer(const LayerParameter& param)
    : PoolingLayer<Dtype>(param), prim_(NULL), caffe_pass_(true) {}

template <typename Dtype>
DnnlPoolingLayer<Dtype>::~DnnlPoolingLayer() {
  delete prim_;
}

template <typename Dtype>
bool DnnlPoolingLayer<Dtype>::Ready(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const PoolingParameter_PoolMethod pool =
      this->layer_param_.pooling_param().pool();
  if (sizeof(Dtype) != sizeof(float) || top.size() != 1 ||
      bottom[0]->num_axes() != 4 ||
      (pool != PoolingParameter_PoolMethod_MAX &&
       pool != PoolingParameter_PoolMethod_AVE)) {
    delete prim_;
    prim_ = NULL;
    built_for_.clear();
    return false;
  }
  vector<int> key = bottom[0]->shape();
  const int more[] = {this->pooled_height_, this->pooled_width_,
                      this->kernel_h_, this->kernel_w_};
  key.insert(key.end(), more, more + 4);
  if (built_for_ != key) {  // the first pass, or after a Reshape
    built_for_ = key;
    delete prim_;
    prim_ = NULL;
    try {
      Build(bottom[0]->shape());
    } catch (const dnnl::error& e) {
      LOG(WARNING) << this->layer_param_.name() << ": oneDNN has no "
          << "pooling for the input " << bottom[0]->shape_string()
          << " (" << e.what() << "); the Caffe engine computes it";
    }
  }
  return prim_ != NULL;
}

template <typename Dtype>
void DnnlPoolingLayer<Dtype>::Build(const vector<int>& shape) {
  const memory::dim n = shape[0], c = shape[1], h = shape[2], w = shape[3];
  const memory::dim ph = this->pooled_height_, pw = this->pooled_width_;
  const memory::dim kh = this->kernel_h_, kw = this->kernel_w_;
  const memory::dim sh = this->stride_h_, sw = this->stride_w_;
  const memory::dim pad_h = this->pad_h_, pad_w = this->pad_w_;
  // Where the last window ends past the input (Caffe's CEIL rounding or
  // padding); oneDNN's output size (in + pad_l + pad_r - k) / s + 1 is
  // Caffe's for any right padding from `past` to `past` + s - 1.
  const memory::dim past_h = (ph - 1) * sh + kh - h - pad_h;
  const memory::dim past_w = (pw - 1) * sw + kw - w - pad_w;
  const memory::dim right_h = std::max<memory::dim>(past_h, 0);
  const memory::dim right_w = std::max<memory::dim>(past_w, 0);
  if (right_h > past_h + sh - 1 || right_w > past_w + sw - 1) {
    return;  // a FLOOR output that skips more than a stride of input
  }
  dnnl::algorithm algorithm = dnnl::algorithm::pooling_max;
  if (this->layer_param_.pooling_param().pool() ==
      PoolingParameter_PoolMethod_AVE) {
    // Caffe divides by the window clipped to [-pad, in + pad).
    if (past_h <= pad_h && past_w <= pad_w) {
      algorithm = dnnl::algorithm::pooling_avg_include_padding;
    } else if (pad_h == 0 && pad_w == 0) {
      algorithm = dnnl::algorithm::pooling_avg_exclude_padding;
    } else {
      return;  // padding and a window past it: the Caffe engine
    }
  }
  std::unique_ptr<Primitives> owner(new Primitives());
  Primitives* p = owner.get();
  p->src = memory::desc({n, c, h, w}, dt::f32, tag::nchw);
  p->dst = memory::desc({n, c, ph, pw}, dt::f32, tag::nchw);
  p->strides = {sh, sw};
  p->kernel = {kh, kw};
  p->pad_l = {pad_h, pad_w};
  p->pad_r = {right_h, right_w};
  p->fwd_pd = dnnl::pooling_forward::primitive_desc(
      dnnl::pooling_forward::desc(dnnl::prop_kind::forward_training,
          algorithm, p->src, p->dst, p->strides, p->kernel, p->pad_l,
          p->pad_r), DnnlCpuEngine());
  p->fwd = dnnl::pooling_forward(p->fwd_pd);
  if (algorithm == dnnl::algorithm::pooling_max) {
    p->workspace = memory(p->fwd_pd.workspace_desc(), DnnlCpuEngine());
  }
  // Built with the forward: its workspace is the only record of the
  // forward's choices, so both passes take the same engine.
  p->bwd = dnnl::pooling_backward(dnnl::pooling_backward::primitive_desc(
      dnnl::pooling_backward::desc(algorithm, p->src, p->dst, p->strides,
          p->kernel, p->pad_l, p->pad_r), DnnlCpuEngine(), p->fwd_pd));
  prim_ = owner.release();
}

template <typename Dtype>
void DnnlPoolingLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  UseHrenetThreadsHere();  // oneDNN's OpenMP threads
  caffe_pass_ = !Ready(bottom, top) || DnnlAnyNaN(
      reinterpret_cast<const float*>(bottom[0]->cpu_data()),
      bottom[0]->count());
  if (caffe_pass_) {
    PoolingLayer<Dtype>::Forward_cpu(bottom, top);
    return;
  }
  prim_->Run(prim_->fwd, {
      {DNNL_ARG_SRC, DnnlWrap(prim_->src, bottom[0]->cpu_data())},
      {DNNL_ARG_DST, DnnlWrap(prim_->dst, top[0]->mutable_cpu_data())}});
}

template <typename Dtype>
void DnnlPoolingLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  UseHrenetThreadsHere();  // oneDNN's OpenMP threads
  if (!propagate_down[0]) {
    return;
  }
  // The forward pass decided the engine (and filled the workspace or
  // Caffe's mask).
  if (caffe_pass_) {
    PoolingLayer<Dtype>::Backward_cpu(top, propagate_down, bottom);
    return;
  }
  prim_->Run(prim_->bwd, {
      {DNNL_ARG_DIFF_DST, DnnlWrap(prim_->dst, top[0]->cpu_diff())},
      {DNNL_ARG_DIFF_SRC, DnnlWrap(prim_->src,
                                   bottom[0]->mutable_cpu_diff())}});
}

INSTANTIATE_CLASS(DnnlPoolingLayer);

}  // namespace caffe
#endif  // USE_DNNL
