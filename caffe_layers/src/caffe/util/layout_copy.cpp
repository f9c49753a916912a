#include <algorithm>
#include <cstring>

#include "caffe/util/layout_copy.hpp"

namespace caffe {

namespace {

// Side of the square tiles of PlanesToRows and RowsToPlanes: both sides of
// a tile stay in the L1 cache.
const int kTile = 32;
// Patches per tile of PatchCopy along x: the tile's rows stay in cache
// while the channels fill them.
const int kPatchTile = 16;

}  // namespace

template <typename Dtype>
void PlanesToRows(int C, int L, const Dtype* src, int ss, const int* l_off,
    int rs, Dtype* dst) {
  for (int c0 = 0; c0 < C; c0 += kTile) {
    const int c1 = std::min(C, c0 + kTile);
    for (int l0 = 0; l0 < L; l0 += kTile) {
      const int l1 = std::min(L, l0 + kTile);
      for (int l = l0; l < l1; ++l) {
        Dtype* d = dst + l_off[l] * rs;
        for (int c = c0; c < c1; ++c) d[c] = src[c * ss + l];
      }
    }
  }
}

template <typename Dtype>
void RowsToPlanes(int C, int L, const Dtype* src, const int* l_off, int rs,
    Dtype* dst, int ds) {
  for (int l0 = 0; l0 < L; l0 += kTile) {
    const int l1 = std::min(L, l0 + kTile);
    for (int c0 = 0; c0 < C; c0 += kTile) {
      const int c1 = std::min(C, c0 + kTile);
      for (int c = c0; c < c1; ++c) {
        Dtype* d = dst + c * ds;
        for (int l = l0; l < l1; ++l) d[l] = src[l_off[l] * rs + c];
      }
    }
  }
}

template <bool kToRows, typename Dtype>
void PatchCopy(int C, int H, int W, int s, int t, int gy0, int gy1, int gw,
    const int* row_y, const int* row_x, int K, Dtype* image, Dtype* rows) {
  Dtype* row[kPatchTile];
  for (int gy = gy0; gy < gy1; ++gy) {
    for (int gx0 = 0; gx0 < gw; gx0 += kPatchTile) {
      const int count = std::min(kPatchTile, gw - gx0);
      for (int k = 0; k < count; ++k) {
        row[k] = rows + (row_y[gy] + row_x[gx0 + k]) * K;
      }
      for (int c = 0; c < C; ++c) {
        for (int dy = 0; dy < s && gy * s + dy < H; ++dy) {
          Dtype* line = image + (c * H + gy * s + dy) * W + gx0 * t;
          const int f = (c * s + dy) * t;
          if (t == 2 && (gx0 + count) * 2 <= W) {
            // The paper's 2 x 2 patches, none in the padding: the pairs as
            // single moves (a loop over dx costs several times as much).
            for (int k = 0; k < count; ++k) {
              if (kToRows) {
                memcpy(row[k] + f, line + 2 * k,  // NOLINT(caffe/alt_fn)
                       2 * sizeof(Dtype));
              } else {
                memcpy(line + 2 * k, row[k] + f,  // NOLINT(caffe/alt_fn)
                       2 * sizeof(Dtype));
              }
            }
            continue;
          }
          for (int k = 0; k < count; ++k) {
            // Only the last patch of a row may reach into the padding.
            const int n = std::min(t, W - (gx0 + k) * t);
            for (int dx = 0; dx < n; ++dx) {
              if (kToRows) {
                row[k][f + dx] = line[k * t + dx];
              } else {
                line[k * t + dx] = row[k][f + dx];
              }
            }
          }
        }
      }
    }
  }
}

template void PlanesToRows<float>(int C, int L, const float* src, int ss,
    const int* l_off, int rs, float* dst);
template void PlanesToRows<double>(int C, int L, const double* src, int ss,
    const int* l_off, int rs, double* dst);
template void RowsToPlanes<float>(int C, int L, const float* src,
    const int* l_off, int rs, float* dst, int ds);
template void RowsToPlanes<double>(int C, int L, const double* src,
    const int* l_off, int rs, double* dst, int ds);
template void PatchCopy<true, float>(int C, int H, int W, int s, int t,
    int gy0, int gy1, int gw, const int* row_y, const int* row_x, int K,
    float* image, float* rows);
template void PatchCopy<false, float>(int C, int H, int W, int s, int t,
    int gy0, int gy1, int gw, const int* row_y, const int* row_x, int K,
    float* image, float* rows);
template void PatchCopy<true, double>(int C, int H, int W, int s, int t,
    int gy0, int gy1, int gw, const int* row_y, const int* row_x, int K,
    double* image, double* rows);
template void PatchCopy<false, double>(int C, int H, int W, int s, int t,
    int gy0, int gy1, int gw, const int* row_y, const int* row_x, int K,
    double* image, double* rows);

}  // namespace caffe
