// Sparseness (Chalasani et al. 2020: the Gini index of |map|) and complexity (Bhatt et al. 2020:
// the entropy of |map| as a distribution).
#include "salient/metrics/metrics.hpp"

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

}  // namespace salient::metrics
