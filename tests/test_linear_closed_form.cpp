// Closed-form cases on a linear model: d(Wx+b)[t]/dx = W[t] for every x, so every gradient
// statistic over noisy copies is known exactly.
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "salient/error.hpp"
#include "salient/methods/saliency.hpp"
#include "salient/methods/smoothgrad.hpp"
#include "salient/registry.hpp"

using namespace salient;

namespace {

struct LinearCase {
  torch::Tensor weight, bias;
  Model model;
};

LinearCase make_linear(int64_t features, int64_t classes) {
  torch::manual_seed(7);
  torch::Tensor w = torch::randn({classes, features});
  torch::Tensor b = torch::randn({classes});
  return {w, b, Model(test::linear_module(w, b))};
}

}  // namespace

TEST(LinearClosedForm, GradientIsTheWeightRowForTabularAndImageShapes) {
  auto lc = make_linear(48, 5);
  Saliency signed_grad(SaliencyOptions{false});
  for (auto shape : {std::vector<int64_t>{4, 48}, std::vector<int64_t>{4, 3, 4, 4}}) {
    torch::Tensor x = torch::randn(shape);
    torch::Tensor t = torch::tensor({0, 3, 4, 1}, torch::kLong);
    Attribution a = signed_grad.attribute(lc.model, x, t);
    ASSERT_EQ(a.map.sizes(), x.sizes());
    for (int64_t i = 0; i < 4; ++i)
      EXPECT_TRUE(torch::allclose(a.map[i].flatten(), lc.weight[t[i].item<int64_t>()], 1e-6, 1e-6)) << "row " << i;
    // The score is f(x)[t].
    torch::Tensor f = torch::matmul(x.flatten(1), lc.weight.t()) + lc.bias;
    for (int64_t i = 0; i < 4; ++i) EXPECT_NEAR(a.scores[i].item<double>(), f[i][t[i].item<int64_t>()].item<double>(), 1e-5);
  }
  Saliency abs_grad;  // default: |gradient|
  torch::Tensor x = torch::randn({2, 48});
  Attribution a = abs_grad.attribute(lc.model, x, torch::tensor({2, 2}, torch::kLong));
  EXPECT_TRUE(torch::allclose(a.map[0], lc.weight[2].abs(), 1e-6, 1e-6));
}

TEST(LinearClosedForm, SmoothGradIsTheWeightsForEveryNoiseAndVariantsAreExact) {
  auto lc = make_linear(30, 4);
  torch::Tensor x = torch::randn({3, 30}) * 5;
  torch::Tensor t = torch::tensor({1, 0, 3}, torch::kLong);
  for (auto noise : {NoiseKind::Gaussian, NoiseKind::Antithetic, NoiseKind::Quasi}) {
    for (double sigma : {0.0, 0.15, 2.0}) {
      SmoothGradOptions o;
      o.samples = 17;
      o.sigma = sigma;
      o.noise = noise;
      o.batch = 5;
      SCOPED_TRACE(to_string(noise) + " sigma " + std::to_string(sigma));
      o.variant = SmoothGradVariant::Mean;
      torch::Tensor mean = SmoothGrad(o).attribute(lc.model, x, t).map;
      o.variant = SmoothGradVariant::Squared;
      torch::Tensor sq = SmoothGrad(o).attribute(lc.model, x, t).map;
      o.variant = SmoothGradVariant::Variance;
      torch::Tensor var = SmoothGrad(o).attribute(lc.model, x, t).map;
      for (int64_t i = 0; i < 3; ++i) {
        torch::Tensor w = lc.weight[t[i].item<int64_t>()];
        EXPECT_TRUE(torch::allclose(mean[i], w, 1e-5, 1e-6));
        EXPECT_TRUE(torch::allclose(sq[i], w.square(), 1e-5, 1e-6));
        EXPECT_LT(var[i].abs().max().item<double>(), 1e-6);
      }
    }
  }
}

TEST(LinearClosedForm, ModelSavedToFileLoadsAndExplainsTheSame) {
  auto lc = make_linear(12, 3);
  test::TempDir dir;
  lc.model.module().save(dir / "linear.pt");
  Model loaded(dir / "linear.pt");
  torch::Tensor x = torch::randn({2, 12});
  torch::Tensor t = torch::tensor({2, 1}, torch::kLong);
  torch::Tensor g = Saliency(SaliencyOptions{false}).attribute(loaded, x, t).map;
  EXPECT_TRUE(torch::allclose(g[0], lc.weight[2]));
  EXPECT_TRUE(torch::allclose(g[1], lc.weight[1]));
  EXPECT_EQ(loaded.parameter_count(), 12 * 3 + 3);
}

TEST(Noise, AntitheticPairsCancelAndQuasiIsStratified) {
  torch::Tensor a = make_noise(NoiseKind::Antithetic, 10, {6}, 1.0, 3, torch::kCPU);
  EXPECT_TRUE(torch::equal(a.slice(0, 0, 10, 2), -a.slice(0, 1, 10, 2)));
  EXPECT_LT(a.sum(0).abs().max().item<double>(), 1e-6);
  // Latin hypercube: every coordinate has exactly one sample in each of the S probability strata.
  const int64_t s = 40;
  torch::Tensor q = make_noise(NoiseKind::Quasi, s, {25}, 1.0, 3, torch::kCPU);
  torch::Tensor u = 0.5 * (1 + torch::erf(q / std::sqrt(2.0)));  // back to uniforms
  torch::Tensor strata = std::get<0>((u * s).floor().to(torch::kLong).sort(0));
  EXPECT_TRUE(torch::equal(strata, torch::arange(s).unsqueeze(1).expand({s, 25})));
  // Same seed, same noise; another seed, other noise.
  EXPECT_TRUE(torch::equal(make_noise(NoiseKind::Gaussian, 4, {8}, 0.5, 11, torch::kCPU),
                           make_noise(NoiseKind::Gaussian, 4, {8}, 0.5, 11, torch::kCPU)));
  EXPECT_FALSE(torch::equal(make_noise(NoiseKind::Gaussian, 4, {8}, 0.5, 11, torch::kCPU),
                            make_noise(NoiseKind::Gaussian, 4, {8}, 0.5, 12, torch::kCPU)));
}

TEST(ModelOutputs, TupleListAndDictOutputsAreSelectedByIndexOrKey) {
  torch::manual_seed(12);
  torch::Tensor w = torch::randn({3, 4});
  auto make = [&](const std::string& body) {
    torch::jit::Module m("Multi");
    m.register_parameter("weight", w.clone(), false);
    m.define(body);
    return m;
  };
  torch::Tensor x = torch::randn({2, 4});
  torch::Tensor logits = torch::matmul(x, w.t());
  Model tuple(make(R"(
    def forward(self, x):
        return (torch.ones(1), torch.matmul(x, self.weight.t()))
  )"), ModelOptions{"cpu", "1"});
  EXPECT_TRUE(torch::allclose(tuple.predict(x), logits));
  Model dict(make(R"(
    def forward(self, x):
        return {"aux": x, "logits": torch.matmul(x, self.weight.t())}
  )"), ModelOptions{"cpu", "logits"});
  EXPECT_TRUE(torch::allclose(dict.predict(x), logits));
  // Gradients flow through the selected output.
  torch::Tensor g = Saliency(SaliencyOptions{false}).attribute(dict, x, torch::tensor({2, 0}, torch::kLong)).map;
  EXPECT_TRUE(torch::allclose(g[0], w[2]));
  Model wrong(make(R"(
    def forward(self, x):
        return {"aux": x, "logits": torch.matmul(x, self.weight.t())}
  )"), ModelOptions{"cpu", "scores"});
  try {
    wrong.predict(x);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("logits"), std::string::npos) << e.what();
  }
}
