#include "salient/tabular.hpp"

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include <opencv2/imgproc.hpp>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"

namespace salient {

namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string path_safe(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  if (out.empty() || out == "." || out == "..") out = "_" + out;
  return out;
}

}  // namespace

nlohmann::json feature_values(const ModelMetadata& meta, const torch::Tensor& x) {
  int64_t width = 0;
  for (const auto& f : meta.features) width += f.width();
  if (meta.features.empty() || x.numel() != width) return nlohmann::json::array();
  const torch::Tensor xs = x.flatten().to(torch::kCPU, torch::kDouble).contiguous();
  const auto xa = xs.accessor<double, 1>();
  nlohmann::json out = nlohmann::json::array();
  int64_t at = 0;
  for (const auto& f : meta.features) {
    nlohmann::json value;
    if (f.type == "categorical") {
      int64_t best = 0;
      for (int64_t j = 1; j < f.width(); ++j)
        if (xa[at + j] > xa[at + best]) best = j;
      value = f.values[static_cast<size_t>(best)];
    } else {
      char text[32];  // as the CSV wrote it: the float32 round trip's noise dropped
      std::snprintf(text, sizeof text, "%.7g", xa[at] * f.std + f.mean);
      value = std::stod(text);
    }
    out.push_back({{"name", f.name}, {"value", value}});
    at += f.width();
  }
  return out;
}

nlohmann::json feature_attributions(const ModelMetadata& meta, const torch::Tensor& x, const torch::Tensor& map) {
  nlohmann::json rows = feature_values(meta, x);
  if (rows.empty() || map.numel() != x.numel()) return nlohmann::json::array();
  const torch::Tensor ms = map.flatten().to(torch::kCPU, torch::kDouble).contiguous();
  int64_t at = 0;
  for (size_t k = 0; k < meta.features.size(); ++k) {  // a one-hot group's attributions summed back to its column
    const int64_t w = meta.features[k].width();
    rows[k]["attribution"] = ms.slice(0, at, at + w).sum().item<double>();
    at += w;
  }
  std::stable_sort(rows.begin(), rows.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
    return std::abs(a["attribution"].get<double>()) > std::abs(b["attribution"].get<double>());
  });
  return rows;
}

namespace {

struct Bar {
  std::string label;
  double value;
};

// The `top` largest |attributions| as "name = value" bars, the rest summed as "n others".
std::vector<Bar> top_bars(const nlohmann::json& features, int top) {
  std::vector<Bar> bars;
  double rest = 0;
  for (size_t i = 0; i < features.size(); ++i) {
    const double a = features[i]["attribution"].get<double>();
    if (static_cast<int>(i) < top) {
      const nlohmann::json v = features[i].value("value", nlohmann::json());
      char text[48] = "";
      if (v.is_number()) std::snprintf(text, sizeof text, " = %.4g", v.get<double>());
      const std::string shown = v.is_number() ? std::string(text) : v.is_string() ? " = " + v.get<std::string>() : "";
      bars.push_back({features[i]["name"].get<std::string>() + shown, a});
    } else {
      rest += a;
    }
  }
  if (features.size() > static_cast<size_t>(top))
    bars.push_back({std::to_string(features.size() - static_cast<size_t>(top)) + " others", rest});
  return bars;
}

// `label` shortened with "..." to fit `width` pixels.
std::string fit(std::string label, int width, double scale) {
  int base = 0;
  while (label.size() > 4 && cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &base).width > width)
    label = label.substr(0, label.size() - 4) + "...";
  return label;
}

const cv::Scalar kPositive(60, 60, 210), kNegative(200, 120, 40);  // BGR: red, blue (the heatmaps' signed colours)

}  // namespace

cv::Mat feature_waterfall(const nlohmann::json& features, double base_value, double fx, const std::string& base_name,
                          const std::string& title, int top) {
  std::vector<Bar> bars = top_bars(features, top);
  double total = 0;
  for (const auto& b : bars) total += b.value;
  // What the attributions leave unexplained (an approximate method's gap): shown, never hidden.
  const double gap = fx - base_value - total;
  if (std::abs(gap) > 1e-3 * std::max({std::abs(fx), std::abs(base_value), std::abs(total), 1e-12})) bars.push_back({"not explained (gap)", gap});
  // Rows top to bottom, largest first; the running total climbs from the base value at the bottom.
  std::vector<double> from(bars.size());
  double at = base_value, lo = std::min(base_value, fx), hi = std::max(base_value, fx);
  for (size_t k = bars.size(); k-- > 0;) {
    from[k] = at;
    at += bars[k].value;
    lo = std::min({lo, from[k], at});
    hi = std::max({hi, from[k], at});
  }
  if (hi - lo < 1e-12) hi = lo + 1;
  const int row = 22, label_w = 300, plot = 400, pad = 10, top_y = 48;
  const int w = label_w + plot + 2 * pad + 60, h = top_y + row * static_cast<int>(bars.size()) + 40;
  cv::Mat img(h, w, CV_8UC3, cv::Scalar(255, 255, 255));
  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  const int x0 = pad + label_w + 20;
  auto px = [&](double v) { return x0 + static_cast<int>(std::lround((v - lo) / (hi - lo) * plot)); };
  cv::putText(img, title, {pad, 20}, font, 0.5, cv::Scalar(20, 20, 20), 1, cv::LINE_AA);
  char text[96];
  std::snprintf(text, sizeof text, "f(x) = %.4g", fx);
  cv::putText(img, text, {std::min(px(fx), w - 110), 40}, font, 0.4, cv::Scalar(20, 20, 20), 1, cv::LINE_AA);
  const int bottom = top_y + row * static_cast<int>(bars.size());
  for (int y = top_y - 4; y < bottom; y += 6) {  // dashed guides at f(x) and at the base value
    cv::line(img, {px(fx), y}, {px(fx), y + 3}, cv::Scalar(150, 150, 150), 1);
    cv::line(img, {px(base_value), y}, {px(base_value), y + 3}, cv::Scalar(150, 150, 150), 1);
  }
  std::snprintf(text, sizeof text, "%s = %.4g", base_name.c_str(), base_value);
  cv::putText(img, text, {std::clamp(px(base_value) - 60, pad, w - 200), bottom + 18}, font, 0.4, cv::Scalar(20, 20, 20), 1, cv::LINE_AA);
  for (size_t i = 0; i < bars.size(); ++i) {
    const int y = top_y + row * static_cast<int>(i);
    const double a = from[i], b = from[i] + bars[i].value;
    const cv::Scalar colour = bars[i].value >= 0 ? kPositive : kNegative;
    cv::rectangle(img, {std::min(px(a), px(b)), y + 3}, {std::max(px(a), px(b)) + 1, y + row - 4}, colour, cv::FILLED);
    cv::putText(img, fit(bars[i].label, label_w - 8, 0.4), {pad, y + row - 7}, font, 0.4, cv::Scalar(30, 30, 30), 1, cv::LINE_AA);
    std::snprintf(text, sizeof text, "%+.3g", bars[i].value);
    cv::putText(img, text, {std::min(std::max(px(a), px(b)) + 4, w - 50), y + row - 7}, font, 0.35, cv::Scalar(60, 60, 60), 1, cv::LINE_AA);
  }
  return img;
}

cv::Mat beeswarm(const std::vector<SwarmColumn>& columns, const std::string& title) {
  double lo = 0, hi = 0;
  for (const auto& c : columns) {
    lo = std::min(lo, c.attribution.min().item<double>());
    hi = std::max(hi, c.attribution.max().item<double>());
  }
  if (hi - lo < 1e-12) hi = lo + 1;
  const int row = 34, label_w = 220, plot = 520, pad = 10, top_y = 36;
  const int w = label_w + plot + 2 * pad + 20, h = top_y + row * static_cast<int>(columns.size()) + 44;
  cv::Mat img(h, w, CV_8UC3, cv::Scalar(255, 255, 255));
  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  const int x0 = pad + label_w;
  auto px = [&](double v) { return x0 + static_cast<int>(std::lround((v - lo) / (hi - lo) * plot)); };
  cv::putText(img, fit(title, w - 2 * pad, 0.45), {pad, 20}, font, 0.45, cv::Scalar(20, 20, 20), 1, cv::LINE_AA);
  const int bottom = top_y + row * static_cast<int>(columns.size());
  cv::line(img, {px(0), top_y}, {px(0), bottom}, cv::Scalar(150, 150, 150), 1);
  char text[64];
  for (double v : {lo, 0.0, hi}) {
    std::snprintf(text, sizeof text, "%.3g", v);
    cv::putText(img, text, {std::clamp(px(v) - 15, pad, w - 60), bottom + 16}, font, 0.35, cv::Scalar(60, 60, 60), 1, cv::LINE_AA);
  }
  cv::putText(img, "attribution", {x0 + plot / 2 - 40, bottom + 34}, font, 0.4, cv::Scalar(40, 40, 40), 1, cv::LINE_AA);
  for (size_t r = 0; r < columns.size(); ++r) {
    const SwarmColumn& c = columns[r];
    const int mid = top_y + row * static_cast<int>(r) + row / 2;
    cv::putText(img, fit(c.name, label_w - 8, 0.4), {pad, mid + 4}, font, 0.4, cv::Scalar(30, 30, 30), 1, cv::LINE_AA);
    const torch::Tensor a = c.attribution.to(torch::kDouble).contiguous(), v = c.value.to(torch::kDouble).contiguous();
    const torch::Tensor q = torch::quantile(v, torch::tensor({0.05, 0.95}, torch::kDouble));
    const double vlo = q[0].item<double>(), vhi = q[1].item<double>();
    std::map<int, int> crowd;  // points already drawn per 3-pixel bin: the next one goes above or below
    for (int64_t i = 0; i < a.numel(); ++i) {
      const int x = px(a[i].item<double>());
      const int k = crowd[x / 3]++;
      const int dy = std::min(row / 2 - 3, 2 * ((k + 1) / 2)) * (k % 2 ? 1 : -1);
      const double t = vhi > vlo ? std::clamp((v[i].item<double>() - vlo) / (vhi - vlo), 0.0, 1.0) : 0.5;
      const cv::Scalar colour(kNegative[0] + t * (kPositive[0] - kNegative[0]), kNegative[1] + t * (kPositive[1] - kNegative[1]),
                              kNegative[2] + t * (kPositive[2] - kNegative[2]));
      cv::circle(img, {x, mid + dy}, 2, colour, cv::FILLED, cv::LINE_AA);
    }
  }
  return img;
}

cv::Mat feature_bar_chart(const nlohmann::json& features, const std::string& title, int top) {
  const std::vector<Bar> bars = top_bars(features, top);
  double most = 1e-300;
  for (const auto& b : bars) most = std::max(most, std::abs(b.value));
  const int row = 22, label_w = 300, half = 180, pad = 10;
  const int w = label_w + 2 * half + 2 * pad + 50, h = 36 + row * static_cast<int>(bars.size()) + pad;
  cv::Mat img(h, w, CV_8UC3, cv::Scalar(255, 255, 255));
  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  cv::putText(img, title, {pad, 20}, font, 0.5, cv::Scalar(20, 20, 20), 1, cv::LINE_AA);
  const int zero = pad + label_w + half;
  cv::line(img, {zero, 28}, {zero, h - pad}, cv::Scalar(120, 120, 120), 1);
  for (size_t i = 0; i < bars.size(); ++i) {
    const int y = 30 + row * static_cast<int>(i);
    const int len = static_cast<int>(std::lround(half * std::abs(bars[i].value) / most));
    const cv::Scalar colour = bars[i].value >= 0 ? kPositive : kNegative;
    if (bars[i].value >= 0) cv::rectangle(img, {zero, y + 3}, {zero + len, y + row - 4}, colour, cv::FILLED);
    else cv::rectangle(img, {zero - len, y + 3}, {zero, y + row - 4}, colour, cv::FILLED);
    int base = 0;
    cv::putText(img, fit(bars[i].label, label_w - 8, 0.4), {pad, y + row - 7}, font, 0.4, cv::Scalar(30, 30, 30), 1, cv::LINE_AA);
    char number[32];
    std::snprintf(number, sizeof number, "%+.3g", bars[i].value);
    const int tx = bars[i].value >= 0 ? zero + len + 4 : zero - len - 4 - cv::getTextSize(number, font, 0.35, 1, &base).width;
    cv::putText(img, number, {std::clamp(tx, pad + label_w, w - 50), y + row - 7}, font, 0.35, cv::Scalar(60, 60, 60), 1, cv::LINE_AA);
  }
  return img;
}

namespace {

// A CSV field that is a finite number, whole (no trailing text).
bool finite_number(const std::string& v, double& x) {
  size_t used = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    return false;
  }
  return !v.empty() && used == v.size() && std::isfinite(x);
}

}  // namespace

namespace {

constexpr size_t kMaxCsvField = size_t{1} << 20;  // 1 MiB: no table cell is longer

// At most 80 characters of a field, for an error message.
std::string quote_field(const std::string& v) { return "'" + (v.size() > 80 ? v.substr(0, 80) + "…" : v) + "'"; }

// CSV records read one at a time from a file through a 64 KiB buffer: fields split on commas,
// double-quoted fields with "" for a quote, CRLF or LF, blank lines skipped, a leading byte-order
// mark dropped. record_start() is the byte offset of the record next() returned last.
class CsvReader {
 public:
  // `chunk`: bytes read at a time (a row read again reads about its own length).
  explicit CsvReader(const std::string& path, size_t chunk = size_t{1} << 16) : path_(path), buf_(chunk) {
    check_regular_file(path, "CSV file");
    auto file = std::make_unique<std::ifstream>(path, std::ios::binary);
    if (!*file) throw Error("cannot read '" + path + "'");
    in_ = std::move(file);
    skip_bom();
  }
  // A CSV's text in memory, `name` for errors.
  CsvReader(const std::string& text, const std::string& name) : path_(name), in_(std::make_unique<std::istringstream>(text)), buf_(size_t{1} << 16) {
    skip_bom();
  }
  void seek(uint64_t offset) {
    in_->clear();
    in_->seekg(static_cast<std::streamoff>(offset));
    base_ = offset;
    pos_ = len_ = 0;
  }
  uint64_t record_start() const { return start_; }
  uint64_t end_of_record() const { return base_ + pos_; }  // where the next record (or the file's end) begins
  bool next(std::vector<std::string>& rec) {
    rec.clear();
    std::string field;
    bool quoted = false, in_quotes = false, any = false;
    start_ = base_ + pos_;
    auto end_field = [&] {
      rec.push_back(std::move(field));
      field.clear();
      quoted = false;
    };
    for (;;) {
      int c = get();
      if (c < 0) {
        if (in_quotes) throw Error("'" + path_ + "': a quoted field is not closed");
        if (!any) return false;
        end_field();
        if (rec.size() == 1 && rec[0].empty()) return false;
        return true;
      }
      any = true;
      if (in_quotes) {
        if (c == '"' && peek() == '"') {
          field += '"';
          get();
        } else if (c == '"') {
          in_quotes = false;
        } else {
          field += static_cast<char>(c);
        }
      } else if (c == '"' && field.empty() && !quoted) {
        in_quotes = quoted = true;
      } else if (c == ',') {
        end_field();
      } else if (c == '\n' || c == '\r') {
        if (c == '\r' && peek() == '\n') get();
        end_field();
        if (rec.size() == 1 && rec[0].empty()) {  // a blank line is no record
          rec.clear();
          any = false;
          start_ = base_ + pos_;
          continue;
        }
        return true;
      } else {
        field += static_cast<char>(c);
      }
      if (field.size() > kMaxCsvField)
        throw Error("'" + path_ + "': a field at byte " + std::to_string(base_ + pos_ - field.size()) +
                    " is longer than 1 MiB (not a table cell)");
    }
  }

 private:
  int get() {
    if (pos_ == len_ && !fill()) return -1;
    return static_cast<unsigned char>(buf_[pos_++]);
  }
  int peek() {
    if (pos_ == len_ && !fill()) return -1;
    return static_cast<unsigned char>(buf_[pos_]);
  }
  bool fill() {
    base_ += len_;
    pos_ = 0;
    in_->read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    len_ = static_cast<size_t>(in_->gcount());
    return len_ > 0;
  }
  void skip_bom() {  // a byte-order mark (spreadsheets write one) is no part of the header
    char bom[3] = {0, 0, 0};
    in_->read(bom, 3);
    const bool has_bom = in_->gcount() == 3 && std::string(bom, 3) == "\xEF\xBB\xBF";
    seek(has_bom ? 3 : 0);
  }
  std::string path_;
  std::unique_ptr<std::istream> in_;
  std::vector<char> buf_;
  uint64_t base_ = 0, start_ = 0;  // the file offset of buf_[0]; of the last record
  size_t pos_ = 0, len_ = 0;
};


}  // namespace

struct CsvTable::Impl {
  std::string path;
  ModelMetadata meta;
  size_t header_size = 0;
  std::vector<Feature> features;
  std::vector<size_t> cols;
  int64_t id_col = -1, label_col = -1, width = 0;
  std::vector<uint64_t> offsets;  // per row, its record's byte offset (and the end of the last)
  std::vector<std::string> stems;  // per row, its id as a file name
  std::vector<int64_t> labels;
  std::vector<double> values;
  bool labelled = false;

  struct Row {
    InputItem item;
    int64_t label = -1;
    double value = 0;
  };

  // One record checked and encoded (r: 1 = the first row after the header, as errors count).
  Row decode(const std::vector<std::string>& rec, size_t r) const {
    const std::string where = "'" + path + "' row " + std::to_string(r);
    if (rec.size() != header_size)
      throw Error(where + " has " + std::to_string(rec.size()) + " fields; the header has " + std::to_string(header_size));
    std::vector<float> v;
    v.reserve(static_cast<size_t>(width));
    for (size_t k = 0; k < features.size(); ++k) {
      const Feature& f = features[k];
      const std::string x = trim(rec[cols[k]]);
      if (f.type == "categorical") {
        auto it = std::find(f.values.begin(), f.values.end(), x);
        if (it == f.values.end()) throw Error(where + ", column '" + f.name + "': " + quote_field(x) + " is not one of its categories");
        for (size_t j = 0; j < f.values.size(); ++j) v.push_back(f.values.begin() + static_cast<std::ptrdiff_t>(j) == it ? 1.f : 0.f);
        continue;
      }
      double d = 0;
      if (!finite_number(x, d)) throw Error(where + ", column '" + f.name + "': " + quote_field(x) + " is not a finite number");
      v.push_back(static_cast<float>((d - f.mean) / f.std));
    }
    Row row;
    row.item.source = path;
    row.item.stem = id_col >= 0 ? path_safe(trim(rec[static_cast<size_t>(id_col)])) : "row-" + std::to_string(r);
    row.item.tensor = torch::tensor(v, torch::kFloat);
    if (label_col >= 0 && meta.regression()) {  // a regression's label is the true value, a number
      const std::string x = trim(rec[static_cast<size_t>(label_col)]);
      if (!finite_number(x, row.value))
        throw Error(where + ", column '" + meta.label_column + "': " + quote_field(x) + " is not a finite number (the model is a regression)");
      row.label = 0;
    } else if (label_col >= 0) {
      const std::string x = trim(rec[static_cast<size_t>(label_col)]);
      auto it = std::find(meta.labels.begin(), meta.labels.end(), x);
      if (it != meta.labels.end()) {
        row.label = it - meta.labels.begin();
      } else {
        size_t used = 0;
        try {
          row.label = std::stoll(x, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (x.empty() || used != x.size() || row.label < 0 ||
            (!meta.labels.empty() && row.label >= static_cast<int64_t>(meta.labels.size())))
          throw Error(where + ", column '" + meta.label_column + "': " + quote_field(x) + " is not a label of the model nor a class index");
      }
    }
    return row;
  }

  // Every row once, checked; `keep` sees each decoded row.
  void scan(int64_t max_rows, const std::function<void(Row&&)>& keep) {
    CsvReader reader(path);
    std::vector<std::string> rec;
    if (!reader.next(rec)) throw Error("'" + path + "' is empty: a CSV needs a header row");
    header_size = rec.size();
    std::map<std::string, size_t> column;
    for (size_t c = 0; c < rec.size(); ++c)
      if (!column.emplace(trim(rec[c]), c).second)
        throw Error("'" + path + "': column " + quote_field(trim(rec[c])) + " appears twice in the header");
    auto find = [&](const std::string& name, const char* what) -> int64_t {
      if (name.empty()) return -1;
      auto it = column.find(name);
      if (it == column.end()) throw Error("'" + path + "' has no column '" + name + "' (the metadata's " + what + ")");
      return static_cast<int64_t>(it->second);
    };
    id_col = find(meta.id_column, "id_column");
    label_col = find(meta.label_column, "label_column");
    // The model's columns: the metadata's features, else every column but the id and the label.
    features = meta.features;
    if (features.empty())
      for (size_t c = 0; c < rec.size(); ++c)
        if (static_cast<int64_t>(c) != id_col && static_cast<int64_t>(c) != label_col) {
          Feature f;
          f.name = trim(rec[c]);
          features.push_back(std::move(f));
        }
    for (const auto& f : features) cols.push_back(static_cast<size_t>(find(f.name, "features")));
    for (const auto& f : features) width += f.width();
    if (!meta.input_shape.empty() && meta.input_shape != std::vector<int64_t>{width})
      throw Error("'" + path + "': its " + std::to_string(features.size()) + " feature columns encode to " + std::to_string(width) +
                  " values; the model's input_shape is not [" + std::to_string(width) + "]");
    // Ids name output folders, so they must be unique: each row's id hashed, collisions checked.
    std::vector<std::pair<uint64_t, size_t>> ids;
    while ((max_rows < 0 || static_cast<int64_t>(offsets.size()) < max_rows) && reader.next(rec)) {
      const size_t r = offsets.size() + 1;
      Row row = decode(rec, r);
      offsets.push_back(reader.record_start());
      stems.push_back(row.item.stem);
      labels.push_back(row.label);
      labelled = labelled || row.label >= 0;
      if (label_col >= 0 && meta.regression()) values.push_back(row.value);
      if (keep) keep(std::move(row));
    }
    if (offsets.empty()) throw Error("'" + path + "' has a header and no rows");
    offsets.push_back(reader.end_of_record());
    if (id_col < 0) return;
    std::vector<size_t> order(stems.size());  // rows by id: a repeated id is two neighbours
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return stems[a] < stems[b]; });
    for (size_t k = 1; k < order.size(); ++k)
      if (stems[order[k]] == stems[order[k - 1]]) {
        const size_t a = order[k - 1], b = order[k];
        throw Error("'" + path + "' row " + std::to_string(b + 1) + ", column '" + meta.id_column + "': id " +
                    quote_field(trim(record(b)[static_cast<size_t>(id_col)])) + " is also row " + std::to_string(a + 1) +
                    "'s (as a file name)");
      }
  }

  std::vector<std::string> record(size_t row) const {
    const uint64_t length = offsets.at(row + 1) - offsets.at(row);
    CsvReader reader(path, static_cast<size_t>(std::clamp<uint64_t>(length + 2, 64, uint64_t{1} << 16)));
    reader.seek(offsets.at(row));
    std::vector<std::string> rec;
    if (!reader.next(rec)) throw Error("'" + path + "' changed while it was read (row " + std::to_string(row + 1) + ")");
    return rec;
  }
};

CsvTable::CsvTable(const std::string& path, const ModelMetadata& meta, int64_t max_rows) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->meta = meta;
  impl_->scan(max_rows, {});
}
CsvTable::~CsvTable() = default;
CsvTable::CsvTable(CsvTable&&) noexcept = default;
int64_t CsvTable::size() const { return static_cast<int64_t>(impl_->stems.size()); }
const std::string& CsvTable::stem(int64_t row) const { return impl_->stems.at(static_cast<size_t>(row)); }
int64_t CsvTable::label(int64_t row) const { return impl_->labels.at(static_cast<size_t>(row)); }
bool CsvTable::has_labels() const { return impl_->labelled; }
bool CsvTable::regression_values() const { return !impl_->values.empty(); }
double CsvTable::value(int64_t row) const { return impl_->values.at(static_cast<size_t>(row)); }
InputItem CsvTable::item(int64_t row) const {
  const auto r = static_cast<size_t>(row);
  return impl_->decode(impl_->record(r), r + 1).item;
}

std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& name) {
  CsvReader reader(text, name);
  std::vector<std::vector<std::string>> records;
  for (std::vector<std::string> rec; reader.next(rec);) records.push_back(rec);
  return records;
}

TabularRows read_csv_rows(const std::string& path, const ModelMetadata& meta) {
  CsvTable::Impl t;
  t.path = path;
  t.meta = meta;
  TabularRows out;
  t.scan(-1, [&](CsvTable::Impl::Row&& row) { out.items.push_back(std::move(row.item)); });
  out.labels = t.labels;
  out.values = t.values;
  return out;
}

}  // namespace salient
