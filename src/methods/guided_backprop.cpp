#include "salient/methods/guided_backprop.hpp"

#include <torch/csrc/jit/ir/ir.h>

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

MethodInfo guided_info(ReluMode mode) {
  MethodInfo m;
  m.family = Family::ModifiedBackprop;
  m.specificity = Specificity::ModelSpecific;
  if (mode == ReluMode::Guided) {
    m.name = "guided-backprop";
    m.title = "Guided Backpropagation";
    m.paper = "Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net";
    m.summary = "gradient where every ReLU passes back only positive gradients, and only where it was active";
  } else {
    m.name = "deconvnet";
    m.title = "Deconvnet";
    m.paper = "Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks";
    m.summary = "gradient where every ReLU passes back the positive part of the gradient, active or not";
  }
  m.options = GuidedBackprop::options_table().specs();
  return m;
}

}  // namespace

GuidedBackprop::GuidedBackprop(ReluMode mode, GuidedOptions options) : mode_(mode), options_(options) {}

const MethodInfo& GuidedBackprop::info() const {
  static const MethodInfo guided = guided_info(ReluMode::Guided), deconv = guided_info(ReluMode::Deconv);
  return mode_ == ReluMode::Guided ? guided : deconv;
}

const OptionTable<GuidedOptions>& GuidedBackprop::options_table() {
  static const auto t = OptionTable<GuidedOptions>().integer("batch-size", &GuidedOptions::batch, 1, "inputs per forward/backward pass");
  return t;
}

GuidedOptions GuidedBackprop::parse(const nlohmann::json& options, const std::string& name) {
  return options_table().parse(options, {name, ModelMetadata{}});
}

BackpropGraph& GuidedBackprop::graph_for(Model& model) {
  return cache_.get(model, [this](BackpropGraph& g) {
    // Every elementwise activation (ReLU, and SiLU, hardswish, GELU, sigmoid gates...): Guided
    // Backprop passes only positive gradients into its local gradient; Deconvnet passes the positive
    // gradient straight through, as it does at a ReLU.
    size_t activations = 0;
    for (const PathNode& p : g.path()) {
      if (p.kind != OpKind::Activation) continue;
      torch::jit::Value* x = p.node->input(0);
      torch::jit::Value* y = p.node->output();
      ReluMode mode = mode_;
      if (mode_ == ReluMode::Deconv || p.op == "aten::relu") g.detach_input(p.node, 0);
      else mode = ReluMode::GuidedAny;
      g.wrap(p.node, y, "salient::relu_rule", {x, y, g.constant(static_cast<int64_t>(mode)), g.constant(p.site)});
      ++activations;
    }
    if (activations == 0)
      throw Error(info().name + ": the model has no activation on the input's path, so the map would be the plain gradient (use saliency)");
  });
}

torch::Tensor GuidedBackprop::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                      Attribution& out) {
  BackpropGraph& graph = graph_for(model);
  std::vector<torch::Tensor> maps, scores;
  for_chunks(inputs.size(0), options_.batch, [&](int64_t b, int64_t e) {
    scores.emplace_back();
    maps.push_back(modified_gradient(graph, inputs.slice(0, b, e), targets.slice(0, b, e), {}, false, &scores.back()).cpu());
    report_progress(static_cast<double>(e) / inputs.size(0));
  });
  out.scores = torch::cat(scores);
  return torch::cat(maps);
}

void register_guided_backprop(Registry& r) {
  for (ReluMode mode : {ReluMode::Guided, ReluMode::Deconv}) {
    MethodInfo info = guided_info(mode);
    r.add(info, [mode, name = info.name](const nlohmann::json& o, const ModelMetadata&) {
      return std::make_unique<GuidedBackprop>(mode, GuidedBackprop::parse(o, name));
    });
  }
}

}  // namespace salient
