#include "salient/tabular.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include <opencv2/imgproc.hpp>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"

namespace salient {

std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& name) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, in_quotes = false, any = false;
  auto end_field = [&] {
    row.push_back(field);
    field.clear();
    quoted = false;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    any = true;
    if (in_quotes) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        in_quotes = false;
      } else {
        field += c;
      }
    } else if (c == '"' && field.empty() && !quoted) {
      in_quotes = quoted = true;
    } else if (c == ',') {
      end_field();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_field();
      rows.push_back(std::move(row));
      row.clear();
      any = false;
    } else {
      field += c;
    }
  }
  if (in_quotes) throw Error("'" + name + "': a quoted field is not closed");
  if (any) {
    end_field();
    rows.push_back(std::move(row));
  }
  // Blank lines are no rows.
  std::vector<std::vector<std::string>> kept;
  for (auto& r : rows)
    if (!(r.size() == 1 && r[0].empty())) kept.push_back(std::move(r));
  return kept;
}

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

TabularRows read_csv_rows(const std::string& path, const ModelMetadata& meta) {
  std::string text = read_file(path, int64_t{1} << 30);
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // a byte-order mark (spreadsheets write one) is no part of the header
  const auto records = parse_csv(text, path);
  if (records.empty()) throw Error("'" + path + "' is empty: a CSV needs a header row");
  const auto& header = records[0];
  std::map<std::string, size_t> column;
  for (size_t c = 0; c < header.size(); ++c)
    if (!column.emplace(trim(header[c]), c).second) throw Error("'" + path + "': column '" + trim(header[c]) + "' appears twice in the header");
  auto find = [&](const std::string& name, const char* what) -> int64_t {
    if (name.empty()) return -1;
    auto it = column.find(name);
    if (it == column.end()) throw Error("'" + path + "' has no column '" + name + "' (the metadata's " + what + ")");
    return static_cast<int64_t>(it->second);
  };
  const int64_t id_col = find(meta.id_column, "id_column"), label_col = find(meta.label_column, "label_column");
  // The model's columns: the metadata's features, else every column but the id and the label.
  std::vector<Feature> features = meta.features;
  if (features.empty())
    for (size_t c = 0; c < header.size(); ++c)
      if (static_cast<int64_t>(c) != id_col && static_cast<int64_t>(c) != label_col) {
        Feature f;
        f.name = trim(header[c]);
        features.push_back(std::move(f));
      }
  std::vector<size_t> cols;
  for (const auto& f : features) cols.push_back(static_cast<size_t>(find(f.name, "features")));
  int64_t width = 0;
  for (const auto& f : features) width += f.width();
  if (!meta.input_shape.empty() && meta.input_shape != std::vector<int64_t>{width})
    throw Error("'" + path + "': its " + std::to_string(features.size()) + " feature columns encode to " + std::to_string(width) +
                " values; the model's input_shape is not [" + std::to_string(width) + "]");
  if (records.size() == 1) throw Error("'" + path + "' has a header and no rows");
  TabularRows out;
  std::map<std::string, size_t> seen;  // id -> row: outputs are named by it, so it must be unique
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& rec = records[r];
    const std::string where = "'" + path + "' row " + std::to_string(r);
    if (rec.size() != header.size())
      throw Error(where + " has " + std::to_string(rec.size()) + " fields; the header has " + std::to_string(header.size()));
    std::vector<float> values;
    values.reserve(static_cast<size_t>(width));
    for (size_t k = 0; k < features.size(); ++k) {
      const Feature& f = features[k];
      const std::string v = trim(rec[cols[k]]);
      if (f.type == "categorical") {
        auto it = std::find(f.values.begin(), f.values.end(), v);
        if (it == f.values.end()) throw Error(where + ", column '" + f.name + "': '" + v + "' is not one of its categories");
        for (size_t j = 0; j < f.values.size(); ++j) values.push_back(f.values.begin() + static_cast<std::ptrdiff_t>(j) == it ? 1.f : 0.f);
        continue;
      }
      double x = 0;
      if (!finite_number(v, x)) throw Error(where + ", column '" + f.name + "': '" + v + "' is not a finite number");
      values.push_back(static_cast<float>((x - f.mean) / f.std));
    }
    InputItem item;
    item.source = path;
    item.stem = id_col >= 0 ? path_safe(trim(rec[static_cast<size_t>(id_col)])) : "row-" + std::to_string(r);
    if (auto [it, fresh] = seen.emplace(item.stem, r); !fresh)
      throw Error(where + ", column '" + meta.id_column + "': id '" + trim(rec[static_cast<size_t>(id_col)]) + "' is also row " +
                  std::to_string(it->second) + "'s (as a file name)");
    item.tensor = torch::tensor(values, torch::kFloat);
    out.items.push_back(std::move(item));
    int64_t label = -1;
    if (label_col >= 0 && meta.regression()) {  // a regression's label is the true value, a number
      const std::string v = trim(rec[static_cast<size_t>(label_col)]);
      double value = 0;
      if (!finite_number(v, value))
        throw Error(where + ", column '" + meta.label_column + "': '" + v.substr(0, 80) + "' is not a finite number (the model is a regression)");
      out.values.push_back(value);
      label = 0;
    } else if (label_col >= 0) {
      const std::string v = trim(rec[static_cast<size_t>(label_col)]);
      auto it = std::find(meta.labels.begin(), meta.labels.end(), v);
      if (it != meta.labels.end()) {
        label = it - meta.labels.begin();
      } else {
        size_t used = 0;
        try {
          label = std::stoll(v, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (v.empty() || used != v.size() || label < 0 || (!meta.labels.empty() && label >= static_cast<int64_t>(meta.labels.size())))
          throw Error(where + ", column '" + meta.label_column + "': '" + v + "' is not a label of the model nor a class index");
      }
    }
    out.labels.push_back(label);
  }
  return out;
}

}  // namespace salient
