#pragma once
// The black-box (perturbation) methods: they only call the model forward, so they work on any
// model, TorchScript or ONNX. One class; each method file supplies its rule (how it perturbs and
// how it turns scores into a map) and its defaults.
#include <functional>

#include "salient/method.hpp"
#include "salient/perturb.hpp"

namespace salient {

struct BlackBoxOptions {
  Baseline baseline;              // what removed features become (default zeros)
  GroupSpec features;             // feature groups (feature-ablation, lime, kernel-shap, shapley-sampling)
  int64_t samples = 0;            // masks / samples / permutations
  int64_t batch = 32;             // perturbed inputs per forward pass
  uint64_t seed = 0;
  std::vector<int64_t> window;    // occlusion: window shape (trailing dims; empty = auto)
  std::vector<int64_t> stride;    // occlusion: strides (empty = half the window)
  int64_t grid = 7;               // rise: mask grid cells per side
  double keep = 0.5;              // rise: probability a cell is kept
  double kernel_width = 0.25;     // lime: exponential kernel width on cosine distance
  double ridge = 1.0;             // lime: ridge penalty
};

// One input x (no batch dimension) and its baseline -> the map of x's shape; may add per-input
// diagnostics (scalars) to `diag`.
struct BlackBoxCall {
  Model& model;
  const torch::Tensor& x;
  const torch::Tensor& baseline;
  int64_t target;
  const BlackBoxOptions& options;
  nlohmann::json& diag;                          // per-input scalars
  std::map<std::string, torch::Tensor>& extra;   // per-input extra maps (x's shape)
  std::function<void(double)> progress;          // fraction of this input's forward passes done
};
using BlackBoxRule = std::function<torch::Tensor(const BlackBoxCall&)>;

class BlackBox final : public Method {
 public:
  BlackBox(MethodInfo info, BlackBoxRule rule, BlackBoxOptions options)
      : info_(std::move(info)), rule_(std::move(rule)), options_(std::move(options)) {}
  const MethodInfo& info() const override { return info_; }
  nlohmann::json params() const override;
  void check(Model&, const torch::Tensor& example) override { options_.baseline.make(example[0], options_.seed); }

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  MethodInfo info_;
  BlackBoxRule rule_;
  BlackBoxOptions options_;
};

// Registers a black-box method: `info.options` lists its own options (read from JSON into
// BlackBoxOptions by the shared parser); baseline, batch-size and seed are added for every one.
void add_blackbox(class Registry& reg, MethodInfo info, BlackBoxOptions defaults, BlackBoxRule rule);

}  // namespace salient
