#include "salient/dataset.hpp"

#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/idx.hpp"
#include "salient/npy.hpp"
#include "salient/tabular.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

std::atomic<int64_t> g_decoded{0};

std::string lower_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

std::string shape_list(c10::IntArrayRef s) {
  std::string out;
  for (auto d : s) out += (out.empty() ? "" : ",") + std::to_string(d);
  return "[" + out + "]";
}

void check_shape(const std::string& path, c10::IntArrayRef got, const ModelMetadata& meta) {
  if (!meta.input_shape.empty() && got != c10::IntArrayRef(meta.input_shape))
    throw Error("'" + path + "' holds inputs of shape " + shape_list(got) + ", the model expects " +
                shape_list(meta.input_shape));
}

// Image files: a folder's (recursively), a list file's, or one.
class FilesSource : public DataSource {
 public:
  FilesSource(std::vector<std::string> paths, std::vector<std::string> ids, std::vector<int64_t> labels,
              const ModelMetadata& meta, Resize resize)
      : paths_(std::move(paths)), ids_(std::move(ids)), labels_(std::move(labels)), meta_(meta), resize_(resize) {}
  int64_t count() const override { return static_cast<int64_t>(paths_.size()); }
  std::string id(int64_t row) const override { return ids_[row]; }
  bool has_labels() const override { return !labels_.empty(); }
  int64_t label(int64_t row) const override { return labels_.empty() ? -1 : labels_[row]; }
  std::vector<std::string> warnings() const override { return warnings_; }
  void set_warnings(std::vector<std::string> w) { warnings_ = std::move(w); }
  InputItem load(int64_t row, bool) const override { return load_image(paths_[row], meta_, resize_); }

 private:
  std::vector<std::string> paths_, ids_;
  std::vector<int64_t> labels_;
  std::vector<std::string> warnings_;
  ModelMetadata meta_;
  Resize resize_;
};

// Rows of an .npy stack [N, ...], read one at a time from the file.
// A CSV of a tabular model: checked whole when opened (every bad row is an error before any work),
// one pass a chunk at a time keeping each row's offset and label; a row is read again and encoded
// when loaded. id = the id column's value or row-N.
class CsvSource : public DataSource {
 public:
  CsvSource(const std::string& path, const ModelMetadata& meta, int64_t max_rows) : table_(path, meta, max_rows) {}
  int64_t count() const override { return table_.size(); }
  std::string id(int64_t row) const override { return table_.stem(row); }
  int64_t label(int64_t row) const override { return table_.label(row); }
  bool has_labels() const override { return table_.has_labels(); }
  InputItem load(int64_t row, bool) const override { return table_.item(row); }

 private:
  CsvTable table_;
};

class NpySource : public DataSource {
 public:
  NpySource(const std::string& path, const ModelMetadata& meta) : path_(path), meta_(meta) {
    check_regular_file(path, "data file");
    std::ifstream in(path, std::ios::binary);
    std::string head(12 + kMaxNpyHeader, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<size_t>(in.gcount()));
    h_ = parse_npy_header(head, path);
    if (h_.shape.size() < 2 || h_.shape[0] < 1)
      throw Error("'" + path + "' must hold a stack [N, ...] of at least one input; got shape " + shape_list(h_.shape));
    row_shape_.assign(h_.shape.begin() + 1, h_.shape.end());
    check_shape(path, row_shape_, meta);
    row_bytes_ = h_.item * static_cast<size_t>(h_.count / static_cast<size_t>(h_.shape[0]));
    const uintmax_t size = fs::file_size(path);
    if (size < h_.data_offset + row_bytes_ * static_cast<size_t>(h_.shape[0]))
      throw Error("'" + path + "' is truncated: its header declares " + std::to_string(h_.shape[0]) + " rows");
  }
  int64_t count() const override { return h_.shape[0]; }
  std::string id(int64_t row) const override { return std::to_string(row); }
  InputItem load(int64_t row, bool display) const override {
    std::ifstream in(path_, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(h_.data_offset + row_bytes_ * static_cast<size_t>(row)));
    torch::Tensor t = torch::empty(row_shape_, torch::TensorOptions().dtype(h_.dtype));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(row_bytes_));
    if (static_cast<size_t>(in.gcount()) != row_bytes_) throw Error("cannot read row " + std::to_string(row) + " of '" + path_ + "'");
    InputItem item;
    item.source = path_;
    item.tensor = t.to(torch::kFloat);
    check_finite(item.tensor, "'" + path_ + "' row " + std::to_string(row));
    if (display && is_image_like(item.tensor)) item.display = tensor_to_display(item.tensor, meta_);
    return item;
  }

 private:
  std::string path_;
  ModelMetadata meta_;
  NpyHeader h_;
  std::vector<int64_t> row_shape_;
  size_t row_bytes_ = 0;
};

// IDX images [N,H,W] (uint8, plain or gzip), a row at a time through zlib (which reads plain files
// too): a forward seek in a .gz decompresses up to the row, nothing is held but the row.
class IdxSource : public DataSource {
 public:
  IdxSource(const std::string& path, const std::string& labels, const ModelMetadata& meta) : path_(path), meta_(meta) {
    check_regular_file(path, "data file");
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) throw Error("cannot open '" + path + "'");
    unsigned char head[16];
    const int got = gzread(file_, head, 4);
    if (got != 4 || head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != 3) {
      gzclose(file_);
      throw Error("'" + path + "' is not a data set Salient reads: expected a folder, a list file (.txt), an .npy "
                  "stack, an image, or an IDX image file [N,H,W] of unsigned bytes (plain or .gz)");
    }
    if (gzread(file_, head, 12) != 12) {
      gzclose(file_);
      throw Error("'" + path + "' has a truncated IDX header");
    }
    for (int i = 0; i < 3; ++i)
      dims_[i] = (int64_t(head[4 * i]) << 24) | (head[4 * i + 1] << 16) | (head[4 * i + 2] << 8) | head[4 * i + 3];
    pos_ = 16;
    if (dims_[0] < 1 || dims_[1] < 1 || dims_[2] < 1 || dims_[1] * dims_[2] > max_image_pixels()) {
      gzclose(file_);
      throw Error("'" + path + "' declares " + std::to_string(dims_[0]) + " images of " + std::to_string(dims_[1]) +
                  "x" + std::to_string(dims_[2]));
    }
    check_shape(path, std::vector<int64_t>{1, dims_[1], dims_[2]}, meta);
    std::string label_path = labels;
    if (label_path.empty()) {  // t10k-images-idx3-ubyte.gz -> t10k-labels-idx1-ubyte.gz
      std::string name = fs::path(path).filename().string();
      if (auto p = name.find("images-idx3"); p != std::string::npos) {
        name.replace(p, 11, "labels-idx1");
        std::error_code ec;
        if (fs::is_regular_file(fs::path(path).parent_path() / name, ec)) label_path = (fs::path(path).parent_path() / name).string();
      }
    }
    if (!label_path.empty()) {
      torch::Tensor l = read_idx(label_path);
      if (l.dim() != 1 || l.size(0) != dims_[0])
        throw Error("label file '" + label_path + "' holds " + shape_list(l.sizes()) + ", expected [" +
                    std::to_string(dims_[0]) + "] labels for '" + path + "'");
      labels_.assign(l.data_ptr<uint8_t>(), l.data_ptr<uint8_t>() + l.numel());
    }
  }
  ~IdxSource() override { gzclose(file_); }
  int64_t count() const override { return dims_[0]; }
  std::string id(int64_t row) const override { return std::to_string(row); }
  bool has_labels() const override { return !labels_.empty(); }
  int64_t label(int64_t row) const override { return labels_.empty() ? -1 : labels_[row]; }
  InputItem load(int64_t row, bool display) const override {
    const int64_t bytes = dims_[1] * dims_[2];
    const int64_t offset = 16 + row * bytes;
    torch::Tensor raw = torch::empty({dims_[1], dims_[2]}, torch::kUInt8);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (offset != pos_ && gzseek(file_, offset, SEEK_SET) != offset)  // backwards in a .gz: zlib rewinds
        throw Error("cannot seek to image " + std::to_string(row) + " of '" + path_ + "' (truncated?)");
      if (gzread(file_, raw.data_ptr(), static_cast<unsigned>(bytes)) != bytes)
        throw Error("cannot read image " + std::to_string(row) + " of '" + path_ + "' (truncated?)");
      pos_ = offset + bytes;
    }
    // An 8-bit grayscale picture, preprocessed per the metadata.
    torch::Tensor x = raw.to(torch::kFloat).div(255.0).mul(meta_.range_hi - meta_.range_lo).add(meta_.range_lo).unsqueeze(0);
    if (!meta_.mean.empty()) x = (x - meta_.mean[0]) / (meta_.std.empty() ? 1.0 : meta_.std[0]);
    InputItem item;
    item.source = path_;
    item.tensor = x;
    if (display) item.display = tensor_to_display(x, meta_);
    return item;
  }

 private:
  std::string path_;
  ModelMetadata meta_;
  gzFile file_ = nullptr;
  int64_t dims_[3] = {0, 0, 0};
  mutable int64_t pos_ = 0;
  mutable std::mutex mutex_;
  std::vector<int64_t> labels_;
};

}  // namespace

namespace {

std::string sanitised(const std::string& name) {
  std::string out;
  bool gap = false;
  for (unsigned char c : name) {
    if (std::isalnum(c)) {
      if (gap && !out.empty()) out += '_';
      out += static_cast<char>(std::tolower(c));
      gap = false;
    } else {
      gap = true;
    }
  }
  return out;
}

}  // namespace

int64_t class_of_folder(const std::string& name, const ModelMetadata& meta) {
  for (size_t k = 0; k < meta.labels.size(); ++k)
    if (meta.labels[k] == name) return static_cast<int64_t>(k);
  const std::string key = sanitised(name);
  int64_t found = -1;
  for (size_t k = 0; k < meta.labels.size() && !key.empty(); ++k)
    if (sanitised(meta.labels[k]) == key) {
      if (found >= 0) return -1;  // two labels read alike: no guess
      found = static_cast<int64_t>(k);
    }
  if (found >= 0) return found;
  size_t digits = 0;
  while (digits < name.size() && std::isdigit(static_cast<unsigned char>(name[digits]))) ++digits;
  if (digits == 0 || digits >= 10) return -1;
  const int64_t index = std::stoll(name.substr(0, digits));
  const bool known = meta.labels.empty() || index < static_cast<int64_t>(meta.labels.size());
  if (digits == name.size()) return known ? index : -1;
  const char sep = name[digits];
  return known && (sep == '-' || sep == '_' || sep == '.' || sep == ' ') ? index : -1;
}

namespace {

std::shared_ptr<DataSource> open_folder(const std::string& folder, const ModelMetadata& meta, Resize resize) {
  std::vector<std::string> ids;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) throw Error("cannot list folder '" + folder + "': " + ec.message());
    if (it->is_regular_file(ec) && is_image_path(it->path().string()))
      ids.push_back(fs::relative(it->path(), folder).generic_string());
  }
  if (ec) throw Error("cannot list folder '" + folder + "': " + ec.message());
  if (ids.empty()) throw Error("folder '" + folder + "' holds no image (PNG, JPEG, BMP, TIFF, WebP, PGM/PPM)");
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> paths;
  for (const auto& id : ids) paths.push_back((fs::path(folder) / id).string());
  // ImageFolder layout: every image one level down, in a folder named after its class.
  std::vector<int64_t> labels;
  std::set<std::string> class_folders, unmapped;
  bool layout = true;  // every image one level down
  for (const auto& id : ids) {
    const auto slash = id.find('/');
    if (slash == std::string::npos || id.find('/', slash + 1) != std::string::npos) {
      layout = false;
      break;
    }
    const std::string folder = id.substr(0, slash);
    class_folders.insert(folder);
    const int64_t c = class_of_folder(folder, meta);
    if (c < 0) unmapped.insert(folder);
    labels.push_back(c);
  }
  std::vector<std::string> warnings;
  if (!layout || !unmapped.empty()) labels.clear();
  // Class folders of which some map and some do not: the labels are dropped, and said so.
  if (layout && !unmapped.empty() && unmapped.size() < class_folders.size()) {
    std::string names;
    size_t shown = 0;
    for (const auto& f : unmapped)
      if (shown++ < 5) names += (names.empty() ? "'" : ", '") + f + "'";
    if (unmapped.size() > 5) names += " and " + std::to_string(unmapped.size() - 5) + " more";
    warnings.push_back("class folder" + std::string(unmapped.size() > 1 ? "s " : " ") + names +
                       (unmapped.size() > 1 ? " map" : " maps") + " to no label of the model (exactly, sanitised, or as an index prefix such as '0-name'): the data "
                       "set is read without true labels");
  }
  auto source = std::make_shared<FilesSource>(std::move(paths), std::move(ids), std::move(labels), meta, resize);
  source->set_warnings(std::move(warnings));
  return source;
}

std::shared_ptr<DataSource> open_list(const std::string& list, const ModelMetadata& meta, Resize resize) {
  const std::string text = read_file(list, 256u << 20);
  std::vector<std::string> paths, ids;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    fs::path p(line);
    paths.push_back((p.is_absolute() ? p : fs::path(list).parent_path() / p).string());
    ids.push_back(line);
  }
  if (ids.empty()) throw Error("list file '" + list + "' names no input");
  if (std::set<std::string>(ids.begin(), ids.end()).size() != ids.size())
    throw Error("list file '" + list + "' names an input twice: ids must be unique");
  return std::make_shared<FilesSource>(std::move(paths), std::move(ids), std::vector<int64_t>{}, meta, resize);
}

}  // namespace

const std::string& DataSource::stem(int64_t row) const {
  if (stems_.empty()) {
    std::vector<std::string> names;
    names.reserve(static_cast<size_t>(count()));
    for (int64_t r = 0; r < count(); ++r) names.push_back(id(r));
    const_cast<DataSource*>(this)->stems_ = unique_stems(std::move(names));
  }
  return stems_.at(static_cast<size_t>(row));
}

Dataset Dataset::open(const std::string& spec, const ModelMetadata& meta, Resize resize, const std::string& labels,
                      int64_t max_items) {
  Dataset d;
  d.spec_ = spec;
  std::error_code ec;
  if (spec.empty()) throw Error("no data given (--data)");
  check_file_access(spec);
  if (!fs::exists(spec, ec)) throw Error("data '" + spec + "' does not exist");
  const std::string ext = lower_extension(spec);
  if (fs::is_directory(spec, ec)) d.source_ = open_folder(spec, meta, resize);
  else if (ext == ".txt" || ext == ".lst" || ext == ".list") d.source_ = open_list(spec, meta, resize);
  else if (ext == ".npy") d.source_ = std::make_shared<NpySource>(spec, meta);
  else if (ext == ".csv") d.source_ = std::make_shared<CsvSource>(spec, meta, max_items);
  else if (is_image_path(spec))
    d.source_ = std::make_shared<FilesSource>(std::vector<std::string>{spec}, std::vector<std::string>{fs::path(spec).filename().string()},
                                              std::vector<int64_t>{}, meta, resize);
  else d.source_ = std::make_shared<IdxSource>(spec, labels, meta);
  if (!labels.empty() && !d.source_->has_labels())
    throw Error("--labels applies to IDX image files; '" + spec + "' is not one");
  d.rows_.resize(static_cast<size_t>(d.source_->count()));
  for (size_t i = 0; i < d.rows_.size(); ++i) d.rows_[i] = static_cast<int64_t>(i);
  return d;
}

DataItem Dataset::get(int64_t i, bool display) const {
  const int64_t row = rows_.at(static_cast<size_t>(i));
  DataItem item;
  item.id = source_->id(row);
  item.label = source_->label(row);
  item.input = source_->load(row, display);
  item.input.stem = source_->stem(row);
  ++g_decoded;
  return item;
}

Dataset Dataset::limit(int64_t n) const {
  Dataset d = *this;
  if (n >= 0 && n < size()) d.rows_.resize(static_cast<size_t>(n));
  return d;
}

Dataset Dataset::shard(int64_t k, int64_t n) const {
  if (n < 1 || k < 0 || k >= n) throw Error("shard " + std::to_string(k) + "/" + std::to_string(n) + ": expected 0 <= K < N");
  Dataset d = *this;
  d.rows_.clear();
  for (size_t i = static_cast<size_t>(k); i < rows_.size(); i += static_cast<size_t>(n)) d.rows_.push_back(rows_[i]);
  return d;
}

int64_t decoded_count() { return g_decoded.load(); }

}  // namespace salient
