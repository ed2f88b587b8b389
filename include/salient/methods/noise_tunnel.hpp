#pragma once
// NoiseTunnel (Captum's name): SmoothGrad, SmoothGrad^2 and VarGrad around any other method —
// smoothed Integrated Gradients, Guided Backprop, LRP, DeepLIFT, Input x Gradient. The statistic of
// the base method's maps of `samples` noisy copies of the input, with SmoothGrad's noise (the same
// copies: noise-tunnel around `saliency --no-abs` is `smoothgrad`, tested).
#include "salient/method.hpp"
#include "salient/methods/smoothgrad.hpp"
#include "salient/noise.hpp"

namespace salient {

struct NoiseTunnelOptions {
  std::string base = "integrated-gradients";  // the method whose maps are smoothed
  int64_t samples = 10;
  double sigma = 0.15;  // noise standard deviation as a fraction of the input's max - min
  NoiseKind noise = NoiseKind::Gaussian;
  SmoothGradVariant variant = SmoothGradVariant::Mean;
  int64_t copies = kDefaultBatch;  // noisy copies per call of the base method (its own batch-size bounds its passes)
  uint64_t seed = 0;
};

class NoiseTunnel final : public Method {
 public:
  NoiseTunnel(NoiseTunnelOptions options, std::unique_ptr<Method> base) : options_(std::move(options)), base_(std::move(base)) {}
  const MethodInfo& info() const override;
  nlohmann::json params() const override;
  void check(Model& model, const torch::Tensor& example) override { base_->check(model, example); }
  static const OptionTable<NoiseTunnelOptions>& options_table();
  static NoiseTunnelOptions parse(const nlohmann::json& options);

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  NoiseTunnelOptions options_;
  std::unique_ptr<Method> base_;
};

}  // namespace salient
