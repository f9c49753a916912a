#include <algorithm>
#include <vector>

#include "caffe/util/permutohedral.hpp"

namespace caffe {

namespace {

// Open-addressing hash table from d-integer keys to vertex numbers; grows
// (doubling) to keep the load factor below one half. Its storage belongs to
// the lattice, so that repeated Init() calls reuse the memory.
class LatticeHashTable {
 public:
  LatticeHashTable(int d, int expected, std::vector<int>* slots,
      std::vector<int>* keys) : d_(d), size_(0), slots_(*slots),
      keys_(*keys) {
    int capacity = 1024;
    while (capacity < 2 * expected) {
      capacity *= 2;
    }
    slots_.assign(capacity, -1);
    keys_.clear();
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
      if (PermutohedralKeysEqual(key, &keys_[v * d_], d_)) {
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
      if (PermutohedralKeysEqual(key, &keys_[v * d_], d_)) {
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
  std::vector<int>& slots_;
  std::vector<int>& keys_;
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
  Dtype scale[kPermutohedralMaxDim];
  PermutohedralScales(d, scale);
  // Each thread hashes the corners of a contiguous range of points into its
  // own table (local vertex numbers); the tables are then merged into the
  // first and the offsets renumbered. The vertex numbering differs with the
  // thread count, the filter's result does not (sums run in point order).
  const int chunks = std::max(1, std::min(num_threads, n / 16384));
  const int step = (n + chunks - 1) / chunks;
  extra_slots_.resize(chunks - 1);
  extra_keys_.resize(chunks - 1);
  std::vector<shared_ptr<LatticeHashTable> > tables(chunks);
  ParallelFor(chunks, chunks, [&](int begin, int end) {
    for (int t = begin; t < end; ++t) {
      tables[t].reset(new LatticeHashTable(d, std::max(1024, step / 2),
          t == 0 ? &hash_slots_ : &extra_slots_[t - 1],
          t == 0 ? &hash_keys_ : &extra_keys_[t - 1]));
      LatticeHashTable& table = *tables[t];
      // Neighbouring points often share simplex corners: reuse the previous
      // point's vertex when corner r has the same key, else hash.
      int keys[2][(kPermutohedralMaxDim + 1) * kPermutohedralMaxDim];
      const int first = t * step, last = std::min(n, first + step);
      for (int i = first; i < last; ++i) {
        int* key = keys[i & 1];
        const int* prev = keys[(i + 1) & 1];
        PermutohedralSimplex(features + i * d, d, scale, key,
                             &weight_[i * d1]);
        for (int r = 0; r < d1; ++r) {
          const int k = i * d1 + r;
          if (i > first &&
              PermutohedralKeysEqual(key + r * d, prev + r * d, d)) {
            offset_[k] = offset_[k - d1];
          } else {
            offset_[k] = table.FindOrInsert(key + r * d);
          }
        }
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
  // n2 of w along j is v exactly when n1 of v along j is w, so one lookup
  // per vertex and direction fills both (each w has one such v: no race).
  blur_nbr_.assign(static_cast<size_t>(d1) * m_ * 2, m_);
  ParallelFor(m_, num_threads, [&](int begin, int end) {
    int n1[kPermutohedralMaxDim], n2[kPermutohedralMaxDim];
    for (int j = 0; j <= d; ++j) {
      int* nbr = &blur_nbr_[static_cast<size_t>(j) * m_ * 2];
      for (int v = begin; v < end; ++v) {
        PermutohedralNeighbors(table.key(v), d, j, n1, n2);
        const int w = table.Find(n1);
        if (w >= 0) {
          nbr[2 * v] = w;
          nbr[2 * w + 1] = v;
        }
      }
    }
  });
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
      for (int i = 0; i < n_; ++i) {
        const Dtype* src = in + i * c;
        const Dtype s = in_scale ? in_scale[i] : Dtype(1);
        for (int r = 0; r < d1; ++r) {
          const int v = offset_[i * d1 + r];
          if (v < lo || v >= hi) {
            continue;
          }
          const Dtype w = weight_[i * d1 + r] * s;
          Dtype* dst = values + v * c;
          for (int l = 0; l < c; ++l) {
            dst[l] += w * src[l];
          }
        }
      }
    }
  }, 1);
  // Blur with [1/2 1 1/2] along each lattice direction.
  const int ahead = 8;
  for (int j = 0; j <= d_; ++j) {
    const int* nbr = &blur_nbr_[j * m_ * 2];
    ParallelFor(m_, num_threads, [&](int begin, int end) {
      for (int v = begin; v < end; ++v) {
        if (v + ahead < end) {
          PermutohedralPrefetchRow(values + nbr[2 * (v + ahead)] * c, c);
          PermutohedralPrefetchRow(values + nbr[2 * (v + ahead) + 1] * c, c);
        }
        PermutohedralBlurRow(values + v * c, values + nbr[2 * v] * c,
                             values + nbr[2 * v + 1] * c, c, scratch + v * c);
      }
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
