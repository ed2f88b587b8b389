#include "salient/methods/input_x_gradient.hpp"

#include "salient/gradients.hpp"
#include "salient/registry.hpp"

namespace salient {

const MethodInfo& InputXGradient::info() const {
  static const MethodInfo i = [] {
    MethodInfo m;
    m.name = "input-x-gradient";
    m.title = "Input x Gradient";
    m.family = Family::Gradient;
    m.paper = "Shrikumar et al. 2016, Not Just a Black Box: Learning Important Features Through Propagating Activation Differences";
    m.summary = "gradient times input: a first-order estimate of each element's contribution against a zero input";
    return m;
  }();
  return i;
}

torch::Tensor InputXGradient::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                      Attribution& out) {
  return target_gradient(model, inputs, targets, &out.scores) * inputs;
}

void register_input_x_gradient(Registry& r) {
  r.add(InputXGradient().info(), [](const nlohmann::json&, const ModelMetadata&) { return std::make_unique<InputXGradient>(); });
}

}  // namespace salient
