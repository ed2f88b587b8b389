#pragma once
// Tabular inputs: CSV rows with a header, encoded as the metadata's features say (numeric columns
// standardised, categorical ones one-hot). Columns the model does not take (the id, the label, any
// other) are skipped; the label column, when named, gives each row's true class.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <torch/script.h>

#include "salient/image.hpp"
#include "salient/metadata.hpp"

namespace salient {

struct TabularRows {
  std::vector<InputItem> items;  // one a row; stem = the id column's value (made path-safe) or row-N
  std::vector<int64_t> labels;   // per row: the label column's class index (-1 without a label column;
                                 // 0 for a regression, whose true values are in `values`)
  std::vector<double> values;    // a regression's label column, per row (empty without one)
};

// Reads `path`. A ragged row, a non-number in a numeric column, an unknown category, a missing
// column or an unknown label is a salient::Error naming the row (1 = the first after the header)
// and the column. Without metadata features every column but the id and label ones is numeric and
// taken as it is.
TabularRows read_csv_rows(const std::string& path, const ModelMetadata& meta);

// A CSV read as a data set: one pass over the file when opened, a chunk at a time, checks every
// row as read_csv_rows does (ids unique) and keeps only each row's byte offset, label and value;
// item(r) reads and encodes row r again. Memory: O(rows) words, never the file (`max_rows` >= 0
// stops after that many rows: `batch --limit 5` on a huge file reads 5). A field over 1 MiB is an
// error, and errors quote at most 80 characters of a field.
class CsvTable {
 public:
  CsvTable(const std::string& path, const ModelMetadata& meta, int64_t max_rows = -1);
  ~CsvTable();
  CsvTable(CsvTable&&) noexcept;
  int64_t size() const;
  InputItem item(int64_t row) const;         // row 0 = the first after the header
  const std::string& stem(int64_t row) const;  // its id as a file name (kept: ids name outputs)
  int64_t label(int64_t row) const;          // as TabularRows::labels
  bool has_labels() const;
  bool regression_values() const;            // value(row) holds the label column's true values
  double value(int64_t row) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  friend TabularRows read_csv_rows(const std::string& path, const ModelMetadata& meta);
};

// One encoded row [width] as the user's columns, in order: [{name, value}] (a number as the CSV
// wrote it, a categorical column's category). Empty when the metadata has no features or the widths differ.
nlohmann::json feature_values(const ModelMetadata& meta, const torch::Tensor& x);

// A tabular map as the user's columns: [{name, value (as in the CSV), attribution}], one-hot
// groups summed back to their column, sorted by |attribution| (largest first). `x` and `map` are
// one encoded row [width]. Empty when the metadata has no features or the widths differ.
nlohmann::json feature_attributions(const ModelMetadata& meta, const torch::Tensor& x, const torch::Tensor& map);

// A horizontal bar chart of feature_attributions()' output: the `top` largest |attributions| with
// their names and values (positive red, negative blue, as the image heatmaps' signed colours), the
// rest summed as "n others". 8-bit BGR.
cv::Mat feature_bar_chart(const nlohmann::json& features, const std::string& title, int top = 12);

// A waterfall (SHAP's): from the base value (f(baseline), or E[f] over a background set) at the
// bottom to f(x) at the top, each of the `top` largest attributions (then "n others") a step, red
// up, blue down; a gap between f(x) and base + sum (an approximate method's) is a step of its own.
cv::Mat feature_waterfall(const nlohmann::json& features, double base_value, double fx, const std::string& base_name,
                          const std::string& title, int top = 12);

// One column of a beeswarm: its name, every row's attribution [N] and value [N] (double).
struct SwarmColumn {
  std::string name;
  torch::Tensor attribution, value;
};

// A beeswarm (SHAP's summary plot): a row per column, a point per data row at its attribution,
// stacked where they crowd, coloured from blue (the column's low values: 5th percentile) to red
// (high: 95th). 8-bit BGR.
cv::Mat beeswarm(const std::vector<SwarmColumn>& columns, const std::string& title);

// The CSV's records: fields split on commas, double-quoted fields with "" for a quote, CRLF or LF,
// blank lines skipped, a leading byte-order mark dropped (the reader CSV data sets stream through).
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& name);

}  // namespace salient
