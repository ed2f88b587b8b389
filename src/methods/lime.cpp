// LIME (Ribeiro et al. 2016): a weighted ridge regression of the output on which feature groups are
// kept, over random samples weighted by an exponential kernel on cosine distance to the input.
#include <ATen/CPUGeneratorImpl.h>

#include "salient/methods/blackbox.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

torch::Tensor lime(const BlackBoxCall& c) {
  FeatureGroups g = c.options.features.make(c.x, c.model.metadata());
  check_coalitions("lime", c.options.samples, g.count, /*surrogate=*/true);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.options.seed);
  torch::Tensor z = (at::rand({c.options.samples, g.count}, gen, torch::TensorOptions().dtype(torch::kDouble)) < 0.5)
                        .to(torch::kDouble);
  z[0].fill_(1.0);  // the input itself, as LIME does
  torch::Tensor y = coalition_scores(c.model, c.x, c.baseline, g, z, c.target, c.options.batch, c.progress);
  // Cosine distance to the all-ones vector, and LIME's kernel sqrt(exp(-d^2 / width^2)).
  torch::Tensor d = 1 - z.sum(1) / (z.norm(2, 1).clamp_min(1e-12) * std::sqrt(static_cast<double>(g.count)));
  torch::Tensor w = (-(d * d) / (c.options.kernel_width * c.options.kernel_width)).exp().sqrt();
  // Weighted ridge with an intercept: centre by the weighted means, then solve the normal equations.
  torch::Tensor ws = w / w.sum();
  torch::Tensor zm = (ws.unsqueeze(1) * z).sum(0), ym = (ws * y).sum();
  torch::Tensor zc = z - zm, yc = y - ym;
  torch::Tensor a = torch::matmul(zc.t() * w, zc) + c.options.ridge * torch::eye(g.count, torch::kDouble);
  torch::Tensor coef = torch::linalg_solve(a, torch::matmul(zc.t() * w, yc));
  c.diag["groups"] = g.count;
  c.diag["intercept"] = (ym - (coef * zm).sum()).item<double>();
  return spread(coef, g);
}

}  // namespace

void register_lime(Registry& r) {
  BlackBoxOptions d;
  d.samples = 1000;
  MethodInfo m;
  m.name = "lime";
  m.title = "LIME";
  m.paper = "Ribeiro, Singh & Guestrin 2016, \"Why Should I Trust You?\": Explaining the Predictions of Any Classifier";
  m.summary = "coefficients of a locally weighted ridge regression on which feature groups are present";
  m.options = {{"samples", "int", d.samples, "perturbed samples", {}},
               {"features", "string", "slic", "slic[:SIZE], grid[:K], elements, or an .npy label file", {}},
               {"kernel-width", "double", d.kernel_width, "exponential kernel width on cosine distance", {}},
               {"ridge", "double", d.ridge, "ridge penalty", {}}};
  add_blackbox(r, m, d, lime);
}

}  // namespace salient
