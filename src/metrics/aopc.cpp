// AOPC of region perturbation (Samek et al. 2017): r x r regions ranked by their summed relevance,
// replaced one after another (most relevant first, MoRF, or least relevant first, LeRF); the mean
// drop of the target output over the steps.
#include "salient/error.hpp"
#include "salient/metrics/metric.hpp"
#include "salient/metrics/metrics.hpp"

namespace salient::metrics {

double aopc(Model& model, const torch::Tensor& x, int64_t target, const torch::Tensor& map, bool most_relevant_first,
            int region, int steps, Canvas canvas) {
  if (x.dim() != 3) throw Error("aopc needs image inputs [C, H, W]");
  const int64_t h = x.size(1), w = x.size(2);
  torch::Tensor rel = relevance(map, x).view({1, 1, h, w}).to(torch::kFloat);
  // Region scores: relevance summed over non-overlapping r x r cells.
  torch::Tensor cells = torch::avg_pool2d(rel, {region, region}, {region, region}, {0, 0}, /*ceil_mode=*/true).flatten();
  const int64_t gw = (w + region - 1) / region;
  torch::Tensor order = cells.argsort(0, most_relevant_first);
  torch::Tensor fill = canvas_for(model, x, canvas);
  std::vector<torch::Tensor> inputs{x};
  torch::Tensor cur = x.clone();
  for (int k = 0; k < std::min<int64_t>(steps, cells.numel()); ++k) {
    const int64_t cell = order[k].item<int64_t>(), cy = cell / gw * region, cx = cell % gw * region;
    const int64_t hh = std::min<int64_t>(region, h - cy), ww = std::min<int64_t>(region, w - cx);
    cur.narrow(1, cy, hh).narrow(2, cx, ww).copy_(fill.narrow(1, cy, hh).narrow(2, cx, ww));
    inputs.push_back(cur.clone());
  }
  torch::Tensor s = target_probability(model, torch::stack(inputs), target);
  return (s[0] - s.slice(0, 1)).mean().item<double>();
}

namespace {
class AopcMetric final : public Metric {
 public:
  std::string name() const override { return "aopc"; }
  nlohmann::json compute(const MetricContext& c) const override {
    if (c.x.dim() != 3) return nlohmann::json::object();  // regions of an image
    const int region = std::max<int>(2, static_cast<int>(c.x.size(1) / 7));
    return {{"aopc_morf", aopc(c.model, c.x, c.target, c.map, true, region, c.steps)},
            {"aopc_lerf", aopc(c.model, c.x, c.target, c.map, false, region, c.steps)}};
  }
  std::vector<Column> columns() const override { return {{"aopc_morf", "higher"}, {"aopc_lerf", "lower"}}; }
};
}  // namespace

void register_aopc(MetricRegistry& r) { r.add(std::make_unique<AopcMetric>()); }

}  // namespace salient::metrics
