#pragma once
// Integrated Gradients (Sundararajan et al. 2017): (x - x0) * integral_0^1 grad f(x0 + a (x - x0)) da,
// by quadrature, with the completeness gap |sum(attr) - (f(x) - f(x0))| reported per input, and
// adaptive steps that double until the relative gap is within tolerance.
#include "salient/baseline.hpp"
#include "salient/gradients.hpp"
#include "salient/method.hpp"
#include "salient/option_table.hpp"
#include "salient/path.hpp"

namespace salient {

struct IntegratedGradientsOptions {
  int64_t steps = 50;
  bool auto_steps = false;   // steps "auto": 8, 16, 32, ... until the relative gap <= tolerance
  double tolerance = 0.01;   // relative completeness gap: the goal of auto steps, a warning above it
  int64_t max_steps = 4096;  // the ceiling of auto steps
  Quadrature quadrature = Quadrature::GaussLegendre;
  Baseline baseline;         // zeros
  int64_t batch = kDefaultBatch;
  uint64_t seed = 0;         // for the uniform baseline
};

class IntegratedGradients final : public Method {
 public:
  explicit IntegratedGradients(IntegratedGradientsOptions options = {}) : options_(std::move(options)) {}
  const MethodInfo& info() const override;
  nlohmann::json params() const override;
  void check(Model&, const torch::Tensor& example) override { options_.baseline.make(example[0], options_.seed); }
  static const OptionTable<IntegratedGradientsOptions>& options_table();
  static IntegratedGradientsOptions parse(const nlohmann::json& options, const ModelMetadata& meta);

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  IntegratedGradientsOptions options_;
};

}  // namespace salient
