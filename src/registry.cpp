#include "salient/registry.hpp"

#include <algorithm>
#include <set>

#include "salient/error.hpp"

namespace salient {

// The built-in methods, in registration order: the one place a new method is added. Each name's
// file defines `void register_<name>(Registry&)` (one may register several methods: cams registers
// the eight CAMs). Sources are found by CMake's glob, so nothing else lists them. An explicit list,
// because static self-registration is silently dropped when linking a static library.
#define SALIENT_BUILTIN_METHODS(X)                                                                              \
  X(saliency) X(smoothgrad) X(input_x_gradient) X(integrated_gradients) X(gradient_shap) X(linear_weights)      \
  X(cams) X(guided_backprop) X(guided_grad_cam) /* after the CAMs: it takes grad-cam's options */ X(lrp)        \
  X(deeplift) X(occlusion) X(feature_ablation) X(rise) X(lime) X(kernel_shap) X(shapley_sampling)               \
  X(noise_tunnel)

#define SALIENT_DECLARE(name) void register_##name(Registry&);
SALIENT_BUILTIN_METHODS(SALIENT_DECLARE)
#undef SALIENT_DECLARE

Registry& Registry::builtin() {
  static Registry* r = [] {
    auto* reg = new Registry();
#define SALIENT_REGISTER(name) register_##name(*reg);
    SALIENT_BUILTIN_METHODS(SALIENT_REGISTER)
#undef SALIENT_REGISTER
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
  for (const auto& m : methods) {
    for (const auto& o : info(m).options) valid.insert(o.name);
    // A method that wraps another (noise-tunnel's base) takes the options of the one it wraps.
    if (const std::string& key = info(m).options_of; !key.empty()) {
      std::string wrapped;
      for (const auto& o : info(m).options)
        if (o.name == key) wrapped = o.default_value.get<std::string>();
      const nlohmann::json mine = options_for(m, options);
      if (mine.contains(key) && mine[key].is_string()) wrapped = mine[key].get<std::string>();
      if (has(wrapped) && wrapped != m)
        for (const auto& o : info(wrapped).options) valid.insert(o.name);
    }
  }
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

void apply_background(nlohmann::json& options, const std::vector<std::string>& methods, const std::string& file,
                      int64_t max_rows, int64_t k) {
  if (file.empty()) return;
  if (max_rows < 1 || k < 0) throw Error("--background-max must be >= 1 and --background-k >= 1");
  const std::string spec = k > 0 ? "kmeans:" + std::to_string(k) + ":" + file : "sample:" + std::to_string(max_rows) + ":" + file;
  bool taken = false;
  for (const auto& m : methods) {
    if (!Registry::builtin().has(m) || !Registry::builtin().info(m).background) continue;
    taken = true;
    const std::string key = m == "gradient-shap" ? "baselines" : "baseline";
    if (!options.contains(key) && !options.contains(m + "." + key)) options[m + "." + key] = spec;
  }
  if (!taken)
    throw Error("--background: none of the methods takes a background set (kernel-shap, shapley-sampling, feature-ablation, "
                "lime, integrated-gradients and gradient-shap do)");
}

}  // namespace salient
