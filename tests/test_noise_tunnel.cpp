// noise-tunnel: SmoothGrad, SmoothGrad^2 and VarGrad around any method.
#include <gtest/gtest.h>

#include <map>

#include "helpers.hpp"
#include "salient/dataset.hpp"
#include "salient/error.hpp"
#include "salient/noise.hpp"
#include "salient/registry.hpp"

using namespace salient;

namespace {

torch::Tensor demo_inputs(int64_t n, Model& model) {
  Dataset d = Dataset::open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", model.metadata()).limit(n);
  std::vector<torch::Tensor> xs;
  for (int64_t i = 0; i < n; ++i) xs.push_back(d.get(i, false).input.tensor);
  return torch::stack(xs);
}

}  // namespace

TEST(NoiseTunnel, AroundSignedSaliencyItIsSmoothGrad) {
  Model model(test::demo_model());
  const torch::Tensor x = demo_inputs(3, model), t = torch::tensor({9, 2, 1}, torch::kLong);
  for (const std::string noise : {"gaussian", "quasi"})
    for (const std::string variant : {"smoothgrad", "vargrad"}) {
      const nlohmann::json o{{"samples", 12}, {"sigma", 0.2}, {"seed", 3}, {"noise", noise}, {"variant", variant}};
      nlohmann::json tunnel = o;
      tunnel["base"] = "saliency";
      tunnel["abs"] = false;
      const torch::Tensor a = Registry::builtin().create("smoothgrad", o)->attribute(model, x, t).map;
      const torch::Tensor b = Registry::builtin().create("noise-tunnel", tunnel)->attribute(model, x, t).map;
      EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-7)) << noise << " " << variant << ": " << (a - b).abs().max().item<double>();
    }
}

TEST(NoiseTunnel, AroundIntegratedGradientsOnALinearModelIsTheMeanOfTheNoisyClosedForms) {
  // IG of a linear model from a zero baseline is exactly (x + e_k) * w for copy k: the tunnel's mean
  // is (x + mean_k e_k) * w, with the noise drawn here from the same seed.
  const torch::Tensor w = torch::randn({3, 12}), b = torch::randn({3});
  Model model(test::linear_module(w, b));
  const torch::Tensor x = torch::randn({2, 12}), t = torch::tensor({0, 2}, torch::kLong);
  const nlohmann::json o{{"base", "integrated-gradients"}, {"samples", 8}, {"sigma", 0.3}, {"seed", 5}, {"steps", 8}};
  const torch::Tensor map = Registry::builtin().create("noise-tunnel", o)->attribute(model, x, t).map;
  for (int64_t i = 0; i < 2; ++i) {
    const double sd = 0.3 * (x[i].max() - x[i].min()).item<double>();
    const torch::Tensor noise = make_noise(NoiseKind::Gaussian, 8, 0, 8, {12}, sd, 5, torch::kCPU);
    const torch::Tensor expected = (x[i] + noise.mean(0)) * w[t[i].item<int64_t>()];
    EXPECT_TRUE(torch::allclose(map[i], expected, 1e-4, 1e-5)) << (map[i] - expected).abs().max().item<double>();
  }
}

TEST(NoiseTunnel, WrapsEveryGradientFamilyAndWithoutNoiseIsItsBase) {
  Model model(test::demo_model());
  const torch::Tensor x = demo_inputs(2, model), t = torch::tensor({9, 2}, torch::kLong);
  for (const std::string base : {"integrated-gradients", "input-x-gradient", "guided-backprop", "lrp", "deeplift"}) {
    nlohmann::json o{{"base", base}, {"samples", 3}, {"steps", 8}};
    auto tunnel = Registry::builtin().create("noise-tunnel", o);
    tunnel->check(model, x.slice(0, 0, 1));
    const torch::Tensor smoothed = tunnel->attribute(model, x, t).map;
    auto plain = Registry::builtin().create(base, o);
    plain->check(model, x.slice(0, 0, 1));
    const torch::Tensor alone = plain->attribute(model, x, t).map;
    EXPECT_TRUE(torch::isfinite(smoothed).all().item<bool>()) << base;
    EXPECT_FALSE(torch::allclose(smoothed, alone, 1e-3, 1e-5)) << base << ": the noise changed nothing";
    // sigma 0: every copy is the input, so the mean of the copies' maps is the base's map.
    o["sigma"] = 0.0;
    auto still = Registry::builtin().create("noise-tunnel", o);
    still->check(model, x.slice(0, 0, 1));
    EXPECT_TRUE(torch::allclose(still->attribute(model, x, t).map, alone, 1e-4, 1e-6)) << base;
  }
}

TEST(NoiseTunnel, TakesItsBasesOptionsAndRefusesOthers) {
  Registry::builtin().check_option_keys({{"base", "integrated-gradients"}, {"steps", 16}, {"samples", 4}}, {"noise-tunnel"});
  Registry::builtin().check_option_keys({{"noise-tunnel.base", "lrp"}, {"composite", "epsilon"}}, {"noise-tunnel"});
  EXPECT_THROW(Registry::builtin().check_option_keys({{"base", "lrp"}, {"steps", 16}}, {"noise-tunnel"}), salient::Error);
  EXPECT_THROW(Registry::builtin().create("noise-tunnel", {{"base", "noise-tunnel"}}), salient::Error);
  EXPECT_THROW(Registry::builtin().create("noise-tunnel", {{"base", "no-such-method"}}), salient::Error);
  const auto p = Registry::builtin().create("noise-tunnel", {{"base", "integrated-gradients"}, {"steps", 16}})->params();
  EXPECT_EQ(p["base_params"]["steps"], 16);
}

// Every method hears a cancellation mid-run: a progress callback that throws Cancelled on its second
// call (as the server's --timeout and a job's DELETE do) stops each method that makes several
// passes before its end. NoiseTunnel used to report only after each chunk of its base (hours of IG
// with many steps), and IG reported nothing.
TEST(NoiseTunnel, EveryMethodIsCancelledMidRun) {
  Model model(test::demo_model());
  const torch::Tensor x = torch::rand({2, 1, 28, 28});
  const torch::Tensor t = torch::tensor({1, 7}, torch::kLong);
  // Options that make each a run of several passes (batch-size 1).
  const std::map<std::string, nlohmann::json> several = {
      {"smoothgrad", {{"samples", 6}, {"batch-size", 1}}},
      {"noise-tunnel", {{"samples", 2}, {"copies", 2}, {"base", "integrated-gradients"}, {"steps", 64}, {"batch-size", 4}}},
      {"integrated-gradients", {{"steps", 32}, {"batch-size", 4}}},
      {"gradient-shap", {{"samples", 8}, {"batch-size", 2}}},
      {"occlusion", {{"window", "7x7"}, {"stride", "7x7"}, {"batch-size", 2}}},
      {"rise", {{"samples", 64}, {"batch-size", 8}}},
      {"kernel-shap", {{"samples", 64}, {"batch-size", 8}}},
      {"lime", {{"samples", 64}, {"batch-size", 8}}},
      {"shapley-sampling", {{"samples", 2}, {"batch-size", 4}}},
      {"feature-ablation", {{"batch-size", 4}}},
      {"score-cam", {{"batch-size", 2}}},
      {"ablation-cam", {{"batch-size", 2}}}};
  for (const auto& [name, options] : several) {
    auto method = Registry::builtin().create(name, options, model.metadata());
    int calls = 0;
    method->set_progress([&calls](double f) {
      if (++calls == 2 && f < 1.0) throw Cancelled("cancelled");
    });
    bool cancelled = false;
    try {
      method->attribute(model, x, t);
    } catch (const Cancelled&) {
      cancelled = true;
    }
    EXPECT_TRUE(cancelled) << name << ": " << calls << " progress calls, never cancelled mid-run";
  }
}
