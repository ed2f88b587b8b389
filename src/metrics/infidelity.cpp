// Infidelity (Yeh et al. 2019): how well the map, dotted with a perturbation, predicts the output
// change that perturbation causes. 0 for the exact attribution of a linear model.
#include <ATen/CPUGeneratorImpl.h>
#include "salient/metrics/metric.hpp"

#include "salient/metrics/metrics.hpp"

namespace salient::metrics {

double infidelity(Model& model, const torch::Tensor& x, int64_t target, const torch::Tensor& map, int samples,
                  double sigma, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<int64_t> shape{samples};
  shape.insert(shape.end(), x.sizes().begin(), x.sizes().end());
  const double sd = sigma * (x.max() - x.min()).item<double>();
  torch::Tensor noise = (at::normal(0.0, 1.0, shape, gen, torch::TensorOptions().dtype(torch::kFloat)) * sd).to(x.options());
  torch::Tensor m = map.to(x.options()).expand(x.sizes());  // a [1,H,W] map stands for every channel
  torch::Tensor fx = model.predict(x.unsqueeze(0)).select(1, target).to(torch::kCPU, torch::kDouble);
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < samples; b += 32) {
    const int64_t e = std::min<int64_t>(samples, b + 32);
    parts.push_back(model.predict(x.unsqueeze(0) - noise.slice(0, b, e)).select(1, target).to(torch::kCPU, torch::kDouble));
  }
  torch::Tensor change = fx - torch::cat(parts);
  torch::Tensor predicted = (noise * m.unsqueeze(0)).flatten(1).sum(1).to(torch::kCPU, torch::kDouble);
  return (predicted - change).square().mean().item<double>();
}

namespace {
class InfidelityMetric final : public Metric {
 public:
  std::string name() const override { return "infidelity"; }
  nlohmann::json compute(const MetricContext& c) const override {
    return {{"infidelity", infidelity(c.model, c.x, c.target, c.map, 50, 0.1, c.seed)}};
  }
  std::vector<Column> columns() const override { return {{"infidelity", "lower"}}; }
};
}  // namespace

void register_infidelity(MetricRegistry& r) { r.add(std::make_unique<InfidelityMetric>()); }

}  // namespace salient::metrics
