// Sparseness (Chalasani et al. 2020: the Gini index of |map|) and complexity (Bhatt et al. 2020:
// the entropy of |map| as a distribution).
#include "salient/metrics/metrics.hpp"
#include "salient/metrics/metric.hpp"

namespace salient::metrics {

double gini(const torch::Tensor& map) {
  torch::Tensor v = std::get<0>(map.detach().abs().flatten().to(torch::kCPU, torch::kDouble).sort());
  const int64_t n = v.numel();
  const double total = v.sum().item<double>();
  if (n == 0 || total <= 0) return 0.0;
  torch::Tensor k = torch::arange(1, n + 1, torch::kDouble);
  return ((2 * k - n - 1) * v).sum().item<double>() / (n * total);
}

double entropy(const torch::Tensor& map) {
  torch::Tensor p = map.detach().abs().flatten().to(torch::kCPU, torch::kDouble);
  const double total = p.sum().item<double>();
  if (total <= 0) return 0.0;
  p = p / total;
  return -(p * p.clamp_min(1e-300).log()).sum().item<double>();
}

namespace {
class SparsenessMetric final : public Metric {
 public:
  std::string name() const override { return "sparseness"; }
  nlohmann::json compute(const MetricContext& c) const override { return {{"sparseness", gini(c.map)}}; }
  std::vector<Column> columns() const override { return {{"sparseness", "context"}}; }
};
class ComplexityMetric final : public Metric {
 public:
  std::string name() const override { return "complexity"; }
  nlohmann::json compute(const MetricContext& c) const override { return {{"complexity", entropy(c.map)}}; }
  std::vector<Column> columns() const override { return {{"complexity", "lower"}}; }
};
}  // namespace

void register_complexity(MetricRegistry& r) {  // sparseness (Gini) and complexity (entropy)
  r.add(std::make_unique<SparsenessMetric>());
  r.add(std::make_unique<ComplexityMetric>());
}

}  // namespace salient::metrics
