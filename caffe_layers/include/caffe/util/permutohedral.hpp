#ifndef CAFFE_UTIL_PERMUTOHEDRAL_HPP_
#define CAFFE_UTIL_PERMUTOHEDRAL_HPP_

#include <algorithm>
#include <cmath>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/util/fast_math.hpp"
#include "caffe/util/parallel.hpp"

namespace caffe {

/// Largest feature dimension d the lattice supports (5 for a bilateral
/// x, y, r, g, b kernel; fixed so that device code can use local arrays).
const int kPermutohedralMaxDim = 8;

/**
 * @brief The d + 1 corners of the permutohedral-lattice simplex enclosing one
 *        feature vector, and the point's barycentric weights in it
 *        (Adams, Baek & Davis, "Fast High-Dimensional Filtering Using the
 *        Permutohedral Lattice", Eurographics 2010, section 3).
 *
 * The point @f$ f \in R^d @f$ is embedded in the hyperplane
 * @f$ \sum_i x_i = 0 @f$ of @f$ R^{d+1} @f$ by the paper's matrix E, with
 * each axis scaled by @f$ \sqrt{2/3}\,(d+1) @f$ so that splat, a [1/2 1 1/2]
 * blur along each of the d + 1 lattice directions and slice together
 * approximate @f$ \sum_j \exp(-\|f_i - f_j\|^2 / 2)\,v_j @f$ (the caller
 * divides features by the kernel's standard deviations). The nearest
 * remainder-0 lattice point is found by rounding every coordinate to a
 * multiple of d + 1 and repairing the coordinate sum; sorting the residuals
 * gives the permutation that names the simplex.
 *
 * @param f      the d features of the point
 * @param d      feature dimension, 1 <= d <= kPermutohedralMaxDim
 * @param scale  the d axis scales from PermutohedralScales()
 * @param keys   out: (d + 1) x d integer keys, corner r's first d lattice
 *               coordinates (the last is implied by the zero sum)
 * @param weight out: d + 1 barycentric weights (non-negative, sum 1)
 */
template <typename Dtype>
HRENET_HD inline void PermutohedralSimplex(const Dtype* f, int d,
    const Dtype* scale, int* keys, Dtype* weight) {
  Dtype elevated[kPermutohedralMaxDim + 1];
  int rem0[kPermutohedralMaxDim + 1];
  int rank[kPermutohedralMaxDim + 1];
  Dtype bary[kPermutohedralMaxDim + 2];
  Dtype sum_cf = 0;
  for (int i = d; i > 0; --i) {
    const Dtype cf = f[i - 1] * scale[i - 1];
    elevated[i] = sum_cf - i * cf;
    sum_cf += cf;
  }
  elevated[0] = sum_cf;
  const Dtype inv_d1 = Dtype(1) / (d + 1);
  int sum = 0;
  Dtype residual[kPermutohedralMaxDim + 1];
  for (int i = 0; i <= d; ++i) {
    const Dtype v = elevated[i] * inv_d1;
    const int down = static_cast<int>(floor(v));
    const int up = static_cast<int>(ceil(v));
    const int k = (up * (d + 1) - elevated[i] < elevated[i] - down * (d + 1))
        ? up : down;
    rem0[i] = k * (d + 1);
    residual[i] = elevated[i] - rem0[i];
    sum += k;
    rank[i] = 0;
  }
  // rank[i]: how many coordinates have a larger residual (0 = largest).
  for (int i = 0; i < d; ++i) {
    for (int j = i + 1; j <= d; ++j) {
      const int less = residual[i] < residual[j];
      rank[i] += less;
      rank[j] += 1 - less;
    }
  }
  // Bring the coordinate sum back to zero: move the |sum| coordinates with
  // the most extreme residuals by d + 1 and rotate the ranks accordingly.
  if (sum > 0) {
    for (int i = 0; i <= d; ++i) {
      if (rank[i] >= d + 1 - sum) {
        rank[i] -= d + 1 - sum;
        rem0[i] -= d + 1;
      } else {
        rank[i] += sum;
      }
    }
  } else if (sum < 0) {
    for (int i = 0; i <= d; ++i) {
      if (rank[i] < -sum) {
        rank[i] += d + 1 + sum;
        rem0[i] += d + 1;
      } else {
        rank[i] += sum;
      }
    }
  }
  for (int i = 0; i <= d + 1; ++i) {
    bary[i] = 0;
  }
  for (int i = 0; i <= d; ++i) {
    const Dtype v = (elevated[i] - rem0[i]) * inv_d1;
    bary[d - rank[i]] += v;
    bary[d + 1 - rank[i]] -= v;
  }
  bary[0] += 1 + bary[d + 1];
  // Corner r of the canonical simplex is (r, ..., r, r - d - 1, ...), the
  // entry chosen by the coordinate's rank.
  for (int r = 0; r <= d; ++r) {
    for (int i = 0; i < d; ++i) {
      keys[r * d + i] = rem0[i] + (rank[i] <= d - r ? r : r - (d + 1));
    }
    weight[r] = bary[r];
  }
}

/// Axis scales of the embedding: sqrt(2/3) (d + 1) / sqrt((i + 1)(i + 2)).
template <typename Dtype>
HRENET_HD inline void PermutohedralScales(int d, Dtype* scale) {
  const Dtype inv_std = sqrt(Dtype(2) / Dtype(3)) * (d + 1);
  for (int i = 0; i < d; ++i) {
    scale[i] = inv_std / sqrt(Dtype(i + 1) * Dtype(i + 2));
  }
}

/// Whether two d-integer lattice keys are equal.
HRENET_HD inline bool PermutohedralKeysEqual(const int* a,
    const int* b, int d) {
  for (int i = 0; i < d; ++i) {
    if (a[i] != b[i]) {
      return false;
    }
  }
  return true;
}

/// Hash of a d-integer lattice key (FNV-1a over the words, then a final mix).
HRENET_HD inline unsigned int PermutohedralHash(const int* key,
    int d) {
  unsigned int h = 2166136261u;
  for (int i = 0; i < d; ++i) {
    h = (h ^ static_cast<unsigned int>(key[i])) * 16777619u;
  }
  h ^= h >> 15;
  h *= 0x2c1b3c6du;
  h ^= h >> 12;
  return h;
}

/// The two neighbours of lattice key @p key along lattice direction
/// @p j (0 <= j <= d): key - 1 + (d + 1) e_j and key + 1 - (d + 1) e_j.
HRENET_HD inline void PermutohedralNeighbors(const int* key, int d,
    int j, int* n1, int* n2) {
  for (int i = 0; i < d; ++i) {
    n1[i] = key[i] - 1;
    n2[i] = key[i] + 1;
  }
  if (j < d) {
    n1[j] = key[j] + d;
    n2[j] = key[j] - d;
  }
}

/// One vertex of one blur pass: dst = self + (a + b) / 2 over c values.
template <typename Dtype>
HRENET_HD inline void PermutohedralBlurRow(const Dtype* self,
    const Dtype* a, const Dtype* b, int c, Dtype* dst) {
  for (int l = 0; l < c; ++l) {
    dst[l] = self[l] + Dtype(0.5) * (a[l] + b[l]);
  }
}

/**
 * @brief Slice of one point: out[l] (+)= scale * sum_r weight[r] *
 *        values[offset[r] * c + l] over its d + 1 simplex corners
 *        (accumulating when @p accumulate, else overwriting).
 */
template <typename Dtype>
HRENET_HD inline void PermutohedralSliceRow(const Dtype* values,
    const int* offset, const Dtype* weight, int d1, int c, Dtype scale,
    bool accumulate, Dtype* out) {
  Dtype w[kPermutohedralMaxDim + 1];
  for (int r = 0; r < d1; ++r) {
    w[r] = weight[r] * scale;
  }
  if (!accumulate) {
    for (int l = 0; l < c; ++l) {
      out[l] = 0;
    }
  }
  for (int r = 0; r < d1; ++r) {
    const Dtype* src = values + offset[r] * c;
    const Dtype wr = w[r];
    for (int l = 0; l < c; ++l) {
      out[l] += wr * src[l];
    }
  }
}

/**
 * @brief PermutohedralSliceRow with accumulate and the corner count fixed at
 *        compile time: each label sums its D1 corners in registers, so every
 *        row is read once and out written once.
 */
template <typename Dtype, int D1>
HRENET_HD inline void PermutohedralSliceRowFixed(const Dtype* values,
    const int* offset, const Dtype* weight, int c, Dtype scale, Dtype* out) {
  const Dtype* src[D1];
  Dtype w[D1];
  for (int r = 0; r < D1; ++r) {
    src[r] = values + offset[r] * c;
    w[r] = weight[r] * scale;
  }
  for (int l = 0; l < c; ++l) {
    Dtype sum = w[0] * src[0][l];
    for (int r = 1; r < D1; ++r) {
      sum += w[r] * src[r][l];
    }
    out[l] += sum;
  }
}

/// CPU: hint the cache about a row of c values read soon (random accesses
/// through the lattice's index arrays defeat the hardware prefetcher).
template <typename Dtype>
inline void PermutohedralPrefetchRow(const Dtype* row, int c) {
#ifdef __GNUC__
  __builtin_prefetch(row);
  __builtin_prefetch(row + c - 1);
#endif
}

/// Normalisation of the slice so that a lone point gets weight ~1 back
/// (the blur's self weight is 1 per axis plus its neighbours' echo).
template <typename Dtype>
HRENET_HD inline Dtype PermutohedralAlpha(int d) {
  return Dtype(1) / (Dtype(1) + pow(Dtype(2), Dtype(-d)));
}

/**
 * @brief Gaussian filtering of c-channel values over n points with
 *        d-dimensional features on the permutohedral lattice (CPU).
 *
 * Init() builds the lattice once (corners, weights, the blur neighbours
 * and a split of the vertices between threads); Filter() then costs
 * O(n (d + 1) c + m (d + 1) c) for m lattice vertices, so one lattice serves
 * every label and every mean-field iteration. Memory is linear in n and c.
 * Splatting scatters the points in order, each thread onto the vertices it
 * owns; blur and slice are parallel over vertices and points. No atomics,
 * and the result does not depend on the thread count.
 */
template <typename Dtype>
class PermutohedralLattice {
 public:
  PermutohedralLattice()
      : d_(0), n_(0), m_(0), c_(0), alpha_(0), blurred_(NULL) {}

  /**
   * @param features n x d, point-major, already divided by the kernel's
   *                 standard deviations
   */
  void Init(const Dtype* features, int d, int n, int num_threads);

  /**
   * @brief out(n x c) ~= sum_j exp(-|f_i - f_j|^2 / 2) in_j (point-major;
   *        the point itself is included with weight ~1). in may equal out.
   *
   * With @p in_scale (n values, or NULL for ones) the input is
   * in_j * in_scale_j; with @p out_scale (n values, or NULL) the result of
   * point i is multiplied by out_scale_i; with @p accumulate it is added to
   * out instead of overwriting it. The CRF uses these for its symmetric
   * normalisation and kernel weight without extra passes over the data.
   */
  void Filter(const Dtype* in, Dtype* out, int c, int num_threads,
      const Dtype* in_scale = NULL, const Dtype* out_scale = NULL,
      bool accumulate = false);

  /**
   * @brief The first two stages of Filter(): splat (in_j * in_scale_j) and
   *        blur. The blurred vertex values stay in the lattice for
   *        SliceAccumulate() until the next call, so that a caller can slice
   *        several lattices and post-process each point in one pass.
   */
  void SplatBlur(const Dtype* in, int c, int num_threads,
      const Dtype* in_scale = NULL);

  /// out[0..c) += scale * (the filtered value of point i), after SplatBlur().
  inline void SliceAccumulate(int i, Dtype scale, Dtype* out) const {
    const int d1 = d_ + 1;
    if (d1 == 3) {
      PermutohedralSliceRowFixed<Dtype, 3>(blurred_, &offset_[i * 3],
          &weight_[i * 3], c_, scale * alpha_, out);
    } else if (d1 == 6) {
      PermutohedralSliceRowFixed<Dtype, 6>(blurred_, &offset_[i * 6],
          &weight_[i * 6], c_, scale * alpha_, out);
    } else {
      PermutohedralSliceRow(blurred_, &offset_[i * d1], &weight_[i * d1], d1,
                            c_, scale * alpha_, true, out);
    }
  }

  /// Prefetches the vertex rows SliceAccumulate(i, ...) will read.
  inline void PrefetchSlice(int i) const {
    for (int r = 0; r <= d_; ++r) {
      PermutohedralPrefetchRow(blurred_ + offset_[i * (d_ + 1) + r] * c_, c_);
    }
  }

  int dim() const { return d_; }
  int num_points() const { return n_; }
  int num_vertices() const { return m_; }

 private:
  /// Init() for small d: the vertices in a dense array over the keys'
  /// bounding box instead of a hash table; false (nothing built) when the
  /// box has too many cells.
  bool InitDense(const Dtype* features, int num_threads);
  /// The rest of Init(): the vertex ranges of the splat threads.
  void FinishInit(int num_threads);

  int d_, n_, m_, c_;
  Dtype alpha_;                    // PermutohedralAlpha(d)
  const Dtype* blurred_;           // values_ or scratch_ after SplatBlur
  std::vector<int> offset_;        // n (d+1): vertex of each simplex corner
  std::vector<Dtype> weight_;      // n (d+1): barycentric weights
  std::vector<int> splat_bounds_;  // threads + 1: vertex ranges for splat
  std::vector<int> blur_nbr_;      // (d+1) m 2: neighbours, m when absent
  std::vector<Dtype> values_;      // (m+1) c; row m stays zero
  std::vector<Dtype> scratch_;     // (m+1) c
  std::vector<int> hash_slots_;    // hash slots or InitDense grid (reused)
  std::vector<int> hash_keys_;     // m d: vertex keys (reused by Init)
  std::vector<int> dense_keys_;    // n (d+1) d: corner keys (InitDense)
  // Further threads' tables while Init() runs in parallel.
  std::vector<std::vector<int> > extra_slots_, extra_keys_;

  DISABLE_COPY_AND_ASSIGN(PermutohedralLattice);
};

#ifndef CPU_ONLY
/**
 * @brief The same filter on the GPU: a parallel open-addressing hash table
 *        (atomicCAS on slots, keys compared in global memory), a prefix sum
 *        to number the vertices, atomicAdd splatting, blur along each
 *        lattice direction and slicing. All pointers are device pointers.
 */
template <typename Dtype>
class PermutohedralLatticeGPU {
 public:
  PermutohedralLatticeGPU() : d_(0), n_(0), m_(0), blurred_(NULL) {}
  void Init(const Dtype* features, int d, int n);
  /// As PermutohedralLattice::Filter (device pointers).
  void Filter(const Dtype* in, Dtype* out, int c,
      const Dtype* in_scale = NULL, const Dtype* out_scale = NULL,
      bool accumulate = false);
  int num_vertices() const { return m_; }
  /// As PermutohedralLattice::SplatBlur (device pointers).
  void SplatBlur(const Dtype* in, int c, const Dtype* in_scale = NULL);
  /// Device arrays for slicing after SplatBlur(): corners' vertices (n (d+1)),
  /// barycentric weights (n (d+1)) and blurred values ((m+1) c).
  const int* offset() const { return offset_.gpu_data(); }
  const Dtype* weight() const { return weight_.gpu_data(); }
  const Dtype* blurred() const { return blurred_; }
  Dtype alpha() const { return PermutohedralAlpha<Dtype>(d_); }

 private:
  int d_, n_, m_;
  const Dtype* blurred_;
  // Device memory, kept between calls and grown only when a larger image
  // needs it (a Blob reallocates only beyond its capacity).
  Blob<int> offset_;        // n (d+1)
  Blob<Dtype> weight_;      // n (d+1)
  Blob<int> blur_nbr_;      // (d+1) m 2
  Blob<Dtype> values_;      // (m+1) c
  Blob<Dtype> scratch_;     // (m+1) c
  // Init()'s scratch: corner keys, hash table, owners, their scan, the
  // owner entry of each vertex.
  Blob<int> keys_, table_, owner_, scan_, vertex_entry_;

  DISABLE_COPY_AND_ASSIGN(PermutohedralLatticeGPU);
};
#endif  // !CPU_ONLY

}  // namespace caffe

#endif  // CAFFE_UTIL_PERMUTOHEDRAL_HPP_
