#include <algorithm>
#include <vector>

#include "caffe/util/permutohedral.hpp"

namespace caffe {

namespace {

// Open-addressing hash table from d-integer keys to vertex numbers; grows
// (doubling) to keep the load factor below one half.
class LatticeHashTable {
 public:
  explicit LatticeHashTable(int d, int expected) : d_(d), size_(0) {
    int capacity = 1024;
    while (capacity < 2 * expected) {
      capacity *= 2;
    }
    slots_.assign(capacity, -1);
  }

  // Vertex number of key, inserting it when absent.
  int FindOrInsert(const int* key) {
    if (2 * (size_ + 1) > static_cast<int>(slots_.size())) {
      Grow();
    }
    const unsigned int mask = slots_.size() - 1;
    unsigned int h = PermutohedralHash(key, d_) & mask;
    while (true) {
      const int v = slots_[h];
      if (v < 0) {
        slots_[h] = size_;
        keys_.insert(keys_.end(), key, key + d_);
        return size_++;
      }
      if (std::equal(key, key + d_, keys_.begin() + v * d_)) {
        return v;
      }
      h = (h + 1) & mask;
    }
  }

  // Vertex number of key, or -1.
  int Find(const int* key) const {
    const unsigned int mask = slots_.size() - 1;
    unsigned int h = PermutohedralHash(key, d_) & mask;
    while (true) {
      const int v = slots_[h];
      if (v < 0) {
        return -1;
      }
      if (std::equal(key, key + d_, keys_.begin() + v * d_)) {
        return v;
      }
      h = (h + 1) & mask;
    }
  }

  int size() const { return size_; }
  const int* key(int v) const { return &keys_[v * d_]; }

 private:
  void Grow() {
    std::vector<int> slots(slots_.size() * 2, -1);
    const unsigned int mask = slots.size() - 1;
    for (int v = 0; v < size_; ++v) {
      unsigned int h = PermutohedralHash(key(v), d_) & mask;
      while (slots[h] >= 0) {
        h = (h + 1) & mask;
      }
      slots[h] = v;
    }
    slots_.swap(slots);
  }

  int d_, size_;
  std::vector<int> slots_;
  std::vector<int> keys_;
};

}  // namespace

template <typename Dtype>
void PermutohedralLattice<Dtype>::Init(const Dtype* features, int d, int n,
    int num_threads) {
  CHECK_GE(d, 1) << "PermutohedralLattice: feature dimension must be >= 1";
  CHECK_LE(d, kPermutohedralMaxDim) << "PermutohedralLattice: feature "
      << "dimension " << d << " exceeds kPermutohedralMaxDim";
  CHECK_GE(n, 1) << "PermutohedralLattice: no points";
  d_ = d;
  n_ = n;
  const int d1 = d + 1;
  offset_.resize(n * d1);
  weight_.resize(n * d1);
  std::vector<int> keys(static_cast<size_t>(n) * d1 * d);
  ParallelFor(n, num_threads, [&](int begin, int end) {
    for (int i = begin; i < end; ++i) {
      PermutohedralSimplex(features + i * d, d, &keys[i * d1 * d],
                           &weight_[i * d1]);
    }
  });
  LatticeHashTable table(d, n);
  for (int k = 0; k < n * d1; ++k) {
    offset_[k] = table.FindOrInsert(&keys[k * d]);
  }
  std::vector<int>().swap(keys);
  m_ = table.size();
  // Splat lists: a counting sort of the (point, corner) pairs by vertex.
  splat_start_.assign(m_ + 1, 0);
  for (int k = 0; k < n * d1; ++k) {
    ++splat_start_[offset_[k] + 1];
  }
  for (int v = 0; v < m_; ++v) {
    splat_start_[v + 1] += splat_start_[v];
  }
  splat_point_.resize(n * d1);
  splat_weight_.resize(n * d1);
  std::vector<int> fill(splat_start_.begin(), splat_start_.end() - 1);
  for (int k = 0; k < n * d1; ++k) {
    const int pos = fill[offset_[k]]++;
    splat_point_[pos] = k / d1;
    splat_weight_[pos] = weight_[k];
  }
  blur_nbr_.resize(static_cast<size_t>(d1) * m_ * 2);
  ParallelFor(m_, num_threads, [&](int begin, int end) {
    int n1[kPermutohedralMaxDim], n2[kPermutohedralMaxDim];
    for (int j = 0; j <= d; ++j) {
      for (int v = begin; v < end; ++v) {
        PermutohedralNeighbors(table.key(v), d, j, n1, n2);
        const int a = table.Find(n1);
        const int b = table.Find(n2);
        blur_nbr_[(j * m_ + v) * 2] = a < 0 ? m_ : a;
        blur_nbr_[(j * m_ + v) * 2 + 1] = b < 0 ? m_ : b;
      }
    }
  });
}

template <typename Dtype>
void PermutohedralLattice<Dtype>::Filter(const Dtype* in, Dtype* out, int c,
    int num_threads) {
  CHECK_GT(m_, 0) << "PermutohedralLattice: Filter() before Init()";
  const int d1 = d_ + 1;
  values_.resize(static_cast<size_t>(m_ + 1) * c);
  scratch_.resize(static_cast<size_t>(m_ + 1) * c);
  Dtype* values = &values_[0];
  Dtype* scratch = &scratch_[0];
  std::fill(values + m_ * c, values + (m_ + 1) * c, Dtype(0));
  std::fill(scratch + m_ * c, scratch + (m_ + 1) * c, Dtype(0));
  // Splat (gather per vertex).
  ParallelFor(m_, num_threads, [&](int begin, int end) {
    for (int v = begin; v < end; ++v) {
      Dtype* dst = values + v * c;
      std::fill(dst, dst + c, Dtype(0));
      for (int e = splat_start_[v]; e < splat_start_[v + 1]; ++e) {
        const Dtype w = splat_weight_[e];
        const Dtype* src = in + splat_point_[e] * c;
        for (int l = 0; l < c; ++l) {
          dst[l] += w * src[l];
        }
      }
    }
  }, 1024);
  // Blur with [1/2 1 1/2] along each lattice direction.
  for (int j = 0; j <= d_; ++j) {
    const int* nbr = &blur_nbr_[j * m_ * 2];
    ParallelFor(m_, num_threads, [&](int begin, int end) {
      for (int v = begin; v < end; ++v) {
        const Dtype* self = values + v * c;
        const Dtype* a = values + nbr[2 * v] * c;
        const Dtype* b = values + nbr[2 * v + 1] * c;
        Dtype* dst = scratch + v * c;
        for (int l = 0; l < c; ++l) {
          dst[l] = self[l] + Dtype(0.5) * (a[l] + b[l]);
        }
      }
    }, 1024);
    std::swap(values, scratch);
  }
  // Slice.
  const Dtype alpha = PermutohedralAlpha<Dtype>(d_);
  ParallelFor(n_, num_threads, [&](int begin, int end) {
    for (int i = begin; i < end; ++i) {
      Dtype* dst = out + i * c;
      const int* off = &offset_[i * d1];
      const Dtype* w = &weight_[i * d1];
      const Dtype* src = values + off[0] * c;
      for (int l = 0; l < c; ++l) {
        dst[l] = w[0] * src[l];
      }
      for (int r = 1; r < d1; ++r) {
        const Dtype wr = w[r];
        src = values + off[r] * c;
        for (int l = 0; l < c; ++l) {
          dst[l] += wr * src[l];
        }
      }
      for (int l = 0; l < c; ++l) {
        dst[l] *= alpha;
      }
    }
  }, 1024);
}

template class PermutohedralLattice<float>;
template class PermutohedralLattice<double>;

}  // namespace caffe
