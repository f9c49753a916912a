#include <thrust/device_ptr.h>
#include <thrust/scan.h>

#include <algorithm>
#include <vector>

#include "caffe/util/math_functions.hpp"
#include "caffe/util/permutohedral.hpp"

namespace caffe {

namespace {

// Slot of the entry owning key, probing linearly; -1 when absent.
__device__ inline int HashFind(const int* table, unsigned int mask,
    const int* keys, const int* key, int d) {
  unsigned int h = PermutohedralHash(key, d) & mask;
  while (true) {
    const int owner = table[h];
    if (owner < 0) {
      return -1;
    }
    if (PermutohedralKeysEqual(keys + owner * d, key, d)) {
      return owner;
    }
    h = (h + 1) & mask;
  }
}

template <typename Dtype>
__global__ void SimplexKernel(const int n, const int d,
    const Dtype* features, int* keys, Dtype* weight) {
  Dtype scale[kPermutohedralMaxDim];
  PermutohedralScales(d, scale);
  CUDA_KERNEL_LOOP(i, n) {
    PermutohedralSimplex(features + i * d, d, scale, keys + i * (d + 1) * d,
                         weight + i * (d + 1));
  }
}

// Each (point, corner) entry claims an empty slot with atomicCAS or finds
// the entry that already owns its key; owner[k] is that entry.
__global__ void InsertKernel(const int count, const int d, const int* keys,
    int* table, unsigned int mask, int* owner) {
  CUDA_KERNEL_LOOP(k, count) {
    const int* key = keys + k * d;
    unsigned int h = PermutohedralHash(key, d) & mask;
    while (true) {
      const int prev = atomicCAS(table + h, -1, k);
      if (prev < 0) {
        owner[k] = k;
        break;
      }
      if (PermutohedralKeysEqual(keys + prev * d, key, d)) {
        owner[k] = prev;
        break;
      }
      h = (h + 1) & mask;
    }
  }
}

__global__ void MarkOwnersKernel(const int count, const int* owner,
    int* is_owner) {
  CUDA_KERNEL_LOOP(k, count) {
    is_owner[k] = owner[k] == k ? 1 : 0;
  }
}

// Vertex number of every entry (vertex_of_owner: exclusive scan of
// is_owner) and the owner entry of every vertex.
__global__ void NumberKernel(const int count, const int* owner,
    const int* vertex_of_owner, int* offset, int* vertex_entry) {
  CUDA_KERNEL_LOOP(k, count) {
    const int v = vertex_of_owner[owner[k]];
    offset[k] = v;
    if (owner[k] == k) {
      vertex_entry[v] = k;
    }
  }
}

__global__ void NeighborKernel(const int m, const int d, const int* keys,
    const int* vertex_entry, const int* table, unsigned int mask,
    const int* vertex_of_owner, int* blur_nbr) {
  CUDA_KERNEL_LOOP(index, m * (d + 1)) {
    const int j = index / m;
    const int v = index % m;
    int n1[kPermutohedralMaxDim], n2[kPermutohedralMaxDim];
    PermutohedralNeighbors(keys + vertex_entry[v] * d, d, j, n1, n2);
    const int a = HashFind(table, mask, keys, n1, d);
    const int b = HashFind(table, mask, keys, n2, d);
    blur_nbr[index * 2] = a < 0 ? m : vertex_of_owner[a];
    blur_nbr[index * 2 + 1] = b < 0 ? m : vertex_of_owner[b];
  }
}

template <typename Dtype>
__global__ void SplatKernel(const int count, const int d1, const int c,
    const Dtype* in, const Dtype* in_scale, const int* offset,
    const Dtype* weight, Dtype* values) {
  CUDA_KERNEL_LOOP(index, count * c) {
    const int k = index / c;
    const int l = index % c;
    const int i = k / d1;
    const Dtype w = in_scale ? weight[k] * in_scale[i] : weight[k];
    atomicAdd(values + offset[k] * c + l, w * in[i * c + l]);
  }
}

template <typename Dtype>
__global__ void BlurKernel(const int m, const int c, const int* nbr,
    const Dtype* values, Dtype* out) {
  CUDA_KERNEL_LOOP(v, m) {
    PermutohedralBlurRow(values + v * c, values + nbr[2 * v] * c,
                         values + nbr[2 * v + 1] * c, c, out + v * c);
  }
}

template <typename Dtype>
__global__ void SliceKernel(const int n, const int d1, const int c,
    const Dtype alpha, const Dtype* values, const int* offset,
    const Dtype* weight, const Dtype* out_scale, const bool accumulate,
    Dtype* out) {
  CUDA_KERNEL_LOOP(i, n) {
    PermutohedralSliceRow(values, offset + i * d1, weight + i * d1, d1, c,
                          out_scale ? alpha * out_scale[i] : alpha,
                          accumulate, out + i * c);
  }
}

}  // namespace

template <typename Dtype>
void PermutohedralLatticeGPU<Dtype>::Init(const Dtype* features, int d,
    int n) {
  CHECK_GE(d, 1) << "PermutohedralLatticeGPU: feature dimension must be >= 1";
  CHECK_LE(d, kPermutohedralMaxDim) << "PermutohedralLatticeGPU: feature "
      << "dimension " << d << " exceeds kPermutohedralMaxDim";
  CHECK_GE(n, 1) << "PermutohedralLatticeGPU: no points";
  d_ = d;
  n_ = n;
  const int d1 = d + 1;
  const int count = n * d1;
  keys_.Reshape(vector<int>(1, count * d));
  offset_.Reshape(vector<int>(1, count));
  weight_.Reshape(vector<int>(1, count));
  int* keys_data = keys_.mutable_gpu_data();
  int* offset = offset_.mutable_gpu_data();
  Dtype* weight = weight_.mutable_gpu_data();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SimplexKernel<Dtype><<<CAFFE_GET_BLOCKS(n), CAFFE_CUDA_NUM_THREADS>>>(
      n, d, features, keys_data, weight);
  CUDA_POST_KERNEL_CHECK;
  unsigned int capacity = 1024;
  while (capacity < 2u * count) {
    capacity *= 2;
  }
  table_.Reshape(vector<int>(1, static_cast<int>(capacity)));
  owner_.Reshape(vector<int>(1, count));
  scan_.Reshape(vector<int>(1, count));
  int* table_data = table_.mutable_gpu_data();
  int* owner_data = owner_.mutable_gpu_data();
  int* scan_data = scan_.mutable_gpu_data();
  caffe_gpu_set(static_cast<int>(capacity), -1, table_data);
  // NOLINT_NEXT_LINE(whitespace/operators)
  InsertKernel<<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, d, keys_data, table_data, capacity - 1, owner_data);
  CUDA_POST_KERNEL_CHECK;
  // NOLINT_NEXT_LINE(whitespace/operators)
  MarkOwnersKernel<<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, owner_data, scan_data);
  CUDA_POST_KERNEL_CHECK;
  int last_mark = 0;
  caffe_gpu_memcpy(sizeof(int), scan_data + count - 1, &last_mark);
  thrust::exclusive_scan(thrust::device_pointer_cast(scan_data),
                         thrust::device_pointer_cast(scan_data + count),
                         thrust::device_pointer_cast(scan_data));
  int last_scan = 0;
  caffe_gpu_memcpy(sizeof(int), scan_data + count - 1, &last_scan);
  m_ = last_scan + last_mark;
  vertex_entry_.Reshape(vector<int>(1, m_));
  int* vertex_entry_data = vertex_entry_.mutable_gpu_data();
  // NOLINT_NEXT_LINE(whitespace/operators)
  NumberKernel<<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, owner_data, scan_data, offset, vertex_entry_data);
  CUDA_POST_KERNEL_CHECK;
  blur_nbr_.Reshape(vector<int>(1, d1 * m_ * 2));
  int* blur_nbr = blur_nbr_.mutable_gpu_data();
  // NOLINT_NEXT_LINE(whitespace/operators)
  NeighborKernel<<<CAFFE_GET_BLOCKS(m_ * d1), CAFFE_CUDA_NUM_THREADS>>>(
      m_, d, keys_data, vertex_entry_data, table_data, capacity - 1,
      scan_data, blur_nbr);
  CUDA_POST_KERNEL_CHECK;
  blurred_ = NULL;
}

template <typename Dtype>
void PermutohedralLatticeGPU<Dtype>::SplatBlur(const Dtype* in, int c,
    const Dtype* in_scale) {
  CHECK_GT(m_, 0) << "PermutohedralLatticeGPU: SplatBlur() before Init()";
  const int d1 = d_ + 1;
  values_.Reshape(vector<int>(1, (m_ + 1) * c));
  scratch_.Reshape(vector<int>(1, (m_ + 1) * c));
  Dtype* values = values_.mutable_gpu_data();
  Dtype* scratch = scratch_.mutable_gpu_data();
  const int* blur_nbr = blur_nbr_.gpu_data();
  caffe_gpu_set((m_ + 1) * c, Dtype(0), values);
  caffe_gpu_set((m_ + 1) * c, Dtype(0), scratch);
  // NOLINT_NEXT_LINE(whitespace/operators)
  SplatKernel<Dtype><<<CAFFE_GET_BLOCKS(n_ * d1 * c),
      CAFFE_CUDA_NUM_THREADS>>>(n_ * d1, d1, c, in, in_scale, offset(),
      weight(), values);
  CUDA_POST_KERNEL_CHECK;
  for (int j = 0; j <= d_; ++j) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    BlurKernel<Dtype><<<CAFFE_GET_BLOCKS(m_), CAFFE_CUDA_NUM_THREADS>>>(
        m_, c, blur_nbr + j * m_ * 2, values, scratch);
    CUDA_POST_KERNEL_CHECK;
    std::swap(values, scratch);
  }
  blurred_ = values;
}

template <typename Dtype>
void PermutohedralLatticeGPU<Dtype>::Filter(const Dtype* in, Dtype* out,
    int c, const Dtype* in_scale, const Dtype* out_scale, bool accumulate) {
  SplatBlur(in, c, in_scale);
  // NOLINT_NEXT_LINE(whitespace/operators)
  SliceKernel<Dtype><<<CAFFE_GET_BLOCKS(n_), CAFFE_CUDA_NUM_THREADS>>>(
      n_, d_ + 1, c, alpha(), blurred_, offset(), weight(), out_scale,
      accumulate, out);
  CUDA_POST_KERNEL_CHECK;
}

template class PermutohedralLatticeGPU<float>;
template class PermutohedralLatticeGPU<double>;

}  // namespace caffe
