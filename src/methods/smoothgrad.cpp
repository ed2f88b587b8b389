#include "salient/methods/smoothgrad.hpp"

#include <map>

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/registry.hpp"

namespace salient {

const std::vector<std::string>& smoothgrad_variants() {
  static const std::vector<std::string> v{"smoothgrad", "smoothgrad-sq", "vargrad"};
  return v;
}

torch::Tensor sample_statistic(SmoothGradVariant variant, const torch::Tensor& sum, const torch::Tensor& sum_sq, int64_t samples) {
  const double s = static_cast<double>(samples);
  switch (variant) {
    case SmoothGradVariant::Mean: return sum / s;
    case SmoothGradVariant::Squared: return sum_sq / s;
    case SmoothGradVariant::Variance: return (sum_sq / s - (sum / s).square()).clamp_min(0.0);
  }
  return sum / s;
}

std::string to_string(SmoothGradVariant v) { return smoothgrad_variants()[static_cast<int>(v)]; }

const OptionTable<SmoothGradOptions>& SmoothGrad::options_table() {
  static const OptionTable<SmoothGradOptions> t = [] {
    OptionTable<SmoothGradOptions> t;
    add_noise_rows(t, "gradients")
        .integer("batch-size", &SmoothGradOptions::batch, 1,
                 "rows per forward/backward pass, noisy copies of one or several inputs (bounds memory)")
        .seed("seed", &SmoothGradOptions::seed, "random seed: the same seed gives the same map");
    return t;
  }();
  return t;
}

const MethodInfo& SmoothGrad::info() const {
  static const MethodInfo i = [] {
    MethodInfo m;
    m.name = "smoothgrad";
    m.title = "SmoothGrad";
    m.family = Family::Gradient;
    m.paper = "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise; VarGrad: Adebayo et al. 2018";
    m.summary = "mean (or mean square, or variance) of the gradients of noisy copies of the input";
    m.options = options_table().specs();
    return m;
  }();
  return i;
}

SmoothGradOptions SmoothGrad::parse(const nlohmann::json& options) {
  return options_table().parse(options, {"smoothgrad", ModelMetadata{}});
}

nlohmann::json SmoothGrad::params() const { return options_table().params(options_); }

torch::Tensor SmoothGrad::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                  Attribution& out) {
  const int64_t n = inputs.size(0), s = options_.samples;
  auto shape = inputs.sizes().slice(1);
  nlohmann::json stdevs = nlohmann::json::array();
  std::vector<double> sd(static_cast<size_t>(n));
  std::vector<torch::Tensor> sum(static_cast<size_t>(n)), sum_sq(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    sd[i] = options_.sigma * (inputs[i].max() - inputs[i].min()).item<double>();
    stdevs.push_back(sd[i]);
    sum[i] = torch::zeros(shape, inputs.options().dtype(torch::kDouble));
    if (options_.variant != SmoothGradVariant::Mean) sum_sq[i] = torch::zeros_like(sum[i]);
  }
  // The n x s noisy rows, input after input, go through passes of `batch` rows whichever input
  // they belong to: ten inputs' copies share a pass when samples < batch. Every input draws the same
  // noise sequence from the seed (row k of input i is noise k, whatever the pass): its map does not
  // depend on its position in the batch, nor on the chunking. Quasi noise is stratified over all
  // samples: made whole per input (capped) while that input's rows are in passes.
  const bool whole = options_.noise == NoiseKind::Quasi;
  std::map<int64_t, torch::Tensor> quasi;
  const int64_t total = n * s;
  for_chunks(total, options_.batch, [&](int64_t b, int64_t e) {
    std::vector<torch::Tensor> xs, ts;
    std::vector<std::pair<int64_t, int64_t>> segments;  // (input, rows)
    for (int64_t i = b / s; i < n && i * s < e; ++i) {
      const int64_t sb = std::max(b, i * s) - i * s, se = std::min(e, (i + 1) * s) - i * s;
      torch::Tensor noise;
      if (whole) {
        if (!quasi.count(i)) quasi[i] = make_noise(options_.noise, s, shape, sd[i], options_.seed, model.device(), model.dtype());
        noise = quasi[i].slice(0, sb, se);
        if (se == s) quasi.erase(i);
      } else {
        noise = make_noise(options_.noise, s, sb, se, shape, sd[i], options_.seed, model.device(), model.dtype());
      }
      xs.push_back(inputs[i].unsqueeze(0) + noise);
      ts.push_back(targets[i].expand({se - sb}));
      segments.emplace_back(i, se - sb);
    }
    torch::Tensor g = target_gradient(model, torch::cat(xs), torch::cat(ts)).to(torch::kDouble);
    int64_t off = 0;
    for (const auto& [i, rows] : segments) {
      torch::Tensor gd = g.slice(0, off, off + rows);
      sum[i] += gd.sum(0);
      if (sum_sq[i].defined()) sum_sq[i] += gd.square().sum(0);
      off += rows;
    }
    report_progress(static_cast<double>(e) / static_cast<double>(total));
  });
  std::vector<torch::Tensor> maps;
  for (int64_t i = 0; i < n; ++i) maps.push_back(sample_statistic(options_.variant, sum[i], sum_sq[i], s));
  out.diagnostics["noise_stdev"] = stdevs;
  return torch::stack(maps).to(torch::kFloat);
}

void register_smoothgrad(Registry& r) {
  r.add(SmoothGrad().info(), [](const nlohmann::json& o, const ModelMetadata&) { return std::make_unique<SmoothGrad>(SmoothGrad::parse(o)); });
}

}  // namespace salient
