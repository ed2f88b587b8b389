// KernelSHAP (Lundberg & Lee 2017): Shapley values of feature groups as the solution of a weighted
// linear regression over coalitions with the Shapley kernel, constrained to sum to f(x) - f(b).
// Every coalition is enumerated when there are few groups (exact Shapley values); otherwise
// coalition sizes are drawn from the kernel and each coalition is paired with its complement.
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "salient/methods/blackbox.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

double log_choose(int64_t n, int64_t k) { return std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0); }

struct KernelShapOptions : BlackBoxCommon {
  int64_t samples = 1000;
  GroupSpec features;
};

torch::Tensor kernel_shap(const BlackBoxCall& c, const KernelShapOptions& o) {
  FeatureGroups g = o.features.make(c.x, c.model.metadata());
  const int64_t m = g.count;
  check_coalitions("kernel-shap", o.samples, m, /*surrogate=*/true);
  auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor ends = coalition_scores(c.model, c.x, c.baseline, c.weights, g, torch::stack({torch::ones({m}, f64), torch::zeros({m}, f64)}),
                                        c.target, c.batch);
  const double fx = ends[0].item<double>(), fb = ends[1].item<double>();
  if (m == 1) return spread_and_keep(torch::full({1}, fx - fb, f64), g, c.extra);
  torch::Tensor z, w;
  const bool exact = m <= 20 && (int64_t{1} << m) - 2 <= o.samples;
  if (exact) {
    const int64_t n = (int64_t{1} << m) - 2;
    z = torch::empty({n, m}, f64);
    w = torch::empty({n}, f64);
    auto za = z.accessor<double, 2>();
    for (int64_t code = 1; code <= n; ++code) {
      int64_t size = 0;
      for (int64_t j = 0; j < m; ++j) size += za[code - 1][j] = (code >> j) & 1;
      w[code - 1] = (m - 1.0) / std::exp(log_choose(m, size)) / (size * (m - size));
    }
  } else {
    // Sizes drawn with probability ~ (m-1)/(s(m-s)) (the kernel summed over coalitions of size s):
    // each drawn coalition then has equal weight. Pairs (z, 1-z) halve the variance.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
    std::vector<double> p;
    for (int64_t s = 1; s < m; ++s) p.push_back((m - 1.0) / (s * (m - s)));
    torch::Tensor probs = torch::tensor(p, f64);
    const int64_t pairs = std::max<int64_t>(1, o.samples / 2);
    torch::Tensor sizes = at::multinomial(probs, pairs, /*replacement=*/true, gen) + 1;
    torch::Tensor keys = at::rand({pairs, m}, gen, f64);
    torch::Tensor ranks = keys.argsort(1, false).argsort(1, false);  // a random permutation per row
    torch::Tensor half = (ranks < sizes.unsqueeze(1)).to(torch::kDouble);
    z = torch::cat({half, 1 - half});
    w = torch::ones({z.size(0)}, f64);
  }
  torch::Tensor y = coalition_scores(c.model, c.x, c.baseline, c.weights, g, z, c.target, c.batch, c.progress) - fb;
  // Efficiency as a constraint: phi_last = (fx - fb) - sum(others); regress on the rest.
  const double total = fx - fb;
  torch::Tensor last = z.select(1, m - 1);
  torch::Tensor a = z.slice(1, 0, m - 1) - last.unsqueeze(1);
  torch::Tensor rhs = y - last * total;
  torch::Tensor lhs = torch::matmul(a.t() * w, a) + 1e-10 * torch::eye(m - 1, f64);
  torch::Tensor phi = torch::linalg_solve(lhs, torch::matmul(a.t() * w, rhs));
  phi = torch::cat({phi, (total - phi.sum()).view({1})});
  c.diag["groups"] = m;
  c.diag["exact"] = exact;
  c.diag["f(x)-f(baseline)"] = total;
  return spread_and_keep(phi, g, c.extra);
}

}  // namespace

void register_kernel_shap(Registry& r) {
  MethodInfo m;
  m.name = "kernel-shap";
  m.additive = m.background = true;
  m.title = "KernelSHAP";
  m.paper = "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions";
  m.summary = "Shapley values of feature groups by Shapley-kernel weighted regression (exact enumeration for few groups)";
  OptionTable<KernelShapOptions> t;
  t.integer("samples", &KernelShapOptions::samples, 1, "coalitions evaluated (all 2^M - 2 when that is no more)");
  add_features_row(t, &KernelShapOptions::features);
  add_blackbox(r, m, std::move(t), kernel_shap);
}

}  // namespace salient
