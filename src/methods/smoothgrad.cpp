#include "salient/methods/smoothgrad.hpp"

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {
const std::vector<std::string> kVariants{"smoothgrad", "smoothgrad-sq", "vargrad"};
std::string variant_name(SmoothGradVariant v) { return kVariants[static_cast<int>(v)]; }
}  // namespace

const MethodInfo& SmoothGrad::info() const {
  static const MethodInfo i = [] {
    SmoothGradOptions d;
    MethodInfo m;
    m.name = "smoothgrad";
    m.title = "SmoothGrad";
    m.family = Family::Gradient;
    m.paper = "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise; VarGrad: Adebayo et al. 2018";
    m.summary = "mean (or mean square, or variance) of the gradients of noisy copies of the input";
    m.options = {
        {"samples", "int", d.samples, "noisy copies per input", {}},
        {"sigma", "double", d.sigma, "noise standard deviation as a fraction of the input's max - min", {}},
        {"noise", "choice", to_string(d.noise), "noise sampler", {"gaussian", "antithetic", "quasi"}},
        {"variant", "choice", variant_name(d.variant), "statistic of the gradients", kVariants},
        {"batch-size", "int", d.batch, "noisy copies per forward/backward pass (bounds memory)", {}},
        {"seed", "int", d.seed, "random seed: the same seed gives the same map", {}}};
    return m;
  }();
  return i;
}

SmoothGradOptions SmoothGrad::parse(const nlohmann::json& options) {
  OptionReader r(options, "smoothgrad");
  SmoothGradOptions o;
  o.samples = r.get_int("samples", o.samples, 1);
  o.sigma = r.get_double("sigma", o.sigma, 0.0);
  o.noise = parse_noise_kind(r.get_choice("noise", to_string(o.noise), {"gaussian", "antithetic", "quasi"}));
  std::string v = r.get_choice("variant", variant_name(o.variant), kVariants);
  o.variant = static_cast<SmoothGradVariant>(std::find(kVariants.begin(), kVariants.end(), v) - kVariants.begin());
  o.batch = r.get_int("batch-size", o.batch, 1);
  o.seed = static_cast<uint64_t>(r.get_int("seed", static_cast<int64_t>(o.seed), 0));
  return o;
}

nlohmann::json SmoothGrad::params() const {
  return {{"samples", options_.samples}, {"sigma", options_.sigma}, {"noise", to_string(options_.noise)},
          {"variant", variant_name(options_.variant)}, {"batch-size", options_.batch}, {"seed", options_.seed}};
}

torch::Tensor SmoothGrad::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                  Attribution& out) {
  const int64_t n = inputs.size(0), s = options_.samples;
  auto shape = inputs.sizes().slice(1);
  std::vector<torch::Tensor> maps;
  nlohmann::json stdevs = nlohmann::json::array();
  for (int64_t i = 0; i < n; ++i) {
    torch::Tensor x = inputs[i];
    const double range = (x.max() - x.min()).item<double>();
    const double sd = options_.sigma * range;
    stdevs.push_back(sd);
    // Every input draws the same noise sequence from the seed: its map does not depend on its
    // position in the batch, nor on the chunking.
    torch::Tensor sum = torch::zeros(shape, x.options().dtype(torch::kDouble));
    torch::Tensor sum_sq = options_.variant == SmoothGradVariant::Mean ? torch::Tensor() : torch::zeros_like(sum);
    torch::Tensor t = targets[i];
    // Quasi noise is stratified over all samples: made once per input (capped). The other kinds are
    // made a chunk at a time, so --batch-size bounds their memory.
    const bool whole = options_.noise == NoiseKind::Quasi;
    const torch::Tensor all = whole ? make_noise(options_.noise, s, shape, sd, options_.seed, model.device(), model.dtype())
                                    : torch::Tensor();
    for_chunks(s, options_.batch, [&](int64_t b, int64_t e) {
      torch::Tensor noise = whole ? all.slice(0, b, e)
                                  : make_noise(options_.noise, s, b, e, shape, sd, options_.seed, model.device(), model.dtype());
      torch::Tensor g = target_gradient(model, x.unsqueeze(0) + noise, t.expand({e - b}));
      torch::Tensor gd = g.to(torch::kDouble);
      sum += gd.sum(0);
      if (sum_sq.defined()) sum_sq += gd.square().sum(0);
    });
    torch::Tensor mean = sum / static_cast<double>(s);
    switch (options_.variant) {
      case SmoothGradVariant::Mean: maps.push_back(mean); break;
      case SmoothGradVariant::Squared: maps.push_back(sum_sq / static_cast<double>(s)); break;
      case SmoothGradVariant::Variance:
        maps.push_back((sum_sq / static_cast<double>(s) - mean.square()).clamp_min(0.0));
        break;
    }
  }
  out.diagnostics["noise_stdev"] = stdevs;
  return torch::stack(maps).to(torch::kFloat);
}

void register_smoothgrad(Registry& r) {
  r.add(SmoothGrad().info(), [](const nlohmann::json& o, const ModelMetadata&) { return std::make_unique<SmoothGrad>(SmoothGrad::parse(o)); });
}

}  // namespace salient
