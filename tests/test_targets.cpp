// Targets as functions of the model's output: several classes summed, a class over a region of a
// dense output (segmentation), with closed forms on linear models.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "helpers.hpp"
#include "salient/error.hpp"
#include "salient/evaluate.hpp"
#include "salient/explain.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"
#include "salient/target.hpp"

using namespace salient;

namespace {

torch::Tensor run(const std::string& method, const nlohmann::json& o, Model& model, const Target& target,
                  const torch::Tensor& x) {
  ExplainRequest req;
  req.methods = {method};
  req.method_options = o;
  req.target = target;
  Explainer ex(model, req, prepare(req, model.metadata()));
  std::vector<InputItem> items;
  for (int64_t i = 0; i < x.size(0); ++i) items.push_back({"in" + std::to_string(i), "", x[i], {}});
  std::vector<torch::Tensor> maps;
  for (const auto& e : ex.run(items)) {
    EXPECT_TRUE(e.error.empty()) << e.error;
    EXPECT_FALSE(e.record.contains("failed")) << e.record.dump();
    EXPECT_EQ(e.record["explained"][0]["label"], target.to_string());
    maps.push_back(e.maps.at(0).at(method).map);
  }
  return torch::stack(maps);
}

// out = conv1x1(x): [N, 4, 6, 6] from [N, 3, 6, 6], a per-pixel linear map (a toy segmentation).
torch::jit::Module dense_module(const torch::Tensor& w) {
  torch::jit::Module m("Dense");
  m.register_parameter("w", w, false);
  m.define("def forward(self, x):\n    return torch.conv2d(x, self.w)\n");
  return m;
}

}  // namespace

TEST(Targets, ASumOfClassesIsExplainedAsTheSumOfTheirOutputs) {
  torch::manual_seed(2);
  const torch::Tensor w = torch::randn({5, 12}), b = torch::randn({5}), x = torch::randn({3, 12});
  Model model(test::linear_module(w, b));
  ModelMetadata meta;
  meta.labels = {"a", "b", "c", "d", "e"};
  const Target t = Target::parse("b+d", meta);
  ASSERT_EQ(t.kind(), Target::Kind::Function);
  const torch::Tensor want = w[1] + w[3];
  const torch::Tensor g = run("saliency", {{"abs", false}}, model, t, x);
  for (int64_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(g[i], want, 1e-5, 1e-6));
  const torch::Tensor ig = run("integrated-gradients", {{"steps", 8}}, model, Target::parse("1+3", meta), x);
  EXPECT_TRUE(torch::allclose(ig, x * want, 1e-4, 1e-5));  // (x - 0) * w, exactly, for a linear model
  // The same classes by index and by label; a class out of range is an error naming it.
  EXPECT_THROW(run("saliency", {}, model, Target::parse("1+9", meta), x), salient::Error);
  EXPECT_THROW(Target::parse("b+zz", meta), salient::Error);
}

TEST(Targets, ARegionOfADenseOutputHasItsClosedForm) {
  torch::manual_seed(3);
  const torch::Tensor w = torch::randn({4, 3, 1, 1}), x = torch::randn({2, 3, 6, 6});
  Model model(dense_module(w));
  test::TempDir dir;
  torch::Tensor mask = torch::zeros({6, 6});
  mask.slice(0, 1, 4).slice(1, 2, 5) = 1.0;
  write_npy(dir / "mask.npy", mask);
  const Target t = Target::parse("region:2:" + (dir / "mask.npy"), ModelMetadata{});
  // score = sum_hw M_hw sum_i w_2i x_ihw, so d score / d x_ihw = M_hw w_2i.
  const torch::Tensor grad = w[2].view({3, 1, 1}) * mask;
  const torch::Tensor g = run("saliency", {{"abs", false}}, model, t, x);
  for (int64_t n = 0; n < 2; ++n) EXPECT_TRUE(torch::allclose(g[n], grad, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(run("integrated-gradients", {{"steps", 8}}, model, t, x), x * grad, 1e-4, 1e-5));
  // Black-box methods see the same function: occluding pixel (h, w) (all channels) removes its
  // whole contribution sum_i M_hw w_2i x_ihw, given to each of its channels.
  const torch::Tensor occ = run("occlusion", {{"window", "1x1"}, {"stride", "1x1"}}, model, t, x);
  const torch::Tensor drop = (x * grad).sum(1, true).expand_as(x);
  EXPECT_TRUE(torch::allclose(occ, drop, 1e-4, 1e-5)) << (occ - drop).abs().max().item<double>();
  // The whole plane without a mask; a wrong mask size and a class out of range are errors.
  const torch::Tensor all = run("saliency", {{"abs", false}}, model, Target::parse("region:2", ModelMetadata{}), x);
  EXPECT_TRUE(torch::allclose(all[0], w[2].view({3, 1, 1}).expand({3, 6, 6}), 1e-5, 1e-6));
  write_npy(dir / "small.npy", torch::ones({5, 6}));
  EXPECT_THROW(run("saliency", {}, model, Target::parse("region:2:" + (dir / "small.npy"), ModelMetadata{}), x), salient::Error);
  EXPECT_THROW(run("saliency", {}, model, Target::parse("region:7", ModelMetadata{}), x), salient::Error);
  // An all-zero mask is an empty region, said so (it used to run and warn of dead units).
  write_npy(dir / "empty.npy", torch::zeros({6, 6}));
  try {
    Target::parse("region:2:" + (dir / "empty.npy"), ModelMetadata{});
    ADD_FAILURE() << "an empty mask was taken";
  } catch (const salient::Error& e) {
    EXPECT_NE(std::string(e.what()).find("the mask is all zeros"), std::string::npos) << e.what();
  }
  // A dense output with a class target is refused, naming the region target.
  try {
    run("saliency", {}, model, Target::parse("2", ModelMetadata{}), x);
    ADD_FAILURE() << "a dense output was explained as [N, K]";
  } catch (const salient::Error& e) {
    EXPECT_NE(std::string(e.what()).find("region:"), std::string::npos) << e.what();
  }
}

TEST(Targets, AFunctionTargetOnTheCommandLine) {
  test::TempDir dir;
  const auto r = test::run_cli("explain -m " + test::quoted(test::demo_model()) + " -i " + test::quoted(test::first_sample()) +
                               " --method saliency --no-abs --target Trouser+Bag --out " + test::quoted(dir / "o"));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto r1 = test::run_cli("explain -m " + test::quoted(test::demo_model()) + " -i " + test::quoted(test::first_sample()) +
                                " --method saliency --no-abs --target 1 --out " + test::quoted(dir / "a"));
  const auto r8 = test::run_cli("explain -m " + test::quoted(test::demo_model()) + " -i " + test::quoted(test::first_sample()) +
                                " --method saliency --no-abs --target 8 --out " + test::quoted(dir / "b"));
  ASSERT_EQ(r1.code + r8.code, 0);
  const torch::Tensor sum = read_npy(dir / "o/7-sneaker/saliency.npy");
  EXPECT_TRUE(torch::allclose(sum, read_npy(dir / "a/7-sneaker/saliency.npy") + read_npy(dir / "b/7-sneaker/saliency.npy"), 1e-5, 1e-6));
  const auto bad = test::run_cli("explain -m " + test::quoted(test::demo_model()) + " -i " + test::quoted(test::first_sample()) +
                                 " --method saliency --target region:1 --out " + test::quoted(dir / "x"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("needs a dense output"), std::string::npos) << bad.err;
}

namespace {
// out = relu(hidden(x)) @ V^T with hidden(x) = x @ W^T + b, a submodule: an inner layer to target.
torch::jit::Module two_layer_module(const torch::Tensor& w, const torch::Tensor& b, const torch::Tensor& v) {
  torch::jit::Module hidden("Hidden");
  hidden.register_parameter("weight", w.clone(), false);
  hidden.register_parameter("bias", b.clone(), false);
  hidden.define("def forward(self, x):\n    return torch.matmul(x, self.weight.t()) + self.bias\n");
  torch::jit::Module m("TwoLayer");
  m.register_module("hidden", hidden);
  m.register_parameter("v", v.clone(), false);
  m.define("def forward(self, x):\n    return torch.matmul(torch.relu(self.hidden.forward(x)), self.v.t())\n");
  return m;
}
}  // namespace

TEST(Targets, AnInnerNeuronIsExplainedByTheModelAgnosticMethodsWithItsClosedForm) {
  torch::manual_seed(4);
  const torch::Tensor w = torch::randn({5, 7}), b = torch::randn({5}), v = torch::randn({3, 5}), x = torch::randn({2, 7});
  Model model(two_layer_module(w, b, v));
  const Target t = Target::parse("layer:hidden:2", ModelMetadata{});
  ASSERT_EQ(t.layer(), "hidden");
  // The neuron h_2 = w_2 . x + b_2 is linear in x: its gradient is w_2, IG from zeros is x * w_2,
  // and removing feature k (to 0) drops it by w_2k x_k.
  const torch::Tensor g = run("saliency", {{"abs", false}}, model, t, x);
  for (int64_t i = 0; i < 2; ++i) EXPECT_TRUE(torch::allclose(g[i], w[2], 1e-5, 1e-6)) << g[i];
  EXPECT_TRUE(torch::allclose(run("integrated-gradients", {{"steps", 4}}, model, t, x), x * w[2], 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(run("feature-ablation", {{"features", "elements"}}, model, t, x), x * w[2], 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(run("noise-tunnel", {{"base", "saliency"}, {"abs", false}, {"samples", 3}}, model, t, x),
                              w[2].expand({2, 7}), 1e-4, 1e-5));
  // The model's own output is untouched afterwards: a class target explains the class again.
  const torch::Tensor cls = run("saliency", {{"abs", false}}, model, Target::index(0), x);
  EXPECT_FALSE(torch::allclose(cls[0], w[2], 1e-3, 1e-3));
  // Index errors name the layer's shape; methods with their own pass over the model are refused.
  auto message = [&](const std::string& method, const std::string& target) {
    try {
      run(method, {}, model, Target::parse(target, ModelMetadata{}), x);
    } catch (const salient::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("saliency", "layer:hidden:9").find("out of range"), std::string::npos) << message("saliency", "layer:hidden:9");
  EXPECT_NE(message("saliency", "layer:hidden:1,2").find("give 1 index"), std::string::npos) << message("saliency", "layer:hidden:1,2");
  EXPECT_NE(message("saliency", "layer:hiden:1").find("hidden"), std::string::npos) << message("saliency", "layer:hiden:1");
  EXPECT_NE(message("lrp", "layer:hidden:1").find("lrp builds its own pass"), std::string::npos) << message("lrp", "layer:hidden:1");
  EXPECT_THROW(Target::parse("layer:hidden:", ModelMetadata{}), salient::Error);
  EXPECT_THROW(Target::parse("layer:hidden:-1", ModelMetadata{}), salient::Error);
}

TEST(Targets, AMultiLabelThresholdExplainsEveryClassAboveItMostProbableFirst) {
  // logits = x[:4] + 0 (identity on the first four features; the last two weigh in the gradient
  // only), so the probabilities (sigmoid per column) are set by x.
  torch::Tensor w = torch::zeros({4, 6});
  w.slice(1, 0, 4) = torch::eye(4);
  w.slice(1, 4, 6) = torch::randn({4, 2});
  Model model(test::linear_module(w, torch::zeros({4})), {}, [] {
    ModelMetadata m;
    m.multi_label = true;
    m.labels = {"cat", "dog", "car", "sky"};
    return m;
  }());
  const torch::Tensor x = torch::tensor({{-2.0, 3.0, -1.0, 1.0, 0.0, 0.0}, {-1.0, -2.0, -3.0, -0.5, 0.0, 0.0}});
  ExplainRequest req;
  req.methods = {"saliency"};
  req.method_options = {{"abs", false}};
  req.target = Target::parse("above:0.6", model.metadata());
  Explainer ex(model, req, prepare(req, model.metadata()));
  const auto out = ex.run({{"a", "", x[0], {}}, {"b", "", x[1], {}}});
  ASSERT_EQ(out.size(), 2u);
  // Input a: dog (sigmoid(3) = 0.95) then sky (sigmoid(1) = 0.73); cat and car are below 0.6.
  EXPECT_EQ(out[0].targets, (std::vector<int64_t>{1, 3}));
  ASSERT_EQ(out[0].maps.size(), 2u);
  EXPECT_TRUE(torch::allclose(out[0].maps[0].at("saliency").map, w[1]));
  EXPECT_TRUE(torch::allclose(out[0].maps[1].at("saliency").map, w[3]));
  EXPECT_TRUE(out[0].warnings.empty());
  // Probabilities are each column's sigmoid, not a softmax.
  EXPECT_NEAR(out[0].probabilities[1].item<double>(), 1.0 / (1.0 + std::exp(-3.0)), 1e-6);
  // Input b: nothing reaches 0.6; its top class (sky, -0.5) is explained, with a warning.
  EXPECT_EQ(out[1].targets, (std::vector<int64_t>{3}));
  ASSERT_EQ(out[1].maps.size(), 1u);
  EXPECT_TRUE(torch::allclose(out[1].maps[0].at("saliency").map, w[3]));
  ASSERT_EQ(out[1].warnings.size(), 1u);
  EXPECT_NE(out[1].warnings[0].find("no class reached"), std::string::npos);
  EXPECT_THROW(Target::parse("above:1.5", model.metadata()), salient::Error);
  EXPECT_THROW(Target::parse("above:x", model.metadata()), salient::Error);
}

TEST(Targets, NeuronAndThresholdTargetsOnTheCommandLine) {
  test::TempDir dir;
  const std::string model = test::quoted(test::demo_model()), in = test::quoted(test::first_sample());
  const auto r = test::run_cli("explain -m " + model + " -i " + in + " --method saliency,integrated-gradients --target layer:fc1:3 --out " +
                               test::quoted(dir / "n"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_npy(dir / "n/7-sneaker/saliency.npy").sizes(), read_npy(dir / "n/7-sneaker/integrated-gradients.npy").sizes());
  const auto t = test::run_cli("explain -m " + model + " -i " + in + " --method saliency --target above:0.001 --out " + test::quoted(dir / "t"));
  ASSERT_EQ(t.code, 0) << t.err;
  // Every class at or above the threshold has its file, named by its class, most probable first.
  std::ifstream f(dir / "t/7-sneaker/explanation.json");
  const nlohmann::json j = nlohmann::json::parse(f);
  ASSERT_GE(j["explained"].size(), 1u);
  double last = 1.0;
  for (const auto& e : j["explained"]) {
    EXPECT_GE(e["probability"].get<double>(), 0.001);
    EXPECT_LE(e["probability"].get<double>(), last);
    last = e["probability"].get<double>();
    const std::string file = "saliency_c" + std::to_string(e["class"].get<int64_t>()) + ".npy";
    EXPECT_EQ(e["methods"]["saliency"]["npy"], file);
    EXPECT_TRUE(std::filesystem::exists(dir / ("t/7-sneaker/" + file))) << file;
  }
  const auto bad = test::run_cli("explain -m " + model + " -i " + in + " --method grad-cam --target layer:fc1:3 --out " + test::quoted(dir / "x"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("cannot explain an inner neuron"), std::string::npos) << bad.err;
}

// evaluate on a dense output: --target region:C scores the region's value as it is (a sum of
// logits, not a sigmoid of it), on every metric, the randomised copies included (which carry the
// reduction); without a target, a segmentation model is refused naming --target region.
TEST(Targets, EvaluateScoresAFunctionTargetsValueOnADenseOutput) {
  torch::manual_seed(4);
  const torch::Tensor w = torch::randn({4, 3, 1, 1}), x = torch::randn({2, 3, 6, 6}) + 2.0;
  Model model(dense_module(w));
  test::TempDir dir;
  write_npy(dir / "data.npy", x);
  EvaluateRequest req;
  req.data = dir / "data.npy";
  req.methods = {"saliency"};
  req.metrics = {"deletion", "insertion", "randomisation"};
  req.canvas = "zeros";
  req.limit = 2;
  req.steps = 4;
  req.target = "region:1";
  req.out_dir = dir / "eval";
  const nlohmann::json report = evaluate(model, req);
  EXPECT_EQ(report["score"], "value");
  EXPECT_EQ(report["target"], "region:1");
  std::ifstream log(dir.path / "eval" / "results.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(log, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    const int64_t i = j["index"];
    const double value = torch::conv2d(x[i].unsqueeze(0), w)[0][1].sum().item<double>();  // the region's value
    const auto del = j["methods"]["saliency"]["deletion"]["curve"], ins = j["methods"]["saliency"]["insertion"]["curve"];
    EXPECT_NEAR(del.front().get<double>(), value, 1e-3 * (1 + std::abs(value)));  // nothing removed yet
    EXPECT_NEAR(del.back().get<double>(), 0.0, 1e-5);                             // all zeros: a linear map's 0
    EXPECT_NEAR(ins.back().get<double>(), value, 1e-3 * (1 + std::abs(value)));
    EXPECT_EQ(j["methods"]["saliency"]["randomisation"].size(), 1u);  // the one parametrised layer
    EXPECT_TRUE(j["methods"]["saliency"]["randomisation"][0]["spearman"].is_number());
    ++lines;
  }
  EXPECT_EQ(lines, 2);
  req.target = "";
  req.out_dir = dir / "eval2";
  try {
    evaluate(model, req);
    ADD_FAILURE() << "a dense output without a target was evaluated";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--target region:"), std::string::npos) << e.what();
  }
  req.target = "top-2";
  EXPECT_THROW(validate(req, model), Error);
}
