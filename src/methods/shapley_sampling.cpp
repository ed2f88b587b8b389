// Shapley value sampling (Castro et al. 2009): feature groups added to the baseline in random
// orders; each group's attribution is its mean marginal contribution. Every permutation's prefix
// coalitions go through the model in batches.
#include <ATen/CPUGeneratorImpl.h>

#include "salient/methods/blackbox.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

struct ShapleySamplingOptions : BlackBoxCommon {
  int64_t samples = 25;
  GroupSpec features;
};

torch::Tensor shapley_sampling(const BlackBoxCall& c, const ShapleySamplingOptions& o) {
  FeatureGroups g = o.features.make(c.x, c.model.metadata());
  const int64_t m = g.count, n = o.samples;
  check_coalitions("shapley-sampling", m + 1, m);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
  auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor phi = torch::zeros({m}, f64);
  for (int64_t p = 0; p < n; ++p) {
    torch::Tensor order = at::randperm(m, gen, torch::TensorOptions().dtype(torch::kLong));
    // Prefix k keeps the first k groups of the order: rank[g] < k.
    torch::Tensor rank = torch::empty({m}, torch::kLong);
    rank.index_put_({order}, torch::arange(m, torch::kLong));
    torch::Tensor z = (rank.unsqueeze(0) < torch::arange(m + 1, torch::kLong).unsqueeze(1)).to(torch::kDouble);
    torch::Tensor f = coalition_scores(c.model, c.x, c.baseline, c.weights, g, z, c.target, c.batch);
    phi.index_add_(0, order, f.slice(0, 1) - f.slice(0, 0, m));
    c.progress(static_cast<double>(p + 1) / n);
  }
  c.diag["groups"] = m;
  return spread_and_keep(phi / static_cast<double>(n), g, c.extra);
}

}  // namespace

void register_shapley_sampling(Registry& r) {
  MethodInfo m;
  m.name = "shapley-sampling";
  m.additive = m.background = true;
  m.title = "Shapley value sampling";
  m.paper = "Castro, Gomez & Tejada 2009, Polynomial calculation of the Shapley value based on sampling";
  m.summary = "mean marginal contribution of each feature group over random orders";
  OptionTable<ShapleySamplingOptions> t;
  t.integer("samples", &ShapleySamplingOptions::samples, 1, "random permutations");
  add_features_row(t, &ShapleySamplingOptions::features);
  add_blackbox(r, m, std::move(t), shapley_sampling);
}

}  // namespace salient
