// Model-parameter randomisation (Adebayo et al. 2018): if a map hardly changes when the model's
// weights are replaced by random ones, it does not explain the model. Done on a copy.
#include <ATen/CPUGeneratorImpl.h>
#include "salient/metrics/metric.hpp"

#include "salient/error.hpp"
#include "salient/metrics/metrics.hpp"

namespace salient::metrics {

// Ranks with ties given their average rank (scipy.stats.rankdata's "average", as Quantus uses): a
// CAM full of zeros must not be ranked by the zeros' places in memory.
torch::Tensor average_ranks(const torch::Tensor& v) {
  const torch::Tensor x = v.flatten().to(torch::kDouble).contiguous();
  const int64_t n = x.numel();
  const torch::Tensor order = x.argsort().contiguous();
  const double* xs = x.data_ptr<double>();
  const int64_t* o = order.data_ptr<int64_t>();
  torch::Tensor out = torch::empty({n}, torch::kDouble);
  double* r = out.data_ptr<double>();
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && xs[o[j]] == xs[o[i]]) ++j;
    const double mean = 0.5 * static_cast<double>(i + j - 1);  // ranks i .. j-1 shared
    for (int64_t k = i; k < j; ++k) r[o[k]] = mean;
    i = j;
  }
  return out;
}

double spearman(const torch::Tensor& a, const torch::Tensor& b) {
  auto rank = [](const torch::Tensor& v) { return average_ranks(v); };
  torch::Tensor ra = rank(a), rb = rank(b);
  ra = ra - ra.mean();
  rb = rb - rb.mean();
  const double d = (ra.norm() * rb.norm()).item<double>();
  return d > 0 ? (ra * rb).sum().item<double>() / d : 0.0;
}

double ssim(const torch::Tensor& a, const torch::Tensor& b) {
  auto unit = [](torch::Tensor v) {
    v = v.to(torch::kDouble);
    const double lo = v.min().item<double>(), hi = v.max().item<double>();
    return hi > lo ? (v - lo) / (hi - lo) : torch::zeros_like(v);
  };
  torch::Tensor x = unit(a), y = unit(b);
  const double c1 = 1e-4, c2 = 9e-4;
  if (x.dim() != 2 || x.size(0) < 7 || x.size(1) < 7) {  // global SSIM for small or non-2-D maps
    const double mx = x.mean().item<double>(), my = y.mean().item<double>();
    const double vx = x.var(false).item<double>(), vy = y.var(false).item<double>();
    const double cov = ((x - mx) * (y - my)).mean().item<double>();
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
  }
  auto pool = [](const torch::Tensor& v) { return torch::avg_pool2d(v.view({1, 1, v.size(0), v.size(1)}), {7, 7}, {1, 1}); };
  torch::Tensor mx = pool(x), my = pool(y);
  torch::Tensor vx = pool(x * x) - mx * mx, vy = pool(y * y) - my * my, cov = pool(x * y) - mx * my;
  torch::Tensor s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
  return s.mean().item<double>();
}

namespace {

// |map| reduced to a 2-D plane for images, as displayed.
torch::Tensor shown(const torch::Tensor& map) {
  torch::Tensor m = map.detach().abs().to(torch::kDouble);
  return m.dim() == 3 ? m.sum(0) : m;
}

}  // namespace

std::vector<RandomisationStep> randomisation(Model& model, Method& method, const torch::Tensor& x, int64_t target,
                                             bool cascading, uint64_t seed, std::vector<torch::Tensor>* maps,
                                             const std::function<void(double)>& progress) {
  torch::Tensor t = torch::full({1}, target, torch::kLong);
  const torch::Tensor original = shown(method.attribute(model, x.unsqueeze(0), t).map[0]);
  if (maps) maps->push_back(original);
  // Layers: modules that own parameters, from the output side back.
  std::vector<std::string> layers;
  for (const auto& item : model.module().named_modules()) {
    bool owns = false;
    for (const auto& p : item.value.named_parameters(/*recurse=*/false)) owns = owns || p.value.defined();
    if (owns) layers.push_back(item.name);
  }
  std::reverse(layers.begin(), layers.end());
  if (layers.empty()) throw Error("randomisation: the model has no parameters to randomise");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<RandomisationStep> steps;
  torch::jit::Module copy = model.module().clone();
  for (const auto& layer : layers) {
    if (!cascading) copy = model.module().clone();
    // Find the layer's module in the copy and give it new random parameters of the same scale.
    for (auto item : copy.named_modules()) {
      if (item.name != layer) continue;
      for (const auto& p : item.value.named_parameters(false)) {
        const double sd = std::max(p.value.std(false).item<double>(), 1e-2);
        torch::Tensor fresh = (at::normal(0.0, 1.0, p.value.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat)) * sd)
                                  .to(p.value.options());
        item.value.register_parameter(p.name, fresh, false);
      }
    }
    // The model's own settings (its chosen output, a function target's reduction, paired inputs):
    // a bare Model(copy) explained another function of the randomised network.
    Model randomised = model.with_module(copy);
    torch::Tensor m = shown(method.attribute(randomised, x.unsqueeze(0), t).map[0]);
    steps.push_back({layer, spearman(original, m), ssim(original, m)});
    if (maps) maps->push_back(m);
    if (progress) progress(static_cast<double>(steps.size()) / static_cast<double>(layers.size()));
  }
  return steps;
}

namespace {
class RandomisationMetric final : public Metric {
 public:
  std::string name() const override { return "randomisation"; }
  nlohmann::json compute(const MetricContext& c) const override {
    nlohmann::json steps = nlohmann::json::array();
    for (const auto& st : randomisation(c.model, c.method, c.x, c.target, /*cascading=*/true, c.seed))
      steps.push_back({{"layer", st.layer}, {"spearman", st.spearman}, {"ssim", st.ssim}});
    return {{"randomisation", steps}};
  }
  std::vector<Column> columns() const override { return {}; }  // a table of its own (per layer)
};
}  // namespace

void register_randomisation(MetricRegistry& r) { r.add(std::make_unique<RandomisationMetric>()); }

}  // namespace salient::metrics
