// A replica test per LRP rule (Zennit's tests/test_rules.py pattern): each rule on a lone linear
// layer and a lone convolution against a matrix-form reference written here, independently of
// src/backprop_ops.cpp; and each composite on conv -> ReLU -> linear against the chained references.
#include <gtest/gtest.h>

#include <torch/nn/functional.h>

#include "helpers.hpp"
#include "salient/methods/lrp.hpp"
#include "salient/registry.hpp"

using namespace salient;
namespace F = torch::nn::functional;

namespace {

// Zennit's stabiliser: z + eps * sign(z), sign(0) = 1.
torch::Tensor stab(const torch::Tensor& z, double eps) { return z + eps * (2.0 * (z >= 0).to(z.dtype()) - 1.0); }

struct Rule {
  std::string name;
  double gamma = 0.25, alpha = 2.0, beta = 1.0, eps = 1e-6, low = -1.0, high = 2.0;
};

// Relevance through one linear map z_j = sum_i W_ji x_i + b_j of x [N, I] given R [N, J] at its
// output: the rule's contributions c_ij (and bias) and R_i = sum_j c_ij R_j / stab(sum_i c_ij + b_j).
torch::Tensor linear_rule(const Rule& r, const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b,
                          const torch::Tensor& R) {
  const auto xp = x.clamp_min(0), xn = x.clamp_max(0), Wp = W.clamp_min(0), Wn = W.clamp_max(0);
  const auto bp = b.clamp_min(0), bn = b.clamp_max(0);
  // Contributions [N, I, J] and the denominators [N, J].
  auto contrib = [](const torch::Tensor& a, const torch::Tensor& w) { return a.unsqueeze(2) * w.t().unsqueeze(0); };
  auto spread = [](const torch::Tensor& c, const torch::Tensor& denom, const torch::Tensor& R) {
    return (c * (R / denom).unsqueeze(1)).sum(2);
  };
  const double s = 1e-6;
  if (r.name == "epsilon") {
    const auto c = contrib(x, W);
    return spread(c, stab(c.sum(1) + b, r.eps), R);
  }
  if (r.name == "zplus" || r.name == "alpha-beta") {
    const double a = r.name == "zplus" ? 1.0 : r.alpha, bt = r.name == "zplus" ? 0.0 : r.beta;
    const auto pos = contrib(xp, Wp) + contrib(xn, Wn), neg = contrib(xp, Wn) + contrib(xn, Wp);
    auto out = a * spread(pos, stab(pos.sum(1) + bp, s), R);
    if (bt != 0) out = out - bt * spread(neg, stab(neg.sum(1) + bn, s), R);
    return out;
  }
  if (r.name == "gamma") {
    const auto z = torch::matmul(x, W.t()) + b;
    const auto Wu = W + r.gamma * Wp, Wd = W + r.gamma * Wn;
    const auto up = contrib(xp, Wu) + contrib(xn, Wd), down = contrib(xp, Wd) + contrib(xn, Wu);
    return spread(up, stab(up.sum(1) + b + r.gamma * bp, s), R * (z > 0)) +
           spread(down, stab(down.sum(1) + b + r.gamma * bn, s), R * (z < 0));
  }
  if (r.name == "zbox") {
    const auto c = contrib(x, W) - contrib(torch::full_like(x, r.low), Wp) - contrib(torch::full_like(x, r.high), Wn);
    return spread(c, stab(c.sum(1), s), R);
  }
  if (r.name == "flat" || r.name == "wsquare") {  // inputs as 1 (where x exists), weights 1 or w^2
    const auto c = contrib(torch::ones_like(x), r.name == "flat" ? torch::ones_like(W) : W * W);
    return spread(c, stab(c.sum(1), s), R);
  }
  throw std::runtime_error("no reference for rule " + r.name);
}

// The same through a convolution (3x3, padding 1): per location a linear map of the unfolded
// patch; the patches' relevance folds back onto the input (overlaps summed). Padding is absent
// input: unfolding ones gives zeros there, as in the flat rule's "inputs as 1".
torch::Tensor conv_rule(const Rule& r, const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b,
                        const torch::Tensor& R) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), o = W.size(0);
  const auto unfold = F::UnfoldFuncOptions({3, 3}).padding(1);
  const auto patches = F::unfold(x, unfold).transpose(1, 2).reshape({-1, c * 9});      // [N*L, C*9]
  const auto present = F::unfold(torch::ones_like(x), unfold).transpose(1, 2).reshape({-1, c * 9});
  const auto Rl = R.reshape({n, o, h * w}).transpose(1, 2).reshape({-1, o});              // [N*L, O]
  torch::Tensor Rp;
  if (r.name == "flat" || r.name == "wsquare") {  // absent (padded) inputs take no share
    const auto Wm = r.name == "flat" ? torch::ones({o, c * 9}) : W.reshape({o, -1}).square();
    const auto cc = present.unsqueeze(2) * Wm.t().unsqueeze(0);
    Rp = (cc * (Rl / stab(cc.sum(1), 1e-6)).unsqueeze(1)).sum(2);
  } else if (r.name == "zbox") {  // the bounds exist only where the input does
    const auto Wf = W.reshape({o, -1});
    const auto cc = patches.unsqueeze(2) * Wf.t().unsqueeze(0) - (present * r.low).unsqueeze(2) * Wf.clamp_min(0).t().unsqueeze(0) -
                    (present * r.high).unsqueeze(2) * Wf.clamp_max(0).t().unsqueeze(0);
    Rp = (cc * (Rl / stab(cc.sum(1), 1e-6)).unsqueeze(1)).sum(2);
  } else {
    Rp = linear_rule(r, patches, W.reshape({o, -1}), b, Rl);
  }
  Rp = Rp.reshape({n, h * w, c * 9}).transpose(1, 2);
  return F::fold(Rp, F::FoldFuncOptions({h, w}, {3, 3}).padding(1));
}

torch::jit::Module module(const std::string& body, const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  torch::jit::Module m("Lone");
  for (const auto& [name, t] : params) m.register_parameter(name, t, false);
  m.define(body);
  return m;
}

nlohmann::json options_of(const Rule& r) {
  return {{"rule", r.name}, {"gamma", r.gamma}, {"alpha", r.alpha}, {"beta", r.beta}, {"epsilon", r.eps},
          {"low", r.low}, {"high", r.high}, {"canonize", false}};
}

double rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item<double>();
}

// Every rule the lrp method offers: a rule without a reference above fails the test.
std::vector<Rule> all_rules() {
  std::vector<Rule> out;
  for (const auto& name : Lrp::rules()) out.push_back({name});
  return out;
}

}  // namespace

TEST(LrpRules, EveryRuleOnALoneLinearLayerMatchesItsMatrixForm) {
  torch::manual_seed(3);
  const auto W = torch::randn({5, 8}), b = torch::randn({5}) * 0.3;
  const auto x = torch::randn({4, 8});  // negative inputs too: the x+/x- split is exercised
  const auto t = torch::tensor({0, 2, 4, 1}, torch::kLong);
  Model model(module("def forward(self, x):\n    return torch.linear(x, self.w, self.b)\n", {{"w", W}, {"b", b}}));
  const auto rules = all_rules();
  ASSERT_GE(rules.size(), 7u);
  for (const auto& r : rules) {
    const auto z = torch::matmul(x, W.t()) + b;
    const auto R = torch::zeros_like(z).scatter(1, t.view({-1, 1}), z.gather(1, t.view({-1, 1})));  // f_t at t
    auto lrp = Registry::builtin().create("lrp", options_of(r));
    lrp->check(model, x.slice(0, 0, 1));
    const auto got = lrp->attribute(model, x, t).map;
    EXPECT_LT(rel_err(got, linear_rule(r, x, W, b, R)), 1e-4) << r.name;
  }
}

TEST(LrpRules, EveryRuleOnALoneConvolutionMatchesItsMatrixForm) {
  torch::manual_seed(4);
  const auto W = torch::randn({3, 2, 3, 3}), b = torch::randn({3}) * 0.3;
  const auto x = torch::randn({2, 2, 5, 5});
  const auto t = torch::tensor({7, 40}, torch::kLong);  // (channel, row, column) of the flattened output
  Model model(module("def forward(self, x):\n    return torch.conv2d(x, self.w, self.b, [1, 1], [1, 1]).flatten(1)\n",
                     {{"w", W}, {"b", b}}));
  for (const auto& r : all_rules()) {
    const auto z = F::conv2d(x, W, F::Conv2dFuncOptions().bias(b).padding(1)).flatten(1);
    const auto R = torch::zeros_like(z).scatter(1, t.view({-1, 1}), z.gather(1, t.view({-1, 1}))).view({2, 3, 5, 5});
    auto lrp = Registry::builtin().create("lrp", options_of(r));
    lrp->check(model, x.slice(0, 0, 1));
    const auto got = lrp->attribute(model, x, t).map;
    EXPECT_LT(rel_err(got, conv_rule(r, x, W, b, R)), 1e-4) << r.name;
  }
}

TEST(LrpRules, EveryCompositeOnConvReluLinearMatchesTheChainedReferences) {
  torch::manual_seed(5);
  const auto W1 = torch::randn({3, 1, 3, 3}), b1 = torch::randn({3}) * 0.2, W2 = torch::randn({4, 3 * 4 * 4}) * 0.3,
             b2 = torch::randn({4}) * 0.2;
  const auto x = torch::rand({2, 1, 4, 4}) * 3.0 - 1.0;  // in [low, high] = [-1, 2]
  const auto t = torch::tensor({1, 3}, torch::kLong);
  Model model(module(R"(
    def forward(self, x):
        h = torch.relu(torch.conv2d(x, self.w1, self.b1, [1, 1], [1, 1]))
        return torch.linear(h.flatten(1), self.w2, self.b2)
  )", {{"w1", W1}, {"b1", b1}, {"w2", W2}, {"b2", b2}}));
  // Which rule each composite gives the dense layer, the (first) convolution; as documented.
  const std::map<std::string, std::pair<std::string, std::string>> composites = {
      {"epsilon", {"epsilon", "epsilon"}},
      {"epsilon-plus", {"epsilon", "zplus"}},
      {"epsilon-plus-flat", {"epsilon", "flat"}},
      {"epsilon-gamma-box", {"epsilon", "zbox"}},
      {"epsilon-alpha2-beta1", {"epsilon", "alpha-beta"}},
      {"epsilon-alpha2-beta1-flat", {"epsilon", "flat"}}};
  for (const auto& name : Lrp::composites()) ASSERT_TRUE(composites.count(name)) << name << " has no reference";
  for (const auto& [name, rules] : composites) {
    const auto h = torch::relu(F::conv2d(x, W1, F::Conv2dFuncOptions().bias(b1).padding(1)));
    const auto z = torch::matmul(h.flatten(1), W2.t()) + b2;
    const auto R = torch::zeros_like(z).scatter(1, t.view({-1, 1}), z.gather(1, t.view({-1, 1})));
    Rule dense{rules.first}, conv{rules.second};
    const auto Rh = linear_rule(dense, h.flatten(1), W2, b2, R).view({2, 3, 4, 4});  // ReLU passes relevance on
    const auto want = conv_rule(conv, x, W1, b1, Rh);
    auto lrp = Registry::builtin().create("lrp", {{"composite", name}, {"low", -1.0}, {"high", 2.0}, {"canonize", false}});
    lrp->check(model, x.slice(0, 0, 1));
    EXPECT_LT(rel_err(lrp->attribute(model, x, t).map, want), 1e-4) << name;
  }
}
