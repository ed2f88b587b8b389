// Path and expectation methods: Input x Gradient, Integrated Gradients (quadratures, baselines,
// completeness, adaptive steps), GradientShap, linear weights, and variance-reduced SmoothGrad.
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "salient/error.hpp"
#include "salient/idx.hpp"
#include "salient/image.hpp"
#include "salient/methods/gradient_shap.hpp"
#include "salient/methods/input_x_gradient.hpp"
#include "salient/methods/integrated_gradients.hpp"
#include "salient/methods/linear_weights.hpp"
#include "salient/methods/saliency.hpp"
#include "salient/methods/smoothgrad.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"

using namespace salient;

namespace {

torch::jit::Module module_from(const std::string& source, const std::map<std::string, torch::Tensor>& params) {
  torch::jit::Module m("M");
  for (const auto& [name, value] : params) m.register_parameter(name, value.clone(), false);
  m.define(source);
  return m;
}

// A smooth network: tanh and softplus, no kinks; float64 so that rounding does not hide the
// quadrature error.
Model smooth_model() {
  torch::manual_seed(11);
  Model m(module_from(R"(
    def forward(self, x):
        h = torch.tanh(torch.matmul(x.flatten(1), self.w1.t()) + self.b1)
        return torch.matmul(torch.log1p(torch.exp(h * 2.0)), self.w2.t())
  )", {{"w1", torch::randn({16, 20}) * 0.3}, {"b1", torch::randn({16})}, {"w2", torch::randn({3, 16})}}));
  m.to(torch::kDouble);
  return m;
}

const std::vector<Quadrature> kAllRules{Quadrature::RiemannLeft, Quadrature::RiemannRight, Quadrature::RiemannMiddle,
                                        Quadrature::Trapezoid, Quadrature::GaussLegendre};

double relative_gap(const Attribution& a) { return a.diagnostics["relative_gap"][0].get<double>(); }

}  // namespace

TEST(Quadrature, RulesIntegratePolynomialsAsTheTheorySays) {
  // GL with m nodes is exact up to degree 2m-1; trapezoid and midpoint are exact for degree 1.
  for (int m : {1, 2, 3, 5, 16}) {
    QuadratureRule r = quadrature_rule(Quadrature::GaussLegendre, m);
    for (int deg = 0; deg <= 2 * m - 1; ++deg) {
      double s = 0;
      for (int k = 0; k < m; ++k) s += r.weights[k] * std::pow(r.alphas[k], deg);
      EXPECT_NEAR(s, 1.0 / (deg + 1), 1e-12) << "m=" << m << " deg=" << deg;
    }
  }
  for (auto q : {Quadrature::Trapezoid, Quadrature::RiemannMiddle}) {
    QuadratureRule r = quadrature_rule(q, 7);
    double s = 0;
    for (int k = 0; k < 7; ++k) s += r.weights[k] * r.alphas[k];
    EXPECT_NEAR(s, 0.5, 1e-12);
  }
  EXPECT_THROW(quadrature_rule(Quadrature::Trapezoid, 1), Error);
  EXPECT_THROW(parse_quadrature("simpson"), Error);
}

TEST(LinearModel, IntegratedGradientsIsExactlyInputMinusBaselineTimesWeightsForEveryRuleAndBaseline) {
  torch::manual_seed(2);
  torch::Tensor w = torch::randn({4, 3 * 5 * 5}), b = torch::randn({4});
  Model model(test::linear_module(w, b));
  torch::Tensor x = torch::randn({2, 3, 5, 5});
  torch::Tensor t = torch::tensor({1, 3}, torch::kLong);
  test::TempDir dir;
  torch::Tensor file_baseline = torch::randn({3, 5, 5});
  write_npy(dir / "base.npy", file_baseline);
  for (const std::string spec : {std::string("zeros"), std::string("constant:0.3"), std::string("blur:1.5"),
                                 std::string("uniform"), dir / "base.npy"}) {
    for (auto q : kAllRules) {
      IntegratedGradientsOptions o;
      o.steps = 7;
      o.quadrature = q;
      o.baseline = Baseline::parse(spec, {});
      Attribution a = IntegratedGradients(o).attribute(model, x, t);
      for (int64_t i = 0; i < 2; ++i) {
        torch::Tensor x0 = o.baseline.make(x[i], o.seed);
        torch::Tensor expected = (x[i] - x0) * w[t[i].item<int64_t>()].view({3, 5, 5});
        EXPECT_TRUE(torch::allclose(a.map[i], expected, 1e-4, 1e-5)) << spec << " " << to_string(q);
        EXPECT_LT(a.diagnostics["relative_gap"][i].get<double>(), 1e-4);
      }
    }
  }
  // Input x Gradient is IG against a zero baseline for a linear model.
  Attribution ixg = InputXGradient().attribute(model, x, t);
  EXPECT_TRUE(torch::allclose(ixg.map[0], x[0] * w[1].view({3, 5, 5}), 1e-5, 1e-6));
}

TEST(LinearModel, GradientShapExpectationIsInputMinusMeanBaselineTimesWeights) {
  torch::manual_seed(4);
  torch::Tensor w = torch::randn({3, 12}), b = torch::randn({3});
  Model model(test::linear_module(w, b));
  torch::Tensor x = torch::randn({1, 12});
  torch::Tensor t = torch::tensor({2}, torch::kLong);
  // One baseline: exact for any number of samples.
  GradientShapOptions o;
  o.samples = 9;
  o.baselines = torch::randn({1, 12});
  torch::Tensor one = GradientShap(o).attribute(model, x, t).map;
  EXPECT_TRUE(torch::allclose(one[0], (x[0] - o.baselines[0]) * w[2], 1e-4, 1e-5));
  // A set: the mean over draws approaches (x - E[x0]) w.
  o.baselines = torch::randn({5, 12}) * 2;
  o.samples = 4000;
  o.batch = 1000;
  torch::Tensor many = GradientShap(o).attribute(model, x, t).map;
  torch::Tensor expected = (x[0] - o.baselines.mean(0)) * w[2];
  const double err = ((many[0] - expected).norm() / expected.norm()).item<double>();
  EXPECT_LT(err, 0.05) << err;
  // And the sum of attributions is f(x) - E[f(x0)] on average (linear: exactly in expectation).
  torch::Tensor f = [&](const torch::Tensor& z) { return torch::matmul(z, w[2]) + b[2]; }(torch::cat({x, o.baselines}));
  EXPECT_NEAR(many.sum().item<double>(), (f[0] - f.slice(0, 1).mean()).item<double>(),
              0.05 * std::abs((f[0] - f.slice(0, 1).mean()).item<double>()) + 0.05);
}

TEST(LinearModel, LinearWeightsReadsTheLayerFromTheGraph) {
  torch::manual_seed(5);
  torch::Tensor w = torch::randn({4, 2 * 3 * 3}), b = torch::randn({4});
  torch::Tensor x = torch::randn({2, 2, 3, 3});
  torch::Tensor t = torch::tensor({3, 0}, torch::kLong);
  std::vector<Model> linear_models;
  linear_models.emplace_back(test::linear_module(w, b));  // matmul(x, W.t()) + b
  linear_models.emplace_back(module_from(R"(
    def forward(self, x):
        return torch.sigmoid(torch.linear(x.flatten(1), self.weight, self.bias))
  )", {{"weight", w}, {"bias", b}}));                      // logistic: linear then sigmoid
  linear_models.emplace_back(module_from(R"(
    def forward(self, x):
        return torch.softmax(torch.addmm(self.bias, x.flatten(1), self.wt), 1)
  )", {{"wt", w.t().contiguous()}, {"bias", b}}));         // addmm with W^T stored
  for (auto& model : linear_models) {
    torch::Tensor global = LinearWeights(LinearWeightsOptions{true}).attribute(model, x, t).map;
    torch::Tensor local = LinearWeights().attribute(model, x, t).map;
    for (int64_t i = 0; i < 2; ++i) {
      torch::Tensor row = w[t[i].item<int64_t>()].view({2, 3, 3});
      EXPECT_TRUE(torch::equal(global[i], row));
      EXPECT_TRUE(torch::allclose(local[i], row * x[i]));
    }
  }
  Model relu_model(module_from(R"(
    def forward(self, x):
        return torch.matmul(torch.relu(x.flatten(1)), self.weight.t())
  )", {{"weight", w}}));
  try {
    LinearWeights().attribute(relu_model, x, t);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("aten::relu"), std::string::npos) << e.what();
  }
  Model sig_first(module_from(R"(
    def forward(self, x):
        return torch.matmul(torch.sigmoid(x.flatten(1)), self.weight.t())
  )", {{"weight", w}}));
  EXPECT_THROW(LinearWeights().attribute(sig_first, x, t), Error);
  Model demo(test::demo_model());
  EXPECT_THROW(LinearWeights().attribute(demo, torch::zeros({1, 1, 28, 28}), torch::tensor({0}, torch::kLong)), Error);
}

TEST(SmoothModel, GaussLegendreBeatsEveryRiemannRuleAtSixteenSteps) {
  Model model = smooth_model();
  torch::manual_seed(8);
  torch::Tensor x = torch::randn({1, 20}, torch::kDouble);
  torch::Tensor t = torch::tensor({1}, torch::kLong);
  std::map<Quadrature, double> gap;
  for (auto q : kAllRules) {
    IntegratedGradientsOptions o;
    o.steps = 16;
    o.quadrature = q;
    gap[q] = relative_gap(IntegratedGradients(o).attribute(model, x, t));
  }
  for (auto q : kAllRules) std::cout << to_string(q) << " gap at 16 steps: " << gap[q] << "\n";
  for (auto q : {Quadrature::RiemannLeft, Quadrature::RiemannRight, Quadrature::RiemannMiddle, Quadrature::Trapezoid})
    EXPECT_LT(gap[Quadrature::GaussLegendre], 0.01 * gap[q]) << to_string(q);
}

TEST(SmoothModel, AntitheticNoiseCancelsExactlyForAQuadraticModel) {
  // f(x) = x^T A x has gradient (A + A^T) x, linear in x: the mean gradient over (e, -e) pairs is
  // the gradient at x exactly, whatever the noise; i.i.d. noise leaves an error.
  torch::manual_seed(9);
  Model model(module_from(R"(
    def forward(self, x):
        z = x.flatten(1)
        return torch.sum(z * torch.matmul(z, self.a), 1, keepdim=True)
  )", {{"a", torch::randn({10, 10})}}));
  torch::Tensor x = torch::randn({1, 10});
  torch::Tensor t = torch::tensor({0}, torch::kLong);
  torch::Tensor grad = Saliency(SaliencyOptions{false}).attribute(model, x, t).map;
  SmoothGradOptions o;
  o.samples = 10;
  o.sigma = 0.5;
  o.noise = NoiseKind::Antithetic;
  torch::Tensor anti = SmoothGrad(o).attribute(model, x, t).map;
  o.noise = NoiseKind::Gaussian;
  torch::Tensor plain = SmoothGrad(o).attribute(model, x, t).map;
  EXPECT_LT((anti - grad).abs().max().item<double>(), 1e-4);
  EXPECT_GT((plain - grad).abs().max().item<double>(), 1e-2);
}

namespace {
struct DemoFixture {
  Model model{test::demo_model()};
  torch::Tensor x, t;
  DemoFixture() {
    set_threads(0);
    x = load_image(test::first_sample(), model.metadata()).tensor.unsqueeze(0);
    t = torch::tensor({7}, torch::kLong);
  }
};
}  // namespace

TEST(DemoModel, CompletenessGapShrinksWithStepsAndAdaptiveStepsReachTheTolerance) {
  DemoFixture d;
  std::map<std::string, std::vector<double>> gaps;
  for (auto q : kAllRules) {
    for (int steps : {16, 64, 256}) {
      IntegratedGradientsOptions o;
      o.steps = steps;
      o.quadrature = q;
      gaps[to_string(q)].push_back(relative_gap(IntegratedGradients(o).attribute(d.model, d.x, d.t)));
    }
    std::cout << to_string(q) << " relative gap at 16/64/256 steps: " << gaps[to_string(q)][0] << " "
              << gaps[to_string(q)][1] << " " << gaps[to_string(q)][2] << "\n";
    // On a ReLU network the integrand is piecewise smooth: Riemann and trapezoid gaps shrink with
    // the steps; Gauss-Legendre's does not have to (measured: 0.03% at 16, 0.4% at 64 steps).
    if (q != Quadrature::GaussLegendre) EXPECT_LT(gaps[to_string(q)][2], 0.5 * gaps[to_string(q)][0]) << to_string(q);
    EXPECT_LT(gaps[to_string(q)][2], 0.01) << to_string(q);
  }
  for (auto q : kAllRules) {
    IntegratedGradientsOptions o;
    o.auto_steps = true;
    o.tolerance = 0.001;
    o.quadrature = q;
    Attribution a = IntegratedGradients(o).attribute(d.model, d.x, d.t);
    const int64_t used = a.diagnostics["steps"][0].get<int64_t>();
    std::cout << to_string(q) << " adaptive steps for a 0.1% gap: " << used << "\n";
    EXPECT_LE(relative_gap(a), 0.001);
    EXPECT_TRUE(a.diagnostics["warning"][0].is_null());
    // Not more than twice what is needed: half the steps would miss the tolerance.
    if (used > 8) {
      IntegratedGradientsOptions half = o;
      half.auto_steps = false;
      half.steps = used / 2;
      EXPECT_GT(relative_gap(IntegratedGradients(half).attribute(d.model, d.x, d.t)), 0.001) << to_string(q);
    }
  }
}

TEST(DemoModel, GradientShapWithTheDataSetAsBaselines) {
  DemoFixture d;
  nlohmann::json opts{{"baselines", "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"},
                      {"baseline-count", 20}, {"samples", 40}};
  auto method = Registry::builtin().create("gradient-shap", opts, d.model.metadata());
  EXPECT_EQ(method->params()["baseline-count"], 20);
  torch::Tensor a = method->attribute(d.model, d.x, d.t).map;
  torch::Tensor b = Registry::builtin().create("gradient-shap", opts, d.model.metadata())->attribute(d.model, d.x, d.t).map;
  EXPECT_TRUE(torch::equal(a, b));  // seeded
  EXPECT_GT(a.abs().sum().item<double>(), 0);
}

TEST(PathOptions, BadOptionsAreOneLineErrors) {
  const Registry& r = Registry::builtin();
  EXPECT_THROW(r.create("integrated-gradients", {{"steps", 0}}), Error);
  EXPECT_THROW(r.create("integrated-gradients", {{"steps", "many"}}), Error);
  EXPECT_THROW(r.create("integrated-gradients", {{"quadrature", "simpson"}}), Error);
  EXPECT_THROW(r.create("integrated-gradients", {{"baseline", "/no/such/file.npy"}}), Error);
  EXPECT_THROW(r.create("integrated-gradients", {{"baseline", "constant:abc"}}), Error);
  EXPECT_THROW(r.create("gradient-shap", {{"baselines", "/no/such/folder"}}), Error);
  test::TempDir dir;
  write_npy(dir / "wrong.npy", torch::zeros({2, 2}));
  auto ig = r.create("integrated-gradients", {{"baseline", dir / "wrong.npy"}});
  Model model(test::demo_model());
  try {
    ig->attribute(model, torch::zeros({1, 1, 28, 28}), torch::tensor({0}, torch::kLong));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2,2]"), std::string::npos) << e.what();
  }
}

// f(x) = 1000 + 1e-9 w.x in float32: f(x) - f(x0) rounds to 0 while the path integral is ~1e-9.
// The gap is below the outputs' float32 resolution: no warning (it read 1e5 % before the floor).
TEST(IntegratedGradients, ADifferenceBelowFloatResolutionIsNoCompletenessWarning) {
  torch::manual_seed(5);
  const torch::Tensor w = torch::randn({1, 6}) * 1e-9, x = torch::randn({1, 6});
  Model model(test::linear_module(w, torch::full({1}, 1000.0)));
  Attribution a = Registry::builtin().create("integrated-gradients", {{"steps", 8}})->attribute(model, x, torch::zeros({1}, torch::kLong));
  EXPECT_EQ(a.diagnostics["f(x)-f(x0)"][0].get<double>(), 0.0);
  EXPECT_NE(a.diagnostics["sum"][0].get<double>(), 0.0);
  EXPECT_LT(relative_gap(a), 0.01);
  EXPECT_TRUE(a.diagnostics["warning"][0].is_null()) << a.diagnostics.dump();
}
