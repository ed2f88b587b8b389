#pragma once
// GradientShap / Expected Gradients (Lundberg & Lee 2017; Erion et al. 2021): the mean over random
// baselines x0 from a set and random points a in [0,1] of (x' - x0) * grad f(x0 + a (x' - x0)),
// where x' is the input with optional Gaussian noise.
#include "salient/gradients.hpp"
#include "salient/method.hpp"
#include "salient/option_table.hpp"

namespace salient {

struct GradientShapOptions {
  int64_t samples = 50;
  torch::Tensor baselines;   // [M, ...]; undefined = a single zero baseline
  torch::Tensor weights;     // [M] a background set's weights (k-means); undefined = equal
  std::string baselines_spec = "zeros";
  int64_t baseline_count = 100;  // at most this many baselines are read from a set
  double sigma = 0.0;        // input noise sd as a fraction of the input's max - min
  int64_t batch = kDefaultBatch;
  uint64_t seed = 0;
};

class GradientShap final : public Method {
 public:
  explicit GradientShap(GradientShapOptions options = {}) : options_(std::move(options)) {}
  const MethodInfo& info() const override;
  nlohmann::json params() const override;
  static const OptionTable<GradientShapOptions>& options_table();
  static GradientShapOptions parse(const nlohmann::json& options, const ModelMetadata& meta);

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  GradientShapOptions options_;
};

}  // namespace salient
