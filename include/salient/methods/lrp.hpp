#pragma once
// Layer-wise Relevance Propagation (Bach et al. 2015; Montavon et al. 2019): the target output is
// redistributed layer by layer down to the input, each convolution or linear layer by its rule
// (epsilon, gamma, alpha-beta, z+, z^B, flat, w^2), assigned by a named composite. Batch norm is
// folded into the layer before it (the canonizer); additions split relevance in proportion to their
// inputs, pooling and other affine ops use the epsilon rule, activations pass relevance through.
// Relevance at the output is f(x)[target], so sum(map) = f(x)[target] up to what biases and
// stabilisers absorb: the gap is reported per input, and per layer.
#include "salient/backprop.hpp"
#include "salient/method.hpp"
#include "salient/option_table.hpp"

namespace salient {

struct LrpOptions {
  std::string composite = "epsilon-gamma-box";
  std::string rule;        // non-empty: this rule on every convolution and linear layer
  double epsilon = 1e-6;   // the epsilon rule's stabiliser
  double gamma = 0.25;
  double alpha = 2.0, beta = 1.0;
  std::vector<double> low, high;  // z^B input bounds; empty: the metadata's, else each input's min/max
  bool canonize = true;           // fold batch norm into the preceding convolution / linear layer
  int64_t batch = 10;
  bool layers = false;            // per-layer relevance totals in the diagnostics (~15 % slower)
};

class Lrp final : public Method {
 public:
  explicit Lrp(LrpOptions options = {}) : options_(std::move(options)) {}
  const MethodInfo& info() const override;
  nlohmann::json params() const override;
  static const OptionTable<LrpOptions>& options_table();
  static LrpOptions parse(const nlohmann::json& options, const ModelMetadata& meta);
  static const std::vector<std::string>& composites();
  static const std::vector<std::string>& rules();
  void check(Model& model, const torch::Tensor&) override { graph_for(model); }

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  BackpropGraph& graph_for(Model& model);  // the rewritten graph (built, and checked, once per module)
  LrpOptions options_;
  BackpropCache cache_;
  std::string head_;  // the output head (sigmoid/softmax) the rewritten graph dropped, if any
};

}  // namespace salient
