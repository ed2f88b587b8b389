#pragma once
// Name -> method factory, with each method's description (for `salient methods`, the CLI, the web).
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "salient/method.hpp"

namespace salient {

class Registry {
 public:
  // Options come as JSON; `meta` lets a factory load option files (baseline images) the way the
  // model's inputs are loaded. Factories read files, methods never do.
  using Factory = std::function<std::unique_ptr<Method>(const nlohmann::json& options, const ModelMetadata& meta)>;

  // The registry holding every built-in method.
  static Registry& builtin();

  void add(MethodInfo info, Factory factory);
  bool has(const std::string& name) const;
  // Throws salient::Error listing the known names when `name` is unknown.
  std::unique_ptr<Method> create(const std::string& name, const nlohmann::json& options = {},
                                 const ModelMetadata& meta = {}) const;
  const MethodInfo& info(const std::string& name) const;
  std::vector<std::string> names() const;
  // Every key of `options` must be an option of at least one of `methods` ("METHOD.KEY": an option
  // of METHOD, one of `methods`): else salient::Error
  // naming the key, the methods, the closest option of theirs and any other method that takes it.
  void check_option_keys(const nlohmann::json& options, const std::vector<std::string>& methods) const;

 private:
  struct Entry {
    MethodInfo info;
    Factory factory;
  };
  std::map<std::string, Entry> entries_;
};

// A background set (`--background FILE [--background-max M | --background-k K]`) as the baseline of
// every one of `methods` that takes sets (MethodInfo::background: its "baseline", gradient-shap's
// "baselines"), unless the options already name one for it. The spec is "sample:M:FILE" or
// "kmeans:K:FILE" (Baseline::parse). A background none of the methods takes is a salient::Error.
void apply_background(nlohmann::json& options, const std::vector<std::string>& methods, const std::string& file,
                      int64_t max_rows, int64_t k);

// The options one method sees: every unqualified key, then its own "METHOD.KEY" keys (which win).
nlohmann::json options_for(const std::string& method, const nlohmann::json& options);

}  // namespace salient
