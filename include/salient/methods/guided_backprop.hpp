#pragma once
// ReLU-rule methods: Guided Backprop (Springenberg et al. 2015) passes back only positive gradients
// through ReLUs that were active; Deconvnet (Zeiler & Fergus 2014) passes back positive gradients
// whatever the ReLU's input. Guided Grad-CAM (Selvaraju et al. 2017) is Guided Backprop times the
// Grad-CAM map. Every other op keeps its gradient.
#include "salient/backprop.hpp"
#include "salient/method.hpp"
#include "salient/option_table.hpp"

namespace salient {

struct GuidedOptions {
  int64_t batch = 10;  // inputs per forward/backward pass
};

class GuidedBackprop final : public Method {
 public:
  GuidedBackprop(ReluMode mode, GuidedOptions options);
  const MethodInfo& info() const override;
  nlohmann::json params() const override { return options_table().params(options_); }
  static const OptionTable<GuidedOptions>& options_table();
  static GuidedOptions parse(const nlohmann::json& options, const std::string& name);
  void check(Model& model, const torch::Tensor&) override { graph_for(model); }

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  BackpropGraph& graph_for(Model& model);  // the rewritten graph (built, and checked, once per module)
  ReluMode mode_;
  GuidedOptions options_;
  BackpropCache cache_;
};

class GuidedGradCam final : public Method {
 public:
  GuidedGradCam(MethodInfo info, nlohmann::json options);
  const MethodInfo& info() const override { return info_; }
  nlohmann::json params() const override;
  void check(Model& model, const torch::Tensor& example) override {
    guided_->check(model, example);
    cam_->check(model, example);
  }

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  MethodInfo info_;
  std::unique_ptr<Method> guided_, cam_;
};

}  // namespace salient
