#include "salient/methods/saliency.hpp"

#include "salient/gradients.hpp"
#include "salient/registry.hpp"

namespace salient {

const MethodInfo& Saliency::info() const {
  static const MethodInfo i = [] {
    MethodInfo m;
    m.name = "saliency";
    m.title = "Simple gradient (saliency)";
    m.family = Family::Gradient;
    m.paper = "Simonyan, Vedaldi & Zisserman 2014, Deep Inside Convolutional Networks";
    m.summary = "gradient of the target output with respect to each input element; one backward pass";
    m.options = options_table().specs();
    return m;
  }();
  return i;
}

const OptionTable<SaliencyOptions>& Saliency::options_table() {
  static const auto t = OptionTable<SaliencyOptions>().flag("abs", &SaliencyOptions::abs, "absolute value of the gradient (as Captum's Saliency)");
  return t;
}

SaliencyOptions Saliency::parse(const nlohmann::json& options) { return options_table().parse(options, {"saliency", ModelMetadata{}}); }

nlohmann::json Saliency::params() const { return options_table().params(options_); }

torch::Tensor Saliency::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                Attribution& out) {
  torch::Tensor g = target_gradient(model, inputs, targets, &out.scores);
  return options_.abs ? g.abs() : g;
}

void register_saliency(Registry& r) {
  r.add(Saliency().info(), [](const nlohmann::json& o, const ModelMetadata&) { return std::make_unique<Saliency>(Saliency::parse(o)); });
}

}  // namespace salient
