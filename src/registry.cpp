#include "salient/registry.hpp"

#include "salient/error.hpp"

namespace salient {

Registry& Registry::builtin() {
  static Registry* r = [] {
    auto* reg = new Registry();
    register_saliency(*reg);
    register_smoothgrad(*reg);
    register_input_x_gradient(*reg);
    register_integrated_gradients(*reg);
    register_gradient_shap(*reg);
    register_linear_weights(*reg);
    register_cams(*reg);
    register_guided_backprop(*reg);
    register_guided_grad_cam(*reg);  // after the CAMs: it takes grad-cam's options
    register_lrp(*reg);
    register_deeplift(*reg);
    register_occlusion(*reg);
    register_feature_ablation(*reg);
    register_rise(*reg);
    register_lime(*reg);
    register_kernel_shap(*reg);
    register_shapley_sampling(*reg);
    return reg;
  }();
  return *r;
}

void Registry::add(MethodInfo info, Factory factory) {
  std::string name = info.name;
  entries_[name] = Entry{std::move(info), std::move(factory)};
}

bool Registry::has(const std::string& name) const { return entries_.count(name) > 0; }

const MethodInfo& Registry::info(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    std::string known;
    for (const auto& kv : entries_) known += (known.empty() ? "" : ", ") + kv.first;
    throw Error("unknown method '" + name + "' (available: " + known + ")");
  }
  return it->second.info;
}

std::unique_ptr<Method> Registry::create(const std::string& name, const nlohmann::json& options,
                                         const ModelMetadata& meta) const {
  info(name);  // throws for unknown names
  return entries_.at(name).factory(options.is_null() ? nlohmann::json::object() : options, meta);
}

std::vector<std::string> Registry::names() const {
  std::vector<std::string> out;
  for (const auto& kv : entries_) out.push_back(kv.first);
  return out;
}

}  // namespace salient
