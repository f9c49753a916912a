#include <vector>

#include "gtest/gtest.h"

#include "caffe/common.hpp"
#include "caffe/util/layout_copy.hpp"
#include "caffe/util/math_functions.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

namespace {

std::vector<float> Random(int count) {
  std::vector<float> v(count);
  caffe_rng_uniform<float>(count, -1.f, 1.f, &v[0]);
  return v;
}

}  // namespace

// Planes <-> rows against the definition, on sizes with partial tiles
// (the tiles are 32 x 32), a permuted row order and strides wider than
// the data.
TEST(LayoutCopyTest, TestPlanesAndRows) {
  const int sizes[][2] = {{1, 1}, {3, 70}, {33, 31}, {64, 64}, {100, 5}};
  for (int si = 0; si < 5; ++si) {
    const int C = sizes[si][0], L = sizes[si][1];
    const int ss = L + 3, rs = C + 2;
    std::vector<int> l_off(L);
    for (int l = 0; l < L; ++l) l_off[l] = L - 1 - l;  // reversed rows
    const std::vector<float> planes = Random(C * ss);
    std::vector<float> rows(L * rs, 9.f);
    PlanesToRows(C, L, &planes[0], ss, &l_off[0], rs, &rows[0]);
    for (int l = 0; l < L; ++l) {
      for (int c = 0; c < rs; ++c) {
        const float want = c < C ? planes[c * ss + l] : 9.f;
        ASSERT_EQ(rows[l_off[l] * rs + c], want) << "C " << C << " L " << L;
      }
    }
    std::vector<float> back(C * ss, 5.f);
    RowsToPlanes(C, L, &rows[0], &l_off[0], rs, &back[0], ss);
    for (int c = 0; c < C; ++c) {
      for (int l = 0; l < ss; ++l) {
        ASSERT_EQ(back[c * ss + l], l < L ? planes[c * ss + l] : 5.f)
            << "C " << C << " L " << L;
      }
    }
  }
}

// Image <-> patch rows against the definition: patch sizes 1 x 1, 2 x 2
// (the pair moves) and 2 x 3, images that are and are not whole numbers of
// patches (zero padding skipped: those features keep their old value),
// more than one tile of 16 patches per row, a range of patch rows only.
TEST(LayoutCopyTest, TestPatchCopy) {
  struct Case { int C, H, W, s, t; };
  const Case cases[] = {{2, 5, 7, 1, 1}, {3, 8, 36, 2, 2}, {3, 9, 35, 2, 2},
                         {2, 7, 40, 2, 3}, {1, 4, 70, 2, 2}};
  for (int ci = 0; ci < 5; ++ci) {
    const Case& k = cases[ci];
    const int gh = (k.H + k.s - 1) / k.s, gw = (k.W + k.t - 1) / k.t;
    const int K = k.C * k.s * k.t;
    // Rows column-major over the grid (as a vertical sweep stores them).
    std::vector<int> row_y(gh), row_x(gw);
    for (int gy = 0; gy < gh; ++gy) row_y[gy] = gy;
    for (int gx = 0; gx < gw; ++gx) row_x[gx] = gx * gh;
    std::vector<float> image = Random(k.C * k.H * k.W);
    for (int part = 0; part < 2; ++part) {
      // part 0: all patch rows; part 1: patch rows [1, gh - 1) only.
      const int gy0 = part, gy1 = part ? gh - 1 : gh;
      std::vector<float> rows(gh * gw * K, 3.f);
      PatchCopy<true>(k.C, k.H, k.W, k.s, k.t, gy0, gy1, gw, &row_y[0],
                      &row_x[0], K, &image[0], &rows[0]);
      for (int gy = 0; gy < gh; ++gy) {
        for (int gx = 0; gx < gw; ++gx) {
          for (int c = 0; c < k.C; ++c) {
            for (int dy = 0; dy < k.s; ++dy) {
              for (int dx = 0; dx < k.t; ++dx) {
                const int y = gy * k.s + dy, x = gx * k.t + dx;
                const bool inside = y < k.H && x < k.W && gy >= gy0 &&
                    gy < gy1;
                const float want = inside ?
                    image[(c * k.H + y) * k.W + x] : 3.f;
                ASSERT_EQ(rows[(row_y[gy] + row_x[gx]) * K +
                               (c * k.s + dy) * k.t + dx], want)
                    << "case " << ci << " part " << part;
              }
            }
          }
        }
      }
      // And back into an image: the copied patch rows' pixels return.
      std::vector<float> back(image.size(), 4.f);
      PatchCopy<false>(k.C, k.H, k.W, k.s, k.t, gy0, gy1, gw, &row_y[0],
                       &row_x[0], K, &back[0], &rows[0]);
      for (int c = 0; c < k.C; ++c) {
        for (int y = 0; y < k.H; ++y) {
          for (int x = 0; x < k.W; ++x) {
            const int gy = y / k.s;
            const int i = (c * k.H + y) * k.W + x;
            ASSERT_EQ(back[i], gy >= gy0 && gy < gy1 ? image[i] : 4.f)
                << "case " << ci << " part " << part;
          }
        }
      }
    }
  }
}

}  // namespace caffe
