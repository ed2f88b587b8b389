#pragma once
// SmoothGrad (Smilkov et al. 2017) and its variants SmoothGrad^2 and VarGrad (Adebayo et al.
// 2018): statistics of the gradients of `samples` noisy copies of the input.
#include "salient/gradients.hpp"
#include "salient/method.hpp"
#include "salient/noise.hpp"
#include "salient/option_table.hpp"

namespace salient {

enum class SmoothGradVariant { Mean, Squared, Variance };  // smoothgrad, smoothgrad-sq, vargrad

// The statistic of `samples` maps from their sum and sum of squares (float64): the mean, the mean
// square, or the variance. Shared with noise-tunnel. Variant names: smoothgrad, smoothgrad-sq, vargrad.
torch::Tensor sample_statistic(SmoothGradVariant variant, const torch::Tensor& sum, const torch::Tensor& sum_sq, int64_t samples);
const std::vector<std::string>& smoothgrad_variants();
std::string to_string(SmoothGradVariant v);

// The rows SmoothGrad and NoiseTunnel share: samples, sigma, noise and variant (of what: "gradients",
// "maps"), over members of those names.
template <class O>
OptionTable<O>& add_noise_rows(OptionTable<O>& t, const std::string& of) {
  return t.integer("samples", &O::samples, 1, "noisy copies per input")
      .real("sigma", &O::sigma, 0.0, "noise standard deviation as a fraction of the input's max - min")
      .choice("noise", &O::noise, noise_names(), "noise sampler")
      .choice("variant", &O::variant, smoothgrad_variants(), "statistic of the " + of);
}

struct SmoothGradOptions {
  int64_t samples = 50;
  double sigma = 0.15;  // noise standard deviation as a fraction of the input's max - min
  NoiseKind noise = NoiseKind::Gaussian;
  SmoothGradVariant variant = SmoothGradVariant::Mean;
  int64_t batch = kDefaultBatch;  // noisy copies per forward/backward: bounds memory
  uint64_t seed = 0;
};

class SmoothGrad final : public Method {
 public:
  explicit SmoothGrad(SmoothGradOptions options = {}) : options_(options) {}
  const MethodInfo& info() const override;
  nlohmann::json params() const override;
  static const OptionTable<SmoothGradOptions>& options_table();
  static SmoothGradOptions parse(const nlohmann::json& options);

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  SmoothGradOptions options_;
};

}  // namespace salient
