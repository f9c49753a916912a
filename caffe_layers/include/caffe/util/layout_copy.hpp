#ifndef CAFFE_UTIL_LAYOUT_COPY_HPP_
#define CAFFE_UTIL_LAYOUT_COPY_HPP_

namespace caffe {

/**
 * @brief Copies C channel planes of L positions into rows: dst[l_off[l] rs
 *        + c] = src[c ss + l] (plane stride ss, row stride rs; the rows'
 *        order is l_off's). Tiled, so that both sides stay in cache.
 */
template <typename Dtype>
void PlanesToRows(int C, int L, const Dtype* src, int ss, const int* l_off,
    int rs, Dtype* dst);

/**
 * @brief The inverse: dst[c ds + l] = src[l_off[l] rs + c] (plane stride
 *        ds).
 */
template <typename Dtype>
void RowsToPlanes(int C, int L, const Dtype* src, const int* l_off, int rs,
    Dtype* dst, int ds);

/**
 * @brief Copies between an image (C x H x W) and the rows of its s x t
 *        patches, either way.
 *
 * Patch (gy, gx) is the row at row_y[gy] + row_x[gx] (in rows of K = C s t
 * features, in (c, dy, dx) order): rows[(row_y[gy] + row_x[gx]) K +
 * (c s + dy) t + dx] is image[(c H + gy s + dy) W + gx t + dx]. kToRows
 * gathers the image into the rows, else the rows are scattered back into
 * the image. Only patch rows gy in [gy0, gy1) of the gw patch columns are
 * touched, so that threads can split them. Pixels beyond H x W (the zero
 * padding of the last patches) are skipped: their features are left as
 * they are.
 */
template <bool kToRows, typename Dtype>
void PatchCopy(int C, int H, int W, int s, int t, int gy0, int gy1, int gw,
    const int* row_y, const int* row_x, int K, Dtype* image, Dtype* rows);

}  // namespace caffe

#endif  // CAFFE_UTIL_LAYOUT_COPY_HPP_
