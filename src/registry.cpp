#include "salient/registry.hpp"

#include <algorithm>
#include <set>

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

nlohmann::json options_for(const std::string& method, const nlohmann::json& options) {
  nlohmann::json out = nlohmann::json::object();
  if (!options.is_object()) return out;
  for (auto it = options.begin(); it != options.end(); ++it)
    if (it.key().find('.') == std::string::npos) out[it.key()] = it.value();
  const std::string prefix = method + ".";
  for (auto it = options.begin(); it != options.end(); ++it)
    if (it.key().rfind(prefix, 0) == 0) out[it.key().substr(prefix.size())] = it.value();
  return out;
}

std::unique_ptr<Method> Registry::create(const std::string& name, const nlohmann::json& options,
                                         const ModelMetadata& meta) const {
  info(name);  // throws for unknown names
  return entries_.at(name).factory(options_for(name, options), meta);
}


void Registry::check_option_keys(const nlohmann::json& options, const std::vector<std::string>& methods) const {
  if (!options.is_object()) return;
  std::set<std::string> valid = {"batch-size"};  // explain's input chunks: every method takes it
  for (const auto& m : methods)
    for (const auto& o : info(m).options) valid.insert(o.name);
  std::string list;
  for (const auto& m : methods) list += (list.empty() ? "" : ", ") + m;
  for (auto it = options.begin(); it != options.end(); ++it) {
    const std::string& key = it.key();
    if (valid.count(key)) continue;
    if (const size_t dot = key.find('.'); dot != std::string::npos) {  // "smoothgrad.samples": that method's only
      const std::string method = key.substr(0, dot), option = key.substr(dot + 1);
      if (std::find(methods.begin(), methods.end(), method) == methods.end())
        throw Error("option '" + key + "' is for " + method + ", which this run does not use (methods: " + list + ")");
      check_option_keys(nlohmann::json{{option, it.value()}}, {method});
      continue;
    }
    std::string msg = "option '" + key + "' is not an option of " + list;
    std::vector<std::string> takers;
    for (const auto& [name, e] : entries_)
      for (const auto& o : e.info.options)
        if (o.name == key) takers.push_back(name);
    if (!takers.empty()) {
      msg += " (" + takers[0] + (takers.size() > 1 ? " and " + std::to_string(takers.size() - 1) + " other methods take" : " takes") + " it)";
    } else if (!valid.empty()) {
      std::string best;
      size_t best_d = SIZE_MAX;
      for (const auto& v : valid)
        if (const size_t d = edit_distance(key, v); d < best_d) best_d = d, best = v;
      msg += "; did you mean '" + best + "'?";
    }
    throw Error(msg);
  }
}

std::vector<std::string> Registry::names() const {
  std::vector<std::string> out;
  for (const auto& kv : entries_) out.push_back(kv.first);
  return out;
}

}  // namespace salient
