#pragma once
// Linear weights: the intrinsic explanation of a model that is one linear (or logistic/softmax)
// layer. Its weight row of the target is the global explanation; weight * input the local one.
// Any other model gets an error naming the operation that makes it non-linear.
#include "salient/method.hpp"
#include "salient/option_table.hpp"

namespace salient {

struct LinearWeightsOptions {
  bool global = false;  // view "global": the weights; "local" (default): weights * input
};

// The weights W [K, F] of a model f(x) = g(W x.flatten() + b) with g one of identity, sigmoid,
// softmax, log_softmax; read from the TorchScript graph. Throws salient::Error otherwise.
torch::Tensor linear_model_weights(Model& model);

class LinearWeights final : public Method {
 public:
  explicit LinearWeights(LinearWeightsOptions options = {}) : options_(options) {}
  const MethodInfo& info() const override;
  nlohmann::json params() const override { return options_table().params(options_); }
  static const OptionTable<LinearWeightsOptions>& options_table();

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  LinearWeightsOptions options_;
};

}  // namespace salient
