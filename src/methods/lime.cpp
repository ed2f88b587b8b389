// LIME (Ribeiro et al. 2016): a weighted ridge regression of the output on which feature groups are
// kept, over random samples weighted by an exponential kernel on cosine distance to the input.
#include <ATen/CPUGeneratorImpl.h>

#include "salient/methods/blackbox.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

struct LimeOptions : BlackBoxCommon {
  int64_t samples = 1000;
  GroupSpec features;
  double kernel_width = 0.25;  // exponential kernel width on cosine distance
  double ridge = 1.0;
};

torch::Tensor lime(const BlackBoxCall& c, const LimeOptions& o) {
  FeatureGroups g = o.features.make(c.x, c.model.metadata());
  check_coalitions("lime", o.samples, g.count, /*surrogate=*/true);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
  torch::Tensor z = (at::rand({o.samples, g.count}, gen, torch::TensorOptions().dtype(torch::kDouble)) < 0.5)
                        .to(torch::kDouble);
  z[0].fill_(1.0);  // the input itself, as LIME does
  torch::Tensor y = coalition_scores(c.model, c.x, c.baseline, c.weights, g, z, c.target, c.batch, c.progress);
  // Cosine distance to the all-ones vector, and LIME's kernel sqrt(exp(-d^2 / width^2)).
  torch::Tensor d = 1 - z.sum(1) / (z.norm(2, 1).clamp_min(1e-12) * std::sqrt(static_cast<double>(g.count)));
  torch::Tensor w = (-(d * d) / (o.kernel_width * o.kernel_width)).exp().sqrt();
  // Weighted ridge with an intercept: centre by the weighted means, then solve the normal equations.
  torch::Tensor ws = w / w.sum();
  torch::Tensor zm = (ws.unsqueeze(1) * z).sum(0), ym = (ws * y).sum();
  torch::Tensor zc = z - zm, yc = y - ym;
  torch::Tensor a = torch::matmul(zc.t() * w, zc) + o.ridge * torch::eye(g.count, torch::kDouble);
  torch::Tensor coef = torch::linalg_solve(a, torch::matmul(zc.t() * w, yc));
  c.diag["groups"] = g.count;
  c.diag["intercept"] = (ym - (coef * zm).sum()).item<double>();
  return spread_and_keep(coef, g, c.extra);
}

}  // namespace

void register_lime(Registry& r) {
  MethodInfo m;
  m.name = "lime";
  m.background = true;
  m.title = "LIME";
  m.paper = "Ribeiro, Singh & Guestrin 2016, \"Why Should I Trust You?\": Explaining the Predictions of Any Classifier";
  m.summary = "coefficients of a locally weighted ridge regression on which feature groups are present";
  OptionTable<LimeOptions> t;
  t.integer("samples", &LimeOptions::samples, 1, "perturbed samples");
  add_features_row(t, &LimeOptions::features)
      .real("kernel-width", &LimeOptions::kernel_width, 1e-9, "exponential kernel width on cosine distance")
      .real("ridge", &LimeOptions::ridge, 0.0, "ridge penalty");
  add_blackbox(r, m, std::move(t), lime);
}

}  // namespace salient
