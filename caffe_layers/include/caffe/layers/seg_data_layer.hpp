#ifndef CAFFE_SEG_DATA_LAYER_HPP_
#define CAFFE_SEG_DATA_LAYER_HPP_

#include <string>
#include <utility>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/base_data_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

class SegDataLMDB;

/**
 * @brief Reads image/label pairs for semantic segmentation from the LMDB
 *        pair written by `tools/build_lmdb.py`, and crops and mirrors image
 *        and label in sync (H-ReNet paper, Sec. 4: "randomly cropped patches
 *        of size Hmin x Wmin with random horizontal flipping ... Reflection
 *        padding is applied if an input image is smaller than Hmin x Wmin";
 *        testing at the image's original size).
 *
 * Source (`seg_data_param.source`, a directory):
 *   - `source/image_lmdb`: key `%08d_<name>` -> Datum with the encoded
 *     JPEG/PNG bytes (`encoded` true, `channels` 3, `height`, `width`);
 *   - `source/label_lmdb`: the same keys -> Datum with a lossless PNG of the
 *     single-channel uint8 class-index map (255 = ignore).
 * At set-up both LMDBs are scanned in lockstep through caffe::db; every key
 * must match (a CHECK names the first that does not) and every image and
 * label Datum must agree on height and width. Upstream's db::Cursor can only
 * walk forward, so per-epoch shuffling reads pairs by key through a
 * read-only LMDB handle (`MDB_RDONLY | MDB_NOTLS | MDB_NOLOCK`: the
 * transaction is opened at set-up and used by the prefetch thread only).
 *
 * Loading runs in the prefetch thread of BasePrefetchingDataLayer
 * (`seg_data_param.prefetch` batches ahead). Per pair, with
 * @f$ (c_h, c_w) @f$ = (`crop_h`, `crop_w`):
 *   1. decode both with cv::imdecode (image: BGR, 3 channels; label: must
 *      be 8-bit single channel) and CHECK that they are the size the Datums
 *      say; every failure names the key;
 *   2. if @f$ c_h, c_w > 0 @f$ and the image is smaller than the crop in a
 *      dimension, pad it to the crop size, split evenly (top/left get
 *      @f$ \lfloor p/2 \rfloor @f$, bottom/right the rest): the image with
 *      reflection (cv::BORDER_REFLECT_101: `dcb|abcd|cba`), the label with
 *      `ignore_label` (default 255), so that the loss ignores the invented
 *      pixels rather than training on reflected labels;
 *   3. TRAIN: crop at a uniformly random offset, the same for image and
 *      label; with `mirror`, flip both horizontally with probability 1/2.
 *      TEST: centre crop (offset @f$ \lfloor (H - c_h)/2 \rfloor @f$), never
 *      mirrored. With @f$ c_h = c_w = 0 @f$ (either phase) the whole image
 *      at its own size; then `batch_size` must be 1 unless every image has
 *      the same size (checked at set-up);
 *   4. @f$ \mathrm{data}_{c,y,x} = (I_{c,y,x} - m_c)\, s @f$ with
 *      `mean_value` @f$ m @f$ (none, one for all channels, or three, BGR)
 *      and `scale` @f$ s @f$; the label is copied as is.
 *
 * Order: key order (the order the builder wrote, shuffled or not); with
 * `shuffle` a fresh permutation every epoch. All random draws (permutation,
 * offsets, flips) come from one generator owned by the layer, seeded with
 * `seed`, or when `seed` is -1 with a draw from Caffe's RNG at set-up (so
 * Caffe::set_random_seed also makes runs repeatable).
 *
 * There is no .cu file: Forward_gpu is BasePrefetchingDataLayer's, which
 * copies the prefetched batch; the layer has no GPU maths of its own.
 *
 * Tops:
 *   - data  @f$ N \times 3 \times H \times W @f$ (BGR, Dtype);
 *   - label @f$ N \times 1 \times H \times W @f$ (class indices, optional);
 *   with @f$ (H, W) = (c_h, c_w) @f$, or the image's size without a crop
 *   (the tops are reshaped every batch). No bottoms, no gradients.
 */
template <typename Dtype>
class SegDataLayer : public BasePrefetchingDataLayer<Dtype> {
 public:
  explicit SegDataLayer(const LayerParameter& param);
  virtual ~SegDataLayer();
  virtual void DataLayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual inline const char* type() const { return "SegData"; }
  virtual inline int ExactNumBottomBlobs() const { return 0; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 2; }

  /// The key of every pair, in the order of the LMDBs.
  const vector<string>& keys() const { return keys_; }

 protected:
  virtual void load_batch(Batch<Dtype>* batch);
  /// Index (into keys_) of the next pair; reshuffles at an epoch's end.
  int NextIndex();
  /// A uniform integer in [0, n).
  int Rand(int n);
  void ScanSource(const string& source);
  /// Decodes, pads, crops and mirrors pair `index` into `item` of `batch`.
  void LoadPair(int index, int item, Batch<Dtype>* batch);

  vector<string> keys_;
  vector<std::pair<int, int> > sizes_;  // (height, width) of every pair
  vector<int> order_;
  int position_;
  shared_ptr<Caffe::RNG> rng_;
  shared_ptr<SegDataLMDB> image_db_, label_db_;
  vector<Dtype> mean_;
  int crop_h_, crop_w_;
};

}  // namespace caffe

#endif  // CAFFE_SEG_DATA_LAYER_HPP_
