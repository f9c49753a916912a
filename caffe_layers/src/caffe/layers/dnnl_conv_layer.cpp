#ifdef USE_DNNL
#include <algorithm>
#include <memory>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

#include "caffe/layers/dnnl_conv_layer.hpp"
#include "caffe/util/dnnl_util.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/parallel.hpp"

namespace caffe {

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

}  // namespace

// The primitives for one bottom shape and the buffers in their layouts.
template <typename Dtype>
struct DnnlConvolutionLayer<Dtype>::Primitives {
  dnnl::stream stream{DnnlCpuEngine()};
  // Caffe's layouts: NCHW data, (g)oihw weights, bias.
  memory::desc user_src, user_dst, user_weights, user_bias;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  memory src, weights, dst;  // in the forward primitive's layouts
  // Backward, built on its first use.
  bool have_backward = false;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_backward_weights bwd_weights;
  memory data_diff_dst, data_weights, data_diff_src;  // bwd_data's layouts
  bool shared_diff_dst = false;  // data_diff_dst is wgt_diff_dst
  memory wgt_src, wgt_diff_dst, wgt_diff_weights;     // bwd_weights' layouts
  memory::dims strides, dilates, pad_l, pad_r;
  memory::desc any_src, any_weights, any_bias, any_dst;

  // `from` copied into `to`, in `to`'s layout.
  void Reorder(memory from, memory to) {
    dnnl::reorder(from, to).execute(stream, from, to);
  }
  // A buffer in the primitive's layout `md`; empty when that is the blob's
  // own layout `user` (the blob is then used directly).
  static memory BufferFor(const memory::desc& md, const memory::desc& user) {
    return md == user ? memory() : memory(md, DnnlCpuEngine());
  }
};

template <typename Dtype>
DnnlConvolutionLayer<Dtype>::DnnlConvolutionLayer(const LayerParameter& param)
    : ConvolutionLayer<Dtype>(param), dnnl_path_(false), prim_(NULL),
      backward_fallback_(false) {}

template <typename Dtype>
DnnlConvolutionLayer<Dtype>::~DnnlConvolutionLayer() {
  delete prim_;
}

template <typename Dtype>
void DnnlConvolutionLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  ConvolutionLayer<Dtype>::LayerSetUp(bottom, top);
  dnnl_path_ = sizeof(Dtype) == sizeof(float) &&
      this->num_spatial_axes_ == 2 && this->channel_axis_ == 1 &&
      bottom[0]->num_axes() == 4;
}

template <typename Dtype>
bool DnnlConvolutionLayer<Dtype>::Ready(const vector<int>& shape) {
  if (!dnnl_path_) {
    return false;
  }
  if (built_for_ != shape) {  // the first pass, or after a Reshape
    built_for_ = shape;
    backward_fallback_ = false;
    try {
      Build(shape);
    } catch (const dnnl::error& e) {
      LOG(WARNING) << this->layer_param_.name() << ": oneDNN has no "
          << "convolution for the input " << Blob<Dtype>(shape).shape_string()
          << " (" << e.what() << "); the Caffe engine computes it";
    }
  }
  return prim_ != NULL;
}

template <typename Dtype>
void DnnlConvolutionLayer<Dtype>::Build(const vector<int>& shape) {
  delete prim_;
  prim_ = NULL;
  const int* kernel = this->kernel_shape_.cpu_data();
  const int* stride = this->stride_.cpu_data();
  const int* pad = this->pad_.cpu_data();
  const int* dilation = this->dilation_.cpu_data();
  const memory::dim n = shape[0], c = shape[1], h = shape[2], w = shape[3];
  const memory::dim o = this->num_output_, g = this->group_;
  const memory::dim oh = this->output_shape_[0], ow = this->output_shape_[1];
  std::unique_ptr<Primitives> owner(new Primitives());
  Primitives* p = owner.get();
  p->user_src = memory::desc({n, c, h, w}, dt::f32, tag::nchw);
  p->user_dst = memory::desc({n, o, oh, ow}, dt::f32, tag::nchw);
  const memory::dims wdims = g == 1 ?
      memory::dims({o, c, kernel[0], kernel[1]}) :
      memory::dims({g, o / g, c / g, kernel[0], kernel[1]});
  p->user_weights = memory::desc(wdims, dt::f32,
                                 g == 1 ? tag::oihw : tag::goihw);
  p->user_bias = memory::desc({o}, dt::f32, tag::x);
  p->any_src = memory::desc({n, c, h, w}, dt::f32, tag::any);
  p->any_dst = memory::desc({n, o, oh, ow}, dt::f32, tag::any);
  p->any_weights = memory::desc(wdims, dt::f32, tag::any);
  p->any_bias = memory::desc({o}, dt::f32, tag::any);
  p->strides = {stride[0], stride[1]};
  p->dilates = {dilation[0] - 1, dilation[1] - 1};
  p->pad_l = {pad[0], pad[1]};
  // Caffe's output size rounds down: the right padding is the part of pad
  // that the last window reaches (at most pad; below 0 only when the
  // stride skips input columns, where 0 gives the same output size).
  p->pad_r = {std::max<memory::dim>(0,
      (oh - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1 - h - pad[0]),
      std::max<memory::dim>(0,
      (ow - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1 - w - pad[1])};
  const dnnl::convolution_forward::desc fwd_desc = this->bias_term_ ?
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
          dnnl::algorithm::convolution_direct, p->any_src, p->any_weights,
          p->any_bias, p->any_dst, p->strides, p->dilates, p->pad_l,
          p->pad_r) :
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
          dnnl::algorithm::convolution_direct, p->any_src, p->any_weights,
          p->any_dst, p->strides, p->dilates, p->pad_l, p->pad_r);
  p->fwd_pd = dnnl::convolution_forward::primitive_desc(fwd_desc,
                                                        DnnlCpuEngine());
  // (A oneDNN error from here on leaves prim_ NULL: the Caffe engine runs.)
  p->fwd = dnnl::convolution_forward(p->fwd_pd);
  p->src = Primitives::BufferFor(p->fwd_pd.src_desc(), p->user_src);
  p->weights = Primitives::BufferFor(p->fwd_pd.weights_desc(),
                                     p->user_weights);
  p->dst = Primitives::BufferFor(p->fwd_pd.dst_desc(), p->user_dst);
  prim_ = owner.release();
}

template <typename Dtype>
void DnnlConvolutionLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  UseHrenetThreadsHere();  // oneDNN's OpenMP threads
  if (!Ready(bottom[0]->shape())) {
    ConvolutionLayer<Dtype>::Forward_cpu(bottom, top);
    return;
  }
  Primitives& p = *prim_;
  // The weights in the primitive's layout, once for all bottoms.
  memory user_w = DnnlWrap(p.user_weights, this->blobs_[0]->cpu_data());
  memory w = user_w;
  if (p.weights) {
    p.Reorder(user_w, p.weights);
    w = p.weights;
  }
  for (int i = 0; i < bottom.size(); ++i) {
    memory user_src = DnnlWrap(p.user_src, bottom[i]->cpu_data());
    memory user_dst = DnnlWrap(p.user_dst, top[i]->mutable_cpu_data());
    memory src = user_src;
    if (p.src) {
      p.Reorder(user_src, p.src);
      src = p.src;
    }
    memory dst = p.dst ? p.dst : user_dst;
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}};
    if (this->bias_term_) {
      args[DNNL_ARG_BIAS] = DnnlWrap(p.user_bias,
                                     this->blobs_[1]->cpu_data());
    }
    p.fwd.execute(p.stream, args);
    if (p.dst) {
      p.Reorder(p.dst, user_dst);
    }
  }
  p.stream.wait();
}

template <typename Dtype>
bool DnnlConvolutionLayer<Dtype>::BuildBackward() {
  Primitives& p = *prim_;
  if (p.have_backward) {
    return true;
  }
  try {
    p.bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(
            dnnl::algorithm::convolution_direct, p.any_src, p.any_weights,
            p.any_dst, p.strides, p.dilates, p.pad_l, p.pad_r),
        DnnlCpuEngine(), p.fwd_pd);
    p.bwd_data = dnnl::convolution_backward_data(p.bwd_data_pd);
    const dnnl::convolution_backward_weights::desc wdesc = this->bias_term_ ?
        dnnl::convolution_backward_weights::desc(
            dnnl::algorithm::convolution_direct, p.any_src, p.any_weights,
            p.any_bias, p.any_dst, p.strides, p.dilates, p.pad_l, p.pad_r) :
        dnnl::convolution_backward_weights::desc(
            dnnl::algorithm::convolution_direct, p.any_src, p.any_weights,
            p.any_dst, p.strides, p.dilates, p.pad_l, p.pad_r);
    p.bwd_weights_pd = dnnl::convolution_backward_weights::primitive_desc(
        wdesc, DnnlCpuEngine(), p.fwd_pd);
    p.bwd_weights = dnnl::convolution_backward_weights(p.bwd_weights_pd);
    p.data_diff_dst = Primitives::BufferFor(p.bwd_data_pd.diff_dst_desc(),
                                            p.user_dst);
    p.data_weights = Primitives::BufferFor(p.bwd_data_pd.weights_desc(),
                                           p.user_weights);
    p.data_diff_src = Primitives::BufferFor(p.bwd_data_pd.diff_src_desc(),
                                            p.user_src);
    p.wgt_src = Primitives::BufferFor(p.bwd_weights_pd.src_desc(),
                                      p.user_src);
    p.wgt_diff_dst = Primitives::BufferFor(
        p.bwd_weights_pd.diff_dst_desc(), p.user_dst);
    // One reorder of the top diff for both passes where they want the same
    // layout.
    p.shared_diff_dst = p.wgt_diff_dst &&
        p.bwd_data_pd.diff_dst_desc() == p.bwd_weights_pd.diff_dst_desc();
    if (p.shared_diff_dst) {
      p.data_diff_dst = p.wgt_diff_dst;
    }
    p.wgt_diff_weights = Primitives::BufferFor(
        p.bwd_weights_pd.diff_weights_desc(), p.user_weights);
    weight_diff_.ReshapeLike(*this->blobs_[0]);
    if (this->bias_term_) {
      bias_diff_.ReshapeLike(*this->blobs_[1]);
    }
  } catch (const dnnl::error& e) {
    LOG(WARNING) << this->layer_param_.name() << ": oneDNN has no backward "
        << "convolution for this input (" << e.what() << "); the Caffe "
        << "engine computes the gradients";
    backward_fallback_ = true;
    return false;
  }
  p.have_backward = true;
  return true;
}

template <typename Dtype>
void DnnlConvolutionLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  UseHrenetThreadsHere();  // oneDNN's OpenMP threads
  if (!Ready(bottom[0]->shape()) || backward_fallback_ ||
      !BuildBackward()) {
    ConvolutionLayer<Dtype>::Backward_cpu(top, propagate_down, bottom);
    return;
  }
  Primitives& p = *prim_;
  const bool weight_grad = this->param_propagate_down_[0];
  const bool bias_grad = this->bias_term_ && this->param_propagate_down_[1];
  bool data_grad = false;
  for (int i = 0; i < bottom.size(); ++i) {
    data_grad = data_grad || propagate_down[i];
  }
  memory data_w;
  if (data_grad) {
    memory user_w = DnnlWrap(p.user_weights, this->blobs_[0]->cpu_data());
    data_w = user_w;
    if (p.data_weights) {
      p.Reorder(user_w, p.data_weights);
      data_w = p.data_weights;
    }
  }
  for (int i = 0; i < top.size(); ++i) {
    memory user_diff_dst = DnnlWrap(p.user_dst, top[i]->cpu_diff());
    if (weight_grad || bias_grad) {
      memory user_src = DnnlWrap(p.user_src, bottom[i]->cpu_data());
      memory src = user_src, diff_dst = user_diff_dst;
      if (p.wgt_src) {
        p.Reorder(user_src, p.wgt_src);
        src = p.wgt_src;
      }
      if (p.wgt_diff_dst) {
        p.Reorder(user_diff_dst, p.wgt_diff_dst);
        diff_dst = p.wgt_diff_dst;
      }
      // This pass's gradients into scratch blobs, then added to the diffs.
      memory user_dw = DnnlWrap(p.user_weights,
                                weight_diff_.mutable_cpu_data());
      memory dw = p.wgt_diff_weights ? p.wgt_diff_weights : user_dw;
      std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src},
          {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_WEIGHTS, dw}};
      if (this->bias_term_) {
        args[DNNL_ARG_DIFF_BIAS] = DnnlWrap(p.user_bias,
                                        bias_diff_.mutable_cpu_data());
      }
      p.bwd_weights.execute(p.stream, args);
      if (p.wgt_diff_weights) {
        p.Reorder(p.wgt_diff_weights, user_dw);
      }
      p.stream.wait();
      if (weight_grad) {
        caffe_axpy(weight_diff_.count(), Dtype(1), weight_diff_.cpu_data(),
                   this->blobs_[0]->mutable_cpu_diff());
      }
      if (bias_grad) {
        caffe_axpy(bias_diff_.count(), Dtype(1), bias_diff_.cpu_data(),
                   this->blobs_[1]->mutable_cpu_diff());
      }
    }
    if (propagate_down[i]) {
      memory diff_dst = user_diff_dst;
      if (p.data_diff_dst) {
        if (!(p.shared_diff_dst && (weight_grad || bias_grad))) {
          p.Reorder(user_diff_dst, p.data_diff_dst);
        }  // else the weights pass left this top diff there
        diff_dst = p.data_diff_dst;
      }
      memory user_diff_src = DnnlWrap(p.user_src,
                                      bottom[i]->mutable_cpu_diff());
      memory diff_src = p.data_diff_src ? p.data_diff_src : user_diff_src;
      p.bwd_data.execute(p.stream, {{DNNL_ARG_DIFF_DST, diff_dst},
          {DNNL_ARG_WEIGHTS, data_w}, {DNNL_ARG_DIFF_SRC, diff_src}});
      if (p.data_diff_src) {
        p.Reorder(p.data_diff_src, user_diff_src);
      }
      p.stream.wait();
    }
  }
}

INSTANTIATE_CLASS(DnnlConvolutionLayer);

}  // namespace caffe
#endif  // USE_DNNL
