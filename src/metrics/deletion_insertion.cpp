// Deletion and insertion curves (Petsiuk et al. 2018): remove (or put back) features in the order
// of their relevance and follow the target's probability; a faithful map makes deletion fall fast
// (low AUC) and insertion rise fast (high AUC).
#include <ATen/CPUGeneratorImpl.h>

#include "salient/metrics/metrics.hpp"
#include "salient/metrics/metric.hpp"

namespace salient::metrics {

torch::Tensor random_order(const torch::Tensor& x, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t p = x.dim() == 3 ? x.size(1) * x.size(2) : x.numel();
  return at::randperm(p, gen, torch::TensorOptions().dtype(torch::kLong));
}

namespace {

Curve run_curve(Model& model, const torch::Tensor& x, int64_t target, const torch::Tensor& map, Canvas canvas,
                int steps, const torch::Tensor& given_order, bool deleting) {
  torch::Tensor rel = relevance(map, x);
  const int64_t p = rel.numel();
  torch::Tensor order = given_order.defined() ? given_order : rel.argsort(0, /*descending=*/true);
  torch::Tensor rank = torch::empty({p}, torch::kLong);
  rank.index_put_({order}, torch::arange(p, torch::kLong));
  torch::Tensor start = deleting ? x : canvas_for(model, x, canvas);
  torch::Tensor end = deleting ? canvas_for(model, x, canvas) : x;
  std::vector<torch::Tensor> inputs;
  Curve c;
  for (int k = 0; k <= steps; ++k) {
    const int64_t n = static_cast<int64_t>(std::llround(static_cast<double>(k) * p / steps));
    torch::Tensor changed = (rank < n).to(x.scalar_type());  // [p]
    torch::Tensor mask = x.dim() == 3 ? changed.view({1, x.size(1), x.size(2)}) : changed.view(x.sizes());
    inputs.push_back(start + (end - start) * mask);
    c.fraction.push_back(static_cast<double>(n) / p);
  }
  torch::Tensor s = target_probability(model, torch::stack(inputs), target);
  for (int k = 0; k <= steps; ++k) c.score.push_back(s[k].item<double>());
  for (int k = 1; k <= steps; ++k)
    c.auc += 0.5 * (c.score[k] + c.score[k - 1]) * (c.fraction[k] - c.fraction[k - 1]);
  return c;
}

}  // namespace

Curve deletion(Model& model, const torch::Tensor& x, int64_t target, const torch::Tensor& map, Canvas canvas, int steps,
               const torch::Tensor& order) {
  return run_curve(model, x, target, map, canvas, steps, order, true);
}

Curve insertion(Model& model, const torch::Tensor& x, int64_t target, const torch::Tensor& map, Canvas canvas, int steps,
                const torch::Tensor& order) {
  return run_curve(model, x, target, map, canvas, steps, order, false);
}

namespace {
nlohmann::json curve_json(const Curve& c) { return {{"auc", c.auc}, {"curve", c.score}, {"fraction", c.fraction}}; }

// Deletion and insertion: the target probability as the most relevant features are removed from
// the input / put back on the canvas; their random-order curves are the baseline to beat.
class CurveMetric final : public Metric {
 public:
  explicit CurveMetric(bool deletion) : deletion_(deletion) {}
  std::string name() const override { return deletion_ ? "deletion" : "insertion"; }
  nlohmann::json compute(const MetricContext& c) const override { return run(c, {}); }
  nlohmann::json random_order(const MetricContext& c, const torch::Tensor& order) const override { return run(c, order); }
  std::vector<Column> columns() const override { return {{name() + "_auc", deletion_ ? "lower" : "higher"}}; }

 private:
  nlohmann::json run(const MetricContext& c, const torch::Tensor& order) const {
    const Curve k = deletion_ ? deletion(c.model, c.x, c.target, c.map, c.canvas, c.steps, order)
                              : insertion(c.model, c.x, c.target, c.map, c.canvas, c.steps, order);
    return {{name(), curve_json(k)}};
  }
  bool deletion_;
};
}  // namespace

void register_deletion_insertion(MetricRegistry& r) {
  r.add(std::make_unique<CurveMetric>(true));
  r.add(std::make_unique<CurveMetric>(false));
}

}  // namespace salient::metrics
