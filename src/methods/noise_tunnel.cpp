#include "salient/methods/noise_tunnel.hpp"

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/registry.hpp"

namespace salient {

const OptionTable<NoiseTunnelOptions>& NoiseTunnel::options_table() {
  static const OptionTable<NoiseTunnelOptions> t = [] {
    using O = NoiseTunnelOptions;
    OptionTable<O> t;
    t.field("base", "string", "the method whose maps are smoothed (any other method; its options apply too)",
            [](const nlohmann::json& v, const OptionContext& c, O& o) {
              if (!v.is_string()) throw Error(c.method + ": option 'base' must be a method name");
              o.base = v.get<std::string>();
              if (o.base == "noise-tunnel") throw Error(c.method + ": the base method cannot be noise-tunnel itself");
              Registry::builtin().info(o.base);  // an unknown name lists the known ones
            },
            [](const O& o) { return nlohmann::json(o.base); });
    add_noise_rows(t, "maps")
        .integer("copies", &O::copies, 1, "noisy copies per call of the base method (bounds memory)")
        .seed("seed", &O::seed, "random seed: the same seed gives the same map");
    return t;
  }();
  return t;
}

const MethodInfo& NoiseTunnel::info() const {
  static const MethodInfo i = [] {
    MethodInfo m;
    m.name = "noise-tunnel";
    m.title = "NoiseTunnel (SmoothGrad around any method)";
    m.family = Family::Gradient;
    m.paper = "Smilkov et al. 2017 (SmoothGrad); Adebayo et al. 2018 (VarGrad); Captum's NoiseTunnel";
    m.summary = "mean (or mean square, or variance) of a base method's maps of noisy copies of the input";
    m.options_of = "base";
    m.options = options_table().specs();
    return m;
  }();
  return i;
}

NoiseTunnelOptions NoiseTunnel::parse(const nlohmann::json& options) {
  return options_table().parse(options, {"noise-tunnel", ModelMetadata{}});
}

nlohmann::json NoiseTunnel::params() const {
  nlohmann::json p = options_table().params(options_);
  p["base_params"] = base_->params();
  return p;
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
      // The base method's own progress is this chunk's: a cancellation (the server's --timeout, a
      // job's DELETE) is heard within the base's passes, not after the whole chunk (hours of IG).
      struct Reset {
        Method& m;
        ~Reset() { m.set_progress({}); }
      } reset{*base_};
      base_->set_progress([&, b, e](double f) {
        report_progress((static_cast<double>(i) + (static_cast<double>(b) + f * static_cast<double>(e - b)) / static_cast<double>(s)) /
                        static_cast<double>(n));
      });
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
