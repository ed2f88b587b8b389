#include "salient/methods/gradient_shap.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "salient/baseline.hpp"
#include "salient/error.hpp"
#include "salient/perturb.hpp"
#include "salient/registry.hpp"

namespace salient {

const OptionTable<GradientShapOptions>& GradientShap::options_table() {
  using O = GradientShapOptions;
  static const auto t = OptionTable<O>()
      .integer("samples", &O::samples, 1, "random (baseline, point) draws per input")
      .parsed<std::string>("baselines", &O::baselines_spec, "string", "zeros, or a set: a folder of images, an .npy stack [M,...], an IDX image file, or (tabular) rows.csv, sample:M:FILE, kmeans:K:FILE",
                           [](const std::string& s, const OptionContext&) { return s; },
                           [](const std::string& s) { return nlohmann::json(s); })
      .integer("baseline-count", &O::baseline_count, 1, "at most this many baselines from the set (seeded subset)")
      .real("sigma", &O::sigma, 0.0, "input noise sd as a fraction of the input's max - min")
      .integer("batch-size", &O::batch, 1, "draws per forward/backward pass")
      .seed("seed", &O::seed, "random seed")
      .finally([](O& o, const OptionContext& c) {  // the set is read once its count and seed are known
        if (o.baselines_spec == "zeros") return;
        if (!Baseline::is_set_spec(o.baselines_spec)) {
          o.baselines = load_input_set(o.baselines_spec, c.meta, o.baseline_count, o.seed);
          return;
        }
        const Baseline b = Baseline::parse(o.baselines_spec, c.meta);  // a background set, as the other methods read it
        o.baselines = b.tensor;
        o.weights = b.weights;
      });
  return t;
}

const MethodInfo& GradientShap::info() const {
  static const MethodInfo i = [] {
    MethodInfo m;
    m.name = "gradient-shap";
    m.additive = m.background = true;
    m.title = "GradientShap (Expected Gradients)";
    m.family = Family::Gradient;
    m.paper = "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions; Erion et al. 2021, Expected Gradients";
    m.summary = "expected (x - x0) * gradient at random points between random baselines and the input";
    m.options = options_table().specs();
    return m;
  }();
  return i;
}

GradientShapOptions GradientShap::parse(const nlohmann::json& options, const ModelMetadata& meta) {
  return options_table().parse(options, {"gradient-shap", meta});
}

nlohmann::json GradientShap::params() const {
  nlohmann::json p = options_table().params(options_);
  p["baseline-count"] = options_.baselines.defined() ? options_.baselines.size(0) : 1;  // as read
  return p;
}

torch::Tensor GradientShap::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                    Attribution& out) {
  const int64_t n = inputs.size(0), s = options_.samples;
  auto shape = inputs.sizes().slice(1);
  torch::Tensor set = options_.baselines.defined() ? options_.baselines.to(inputs.options())
                                                   : torch::zeros(inputs.sizes().slice(1), inputs.options()).unsqueeze(0);
  if (set.sizes().slice(1) != shape)
    throw Error("gradient-shap: the baselines have shape " + c10::str(set.sizes().slice(1)) + ", the inputs " + c10::str(shape));
  std::vector<int64_t> bshape(inputs.dim(), 1);
  const torch::Tensor w = options_.weights.defined() ? options_.weights
                                                     : torch::full({set.size(0)}, 1.0 / static_cast<double>(set.size(0)), torch::kDouble);
  if (inputs.dim() == 2) {  // rows: E[f] over the baselines, the base value the attributions start from
    // (for images a set of 100 would cost more forward passes than the method: not computed)
    std::vector<double> base;
    for (int64_t i = 0; i < n; ++i) base.push_back(reference_score(model, set, w, 1, targets[i].item<int64_t>(), options_.batch));
    out.diagnostics["f(baseline)"] = base;
  }
  std::vector<torch::Tensor> maps;
  auto cpu_f = torch::TensorOptions().dtype(torch::kFloat);
  for (int64_t i = 0; i < n; ++i) {
    // The same draws for every input (as SmoothGrad): a map does not depend on the batch.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed);
    torch::Tensor pick = options_.weights.defined() ? at::multinomial(options_.weights, s, /*replacement=*/true, gen)
                                                   : at::randint(set.size(0), {s}, gen, torch::TensorOptions().dtype(torch::kLong));
    torch::Tensor alpha = at::rand({s}, gen, cpu_f).to(inputs.options());
    std::vector<int64_t> nshape{s};
    nshape.insert(nshape.end(), shape.begin(), shape.end());
    torch::Tensor x = inputs[i];
    const double sd = options_.sigma * (x.max() - x.min()).item<double>();
    torch::Tensor noise = (at::normal(0.0, 1.0, nshape, gen, cpu_f) * sd).to(inputs.options());
    torch::Tensor sum = torch::zeros(shape, x.options().dtype(torch::kDouble));
    torch::Tensor t = targets[i];
    for_chunks(s, options_.batch, [&](int64_t b, int64_t e) {
      torch::Tensor x0 = set.index_select(0, pick.slice(0, b, e).to(set.device()));
      torch::Tensor xn = x.unsqueeze(0) + noise.slice(0, b, e);
      bshape[0] = e - b;
      torch::Tensor points = x0 + alpha.slice(0, b, e).view(bshape) * (xn - x0);
      torch::Tensor g = target_gradient(model, points, t.expand({e - b}));
      sum += ((xn - x0) * g).to(torch::kDouble).sum(0);
      report_progress((static_cast<double>(i) + static_cast<double>(e) / static_cast<double>(s)) / static_cast<double>(n));
    });
    torch::Tensor attr = sum / static_cast<double>(s);
    maps.push_back(attr);
  }
  return torch::stack(maps).to(inputs.scalar_type());
}

void register_gradient_shap(Registry& r) {
  r.add(GradientShap().info(), [](const nlohmann::json& o, const ModelMetadata& meta) {
    return std::make_unique<GradientShap>(GradientShap::parse(o, meta));
  });
}

}  // namespace salient
