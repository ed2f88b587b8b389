#pragma once
// Input x Gradient (Shrikumar et al. 2016): x * d f(x)[target] / dx.
#include "salient/method.hpp"

namespace salient {

class InputXGradient final : public Method {
 public:
  const MethodInfo& info() const override;
  nlohmann::json params() const override { return nlohmann::json::object(); }

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;
};

}  // namespace salient
