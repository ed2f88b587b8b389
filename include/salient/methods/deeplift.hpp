#pragma once
// DeepLIFT with the rescale rule (Shrikumar et al. 2017), as Captum's DeepLift: inputs and
// baselines run in one batch; every elementwise non-linearity's gradient is replaced by the
// multiplier (f(x) - f(x0)) / (x - x0), max pooling's by Captum's split of the output difference;
// linear ops keep their gradients. Attributions are (x - x0) * multipliers and sum to
// f(x) - f(x0) (summation-to-delta); the gap is reported per input.
#include "salient/backprop.hpp"
#include "salient/baseline.hpp"
#include "salient/method.hpp"
#include "salient/option_table.hpp"

namespace salient {

struct DeepLiftOptions {
  Baseline baseline;  // zeros
  int64_t batch = 10;  // inputs per pass (each pass runs 2x this: inputs and baselines)
  uint64_t seed = 0;   // for the uniform baseline
};

class DeepLift final : public Method {
 public:
  explicit DeepLift(DeepLiftOptions options = {}) : options_(std::move(options)) {}
  const MethodInfo& info() const override;
  nlohmann::json params() const override;
  static const OptionTable<DeepLiftOptions>& options_table();
  static DeepLiftOptions parse(const nlohmann::json& options, const ModelMetadata& meta);
  void check(Model& model, const torch::Tensor& example) override {
    options_.baseline.make(example[0], options_.seed);
    graph_for(model);
  }

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  BackpropGraph& graph_for(Model& model);  // the rewritten graph (built, and checked, once per module)
  DeepLiftOptions options_;
  BackpropCache cache_;
};

}  // namespace salient
