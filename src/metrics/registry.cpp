#include "salient/error.hpp"
#include "salient/metrics/metric.hpp"

namespace salient::metrics {

// The built-in metrics, in the report's column order: the one place a new metric is added. Each
// name's file defines `void register_<name>(MetricRegistry&)`.
#define SALIENT_BUILTIN_METRICS(X) X(deletion_insertion) X(aopc) X(infidelity) X(sensitivity) X(randomisation) X(complexity)

#define SALIENT_DECLARE(name) void register_##name(MetricRegistry&);
SALIENT_BUILTIN_METRICS(SALIENT_DECLARE)
#undef SALIENT_DECLARE

const MetricRegistry& MetricRegistry::builtin() {
  static const MetricRegistry* r = [] {
    auto* reg = new MetricRegistry();
#define SALIENT_REGISTER(name) register_##name(*reg);
    SALIENT_BUILTIN_METRICS(SALIENT_REGISTER)
#undef SALIENT_REGISTER
    return reg;
  }();
  return *r;
}

void MetricRegistry::add(std::unique_ptr<Metric> metric) {
  const std::string name = metric->name();
  if (!metrics_.count(name)) order_.push_back(name);
  metrics_[name] = std::move(metric);
}

const Metric& MetricRegistry::get(const std::string& name) const {
  auto it = metrics_.find(name);
  if (it == metrics_.end()) {
    std::string list;
    for (const auto& n : order_) list += (list.empty() ? "" : ", ") + n;
    throw Error("unknown metric '" + name + "' (expected " + list + ")");
  }
  return *it->second;
}

}  // namespace salient::metrics
