#include "salient/methods/noise_tunnel.hpp"

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/registry.hpp"

namespace salient {

const MethodInfo& NoiseTunnel::info() const {
  static const MethodInfo i = [] {
    NoiseTunnelOptions d;
    MethodInfo m;
    m.name = "noise-tunnel";
    m.title = "NoiseTunnel (SmoothGrad around any method)";
    m.family = Family::Gradient;
    m.paper = "Smilkov et al. 2017 (SmoothGrad); Adebayo et al. 2018 (VarGrad); Captum's NoiseTunnel";
    m.summary = "mean (or mean square, or variance) of a base method's maps of noisy copies of the input";
    m.options_of = "base";
    m.options = {
        {"base", "string", d.base, "the method whose maps are smoothed (any other method; its options apply too)", {}},
        {"samples", "int", d.samples, "noisy copies per input", {}},
        {"sigma", "double", d.sigma, "noise standard deviation as a fraction of the input's max - min", {}},
        {"noise", "choice", to_string(d.noise), "noise sampler", {"gaussian", "antithetic", "quasi"}},
        {"variant", "choice", to_string(d.variant), "statistic of the maps", smoothgrad_variants()},
        {"copies", "int", d.copies, "noisy copies per call of the base method (bounds memory)", {}},
        {"seed", "int", d.seed, "random seed: the same seed gives the same map", {}}};
    return m;
  }();
  return i;
}

NoiseTunnelOptions NoiseTunnel::parse(const nlohmann::json& options) {
  OptionReader r(options, "noise-tunnel");
  NoiseTunnelOptions o;
  if (options.is_object() && options.contains("base")) {
    if (!options["base"].is_string()) throw Error("noise-tunnel: option 'base' must be a method name");
    o.base = options["base"].get<std::string>();
  }
  if (o.base == "noise-tunnel") throw Error("noise-tunnel: the base method cannot be noise-tunnel itself");
  Registry::builtin().info(o.base);  // an unknown name lists the known ones
  o.samples = r.get_int("samples", o.samples, 1);
  o.sigma = r.get_double("sigma", o.sigma, 0.0);
  o.noise = parse_noise_kind(r.get_choice("noise", to_string(o.noise), {"gaussian", "antithetic", "quasi"}));
  o.variant = read_variant(r, o.variant);
  o.copies = r.get_int("copies", o.copies, 1);
  o.seed = static_cast<uint64_t>(r.get_int("seed", static_cast<int64_t>(o.seed), 0));
  return o;
}

nlohmann::json NoiseTunnel::params() const {
  return {{"base", options_.base}, {"samples", options_.samples}, {"sigma", options_.sigma},
          {"noise", to_string(options_.noise)}, {"variant", to_string(options_.variant)},
          {"copies", options_.copies}, {"seed", options_.seed}, {"base_params", base_->params()}};
}

torch::Tensor NoiseTunnel::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                   Attribution& out) {
  const int64_t n = inputs.size(0), s = options_.samples;
  auto shape = inputs.sizes().slice(1);
  std::vector<torch::Tensor> maps;
  nlohmann::json stdevs = nlohmann::json::array();
  for (int64_t i = 0; i < n; ++i) {
    const torch::Tensor x = inputs[i];
    const double sd = options_.sigma * (x.max() - x.min()).item<double>();
    stdevs.push_back(sd);
    // The same noise as smoothgrad's: sample k of every input is noise k of the seed's sequence.
    const bool whole = options_.noise == NoiseKind::Quasi;
    const torch::Tensor all = whole ? make_noise(options_.noise, s, shape, sd, options_.seed, model.device(), model.dtype())
                                    : torch::Tensor();
    torch::Tensor sum, sum_sq;
    for_chunks(s, options_.copies, [&](int64_t b, int64_t e) {
      const torch::Tensor noise = whole ? all.slice(0, b, e)
                                        : make_noise(options_.noise, s, b, e, shape, sd, options_.seed, model.device(), model.dtype());
      const torch::Tensor m = base_->attribute(model, x.unsqueeze(0) + noise, targets[i].expand({e - b})).map.to(torch::kDouble);
      sum = sum.defined() ? sum + m.sum(0) : m.sum(0);
      if (options_.variant != SmoothGradVariant::Mean) sum_sq = sum_sq.defined() ? sum_sq + m.square().sum(0) : m.square().sum(0);
      report_progress((static_cast<double>(i) + static_cast<double>(e) / static_cast<double>(s)) / static_cast<double>(n));
    });
    maps.push_back(sample_statistic(options_.variant, sum, sum_sq, s));
  }
  out.diagnostics["noise_stdev"] = stdevs;
  return torch::stack(maps).to(torch::kFloat);
}

void register_noise_tunnel(Registry& r) {
  r.add(NoiseTunnel(NoiseTunnelOptions{}, nullptr).info(), [](const nlohmann::json& o, const ModelMetadata& meta) {
    NoiseTunnelOptions opts = NoiseTunnel::parse(o);
    auto base = Registry::builtin().create(opts.base, o, meta);
    return std::make_unique<NoiseTunnel>(std::move(opts), std::move(base));
  });
}

}  // namespace salient
