// Feature ablation: each group of features set to the baseline in turn; its attribution is the
// output drop (Captum's FeatureAblation, with groups from superpixels, a grid or a mask file).
#include "salient/methods/blackbox.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

struct FeatureAblationOptions : BlackBoxCommon {
  GroupSpec features;
};

torch::Tensor feature_ablation(const BlackBoxCall& c, const FeatureAblationOptions& o) {
  FeatureGroups g = o.features.make(c.x, c.model.metadata());
  // Row 0 keeps everything; row k+1 removes group k.
  check_coalitions("feature-ablation", g.count + 1, g.count);
  torch::Tensor z = torch::ones({g.count + 1, g.count});
  z.slice(0, 1).fill_diagonal_(0.0);
  torch::Tensor s = coalition_scores(c.model, c.x, c.baseline, c.weights, g, z, c.target, c.batch, c.progress);
  c.diag["groups"] = g.count;
  return spread_and_keep(s[0] - s.slice(0, 1), g, c.extra);
}

}  // namespace

void register_feature_ablation(Registry& r) {
  MethodInfo m;
  m.name = "feature-ablation";
  m.background = true;
  m.title = "Feature ablation";
  m.paper = "Captum's FeatureAblation; superpixels: Achanta et al. 2012, SLIC";
  m.summary = "output drop when each feature group (superpixel, grid cell, mask label) is set to the baseline";
  OptionTable<FeatureAblationOptions> t;
  add_features_row(t, &FeatureAblationOptions::features);
  add_blackbox(r, m, std::move(t), feature_ablation);
}

}  // namespace salient
