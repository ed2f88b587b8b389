#include "salient/checks.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "salient/error.hpp"

namespace salient::checks {

NoisyCopies noisy_copies(Model& model, const std::vector<Method*>& methods, const torch::Tensor& x, int64_t target,
                         int copies, double sigma_fraction, uint64_t seed, const Progress& progress) {
  if (copies < 1) throw Error("copies must be >= 1, got " + std::to_string(copies));
  if (!(sigma_fraction > 0)) throw Error("sigma must be > 0 (a fraction of the input's range)");
  NoisyCopies out;
  out.sigma = sigma_fraction * (x.max() - x.min()).item<double>();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<torch::Tensor> xs{x};
  for (int i = 0; i < copies; ++i)
    xs.push_back(x + at::normal(0.0, 1.0, x.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat)).to(x.options()) * out.sigma);
  const torch::Tensor batch = torch::stack(xs);
  const torch::Tensor predicted = model.predict(batch).argmax(1).to(torch::kCPU);
  for (int64_t i = 0; i < predicted.size(0); ++i) out.predicted.push_back(predicted[i].item<int64_t>());
  const torch::Tensor t = torch::full({1}, target, torch::kLong);
  const double total = static_cast<double>(methods.size() * xs.size());
  double done = 0;
  for (Method* m : methods) {
    std::vector<torch::Tensor> maps;
    double worst = 0;
    for (const auto& xi : xs) {
      maps.push_back(m->attribute(model, xi.unsqueeze(0), t).map[0].to(torch::kCPU));
      if (maps.size() > 1) worst = std::max(worst, metrics::relative_change(maps.front(), maps.back()));
      if (progress) progress(++done / total);
    }
    out.maps.push_back(std::move(maps));
    out.max_sensitivity.push_back(worst);
  }
  return out;
}

Faithfulness faithfulness(Model& model, const torch::Tensor& x, int64_t target, const torch::Tensor& map, int steps,
                          uint64_t seed, metrics::Canvas canvas) {
  Faithfulness f;
  f.deletion = metrics::deletion(model, x, target, map, canvas, steps);
  f.insertion = metrics::insertion(model, x, target, map, canvas, steps);
  const torch::Tensor order = metrics::random_order(x, seed);
  f.random_deletion = metrics::deletion(model, x, target, map, canvas, steps, order);
  f.random_insertion = metrics::insertion(model, x, target, map, canvas, steps, order);
  return f;
}

}  // namespace salient::checks
