// No silently wrong map: the model types users bring (torchvision MobileNetV3, EfficientNet, a ViT,
// a scripted TransformerEncoderLayer, sigmoid and softmax heads, squeeze-and-excitation gates,
// 1-D/3-D/adaptive max pools, a two-input model, an ONNX export OpenCV cannot read as it is), built
// with seeded random weights by tools/zoo_models.py (the ctest fixture `zoo_models`), each against an
// independent eager-PyTorch value or a closed form.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "helpers.hpp"
#include "salient/backprop.hpp"
#include "salient/baseline.hpp"
#include "salient/error.hpp"
#include "salient/explain.hpp"
#include "salient/fsutil.hpp"
#include "salient/methods/lrp.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"

using namespace salient;
namespace fs = std::filesystem;

namespace {

std::string zoo(const std::string& name) { return std::string(SALIENT_TESTDATA) + "/zoo/" + name; }
const auto q = test::quoted;

Attribution run(Model& model, const std::string& method, const torch::Tensor& x, const torch::Tensor& t,
                const nlohmann::json& options = nlohmann::json::object()) {
  return Registry::builtin().create(method, options, model.metadata())->attribute(model, x, t);
}

double max_rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item<double>();
}

torch::Tensor targets_of(const std::string& file) { return read_npy(zoo(file)).to(torch::kLong); }

nlohmann::json explanation(const fs::path& dir) { return nlohmann::json::parse(read_file((dir / "explanation.json").string())); }

}  // namespace

// 1. A frozen / inference-optimised copy proves itself against the plain module before it is used.
TEST(Zoo, MobileNetV3PredictionsEqualEagerWhicheverCopyRuns) {
  Model model(zoo("mobilenet_v3_small.pt"));
  const torch::Tensor x = read_npy(zoo("zoo_probe.npy")), want = read_npy(zoo("mobilenet_logits.npy"));
  const torch::Tensor got = model.predict(x);
  EXPECT_LT(max_rel_err(got, want), 1e-4);
  EXPECT_TRUE(got.argmax(1).equal(want.argmax(1)));
  const ForwardMode& mode = model.forward_mode();
  ASSERT_TRUE(mode.check.contains("optimised")) << mode.check.dump();
  if (mode.mode == "optimised") EXPECT_LE(mode.check["optimised"].get<double>(), 1e-4);
  if (mode.mode == "frozen") EXPECT_GT(mode.check["optimised"].get<double>(), 1e-4) << "a passing optimised copy was skipped";
  EXPECT_NE(mode.mode, "plain") << mode.check.dump();
  // Whatever ran, later batches (another size) still agree.
  EXPECT_LT(max_rel_err(model.predict(x.slice(0, 1, 2)), want.slice(0, 1, 2)), 1e-4);
  Model plain(zoo("mobilenet_v3_small.pt"), ModelOptions{"cpu", "", "", false});
  plain.predict(x);
  EXPECT_EQ(plain.forward_mode().mode, "plain");
}

// 2. LRP starts at the logit under a sigmoid (or softmax) head: on a logistic regression its map is
// w * x (up to the bias's share), with the sign of w * x, never inverted by a probability.
TEST(Zoo, LrpOnALogisticRegressionFollowsWTimesXFromTheLogit) {
  Model model(zoo("logreg.pt"));
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({8, 6}), w = read_npy(zoo("logreg_w.npy")), b = read_npy(zoo("logreg_b.npy"));
  Attribution a = run(model, "lrp", x, torch::zeros({8}, torch::kLong), {{"composite", "epsilon"}});
  const torch::Tensor wx = x * w, z = wx.sum(1, true) + b;
  // The epsilon rule on one layer, relevance z at the logit: R_i = w_i x_i * z / (z + eps) = w_i x_i.
  EXPECT_LT(max_rel_err(a.map, wx), 1e-4);
  // Started at the probability instead, negative logits would flip the signs (correlation -1).
  for (int64_t i = 0; i < 8; ++i) EXPECT_GT((a.map[i] * wx[i]).sum().item<double>(), 0.0) << i;
  EXPECT_NE(a.diagnostics["relevance_from"].get<std::string>().find("aten::sigmoid"), std::string::npos);
  // The explained quantity is the logit: conservation is reported against it.
  EXPECT_LT((a.scores.to(torch::kFloat) - z.squeeze(1)).abs().max().item<double>(), 1e-5);
  // A softmax head likewise.
  Model soft(zoo("softmax_reg.pt"));
  Attribution s = run(soft, "lrp", x, torch::ones({8}, torch::kLong), {{"composite", "epsilon"}});
  EXPECT_NE(s.diagnostics["relevance_from"].get<std::string>().find("aten::softmax"), std::string::npos);
  const torch::Tensor ws = read_npy(zoo("softmax_w.npy"));  // [3, 6]
  EXPECT_LT(max_rel_err(s.map, x * ws[1]), 1e-4);
}

// 2b. A conservation gap beyond the tolerance is flagged, as IG flags its completeness gap.
TEST(Zoo, ALargeConservationGapIsAWarning) {
  Model model(zoo("linear_head.pt"));  // biases absorb much of the relevance on random inputs
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({6, 6});
  Attribution a = run(model, "lrp", x, torch::zeros({6}, torch::kLong), {{"composite", "epsilon"}});
  int flagged = 0;
  for (int64_t i = 0; i < 6; ++i) {
    const bool big = a.diagnostics["relative_gap"][i].get<double>() > kConservationTolerance;
    const bool warned = a.diagnostics.contains("warning") && a.diagnostics["warning"][i].is_string();
    EXPECT_EQ(big, warned) << i;
    flagged += warned;
  }
  EXPECT_GT(flagged, 0) << "no input showed a gap: the case does not exercise the warning";
}

// 3. z^B bounds come from the data when the metadata states no value range.
TEST(Zoo, ZBoxBoundsComeFromTheDataWithoutAStatedRange) {
  ModelMetadata meta;
  meta.present = true;  // a sidecar without value_range: mean/std only
  meta.mean = {0.5};
  meta.std = {0.25};
  LrpOptions o = Lrp::parse(nlohmann::json::object(), meta);
  EXPECT_TRUE(o.low.empty() && o.high.empty());
  meta.range_stated = true;
  o = Lrp::parse(nlohmann::json::object(), meta);
  ASSERT_EQ(o.low.size(), 1u);
  EXPECT_DOUBLE_EQ(o.low[0], (0.0 - 0.5) / 0.25);
  EXPECT_DOUBLE_EQ(o.high[0], (1.0 - 0.5) / 0.25);
}

// 4. A map that is all zero says why; Grad-CAM on a ViT's last block is one.
TEST(Zoo, AnAllZeroMapOnAVitsLastBlockIsAWarning) {
  Model model(zoo("vit_tiny.pt"));
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({1, 3, 32, 32});
  const torch::Tensor t = model.predict(x).argmax(1);
  Attribution last = run(model, "grad-cam", x, t, {{"layer", "encoder.ln"}, {"reshape", 1}});
  EXPECT_EQ(last.map.abs().max().item<double>(), 0.0);
  ASSERT_TRUE(last.diagnostics.contains("warning"));
  EXPECT_NE(last.diagnostics["warning"][0].get<std::string>().find("does not reach the target"), std::string::npos);
  // An earlier block reaches the class token through attention: a real map, no warning.
  Attribution first = run(model, "grad-cam", x, t, {{"layer", "encoder.layers.encoder_layer_0.ln_2"}, {"reshape", 1}});
  EXPECT_GT(first.map.abs().max().item<double>(), 0.0);
  EXPECT_FALSE(first.diagnostics.contains("warning"));
}

// 5. Occlusion covers every element: a clipped last window, as Captum (its test
// test_simple_input_shape_with_stride: 120 at the edge of [20, 50, 30]).
TEST(Zoo, OcclusionCoversTheEdgeWithAClippedWindow) {
  Model model(test::linear_module(torch::tensor({{1.0f, 2.0f, 4.0f}}), torch::zeros({1})));
  const torch::Tensor x = torch::tensor({{20.0f, 50.0f, 30.0f}});
  Attribution a = run(model, "occlusion", x, torch::zeros({1}, torch::kLong), {{"window", "2"}, {"stride", "2"}});
  // Windows [0, 2) and [2, 3): each element gets the drop of the window that covers it.
  EXPECT_NEAR(a.map[0][0].item<double>(), 20 + 100, 1e-4);
  EXPECT_NEAR(a.map[0][1].item<double>(), 20 + 100, 1e-4);
  EXPECT_NEAR(a.map[0][2].item<double>(), 120, 1e-4);
  EXPECT_EQ(a.extra.at("coverage")[0].min().item<double>(), 1.0);
  EXPECT_EQ(a.diagnostics["coverage_min"][0], 1.0);
}

// 10. EfficientNet's Dropout(inplace=True) and SiLU: every modified-backprop method runs.
TEST(Zoo, EfficientNetRunsEveryModifiedBackpropMethod) {
  Model model(zoo("efficientnet_b0.pt"));
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({1, 3, 64, 64});
  const torch::Tensor t = model.predict(x).argmax(1);
  for (const char* method : {"guided-backprop", "deconvnet", "lrp", "deeplift"}) {
    Attribution a = run(model, method, x, t);
    EXPECT_EQ(a.map.sizes(), x.sizes()) << method;
    EXPECT_TRUE(torch::isfinite(a.map).all().item<bool>()) << method;
    EXPECT_GT(a.map.abs().max().item<double>(), 0.0) << method;
  }
  // Guided Backprop on SiLU passes only positive gradients into the activation's own derivative:
  // it differs from the plain gradient.
  Attribution gbp = run(model, "guided-backprop", x, t), grad = run(model, "saliency", x, t, {{"abs", false}});
  EXPECT_GT((gbp.map - grad.map).abs().max().item<double>(), 1e-3 * grad.map.abs().max().item<double>());
}

// 11. Squeeze-and-excitation gates: the gate held constant, all relevance through the signal.
TEST(Zoo, SqueezeExcitationGatesMatchEagerSignalTakeAll) {
  Model model(zoo("se_block.pt"));
  const torch::Tensor x = read_npy(zoo("se_input.npy")), t = targets_of("se_targets.npy");
  // LRP-0 (epsilon -> 0) on a bias-free ReLU net with a held gate is gradient x input.
  Attribution lrp = run(model, "lrp", x, t, {{"rule", "epsilon"}, {"epsilon", 1e-9}});
  EXPECT_LT(max_rel_err(lrp.map, read_npy(zoo("se_lrp0.npy"))), 1e-3);
  for (int64_t i = 0; i < 2; ++i)  // and conserves f(x)
    EXPECT_NEAR(lrp.map[i].sum().item<double>(), lrp.scores[i].item<double>(), 1e-3 * std::abs(lrp.scores[i].item<double>()));
  Attribution dl = run(model, "deeplift", x, t);
  EXPECT_LT(max_rel_err(dl.map, read_npy(zoo("se_deeplift.npy"))), 1e-4);
}

// 12. DeepLIFT on MaxPool1d (Captum's test_lin_maxpool_lin_classification model), MaxPool3d and
// adaptive max pooling, against Captum's max-pool rule in eager PyTorch.
TEST(Zoo, DeepLiftMaxPoolsOfAnyRankMatchCaptumsRule) {
  for (const std::string name : {"pool1d", "pool3d", "adaptivemax"}) {
    Model model(zoo(name + ".pt"));
    const torch::Tensor x = read_npy(zoo("pool_input_" + name + ".npy")), t = targets_of("pool_targets_" + name + ".npy");
    Attribution a = run(model, "deeplift", x, t);
    EXPECT_LT(max_rel_err(a.map, read_npy(zoo("pool_deeplift_" + name + ".npy"))), 1e-4) << name;
  }
}

// 13. Grad-CAM on a layer without spatial dims: the gradients are the weights (Captum's
// layer/test_grad_cam.py::test_simple_input_non_conv on BasicModel_MultiLayer: 400).
TEST(Zoo, GradCamOnALinearLayerWeighsByTheGradients) {
  torch::jit::Module m("BasicModel_MultiLayer");
  m.register_module("linear0", [] {
    torch::jit::Module l("Linear0");
    l.register_parameter("weight", torch::eye(3), false);
    l.register_parameter("bias", torch::zeros({3}), false);
    l.define("def forward(self, x):\n    return torch.linear(x, self.weight, self.bias)\n");
    return l;
  }());
  m.register_parameter("w1", torch::ones({4, 3}), false);
  m.register_parameter("b1", torch::tensor({-10.0f, 1.0f, 1.0f, 1.0f}), false);
  m.register_parameter("w2", torch::ones({2, 4}), false);
  m.register_parameter("b2", torch::tensor({-1.0f, 1.0f}), false);
  m.define(R"(
    def forward(self, x):
        h = self.linear0.forward(x)
        h = torch.relu(torch.linear(h, self.w1, self.b1))
        return torch.linear(h, self.w2, self.b2)
  )");
  Model model(m);
  Attribution a = run(model, "grad-cam", torch::tensor({{0.0f, 100.0f, 0.0f}}), torch::zeros({1}, torch::kLong),
                      {{"layer", "linear0"}});
  ASSERT_EQ(a.map.numel(), 1);
  EXPECT_NEAR(a.map.item<double>(), 400.0, 1e-3);
}

// 14. ViT: Ablation-CAM and Guided Grad-CAM take --reshape; a scripted TransformerEncoderLayer's
// sub-modules are captured, or the error says exactly why not.
TEST(Zoo, VitCamsTakeTokenGrids) {
  Model model(zoo("vit_tiny.pt"));
  torch::manual_seed(4);
  const torch::Tensor x = torch::randn({1, 3, 32, 32});
  const torch::Tensor t = model.predict(x).argmax(1);
  const nlohmann::json layer = {{"layer", "encoder.layers.encoder_layer_0.ln_2"}, {"reshape", 1}};
  Attribution abl = run(model, "ablation-cam", x, t, layer);
  EXPECT_EQ(abl.extra.at("raw").sizes(), (std::vector<int64_t>{1, 4, 4}));
  EXPECT_GT(abl.map.abs().max().item<double>(), 0.0);
  Attribution ggc = run(model, "guided-grad-cam", x, t, layer);
  EXPECT_EQ(ggc.map.sizes(), x.sizes());
  Attribution cam = run(model, "grad-cam", x, t, layer);
  EXPECT_LT(max_rel_err(ggc.extra.at("grad-cam"), cam.map), 1e-5);

  Model tokens(zoo("token_net.pt"));
  try {
    run(tokens, "grad-cam", x, torch::zeros({1}, torch::kLong), {{"layer", "encoder.layers.0.norm1"}, {"reshape", 0}});
    SUCCEED();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("control flow"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("encoder.layers.0"), std::string::npos) << e.what();
  }
}

// 15. A ResNet-18 ONNX export with Identity nodes fed by initializers loads, and its black-box maps
// equal the TorchScript model's.
TEST(Zoo, OnnxResNetWithIdentityNodesLoadsAndMatchesTorchScript) {
  Model onnx(zoo("resnet18.onnx")), ts(zoo("resnet18_64.pt"));
  torch::manual_seed(6);
  const torch::Tensor x = torch::randn({1, 3, 64, 64});
  const torch::Tensor t = ts.predict(x).argmax(1);
  EXPECT_LT(max_rel_err(onnx.predict(x), ts.predict(x)), 1e-4);
  const nlohmann::json o = {{"window", "16x16"}};
  EXPECT_LT(max_rel_err(run(onnx, "occlusion", x, t, o).map, run(ts, "occlusion", x, t, o).map), 1e-4);
}

// 16. A model of two inputs: one --input per forward argument, one map per input, equal to autograd.
TEST(Zoo, TwoInputModelGetsOneMapPerInputEqualToAutograd) {
  test::TempDir dir;
  test::RunResult r = test::run_cli("explain -m " + q(zoo("two_input.pt")) + " -i " + q(zoo("two_a.npy")) + " -i " +
                                    q(zoo("two_b.npy")) + " --method saliency --no-abs --out " + q(dir / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  const torch::Tensor ga = read_npy(zoo("two_grad_a.npy")), gb = read_npy(zoo("two_grad_b.npy"));
  for (int i = 0; i < 3; ++i) {
    const fs::path d = dir.path / "out" / ("two_a_" + std::to_string(i));
    auto j = explanation(d);
    EXPECT_EQ(j["explained"][0]["methods"]["saliency"]["npy"]["a"], "saliency.a.npy");
    EXPECT_LT(max_rel_err(read_npy((d / "saliency.a.npy").string()), ga[i]), 1e-5);
    EXPECT_LT(max_rel_err(read_npy((d / "saliency.b.npy").string()), gb[i]), 1e-5);
  }
  // Integrated gradients on the packed input keeps completeness across both inputs.
  r = test::run_cli("explain -m " + q(zoo("two_input.pt")) + " -i " + q(zoo("two_a.npy")) + " -i " + q(zoo("two_b.npy")) +
                    " --method integrated-gradients --out " + q(dir / "ig"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = explanation(dir.path / "ig" / "two_a_0");
  EXPECT_LT(j["explained"][0]["methods"]["integrated-gradients"]["diagnostics"]["relative_gap"].get<double>(), 0.01);
  // One input for two: a clear error, not TorchScript's.
  r = test::run_cli("explain -m " + q(zoo("two_input.pt")) + " -i " + q(zoo("two_a.npy")) + " --out " + q(dir / "bad"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("takes 2 inputs"), std::string::npos) << r.err;
}

// A forward taking one Dict[str, Tensor]: its entries given as --input KEY=FILE.npy (any order),
// an int64 entry kept int64, one map per entry equal to the closed form (a bias-free linear model's
// gradient is its weight row); named positional inputs are reordered by name; a dict model given
// unnamed files, a name given twice or an unknown name: one clear line, exit 2.
TEST(Zoo, DictInputModelTakesNamedEntriesAndGetsOneMapPerEntry) {
  test::TempDir dir;
  const std::string m = " -m " + q(zoo("dict_input.pt"));
  test::RunResult r = test::run_cli("explain" + m + " -i meta=" + q(zoo("dict_meta.npy")) + " -i ids=" +
                                    q(zoo("dict_ids.npy")) + " -i image=" + q(zoo("dict_image.npy")) +
                                    " --method saliency,integrated-gradients --no-abs --out " + q(dir / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  const torch::Tensor w = read_npy(zoo("dict_weight.npy")), image = read_npy(zoo("dict_image.npy")),
                      meta = read_npy(zoo("dict_meta.npy"));
  const torch::Tensor logits = torch::cat({image, meta}, 1).matmul(w.t());
  for (int i = 0; i < 3; ++i) {
    const fs::path d = dir.path / "out" / ("dict_meta_" + std::to_string(i));
    auto j = explanation(d);
    const int64_t c = logits[i].argmax().item<int64_t>();
    EXPECT_EQ(j["explained"][0]["class"], c);
    EXPECT_EQ(j["explained"][0]["methods"]["saliency"]["npy"]["image"], "saliency.image.npy");
    EXPECT_LT(max_rel_err(read_npy((d / "saliency.image.npy").string()), w[c].slice(0, 0, 4)), 1e-5);
    EXPECT_LT(max_rel_err(read_npy((d / "saliency.meta.npy").string()), w[c].slice(0, 4, 6)), 1e-5);
    EXPECT_EQ(read_npy((d / "saliency.ids.npy").string()).abs().sum().item<double>(), 0.0);  // ids have no gradient
    // Integrated gradients from zeros on a linear model: exactly x * w per entry.
    EXPECT_LT(max_rel_err(read_npy((d / "integrated-gradients.meta.npy").string()), meta[i] * w[c].slice(0, 4, 6)), 1e-4);
  }
  r = test::run_cli("explain" + m + " -i " + q(zoo("dict_meta.npy")) + " --out " + q(dir / "bad1"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--input KEY=FILE.npy"), std::string::npos) << r.err;
  r = test::run_cli("explain" + m + " -i meta=" + q(zoo("dict_meta.npy")) + " -i meta=" + q(zoo("dict_meta.npy")) +
                    " --out " + q(dir / "bad2"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("given twice"), std::string::npos) << r.err;
  // A key the model reads but was not given: the model's own failure, in one line.
  r = test::run_cli("explain" + m + " -i image=" + q(zoo("dict_image.npy")) + " --out " + q(dir / "bad3"));
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  // Positional inputs named: reordered by name, the same maps as in order.
  r = test::run_cli("explain -m " + q(zoo("two_input.pt")) + " -i b=" + q(zoo("two_b.npy")) + " -i a=" +
                    q(zoo("two_a.npy")) + " --method saliency --no-abs --out " + q(dir / "named"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LT(max_rel_err(read_npy((dir.path / "named" / "two_a_0" / "saliency.a.npy").string()),
                        read_npy(zoo("two_grad_a.npy"))[0]), 1e-5);
  r = test::run_cli("explain -m " + q(zoo("two_input.pt")) + " -i a=" + q(zoo("two_a.npy")) + " -i c=" +
                    q(zoo("two_b.npy")) + " --out " + q(dir / "bad4"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("no --input b=FILE.npy"), std::string::npos) << r.err;
}

// A model using torchvision's operators (every torchvision detector: nms, roi_align) loads: their
// library is found and loaded on demand; it runs as the eager model did, gradients included. When
// the library cannot be found: exit 2 naming the package and the variable that points at it.
TEST(Zoo, TorchvisionOperatorsAreLoadedOnDemand) {
  Model model(zoo("nms.pt"));
  const torch::Tensor x = read_npy(zoo("nms_input.npy")), want = read_npy(zoo("nms_output.npy"));
  EXPECT_TRUE(torch::allclose(model.predict(x), want));
  const torch::Tensor g = run(model, "saliency", x, torch::full({1}, 3, torch::kLong), {{"abs", false}}).map;
  EXPECT_TRUE(torch::allclose(g[0], torch::tensor({0.f, 0.f, 0.f, 1.f, 0.f}))) << g;  // d(x3 * kept3)/dx
  test::TempDir dir;
  ::setenv("SALIENT_TORCHVISION_OPS", (dir / "none.so").c_str(), 1);  // inherited by the CLI
  const test::RunResult r = test::run_cli("info -m " + q(zoo("nms.pt")) + " --input-shape 5");
  ::unsetenv("SALIENT_TORCHVISION_OPS");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("python3-torchvision"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("SALIENT_TORCHVISION_OPS"), std::string::npos) << r.err;
}

// 1 (JSON) and 20: explanation.json says which copy ran; LibTorch's own warnings stay off stderr.
TEST(Zoo, ExplanationSaysWhichForwardRanAndLibTorchWarningsAreQuiet) {
  test::TempDir dir;
  test::RunResult r = test::run_cli("explain -m " + q(zoo("mobilenet_v3_small.pt")) + " -i " + q(zoo("zoo_probe.npy")) +
                                    " --method saliency --out " + q(dir / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("Resize.cpp"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("Warning"), std::string::npos) << r.err;
  auto j = explanation(dir.path / "out" / "zoo_probe_0");
  const std::string mode = j["forward"]["mode"];
  EXPECT_TRUE(mode == "optimised" || mode == "frozen") << j["forward"].dump();
  // A bad label lists at most 10 of the 1000 choices.
  r = test::run_cli("explain -m " + q(zoo("mobilenet_v3_small.pt")) + " -i " + q(zoo("zoo_probe.npy")) +
                    " --target umbrella --out " + q(dir / "bad"));
  EXPECT_EQ(r.code, 2);
  EXPECT_LT(r.err.size(), 400u) << r.err;
  EXPECT_NE(r.err.find("990 more"), std::string::npos) << r.err;
}

// 21. A one-logit model is binary: its probability is the sigmoid of the logit.
TEST(Zoo, AOneLogitModelIsBinary) {
  test::TempDir dir;
  write_npy(dir / "rows.npy", torch::randn({2, 6}));
  // logreg.pt's metadata says "probabilities": its output is already sigmoid(z).
  test::RunResult r = test::run_cli("explain -m " + q(zoo("linear_head.pt")) + " -i " + q(dir / "rows.npy") +
                                    " --method saliency --out " + q(dir / "multi"));
  ASSERT_EQ(r.code, 0) << r.err;
  torch::jit::Module m = test::linear_module(torch::tensor({{1.0f, -1.0f, 0.5f, 0.0f, 2.0f, 1.0f}}), torch::tensor({0.3f}));
  m.save(dir / "one.pt");
  r = test::run_cli("explain -m " + q(dir / "one.pt") + " -i " + q(dir / "rows.npy") + " --method saliency --out " + q(dir / "one"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = explanation(dir.path / "one" / "rows_0");
  ASSERT_EQ(j["predictions"].size(), 1u);
  const double z = j["predictions"][0]["logit"], p = j["predictions"][0]["probability"];
  EXPECT_NEAR(p, 1.0 / (1.0 + std::exp(-z)), 1e-6);
  EXPECT_TRUE(j.contains("binary"));
}
