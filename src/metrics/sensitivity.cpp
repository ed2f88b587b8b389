// Max- and average sensitivity (Yeh et al. 2019): how much the map moves when the input moves a
// little: the seed's complaint about noisy gradients, as a number. Normalised by the larger map's
// norm, so that a map that is all zeros at x (a ReLU'd CAM) does not divide by zero.
#include <ATen/CPUGeneratorImpl.h>
#include "salient/metrics/metric.hpp"

#include <algorithm>

#include "salient/metrics/metrics.hpp"

namespace salient::metrics {

double relative_change(const torch::Tensor& base, const torch::Tensor& moved) {
  const torch::Tensor b = base.to(torch::kDouble), m = moved.to(torch::kDouble);
  // Relative to the larger of the two maps: bounded (<= 2) even when one map is all zeros.
  const double scale = std::max({b.norm().item<double>(), m.norm().item<double>(), 1e-300});
  return (m - b).norm().item<double>() / scale;
}

Sensitivity sensitivity(Model& model, Method& method, const torch::Tensor& x, int64_t target, int samples, double radius,
                        uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor t = torch::full({1}, target, torch::kLong);
  torch::Tensor base = method.attribute(model, x.unsqueeze(0), t).map[0].to(torch::kDouble);
  const double r = radius * (x.max() - x.min()).item<double>();
  Sensitivity s;
  for (int i = 0; i < samples; ++i) {
    torch::Tensor u = at::rand(x.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat)).to(x.options());
    torch::Tensor moved = method.attribute(model, (x + (u * 2 - 1) * r).unsqueeze(0), t).map[0].to(torch::kDouble);
    const double d = relative_change(base, moved);
    s.max = std::max(s.max, d);
    s.mean += d / samples;
  }
  return s;
}

namespace {
class SensitivityMetric final : public Metric {
 public:
  std::string name() const override { return "sensitivity"; }
  nlohmann::json compute(const MetricContext& c) const override {
    const Sensitivity s = sensitivity(c.model, c.method, c.x, c.target, 10, 0.02, c.seed);
    return {{"max_sensitivity", s.max}, {"avg_sensitivity", s.mean}};
  }
  std::vector<Column> columns() const override { return {{"max_sensitivity", "lower"}, {"avg_sensitivity", "lower"}}; }
};
}  // namespace

void register_sensitivity(MetricRegistry& r) { r.add(std::make_unique<SensitivityMetric>()); }

}  // namespace salient::metrics
