#pragma once
// Data sets as streams of (id, input): opened without decoding, viewed (limit, shard) without
// decoding, decoded one item at a time. `explain`, `evaluate` and `batch` read their inputs here.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "salient/image.hpp"
#include "salient/metadata.hpp"

namespace salient {

// One decoded item: its stable id, the input (tensor, display picture, stem for file names) and its
// true label when the data carries one (-1 otherwise).
struct DataItem {
  std::string id;
  InputItem input;
  int64_t label = -1;
};

// Where items come from: a fixed, ordered list of rows, each decodable on its own.
class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual int64_t count() const = 0;
  virtual std::string id(int64_t row) const = 0;
  virtual int64_t label(int64_t row) const { return -1; }
  virtual bool has_labels() const { return false; }
  // What opening noticed and the user should hear (class folders that name no label).
  virtual std::vector<std::string> warnings() const { return {}; }
  // Throws salient::Error naming the item. `display`: also the 8-bit picture (for PNGs).
  virtual InputItem load(int64_t row, bool display) const = 0;
  // A safe, unique folder name per row (for --format files), the same whatever the view.
  const std::string& stem(int64_t row) const;

 protected:
  std::vector<std::string> stems_;  // filled by the first stem() call
};

class Dataset {
 public:
  // Opens, without decoding any input:
  //   a folder      every image below it, recursively, sorted; id = path relative to the folder; when
  //                 every image sits one level down, in a class folder, its label is that folder's
  //                 class (torchvision's ImageFolder layout) by class_of_folder()'s rule; a folder that
  //                 maps to no class leaves the data set unlabelled, and warnings() names it;
  //   a list file   (.txt, .lst, .list) one image path a line, relative to the list's folder; id = the line;
  //   an .npy stack [N, ...] read a row at a time; id = row number;
  //   a CSV         (tabular) rows encoded as the metadata's features say, checked whole in one
  //                 streamed pass (only offsets, ids and labels kept; a row is re-read when decoded);
  //                 id = the id column's value (metadata id_column, --id-column) or row-N; labels
  //                 from the metadata's label_column;
  //   an IDX file   images [N,H,W] (plain or .gz), read a row at a time; id = row number; labels from
  //                 `labels` or, when absent, the sibling file named with "labels-idx1" for "images-idx3";
  //   an image file a data set of one.
  // Throws salient::Error naming the problem (missing, empty, unknown kind, shape mismatch).
  // `max_items` >= 0: a hint that only the first items are wanted (a CSV stops reading there; the
  // other kinds decode nothing when opened anyway); take them with limit().
  static Dataset open(const std::string& spec, const ModelMetadata& meta, Resize resize = Resize::None,
                      const std::string& labels = "", int64_t max_items = -1);

  int64_t size() const { return static_cast<int64_t>(rows_.size()); }
  std::string id(int64_t i) const { return source_->id(rows_.at(i)); }
  int64_t label(int64_t i) const { return source_->label(rows_.at(i)); }
  bool has_labels() const { return source_->has_labels(); }
  std::vector<std::string> warnings() const { return source_->warnings(); }
  const std::string& stem(int64_t i) const { return source_->stem(rows_.at(i)); }
  DataItem get(int64_t i, bool display = true) const;  // decodes item i of the view (and its picture)
  const std::string& spec() const { return spec_; }

  // Views: nothing is decoded. limit(n): the first n items. shard(k, n): items k, k+n, k+2n, ... of
  // this view, so that shards 0..n-1 together hold every item exactly once (no padding).
  Dataset limit(int64_t n) const;
  Dataset shard(int64_t k, int64_t n) const;

 private:
  std::shared_ptr<const DataSource> source_;
  std::vector<int64_t> rows_;
  std::string spec_;
};

// A class folder's name as a class index, -1 for none. In order: a label of the metadata exactly;
// the one label whose sanitised form equals the folder's (lower case, every run of other characters
// than letters and digits one "_", none at the ends: "T-shirt/top", which no folder can be named,
// is "t_shirt_top", as is a folder "T-shirt_top"); a class number ("3"); an index prefix followed by
// "-", "_", "." or a space ("0-t-shirt-top", "03_bag"), when it is a class of the metadata (or there
// are no labels).
int64_t class_of_folder(const std::string& name, const ModelMetadata& meta);

// How many items have been decoded in this process (tests check that views decode nothing).
int64_t decoded_count();

}  // namespace salient
