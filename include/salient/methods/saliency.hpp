#pragma once
// Simple gradient (Simonyan et al. 2014): d f(x)[target] / dx, one backward pass.
#include "salient/method.hpp"
#include "salient/option_table.hpp"

namespace salient {

struct SaliencyOptions {
  bool abs = true;  // absolute value of the gradient, as Captum's Saliency
};

class Saliency final : public Method {
 public:
  explicit Saliency(SaliencyOptions options = {}) : options_(options) {}
  const MethodInfo& info() const override;
  nlohmann::json params() const override;
  static const OptionTable<SaliencyOptions>& options_table();
  static SaliencyOptions parse(const nlohmann::json& options);

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  SaliencyOptions options_;
};

}  // namespace salient
