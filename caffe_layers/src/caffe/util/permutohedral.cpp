#include <algorithm>
#include <cmath>
#include <vector>

#include "caffe/util/permutohedral.hpp"

namespace caffe {

namespace {

// Open-addressing hash table from d-integer keys to vertex numbers; grows
// (doubling) to keep the load factor below one half. Its storage belongs to
// the lattice, so that repeated Init() calls reuse the memory. When the
// caller knows every key coordinate (neighbours included) lies in
// (-2048, 2048) and d <= 5, the keys are packed 12 bits a coordinate into
// 64 bits kept in the slot beside the vertex number: a probe then reads one
// slot instead of a slot and a key elsewhere.
class LatticeHashTable {
 public:
  LatticeHashTable(int d, int expected, bool packed, std::vector<int>* slots,
      std::vector<int>* keys) : d_(d), size_(0), capacity_(1024),
      stride_(packed ? 4 : 1), slots_(*slots), keys_(*keys) {
    while (capacity_ < 2 * expected) {
      capacity_ *= 2;
    }
    slots_.assign(static_cast<size_t>(capacity_) * stride_, -1);
    keys_.clear();
  }

  static bool CanPack(int d, int max_abs) {
    return d <= 5 && max_abs < 2048;
  }

  static unsigned int Hash(const int* key, int d) {
    return PermutohedralHash(key, d);
  }

  // Hints the cache about the first slot probed for a key of this hash.
  void Prefetch(unsigned int hash) const {
#ifdef __GNUC__
    __builtin_prefetch(&slots_[static_cast<size_t>(hash & (capacity_ - 1)) *
                               stride_]);
#endif
  }

  // Vertex number of key (of hash Hash(key, d)), inserting it when absent.
  int FindOrInsert(const int* key, unsigned int hash) {
    if (2 * (size_ + 1) > capacity_) {
      Grow();
    }
    int packed[2];
    Pack(key, packed);
    const unsigned int mask = capacity_ - 1;
    unsigned int h = hash & mask;
    while (true) {
      int* slot = &slots_[static_cast<size_t>(h) * stride_];
      if (slot[0] < 0) {
        slot[0] = size_;
        if (stride_ > 1) {
          slot[1] = packed[0];
          slot[2] = packed[1];
        }
        keys_.insert(keys_.end(), key, key + d_);
        return size_++;
      }
      if (Equal(key, packed, slot)) {
        return slot[0];
      }
      h = (h + 1) & mask;
    }
  }

  int FindOrInsert(const int* key) {
    return FindOrInsert(key, Hash(key, d_));
  }

  // Vertex number of key (of hash Hash(key, d)), or -1.
  int Find(const int* key, unsigned int hash) const {
    int packed[2];
    Pack(key, packed);
    const unsigned int mask = capacity_ - 1;
    unsigned int h = hash & mask;
    while (true) {
      const int* slot = &slots_[static_cast<size_t>(h) * stride_];
      if (slot[0] < 0 || Equal(key, packed, slot)) {
        return slot[0];
      }
      h = (h + 1) & mask;
    }
  }

  int size() const { return size_; }
  const int* key(int v) const { return &keys_[v * d_]; }

 private:
  void Pack(const int* key, int* packed) const {
    if (stride_ == 1) {
      return;
    }
    uint64_t p = 0;
    for (int a = d_ - 1; a >= 0; --a) {
      p = (p << 12) | static_cast<uint64_t>(key[a] + 2048);
    }
    packed[0] = static_cast<int>(static_cast<uint32_t>(p));
    packed[1] = static_cast<int>(static_cast<uint32_t>(p >> 32));
  }

  bool Equal(const int* key, const int* packed, const int* slot) const {
    if (stride_ > 1) {
      return slot[1] == packed[0] && slot[2] == packed[1];
    }
    return PermutohedralKeysEqual(key, &keys_[slot[0] * d_], d_);
  }

  void Grow() {
    capacity_ *= 2;
    slots_.assign(static_cast<size_t>(capacity_) * stride_, -1);
    const unsigned int mask = capacity_ - 1;
    for (int v = 0; v < size_; ++v) {
      unsigned int h = PermutohedralHash(key(v), d_) & mask;
      while (slots_[static_cast<size_t>(h) * stride_] >= 0) {
        h = (h + 1) & mask;
      }
      int* slot = &slots_[static_cast<size_t>(h) * stride_];
      slot[0] = v;
      if (stride_ > 1) {
        Pack(key(v), slot + 1);
      }
    }
  }

  int d_, size_, capacity_, stride_;
  std::vector<int>& slots_;
  std::vector<int>& keys_;
};

// The splat and blur loops, compiled for AVX2 and for the baseline by GCC
// on x86-64 Linux and picked when the library loads (a row of c = 21 labels
// is three 8-wide operations instead of six 4-wide ones).

// Splat of the points [0, n) (row i of in times in_scale[i], or 1) onto the
// vertices in [lo, hi), each vertex summing its points in point order.
template <typename Dtype>
HRENET_TARGET_CLONES("avx2", "default")
void SplatRange(int n, int d1, int c, const int* offset,
    const Dtype* weight, const Dtype* __restrict__ in, const Dtype* in_scale,
    int lo, int hi, Dtype* __restrict__ values) {
  for (int i = 0; i < n; ++i) {
    const Dtype* src = in + i * c;
    const Dtype s = in_scale ? in_scale[i] : Dtype(1);
    for (int r = 0; r < d1; ++r) {
      const int v = offset[i * d1 + r];
      if (v < lo || v >= hi) {
        continue;
      }
      const Dtype w = weight[i * d1 + r] * s;
      Dtype* dst = values + v * c;
      for (int l = 0; l < c; ++l) {
        dst[l] += w * src[l];
      }
    }
  }
}

// One blur pass over the vertices [begin, end): out_v = v + (n1 + n2) / 2,
// the neighbours' rows prefetched a few vertices ahead.
template <typename Dtype>
HRENET_TARGET_CLONES("avx2", "default")
void BlurRange(int begin, int end, int c, const int* nbr,
    const Dtype* values, Dtype* __restrict__ out) {
  const int ahead = 8;
  for (int v = begin; v < end; ++v) {
    if (v + ahead < end) {
      PermutohedralPrefetchRow(values + nbr[2 * (v + ahead)] * c, c);
      PermutohedralPrefetchRow(values + nbr[2 * (v + ahead) + 1] * c, c);
    }
    PermutohedralBlurRow(values + v * c, values + nbr[2 * v] * c,
                         values + nbr[2 * v + 1] * c, c, out + v * c);
  }
}

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
  Dtype scale[kPermutohedralMaxDim];
  PermutohedralScales(d, scale);
  if (d <= 2 && InitDense(features, num_threads)) {
    FinishInit(num_threads);
    return;
  }
  // Each thread hashes the corners of a contiguous range of points into its
  // own table (local vertex numbers); the tables are then merged into the
  // first and the offsets renumbered. The vertex numbering differs with the
  // thread count, the filter's result does not (sums run in point order).
  // Every key coordinate, the blur's neighbours included, is within
  // d max|f scale| + 4 (d + 1) of zero.
  Dtype max_abs = 0;
  for (int i = 0; i < n; ++i) {
    for (int a = 0; a < d; ++a) {
      max_abs = std::max(max_abs, std::abs(features[i * d + a] * scale[a]));
    }
  }
  const bool packed = max_abs < Dtype(1 << 20) && LatticeHashTable::CanPack(
      d, static_cast<int>(d * max_abs) + 4 * d1 + 8);
  const int chunks = std::max(1, std::min(num_threads, n / 16384));
  const int step = (n + chunks - 1) / chunks;
  extra_slots_.resize(chunks - 1);
  extra_keys_.resize(chunks - 1);
  std::vector<shared_ptr<LatticeHashTable> > tables(chunks);
  ParallelFor(chunks, chunks, [&](int begin, int end) {
    for (int t = begin; t < end; ++t) {
      tables[t].reset(new LatticeHashTable(d, std::max(1024, step / 2), packed,
          t == 0 ? &hash_slots_ : &extra_slots_[t - 1],
          t == 0 ? &hash_keys_ : &extra_keys_[t - 1]));
      LatticeHashTable& table = *tables[t];
      // Neighbouring points often share simplex corners: reuse the previous
      // point's vertex when corner r has the same key, else hash.
      // Blocks of kBlock points: simplices and hashes first, prefetching
      // the slots, then the look-ups, so that cache misses overlap.
      const int kBlock = 8, kKeys = (kPermutohedralMaxDim + 1) *
          kPermutohedralMaxDim;
      int keys[kBlock + 1][kKeys];
      unsigned int hash[kBlock][kPermutohedralMaxDim + 1];
      const int first = t * step, last = std::min(n, first + step);
      for (int i0 = first; i0 < last; i0 += kBlock) {
        const int count = std::min(kBlock, last - i0);
        for (int b = 0; b < count; ++b) {
          const int i = i0 + b;
          int* key = keys[b + 1];
          const int* prev = keys[b];
          // A constant d lets the compiler unroll the simplex's loops.
          if (d == 5) {
            PermutohedralSimplex(features + i * 5, 5, scale, key,
                                 &weight_[i * 6]);
          } else {
            PermutohedralSimplex(features + i * d, d, scale, key,
                                 &weight_[i * d1]);
          }
          for (int r = 0; r < d1; ++r) {
            if (i > first &&
                PermutohedralKeysEqual(key + r * d, prev + r * d, d)) {
              hash[b][r] = 0;
              offset_[i * d1 + r] = -1;
            } else {
              hash[b][r] = LatticeHashTable::Hash(key + r * d, d);
              offset_[i * d1 + r] = 0;
              table.Prefetch(hash[b][r]);
            }
          }
        }
        for (int b = 0; b < count; ++b) {
          for (int r = 0; r < d1; ++r) {
            const int k = (i0 + b) * d1 + r;
            offset_[k] = offset_[k] < 0 ? offset_[k - d1] :
                table.FindOrInsert(keys[b + 1] + r * d, hash[b][r]);
          }
        }
        std::copy(keys[count], keys[count] + d1 * d, keys[0]);
      }
    }
  }, 1);
  LatticeHashTable& table = *tables[0];
  for (int t = 1; t < chunks; ++t) {
    std::vector<int> renumber(tables[t]->size());
    for (int u = 0; u < tables[t]->size(); ++u) {
      renumber[u] = table.FindOrInsert(tables[t]->key(u));
    }
    const int first = t * step * d1, last = std::min(n, (t + 1) * step) * d1;
    ParallelFor(last - first, num_threads, [&](int begin, int end) {
      for (int k = first + begin; k < first + end; ++k) {
        offset_[k] = renumber[offset_[k]];
      }
    });
  }
  m_ = table.size();
  // n2 of w along j is v exactly when n1 of v along j is w, so one lookup
  // per vertex and direction fills both (each w has one such v: no race).
  blur_nbr_.assign(static_cast<size_t>(d1) * m_ * 2, m_);
  ParallelFor(m_, num_threads, [&](int begin, int end) {
    const int kBlock = 16;
    int n1[kBlock][kPermutohedralMaxDim], n2[kPermutohedralMaxDim];
    unsigned int hash[kBlock];
    for (int j = 0; j <= d; ++j) {
      int* nbr = &blur_nbr_[static_cast<size_t>(j) * m_ * 2];
      for (int v0 = begin; v0 < end; v0 += kBlock) {
        const int count = std::min(kBlock, end - v0);
        for (int b = 0; b < count; ++b) {
          PermutohedralNeighbors(table.key(v0 + b), d, j, n1[b], n2);
          hash[b] = LatticeHashTable::Hash(n1[b], d);
          table.Prefetch(hash[b]);
        }
        for (int b = 0; b < count; ++b) {
          const int v = v0 + b;
          const int w = table.Find(n1[b], hash[b]);
          if (w >= 0) {
            nbr[2 * v] = w;
            nbr[2 * w + 1] = v;
          }
        }
      }
    }
  });
  FinishInit(num_threads);
}

template <typename Dtype>
bool PermutohedralLattice<Dtype>::InitDense(const Dtype* features,
    int num_threads) {
  const int d = d_, d1 = d_ + 1, n = n_;
  Dtype scale[kPermutohedralMaxDim];
  PermutohedralScales(d, scale);
  // The keys of all corners, then their bounding box.
  dense_keys_.resize(static_cast<size_t>(n) * d1 * d);
  int* keys = &dense_keys_[0];
  ParallelFor(n, num_threads, [&](int begin, int end) {
    for (int i = begin; i < end; ++i) {
      if (d == 2) {
        PermutohedralSimplex(features + i * 2, 2, scale,
                             keys + static_cast<size_t>(i) * 6,
                             &weight_[i * 3]);
      } else {
        PermutohedralSimplex(features + i * d, d, scale,
                             keys + static_cast<size_t>(i) * d1 * d,
                             &weight_[i * d1]);
      }
    }
  });
  int lo[kPermutohedralMaxDim], hi[kPermutohedralMaxDim];
  for (int a = 0; a < d; ++a) {
    lo[a] = hi[a] = keys[a];
  }
  const size_t num_keys = static_cast<size_t>(n) * d1;
  for (size_t k = 0; k < num_keys; ++k) {
    for (int a = 0; a < d; ++a) {
      lo[a] = std::min(lo[a], keys[k * d + a]);
      hi[a] = std::max(hi[a], keys[k * d + a]);
    }
  }
  // Index of a key in the box; the neighbours looked up by the blur may
  // lie one step outside it, so the box gets a margin of d + 1.
  int64_t stride[kPermutohedralMaxDim];
  int64_t cells = 1;
  for (int a = d - 1; a >= 0; --a) {
    lo[a] -= d1;
    hi[a] += d1;
    stride[a] = cells;
    cells *= hi[a] - lo[a] + 1;
    if (cells > 4 * static_cast<int64_t>(num_keys) + (1 << 16)) {
      return false;
    }
  }
  int64_t base = 0;
  for (int a = 0; a < d; ++a) {
    base += lo[a] * stride[a];
  }
  hash_slots_.assign(cells, -1);
  hash_keys_.clear();
  int* grid = &hash_slots_[0];
  int m = 0;
  for (size_t k = 0; k < num_keys; ++k) {
    const int* key = keys + k * d;
    int64_t cell = -base;
    for (int a = 0; a < d; ++a) {
      cell += key[a] * stride[a];
    }
    int v = grid[cell];
    if (v < 0) {
      v = grid[cell] = m++;
      hash_keys_.insert(hash_keys_.end(), key, key + d);
    }
    offset_[k] = v;
  }
  m_ = m;
  blur_nbr_.assign(static_cast<size_t>(d1) * m_ * 2, m_);
  ParallelFor(m_, num_threads, [&](int begin, int end) {
    int n1[kPermutohedralMaxDim], n2[kPermutohedralMaxDim];
    for (int j = 0; j <= d; ++j) {
      int* nbr = &blur_nbr_[static_cast<size_t>(j) * m_ * 2];
      for (int v = begin; v < end; ++v) {
        PermutohedralNeighbors(&hash_keys_[v * d], d, j, n1, n2);
        int64_t cell = -base;
        for (int a = 0; a < d; ++a) {
          cell += n1[a] * stride[a];
        }
        const int w = grid[cell];
        if (w >= 0) {
          nbr[2 * v] = w;
          nbr[2 * w + 1] = v;
        }
      }
    }
  });
  return true;
}

template <typename Dtype>
void PermutohedralLattice<Dtype>::FinishInit(int num_threads) {
  const int d1 = d_ + 1, n = n_;
  // Splat work per thread: split the vertices into ranges that receive
  // about the same number of (point, corner) entries.
  std::vector<int> entries_before(m_ + 1, 0);
  for (int k = 0; k < n * d1; ++k) {
    ++entries_before[offset_[k] + 1];
  }
  for (int v = 0; v < m_; ++v) {
    entries_before[v + 1] += entries_before[v];
  }
  const int splat_threads = std::max(1, std::min(num_threads, m_ / 1024));
  splat_bounds_.assign(splat_threads + 1, m_);
  for (int t = 0; t < splat_threads; ++t) {
    const int target = static_cast<int>(
        static_cast<int64_t>(entries_before[m_]) * t / splat_threads);
    splat_bounds_[t] = std::lower_bound(entries_before.begin(),
        entries_before.end(), target) - entries_before.begin();
  }
}

template <typename Dtype>
void PermutohedralLattice<Dtype>::SplatBlur(const Dtype* in, int c,
    int num_threads, const Dtype* in_scale) {
  CHECK_GT(m_, 0) << "PermutohedralLattice: SplatBlur() before Init()";
  c_ = c;
  alpha_ = PermutohedralAlpha<Dtype>(d_);
  values_.resize(static_cast<size_t>(m_ + 1) * c);
  scratch_.resize(static_cast<size_t>(m_ + 1) * c);
  Dtype* values = &values_[0];
  Dtype* scratch = &scratch_[0];
  std::fill(values + m_ * c, values + (m_ + 1) * c, Dtype(0));
  std::fill(scratch + m_ * c, scratch + (m_ + 1) * c, Dtype(0));
  // Splat: scatter each point's row onto its corners, in point order.
  // Thread t owns the vertices [splat_bounds_[t], splat_bounds_[t + 1])
  // and skips the other corners, so every vertex sums its points in the
  // same order whatever the thread count.
  const int d1 = d_ + 1;
  const int splat_threads = std::min<int>(num_threads,
                                          splat_bounds_.size() - 1);
  std::fill(values, values + m_ * c, Dtype(0));
  ParallelFor(splat_threads, splat_threads, [&](int begin, int end) {
    for (int t = begin; t < end; ++t) {
      const int lo = splat_threads == 1 ? 0 : splat_bounds_[t];
      const int hi = splat_threads == 1 ? m_ : splat_bounds_[t + 1];
      SplatRange(n_, d1, c, &offset_[0], &weight_[0], in, in_scale, lo, hi,
                 values);
    }
  }, 1);
  // Blur with [1/2 1 1/2] along each lattice direction.
  for (int j = 0; j <= d_; ++j) {
    const int* nbr = &blur_nbr_[j * m_ * 2];
    ParallelFor(m_, num_threads, [&](int begin, int end) {
      BlurRange(begin, end, c, nbr, values, scratch);
    }, 1024);
    std::swap(values, scratch);
  }
  blurred_ = values;
}

template <typename Dtype>
void PermutohedralLattice<Dtype>::Filter(const Dtype* in, Dtype* out, int c,
    int num_threads, const Dtype* in_scale, const Dtype* out_scale,
    bool accumulate) {
  SplatBlur(in, c, num_threads, in_scale);
  ParallelFor(n_, num_threads, [&](int begin, int end) {
    for (int i = begin; i < end; ++i) {
      if (i + 4 < end) {
        PrefetchSlice(i + 4);
      }
      if (!accumulate) {
        std::fill(out + i * c, out + (i + 1) * c, Dtype(0));
      }
      SliceAccumulate(i, out_scale ? out_scale[i] : Dtype(1), out + i * c);
    }
  }, 1024);
}

template class PermutohedralLattice<float>;
template class PermutohedralLattice<double>;

}  // namespace caffe
