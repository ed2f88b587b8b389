#include "salient/methods/integrated_gradients.hpp"

#include <algorithm>
#include <array>
#include <sstream>

#include "salient/error.hpp"
#include "salient/perturb.hpp"
#include "salient/registry.hpp"

namespace salient {

const OptionTable<IntegratedGradientsOptions>& IntegratedGradients::options_table() {
  using O = IntegratedGradientsOptions;
  static const auto t = OptionTable<O>()
      .field("steps", "int|auto", "quadrature nodes, or auto: doubled from 8 until the gap is within tolerance",
             [](const nlohmann::json& v, const OptionContext& c, O& o) {
               if (v.is_string()) {
                 if (v != "auto") throw Error(c.method + ": option 'steps' must be a whole number >= 1 or auto");
                 o.auto_steps = true;
               } else {
                 o.steps = OptionReader(nlohmann::json{{"steps", v}}, c.method).get_int("steps", o.steps, 1);
                 o.auto_steps = false;
               }
             },
             [](const O& o) { return o.auto_steps ? nlohmann::json("auto") : nlohmann::json(o.steps); })
      .choice("quadrature", &O::quadrature, quadrature_names(), "quadrature rule on [0,1]")
      .baseline("baseline", &O::baseline, /*sets=*/true)
      .real("tolerance", &O::tolerance, 0.0, "relative completeness gap: auto steps' goal, warned about above it")
      .integer("max-steps", &O::max_steps, 8, "ceiling of auto steps")
      .integer("batch-size", &O::batch, 1, "path points per forward/backward pass")
      .seed("seed", &O::seed, "seed of the uniform baseline")
      .finally([](O& o, const OptionContext& c) {
        if (o.quadrature == Quadrature::Trapezoid && !o.auto_steps && o.steps < 2)
          throw Error(c.method + ": the trapezoid rule needs steps >= 2");
      });
  return t;
}

const MethodInfo& IntegratedGradients::info() const {
  static const MethodInfo i = [] {
    MethodInfo m;
    m.name = "integrated-gradients";
    m.additive = m.background = true;
    m.title = "Integrated Gradients";
    m.family = Family::Gradient;
    m.paper = "Sundararajan, Taly & Yan 2017, Axiomatic Attribution for Deep Networks";
    m.summary = "path integral of the gradient from a baseline to the input; attributions sum to f(x) - f(x0)";
    m.options = options_table().specs();
    return m;
  }();
  return i;
}

IntegratedGradientsOptions IntegratedGradients::parse(const nlohmann::json& options, const ModelMetadata& meta) {
  return options_table().parse(options, {"integrated-gradients", meta});
}

nlohmann::json IntegratedGradients::params() const { return options_table().params(options_); }

namespace {

// The sum of a map's values in double: a loop on the host, an op elsewhere.
double total_of(const torch::Tensor& t) {
  if (!t.is_cpu() || !t.is_contiguous() || t.scalar_type() != torch::kFloat) return t.sum(torch::kDouble).item<double>();
  const float* p = t.data_ptr<float>();
  double s = 0;
  for (int64_t k = 0; k < t.numel(); ++k) s += p[k];
  return s;
}

}  // namespace

torch::Tensor IntegratedGradients::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                           Attribution& out) {
  const int64_t n = inputs.size(0);
  const bool set = options_.baseline.is_set();
  std::vector<torch::Tensor> baselines;
  std::vector<torch::Tensor> xs;
  for (int64_t i = 0; i < n; ++i) {
    xs.push_back(inputs[i]);
    baselines.push_back(options_.baseline.make(xs[i], options_.seed, &model));
  }
  // f(x) and f(x0) of each input, what completeness is measured against: from the first pass of
  // its path (one baseline), or f(x) and E[f] over a background set.
  std::vector<double> f(static_cast<size_t>(2 * n));
  const torch::Tensor target_list = targets.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* target_of = target_list.data_ptr<int64_t>();
  if (set) {  // a background set: expected IG, measured against E[f] over the set
    const torch::Tensor fx = model.predict(inputs).gather(1, targets.view({-1, 1})).squeeze(1).to(torch::kCPU, torch::kDouble).contiguous();
    for (int64_t i = 0; i < n; ++i) {
      f[i] = fx.data_ptr<double>()[i];
      f[n + i] = reference_score(model, baselines[i], options_.baseline.weights, inputs.dim() - 1, target_of[i], options_.batch);
    }
  }
  // Input i's passes report their share (a cancellation is heard after every pass of a long path).
  auto progress_of = [this, n](int64_t i) {
    return [this, n, i](double f) { report_progress((static_cast<double>(i) + f) / static_cast<double>(n)); };
  };
  // One path per reference input, weighted (one baseline: one path of weight 1).
  auto integrate = [&](int64_t i, int64_t target, int64_t steps, bool first) {
    if (!set) {
      std::array<double, 2> ends{};
      torch::Tensor a = integrate_path(model, xs[i], baselines[i], target, quadrature_rule(options_.quadrature, steps),
                                       options_.batch, first ? &ends : nullptr, progress_of(i));
      if (first) {
        f[i] = ends[0];
        f[n + i] = ends[1];
      }
      return a;
    }
    torch::Tensor sum;
    for (int64_t m = 0; m < baselines[i].size(0); ++m) {
      torch::Tensor a = integrate_path(model, xs[i], baselines[i][m], target, quadrature_rule(options_.quadrature, steps), options_.batch,
                                       nullptr, progress_of(i))
                            .to(torch::kDouble) * options_.baseline.weights[m].item<double>();
      sum = sum.defined() ? sum + a : a;
    }
    return sum.to(inputs.scalar_type());
  };

  std::vector<torch::Tensor> maps;
  nlohmann::json steps_used = nlohmann::json::array(), delta = nlohmann::json::array(), total = nlohmann::json::array(),
                 gap = nlohmann::json::array(), rel = nlohmann::json::array(), warning = nlohmann::json::array();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t target = target_of[i];
    int64_t steps = options_.auto_steps ? 8 : options_.steps;
    torch::Tensor attr;
    double g = 0, r = 0, d = 0, attr_sum = 0;
    for (bool first = true;; first = false) {
      attr = integrate(i, target, steps, first);
      d = f[i] - f[n + i];
      attr_sum = total_of(attr);
      g = std::abs(attr_sum - d);
      // Relative to f(x) - f(x0), floored at the float32 resolution of the outputs: a difference
      // below it (a neuron the input barely moves, an offset output) is not a gap to warn about.
      r = g / std::max({std::abs(d), 1e-6 * std::max(std::abs(f[i]), std::abs(f[n + i])), 1e-12});
      if (!options_.auto_steps || r <= options_.tolerance || steps * 2 > options_.max_steps) break;
      steps *= 2;
    }
    maps.push_back(attr);
    steps_used.push_back(steps);
    delta.push_back(d);
    total.push_back(attr_sum);
    gap.push_back(g);
    rel.push_back(r);
    if (r > options_.tolerance) {
      std::ostringstream w;
      w << "integrated-gradients: completeness gap " << r * 100 << "% of |f(x) - f(x0)| exceeds the tolerance "
        << options_.tolerance * 100 << "% at " << steps << " steps"
        << (options_.auto_steps ? " (max-steps reached)" : " (raise --steps, or use --steps auto)");
      warning.push_back(w.str());
    } else {
      warning.push_back(nullptr);
    }
  }
  out.scores = torch::tensor(std::vector<double>(f.begin(), f.begin() + n), torch::kDouble);
  out.diagnostics["steps"] = steps_used;
  out.diagnostics["f(x)-f(x0)"] = delta;
  out.diagnostics["f(baseline)"] = std::vector<double>(f.begin() + n, f.end());
  out.diagnostics["sum"] = total;
  out.diagnostics["completeness_gap"] = gap;
  out.diagnostics["relative_gap"] = rel;
  out.diagnostics["warning"] = warning;
  return n == 1 ? maps[0].unsqueeze(0) : torch::stack(maps);
}

void register_integrated_gradients(Registry& r) {
  r.add(IntegratedGradients().info(), [](const nlohmann::json& o, const ModelMetadata& meta) {
    return std::make_unique<IntegratedGradients>(IntegratedGradients::parse(o, meta));
  });
}

}  // namespace salient
