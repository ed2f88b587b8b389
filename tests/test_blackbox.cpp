// Black-box methods: localisation on a model that only looks at one quadrant, Shapley axioms and
// closed forms on linear models, ONNX (OpenCV DNN) against TorchScript, frozen against plain.
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "salient/error.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"

using namespace salient;

namespace {

std::string refdata(const std::string& name) { return std::string(SALIENT_TESTDATA) + "/" + name; }

Attribution run(const std::string& method, const nlohmann::json& options, Model& model, const torch::Tensor& x,
                const torch::Tensor& t) {
  return Registry::builtin().create(method, options, model.metadata())->attribute(model, x, t);
}

// Spearman rank correlation of two vectors.
double spearman(const torch::Tensor& a, const torch::Tensor& b) {
  auto rank = [](const torch::Tensor& v) { return v.argsort().argsort().to(torch::kDouble); };
  torch::Tensor ra = rank(a.flatten()), rb = rank(b.flatten());
  ra = ra - ra.mean();
  rb = rb - rb.mean();
  return ((ra * rb).sum() / (ra.norm() * rb.norm())).item<double>();
}

}  // namespace

TEST(BlackBox, EveryMethodPutsItsMassOnTheQuadrantTheModelLooksAt) {
  // f(x) = W tanh(x[:, :, :16, :16]): the top-left quadrant of a 32x32 image, nothing else.
  torch::manual_seed(21);
  torch::jit::Module m("Quadrant");
  m.register_parameter("w", torch::randn({4, 3 * 16 * 16}).abs(), false);
  m.define(R"(
    def forward(self, x):
        q = x[:, :, 0:16, 0:16]
        return torch.matmul(torch.tanh(q).flatten(1), self.w.t())
  )");
  Model model(m);
  torch::Tensor x = torch::rand({2, 3, 32, 32}) + 0.2;
  torch::Tensor t = torch::tensor({1, 3}, torch::kLong);
  const std::vector<std::pair<std::string, nlohmann::json>> cases{
      {"occlusion", {{"window", "4x4"}, {"stride", "4x4"}}},
      {"feature-ablation", {{"features", "grid:8"}}},
      {"rise", {}},  // the paper's defaults: 4,000 masks, 7x7 grid, p = 0.5
      {"lime", {{"features", "grid:8"}, {"samples", 500}}},
      {"kernel-shap", {{"features", "grid:4"}, {"samples", 600}}},
      {"shapley-sampling", {{"features", "grid:4"}, {"samples", 10}}}};
  for (const auto& [name, opts] : cases) {
    Attribution a = run(name, opts, model, x, t);
    ASSERT_EQ(a.map.sizes(), x.sizes()) << name;
    torch::Tensor mass = a.map.abs().sum(1);  // [N,H,W]
    // RISE does not reach 90% here (measured 0.73 with the paper's defaults): its smooth masks are
    // bilinear blends of 7x7 cells, so pixels up to a cell (~5 px) past the quadrant's edge really
    // correlate with the output, and 4,000 masks leave Monte Carlo noise elsewhere; a finer grid
    // (16x16, 8,000 masks) is worse (0.44: more noise). It must still be far above the quadrant's
    // 25% share of the area, which an unshifted or offset-carrying map would not be.
    const double floor = name == "rise" ? 0.6 : 0.9;
    for (int64_t i = 0; i < 2; ++i) {
      const double share = (mass[i].slice(0, 0, 16).slice(1, 0, 16).sum() / mass[i].sum()).item<double>();
      EXPECT_GE(share, floor) << name << " input " << i;
    }
  }
  // RISE's raw map carries the mean output over masks as an offset everywhere.
  Attribution r = run("rise", {{"samples", 1000}, {"grid", 8}}, model, x, t);
  const double offset = r.diagnostics["offset"][0].get<double>();
  EXPECT_NEAR(r.extra.at("raw")[0][0][31][31].item<double>(), offset, 0.2 * std::abs(offset));
  EXPECT_TRUE(torch::allclose(r.extra.at("raw")[0] - offset, r.map[0], 1e-4, 1e-4));
}

TEST(BlackBox, ShapleyMethodsAreExactOnALinearModel) {
  torch::manual_seed(22);
  torch::Tensor w = torch::randn({3, 2 * 6 * 6}), b = torch::randn({3});
  Model model(test::linear_module(w, b));
  torch::Tensor x = torch::randn({1, 2, 6, 6});
  torch::Tensor t = torch::tensor({2}, torch::kLong);
  // Groups: a 3x3 grid of 2x2 cells (both channels). Shapley value of a group = sum over it of w (x - b).
  torch::Tensor contrib = (w[2].view({2, 6, 6}) * x[0]);  // baseline zeros
  torch::Tensor per_cell = contrib.sum(0).view({3, 2, 3, 2}).sum({1, 3});  // [3,3]
  torch::Tensor expected = per_cell.repeat_interleave(2, 0).repeat_interleave(2, 1).unsqueeze(0).expand({2, 6, 6});
  const double total = contrib.sum().item<double>();
  for (const std::string name : {"kernel-shap", "shapley-sampling"}) {
    Attribution a = run(name, {{"features", "grid:3"}, {"samples", name == "kernel-shap" ? 1000 : 5}}, model, x, t);
    EXPECT_TRUE(torch::allclose(a.map[0], expected, 1e-3, 1e-4)) << name << "\n" << (a.map[0] - expected).abs().max();
    // Efficiency: the groups' values sum to f(x) - f(baseline).
    const double sum_groups = a.map[0].sum().item<double>() / 8.0;  // each value is spread over 8 elements
    EXPECT_NEAR(sum_groups, total, 1e-3 * std::abs(total) + 1e-4) << name;
  }
  Attribution exact = run("kernel-shap", {{"features", "grid:3"}}, model, x, t);
  EXPECT_TRUE(exact.diagnostics["exact"][0].get<bool>());
  // Tabular input, every feature its own group.
  torch::Tensor wt = torch::randn({2, 6}), bt = torch::randn({2});
  Model tab(test::linear_module(wt, bt));
  torch::Tensor xt = torch::randn({1, 6});
  Attribution at = run("kernel-shap", {{"features", "elements"}, {"baseline", "constant:0.5"}}, tab, xt, torch::tensor({1}, torch::kLong));
  EXPECT_TRUE(torch::allclose(at.map[0], wt[1] * (xt[0] - 0.5), 1e-4, 1e-5));
  // Sampled KernelSHAP (more groups than samples allow to enumerate) still satisfies efficiency.
  Attribution sampled = run("kernel-shap", {{"features", "elements"}, {"samples", 40}}, model, x, t);
  EXPECT_FALSE(sampled.diagnostics["exact"][0].get<bool>());
  EXPECT_NEAR(sampled.map[0].sum().item<double>(), total, 1e-3 * std::abs(total) + 1e-3);
}

TEST(BlackBox, LimeRecoversTheRankingOfTheWeights) {
  torch::manual_seed(23);
  torch::Tensor w = torch::randn({2, 16}), b = torch::randn({2});
  Model model(test::linear_module(w, b));
  torch::Tensor x = torch::ones({1, 16});
  Attribution a = run("lime", {{"features", "elements"}, {"samples", 1000}}, model, x, torch::tensor({0}, torch::kLong));
  const double rho = spearman(a.map[0], w[0]);
  std::cout << "LIME coefficient ranking vs the weights: Spearman " << rho << "\n";
  EXPECT_GE(rho, 0.9);
}

TEST(BlackBox, OnnxThroughOpenCvGivesTheTorchScriptOcclusionMap) {
  Model ts(test::demo_model());
  Model onnx(refdata("fashion_cnn.onnx"));
  ASSERT_EQ(onnx.backend(), Backend::Onnx);
  torch::Tensor x = read_npy(refdata("demo_input.npy"));
  torch::Tensor t = torch::tensor({3, 5}, torch::kLong);
  EXPECT_TRUE(torch::allclose(onnx.predict(x), ts.predict(x), 1e-4, 1e-4));
  nlohmann::json o{{"window", "4x4"}, {"stride", "2x2"}};
  torch::Tensor a = run("occlusion", o, ts, x, t).map, b = run("occlusion", o, onnx, x, t).map;
  EXPECT_LE((a - b).abs().max().item<double>(), 1e-4);
  // Gradient methods say what ONNX models can run.
  try {
    run("saliency", {}, onnx, x, t);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("occlusion"), std::string::npos) << e.what();
  }
}

TEST(BlackBox, FrozenAndPlainModelsGiveTheSameMaps) {
  ModelOptions plain_opts;
  plain_opts.freeze = false;
  Model plain(test::demo_model(), plain_opts), frozen(test::demo_model());
  torch::Tensor x = read_npy(refdata("demo_input.npy"));
  torch::Tensor t = torch::tensor({3, 5}, torch::kLong);
  for (const std::string name : {"occlusion", "feature-ablation"}) {
    torch::Tensor a = run(name, {}, plain, x, t).map, b = run(name, {}, frozen, x, t).map;
    EXPECT_LE((a - b).abs().max().item<double>(), 1e-4) << name;
  }
}

TEST(BlackBox, BadOptionsAreErrors) {
  Model model(test::demo_model());
  torch::Tensor x = torch::zeros({1, 1, 28, 28});
  torch::Tensor t = torch::tensor({0}, torch::kLong);
  EXPECT_THROW(run("occlusion", {{"window", "40x4"}}, model, x, t), Error);
  EXPECT_THROW(run("occlusion", {{"window", "0x4"}}, model, x, t), Error);
  EXPECT_THROW(Registry::builtin().create("rise", {{"samples", 0}}), Error);
  EXPECT_THROW(Registry::builtin().create("rise", {{"keep", 1.5}}), Error);
  EXPECT_THROW(Registry::builtin().create("lime", {{"samples", 0}}), Error);
  EXPECT_THROW(Registry::builtin().create("kernel-shap", {{"features", "hexagons"}}), Error);
}

// A perturbation map on an image repeats each group's value on every pixel (Captum's convention),
// so the map sums to (group size) x the values: the group values and the segment labels are kept
// (<method>.groups.npy, .segments.npy) and sum to f(x) - f(baseline); spread=split divides each
// value over its group so the map itself sums.
TEST(BlackBox, GroupValuesAndSegmentsAreKeptAndSplitMapsSum) {
  torch::manual_seed(23);
  torch::Tensor w = torch::randn({3, 2 * 6 * 6}), b = torch::randn({3});
  Model model(test::linear_module(w, b));
  torch::Tensor x = torch::randn({2, 2, 6, 6});
  torch::Tensor t = torch::tensor({2, 0}, torch::kLong);
  for (const std::string name : {"kernel-shap", "shapley-sampling", "feature-ablation", "lime"}) {
    const nlohmann::json o = {{"features", "grid:3"}, {"samples", name == "lime" ? 400 : name == "shapley-sampling" ? 5 : 1000}};
    const Attribution whole = run(name, o, model, x, t);
    nlohmann::json os = o;
    os["spread"] = "split";
    const Attribution split = run(name, os, model, x, t);
    ASSERT_TRUE(whole.extra.count("groups") && whole.extra.count("segments")) << name;
    EXPECT_EQ(whole.extra.at("groups").sizes(), (c10::IntArrayRef{2, 9})) << name;
    const torch::Tensor seg = whole.extra.at("segments");
    EXPECT_EQ(seg.sizes(), x.sizes());
    for (int64_t i = 0; i < 2; ++i) {
      const torch::Tensor g = whole.extra.at("groups")[i];
      // The map is the group values spread; the split map is each value over its 8 elements.
      EXPECT_TRUE(torch::equal(whole.map[i], g.index_select(0, seg[i].flatten().to(torch::kLong)).view(x[i].sizes()))) << name;
      EXPECT_TRUE(torch::allclose(split.map[i] * 8.0, whole.map[i], 1e-5, 1e-6)) << name;
      if (name == "lime") continue;  // a surrogate's coefficients obey no efficiency
      const double total = (w[t[i].item<int64_t>()].view({2, 6, 6}) * x[i]).sum().item<double>();
      if (name != "feature-ablation") EXPECT_NEAR(g.sum().item<double>(), total, 1e-3 * std::abs(total) + 1e-4) << name;
      EXPECT_NEAR(split.map[i].sum().item<double>(), g.sum().item<double>(), 1e-4 * std::abs(total) + 1e-4) << name;
    }
  }
  // The files beside the map, the groups as many as the input's superpixels.
  test::TempDir dir;
  const auto r = test::run_cli("explain -m " + test::quoted(test::demo_model()) + " -i " + test::quoted(test::first_sample()) + " " +
                               test::quoted(test::sample("1-trouser.png")) + " --method kernel-shap --out " + test::quoted(dir / "o"));
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* item : {"7-sneaker", "1-trouser"}) {
    const std::string base = dir / (std::string("o/") + item + "/kernel-shap");
    const torch::Tensor g = read_npy(base + ".groups.npy"), seg = read_npy_any(base + ".segments.npy");
    EXPECT_EQ(seg.scalar_type(), torch::kInt);
    EXPECT_EQ(g.size(0), seg.max().item<int64_t>() + 1) << item;  // no padding written
    EXPECT_FALSE(torch::isnan(g).any().item<bool>());
    EXPECT_TRUE(torch::allclose(read_npy(base + ".npy").flatten(), g.index_select(0, seg.flatten().to(torch::kLong))));
  }
}
