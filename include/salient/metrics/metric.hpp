#pragma once
// One interface for the evaluation metrics, registered by name like methods: `evaluate` has no list
// of its own. Adding a metric is its file (a Metric and a `register_<name>` function) and one line
// in src/metrics/registry.cpp.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "salient/method.hpp"
#include "salient/metrics/metrics.hpp"
#include "salient/model.hpp"

namespace salient::metrics {

// What a metric sees for one input and one method.
struct MetricContext {
  Model& model;
  Method& method;           // for metrics that re-explain (sensitivity, randomisation)
  const torch::Tensor& x;   // one input, no batch dimension
  int64_t target;
  const torch::Tensor& map; // the method's map of x
  Canvas canvas = Canvas::Black;
  int steps = 20;
  uint64_t seed = 0;
};

class Metric {
 public:
  virtual ~Metric() = default;
  virtual std::string name() const = 0;
  // Results as a JSON object, key -> a number (a scalar the report averages), a curve object
  // {"auc", "curve", "fraction"} (the report averages "<key>_auc" and the curve), or an array of
  // per-layer {"layer", "spearman", "ssim"} (randomisation). An empty object: not applicable.
  virtual nlohmann::json compute(const MetricContext& c) const = 0;
  // The same for a random feature order, the baseline every method should beat (null: none).
  virtual nlohmann::json random_order(const MetricContext& c, const torch::Tensor& order) const { return nullptr; }
  // The report's columns this metric fills, with the direction that is better.
  struct Column {
    std::string key, better;  // "lower", "higher", "context"
  };
  virtual std::vector<Column> columns() const = 0;
};

class MetricRegistry {
 public:
  static const MetricRegistry& builtin();
  void add(std::unique_ptr<Metric> metric);
  const Metric& get(const std::string& name) const;  // throws salient::Error listing the names
  const std::vector<std::string>& names() const { return order_; }

 private:
  std::map<std::string, std::unique_ptr<Metric>> metrics_;
  std::vector<std::string> order_;  // registration order: the report's column order
};

}  // namespace salient::metrics
