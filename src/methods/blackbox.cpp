#include "salient/methods/blackbox.hpp"

namespace salient {

torch::Tensor BlackBox::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets, Attribution& out) {
  const BlackBoxCommon& o = common();
  std::vector<torch::Tensor> maps;
  nlohmann::json per_input = nlohmann::json::array();
  std::map<std::string, std::vector<torch::Tensor>> extras;
  for (int64_t i = 0; i < inputs.size(0); ++i) {
    torch::Tensor x = inputs[i];
    torch::Tensor b = o.baseline.make(x, o.seed, &model);
    const torch::Tensor w = o.baseline.is_set() ? o.baseline.weights : torch::Tensor();
    nlohmann::json diag = nlohmann::json::object();
    std::map<std::string, torch::Tensor> extra;
    const int64_t t = targets[i].item<int64_t>();
    const double n = static_cast<double>(inputs.size(0));
    auto progress = [this, i, n](double f) { report_progress((static_cast<double>(i) + f) / n); };
    // The base value the map explains the way from: f(baseline), or E[f] over a background set.
    diag["f(baseline)"] = reference_score(model, b, w, x.dim(), t, o.batch);
    maps.push_back(explain_one(BlackBoxCall{model, x, b, w, t, o.batch, o.seed, diag, extra, progress}).to(x.options()));
    per_input.push_back(diag);
    for (auto& [key, m] : extra) extras[key].push_back(m);
  }
  for (auto& [key, ms] : extras) {  // a 1-D extra ("groups") may differ in length per input: padded
    for (auto& m : ms) m = m.unsqueeze(0);
    out.extra[key] = cat_ragged(ms);
  }
  // Per-input diagnostics become per-key arrays, as every method reports them.
  for (const auto& d : per_input)
    for (auto it = d.begin(); it != d.end(); ++it) out.diagnostics[it.key()].push_back(it.value());
  return torch::stack(maps);
}

}  // namespace salient
