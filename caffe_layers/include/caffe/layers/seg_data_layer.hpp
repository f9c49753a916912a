#ifndef CAFFE_SEG_DATA_LAYER_HPP_
#define CAFFE_SEG_DATA_LAYER_HPP_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "boost/thread/mutex.hpp"
#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/base_data_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/layer_state.hpp"

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
 * Errors a user can cause throw UserError (caffe/util/user_error.hpp) with
 * one sentence naming the layer, the file or key and the fix: the `caffe`
 * tool prints it as one line and exits with status 1, pycaffe raises it as
 * a Python RuntimeError. A `source` that does not exist, is not a folder,
 * or lacks `image_lmdb/data.mdb` or `label_lmdb/data.mdb`: "SegData layer
 * 'data': LMDB folder 'S' does not exist (cwd: C). <missing_hint>"
 * (`seg_data_param.missing_hint`, e.g. the build_lmdb.py command that
 * writes S; a generic hint when empty). A data.mdb shorter than the pages
 * its meta page names (a truncated copy) is refused before it is mapped
 * (reading it would raise SIGBUS).
 * At set-up both LMDBs are scanned in lockstep with read-only LMDB handles
 * (`MDB_RDONLY | MDB_NOTLS | MDB_NOLOCK`); every key must match (the error
 * names the first that does not: a missing record) and every image and
 * label Datum must agree on height and width. Per-epoch shuffling then
 * reads pairs by key through the same handles (the read transaction is
 * opened at set-up and used by the prefetch thread only). An error in the
 * prefetch thread (a record that does not decode) is kept with its batch
 * and raised by Forward on the net's thread when that batch is reached.
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
 * `shuffle` a fresh permutation every epoch. On one solver all random draws
 * (permutation, offsets, flips) come from one generator owned by the layer,
 * seeded with `seed`, or when `seed` is -1 with a draw from Caffe's RNG at
 * set-up (so Caffe::set_random_seed also makes runs repeatable).
 *
 * Several solvers (`caffe train -gpu 0,1,...`: one copy of the net per GPU,
 * rank r of N): in TRAIN the records are shared as upstream's DataLayer
 * shares them. Every rank walks the same sequence - the epochs one after
 * another, each in key order or, with `shuffle`, in the same permutation on
 * every rank (the permutation generator is seeded alike on all ranks) - and
 * rank r takes the items at positions p = r, r + N, r + 2N, ... of that
 * sequence, counted on across epoch ends. So after k iterations the N ranks
 * together have read exactly its first k N `batch_size` items: each epoch
 * once, no record twice within an epoch, and no rank ahead of another by
 * more than one item. When the epoch length M is not a multiple of N
 * an epoch's end falls inside a round of N: each rank reads
 * @f$ \lfloor M/N \rfloor @f$ or @f$ \lceil M/N \rceil @f$ records of
 * that epoch, and which ranks read one more shifts from epoch to epoch (with
 * M < N some ranks read no record of some epochs; the records still go
 * round). Without `shuffle` the same rule holds on key order: rank r of 2
 * reads keys r, r + 2, ... of the first epoch. Crops and flips come from a
 * second generator per rank, so the ranks crop independently: seeded from
 * (`seed`, r) when `seed` >= 0, else with a draw from the rank's own Caffe
 * RNG (Solver seeds it with `random_seed` + r). With `seed` -1 and
 * `shuffle`, rank 0 draws the permutation seed from its Caffe RNG and
 * leaves it in the process for the other ranks, which `caffe train` sets up
 * after rank 0 in the same process; a rank that finds none (ranks in
 * separate processes) stops and asks for an explicit `seed`. TEST nets
 * (built on every rank, run by rank 0 only) read every record, whatever N.
 * N and r are read in DataLayerSetUp, on the thread that builds the rank's net (Caffe keeps
 * them per thread; InternalThread copies them to the prefetch thread, but
 * the layer keeps its own copy), and with N = 1 the layer reads and draws
 * exactly what it did before it knew about ranks.
 *
 * Exact resume (StatefulLayer): SaveState() gives the generators' seeds and
 * the number of items Forward has delivered; Solver::Snapshot writes it
 * beside the .solverstate (patch 0015) and Restore gives it back:
 * RestoreState() stops the prefetch thread, reseeds, replays the
 * permutations and the crop/flip draws of that many items (from the sizes
 * recorded at set-up, without decoding) and restarts the thread, so the
 * resumed run reads exactly the batches the uninterrupted run would have
 * (one solver; with several, only rank 0 writes the state, every rank
 * takes its permutation seed and item count and keeps its own crop seed:
 * exact when `seed` >= 0, which makes that crop seed the one it had).
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
class SegDataLayer : public BasePrefetchingDataLayer<Dtype>,
                     public StatefulLayer {
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

  /// "segdata1 <permutation seed> <crop seed> <items delivered>".
  virtual string SaveState() const;
  virtual void RestoreState(const string& state);

  /// BasePrefetchingDataLayer's, then raises the batch's error if it has one.
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

 protected:
  /// The random choices for one pair: crop offsets and the flip.
  struct Draws {
    int h_off, w_off;
    bool mirror;
  };

  virtual void load_batch(Batch<Dtype>* batch);
  /// Index (into keys_) of this rank's next pair; reshuffles at an epoch's
  /// end and skips the items of the other ranks.
  int NextIndex();
  /// A uniform integer in [0, n) from the crop generator.
  int Rand(int n);
  /// Throws UserError (one sentence with the fix) if `source` is not a
  /// folder holding image_lmdb/ and label_lmdb/.
  void CheckSourceExists(const string& source);
  /// Opens both LMDBs and records every key and size (see the class
  /// comment); throws UserError on a damaged or mismatched pair of LMDBs.
  void ScanSource(const string& source);
  /// Chooses perm_seed_ and crop_seed_ for this rank (see the class
  /// comment) and seeds the generators with them (ApplySeeds).
  void SeedGenerators();
  void ApplySeeds();
  /// The first epoch's order, from the start.
  void ResetStream();
  /// The crop offsets and flip of pair `index` (draws from crop_rng_).
  Draws Draw(int index);
  /// Decodes, pads, crops and mirrors pair `index` into `item` of `batch`.
  void LoadPair(int index, const Draws& draws, int item,
                Batch<Dtype>* batch);
  /// After the base Forward: raises the current batch's error, else counts
  /// its items as delivered.
  void CheckBatch();

  vector<string> keys_;
  vector<std::pair<int, int> > sizes_;  // (height, width) of every pair
  vector<int> order_;
  int position_;  // next position in order_
  int solver_count_, solver_rank_;  // N and r; 1 and 0 in TEST
  int turn_;  // rank whose turn the item at order_[position_] is
  // Permutations; crops and flips. The same generator when N = 1.
  shared_ptr<Caffe::RNG> perm_rng_, crop_rng_;
  unsigned int perm_seed_, crop_seed_;
  int64_t consumed_items_;  // items Forward has delivered (net's thread)
  shared_ptr<SegDataLMDB> image_db_, label_db_;
  // Errors of the prefetch thread, by batch; the first one.
  boost::mutex error_mutex_;
  std::map<Batch<Dtype>*, string> errors_;
  string first_error_;
  vector<Dtype> mean_;
  int crop_h_, crop_w_;
};

}  // namespace caffe

#endif  // CAFFE_SEG_DATA_LAYER_HPP_
