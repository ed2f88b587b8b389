// Modified back-propagation (Guided Backprop, Deconvnet, Guided Grad-CAM, LRP, DeepLIFT) against
// closed forms, axioms and the independent eager-PyTorch implementations of
// tools/backprop_reference.py (the ctest fixture `backprop_reference`).
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "salient/backprop.hpp"
#include "salient/baseline.hpp"
#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"
#include "salient/target.hpp"

using namespace salient;

namespace {

std::string refdata(const std::string& name) { return std::string(SALIENT_TESTDATA) + "/" + name; }

double max_rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item<double>();
}

Attribution run(Model& model, const std::string& method, const torch::Tensor& x, const torch::Tensor& t,
                const nlohmann::json& options = nlohmann::json::object()) {
  return Registry::builtin().create(method, options, model.metadata())->attribute(model, x, t);
}

struct Case {
  std::string model, input, targets, prefix;
};
const Case kDemo{"", "bp_demo_input.npy", "bp_demo_targets.npy", "demo"};
const Case kResNet{"resnet18_traced.pt", "bp_resnet_input.npy", "bp_resnet_targets.npy", "resnet"};

Model load(const Case& c) { return c.model.empty() ? Model(test::demo_model()) : Model(refdata(c.model)); }

// A bias-free ReLU network: a convolution, max pooling, a mean, and two matrix products.
torch::jit::Module bias_free_net() {
  torch::manual_seed(7);
  torch::jit::Module m("BiasFree");
  m.register_parameter("c", torch::randn({6, 1, 3, 3}) * 0.5, false);
  m.register_parameter("w1", torch::randn({16, 6 * 4}) * 0.3, false);
  m.register_parameter("w2", torch::randn({4, 16}) * 0.3, false);
  m.define(R"(
    def forward(self, x):
        h = torch.relu(torch.conv2d(x, self.c, None, [1, 1], [1, 1]))
        h = torch.max_pool2d(h, [2, 2])
        h = torch.mean(h, [3])
        h = torch.relu(torch.matmul(h.flatten(1), self.w1.t()))
        return torch.matmul(h, self.w2.t())
  )");
  return m;
}

}  // namespace

// ---- Guided Backprop and Deconvnet ----

TEST(GuidedBackprop, MatchesEagerHooksOnTheDemoCnnAndResNet18) {
  set_threads(0);
  for (const Case& c : {kDemo, kResNet}) {
    Model model = load(c);
    torch::Tensor x = read_npy(refdata(c.input)), t = read_npy(refdata(c.targets)).to(torch::kLong);
    for (const auto& [method, file] : {std::pair{"guided-backprop", "_gbp.npy"}, std::pair{"deconvnet", "_deconv.npy"}}) {
      torch::Tensor want = read_npy(refdata(c.prefix + file));
      torch::Tensor got = run(model, method, x, t).map;
      ASSERT_EQ(got.sizes(), want.sizes()) << c.prefix << " " << method;
      EXPECT_LE(max_rel_err(got, want), 1e-4) << c.prefix << " " << method;
      EXPECT_LE((got - want).abs().max().item<double>(), 1e-4) << c.prefix << " " << method;
    }
  }
}

TEST(GuidedBackprop, PassesOnlyNonNegativeGradientsThroughEveryRelu) {
  for (const Case& c : {kDemo, kResNet}) {
    Model model = load(c);
    torch::Tensor x = read_npy(refdata(c.input)), t = read_npy(refdata(c.targets)).to(torch::kLong);
    SiteRecorder recorder;
    torch::Tensor map = run(model, "guided-backprop", x, t).map;
    auto records = recorder.records();
    // ReLUs: the demo calls F.relu 3 times; ResNet-18 has 1 + 8 blocks x 2.
    EXPECT_EQ(records.size(), c.prefix == "demo" ? 3u : 17u) << c.prefix;
    for (const auto& r : records) {
      EXPECT_EQ(r.rule, "guided");
      for (double v : r.min_in) EXPECT_GE(v, 0.0) << c.prefix << " " << r.site;
    }
    // Not vacuous: the convolutions below the ReLUs still mix signs at the input.
    EXPECT_LT(map.min().item<double>(), 0.0);
  }
}

TEST(GuidedGradCam, IsGuidedBackpropTimesGradCam) {
  Model model = load(kDemo);
  torch::Tensor x = read_npy(refdata(kDemo.input)), t = read_npy(refdata(kDemo.targets)).to(torch::kLong);
  torch::Tensor ggc = run(model, "guided-grad-cam", x, t, {{"layer", "conv1"}}).map;
  torch::Tensor gbp = run(model, "guided-backprop", x, t).map;
  torch::Tensor cam = run(model, "grad-cam", x, t, {{"layer", "conv1"}}).map;
  EXPECT_LE(max_rel_err(ggc, gbp * cam), 1e-6);
  EXPECT_GT(ggc.abs().sum().item<double>(), 0.0);
}

// ---- LRP ----

TEST(Lrp, MatchesALayerByLayerEagerImplementationOnTheDemoCnn) {
  Model model = load(kDemo);
  torch::Tensor x = read_npy(refdata(kDemo.input)), t = read_npy(refdata(kDemo.targets)).to(torch::kLong);
  for (const char* composite : {"epsilon", "epsilon-plus", "epsilon-plus-flat", "epsilon-gamma-box"}) {
    torch::Tensor want = read_npy(refdata(std::string("demo_lrp_") + composite + ".npy"));
    torch::Tensor got = run(model, "lrp", x, t, {{"composite", composite}}).map;
    EXPECT_LE(max_rel_err(got, want), 1e-4) << composite;
  }
}

TEST(Lrp, ZeroRuleOnABiasFreeReluNetworkIsGradientTimesInput) {
  Model model(bias_free_net());
  torch::manual_seed(3);
  torch::Tensor x = torch::randn({3, 1, 8, 8});
  torch::Tensor t = torch::tensor({0, 2, 3}, torch::kLong);
  torch::Tensor gxi = target_gradient(model, x, t) * x;
  Attribution a = run(model, "lrp", x, t, {{"rule", "epsilon"}, {"epsilon", 0.0}, {"layers", true}});
  EXPECT_LE(max_rel_err(a.map, gxi), 1e-4);
  // ... and conserves f(x) exactly, at the input and through every layer.
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(a.map[i].sum().item<double>(), a.scores[i].item<double>(), 1e-4 * std::abs(a.scores[i].item<double>()));
    for (const auto& layer : a.diagnostics["layers"][i])
      EXPECT_NEAR(layer["relevance_in"].get<double>(), layer["relevance_out"].get<double>(),
                  1e-4 * std::abs(layer["relevance_out"].get<double>()))
          << layer["site"];
  }
}

// A bias-free ReLU segmentation net: [N, 1, 8, 8] -> [N, 3, 8, 8].
torch::jit::Module bias_free_dense_net() {
  torch::manual_seed(9);
  torch::jit::Module m("BiasFreeDense");
  m.register_parameter("c1", torch::randn({5, 1, 3, 3}) * 0.5, false);
  m.register_parameter("c2", torch::randn({3, 5, 1, 1}) * 0.5, false);
  m.define(R"(
    def forward(self, x):
        h = torch.relu(torch.conv2d(x, self.c1, None, [1, 1], [1, 1]))
        return torch.conv2d(h, self.c2)
  )");
  return m;
}

// Under a function target (a region of a dense output, a masked region, classes summed) relevance
// starts from each output element's own share of the target, so on a bias-free ReLU network LRP-0
// is input x gradient of the target function, and sums to its value (it used to start every
// element from the whole sum: a U-Net's region map summed to 1,000 times f(x)).
TEST(Lrp, UnderAFunctionTargetIsInputTimesGradientOfThatFunction) {
  test::TempDir dir;
  torch::Tensor mask = torch::zeros({8, 8});
  mask.slice(0, 2, 6).slice(1, 1, 5) = 0.5;
  mask[7][7] = -2.0;
  write_npy(dir / "mask.npy", mask);
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({2, 1, 8, 8});
  ModelMetadata meta;
  meta.labels = {"a", "b", "c", "d"};
  struct C {
    bool dense;
    std::string target;
  };
  for (const C& c : {C{true, "region:1"}, C{true, "region:2:" + (dir / "mask.npy")}, C{false, "a+c"}, C{false, "1+2+3"}}) {
    Model model(c.dense ? bias_free_dense_net() : bias_free_net());
    const Target target = Target::parse(c.target, meta);
    ReductionScope scope(model, target);
    const torch::Tensor t = torch::zeros({2}, torch::kLong);
    const torch::Tensor gxi = target_gradient(model, x, t) * x;
    const Attribution a = run(model, "lrp", x, t, {{"rule", "epsilon"}, {"epsilon", 0.0}});
    EXPECT_LE(max_rel_err(a.map, gxi), 1e-4) << c.target;
    for (int64_t i = 0; i < 2; ++i) {
      const double f = model.forward(x.slice(0, i, i + 1))[0][0].item<double>();
      EXPECT_NEAR(a.scores[i].item<double>(), f, 1e-5 * std::abs(f)) << c.target;
      EXPECT_NEAR(a.map[i].sum().item<double>(), f, 1e-4 * std::abs(f)) << c.target;
      EXPECT_LE(a.diagnostics["relative_gap"][i].get<double>(), 1e-4) << c.target;
    }
  }
}

// The same on a trained U-Net (models/fashion_unet: BatchNorm, max-pool, nearest up-sampling, a
// concatenated skip, biases): each image's region of its garment class. LRP-0 is input x gradient
// for ReLU networks with biases too, so the map equals x times the eager model's own gradient of
// the region's value, and f(x) is that value; the map's sum differs from f(x) by what the biases
// absorb, which the diagnostics report (it used to start every pixel from the whole region sum).
TEST(Lrp, RegionOfATrainedUNetIsInputTimesTheEagerGradient) {
  const std::string dir = test::source_dir() + "/models/fashion_unet/";
  Model model(dir + "unet.pt");
  const torch::Tensor x = read_npy(dir + "reference_x.npy"), cls = read_npy_any(dir + "reference_class.npy"),
                      value = read_npy_any(dir + "reference_value.npy"), grad = read_npy_any(dir + "reference_gradient.npy");
  for (int64_t i = 0; i < x.size(0); ++i) {
    const Target target = Target::parse("region:" + std::to_string(cls[i].item<int64_t>()), model.metadata());
    ReductionScope scope(model, target);
    const Attribution a = run(model, "lrp", x.slice(0, i, i + 1), torch::zeros({1}, torch::kLong), {{"rule", "epsilon"}, {"epsilon", 0.0}});
    const torch::Tensor want = (x[i].to(torch::kDouble) * grad[i]).to(torch::kFloat);
    EXPECT_LE(max_rel_err(a.map[0], want), 1e-4) << i;
    const double f = value[i].item<double>();
    EXPECT_NEAR(a.diagnostics["f(x)"][0].get<double>(), f, 1e-4 * std::abs(f)) << i;
    EXPECT_NEAR(a.diagnostics["sum"][0].get<double>(), want.sum().item<double>(), 1e-3 * std::abs(f)) << i;
  }
}

TEST(Lrp, EpsilonConservesRelevanceUpToWhatEpsilonAbsorbs) {
  Model model(bias_free_net());
  torch::manual_seed(4);
  torch::Tensor x = torch::randn({4, 1, 8, 8});
  torch::Tensor t = torch::zeros({4}, torch::kLong);
  for (double eps : {1e-6, 1e-2, 1.0}) {
    Attribution a = run(model, "lrp", x, t, {{"rule", "epsilon"}, {"epsilon", eps}, {"layers", true}});
    for (int64_t i = 0; i < 4; ++i) {
      const double f = a.scores[i].item<double>(), sum = a.map[i].sum().item<double>();
      const double gap = std::abs(a.diagnostics["conservation_gap"][i].get<double>());
      EXPECT_NEAR(gap, std::abs(sum - f), 1e-6 * std::abs(f));
      // Every layer passes down z/(z + eps sign z) of each output's relevance: never more, and all of
      // it as eps -> 0.
      for (const auto& layer : a.diagnostics["layers"][i]) {
        const double in = layer["relevance_in"], out = layer["relevance_out"];
        if (eps <= 1e-6) EXPECT_NEAR(in, out, 1e-4 * std::abs(out)) << layer["site"];
      }
      if (eps <= 1e-6) EXPECT_LE(gap, 1e-4 * std::abs(f));
      if (eps >= 1.0) EXPECT_GT(gap, 1e-3 * std::abs(f)) << "a large epsilon absorbs relevance";
    }
  }
}

TEST(Lrp, ZPlusRelevanceIsNonNegativeWhereverTheLayersInputsAre) {
  Model model = load(kDemo);
  torch::Tensor x = read_npy(refdata(kDemo.input)), t = read_npy(refdata(kDemo.targets)).to(torch::kLong);
  Attribution a = run(model, "lrp", x, t, {{"rule", "zplus"}, {"layers", true}});
  for (int64_t i = 0; i < x.size(0); ++i) {
    ASSERT_GT(a.scores[i].item<double>(), 0.0);  // the top class: positive relevance to start with
    size_t after_relu = 0;
    for (const auto& layer : a.diagnostics["layers"][i]) {
      if (layer["input_min"].is_null() || layer["input_min"].get<double>() < 0) continue;
      ++after_relu;
      EXPECT_GE(layer["min_in"].get<double>(), 0.0) << layer["site"];
    }
    EXPECT_EQ(after_relu, 3u);  // conv2, fc1, fc2
  }
}

TEST(Lrp, BatchNormCanonizerFoldsLikeTorchAndChangesNoOutput) {
  // torch's fuse_conv_bn_eval (tools/) and Salient's fold_batch_norm give the same convolutions, and
  // the folded network computes what the original does.
  Model original(refdata("resnet18_traced.pt")), folded(refdata("resnet18_folded.pt"));
  torch::Tensor x = read_npy(refdata(kResNet.input));
  torch::Tensor y0 = original.forward(x).detach(), y1 = folded.forward(x).detach();
  EXPECT_LE((y0 - y1).abs().max().item<double>(), 1e-5 * std::max(1.0, y0.abs().max().item<double>()));
  std::map<std::string, torch::Tensor> params, fused;
  for (const auto& p : original.module().named_parameters()) params[p.name] = p.value;
  for (const auto& p : original.module().named_buffers()) params[p.name] = p.value;
  for (const auto& p : folded.module().named_parameters()) fused[p.name] = p.value;
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"conv1", "bn1"}, {"layer1.0.conv1", "layer1.0.bn1"}, {"layer2.0.downsample.0", "layer2.0.downsample.1"},
      {"layer4.1.conv2", "layer4.1.bn2"}};
  for (const auto& [conv, bn] : pairs) {
    auto [w, b] = fold_batch_norm(params.at(conv + ".weight"), torch::Tensor(), params.at(bn + ".weight"),
                                  params.at(bn + ".bias"), params.at(bn + ".running_mean"), params.at(bn + ".running_var"), 1e-5);
    EXPECT_LE(max_rel_err(w, fused.at(conv + ".weight")), 1e-5) << conv;
    EXPECT_LE(max_rel_err(b, fused.at(conv + ".bias")), 1e-5) << conv;
  }
  // LRP through the canonizer on the original equals LRP on torch's folded network, for a rule that
  // depends on the folded weights themselves.
  torch::Tensor t = read_npy(refdata(kResNet.targets)).to(torch::kLong);
  for (const char* composite : {"epsilon-plus-flat", "epsilon-gamma-box"}) {
    Attribution a = run(original, "lrp", x, t, {{"composite", composite}});
    Attribution b = run(folded, "lrp", x, t, {{"composite", composite}});
    EXPECT_LE(max_rel_err(a.map, b.map), 1e-4) << composite;
    // The forward values LRP explains are the model's own.
    EXPECT_LE((a.scores - y0.gather(1, t.view({-1, 1})).squeeze(1)).abs().max().item<double>(), 1e-5);
  }
}

TEST(Lrp, ModifiedWeightsFollowTheModelsParameters) {
  // The rules' weights are cached per parameter version: changing a weight in place must show.
  Model model = load(kDemo);
  torch::Tensor x = read_npy(refdata(kDemo.input)), t = read_npy(refdata(kDemo.targets)).to(torch::kLong);
  auto method = Registry::builtin().create("lrp", {{"composite", "epsilon-gamma-box"}}, model.metadata());
  torch::Tensor before = method->attribute(model, x, t).map;
  torch::Tensor w = model.module().attr("conv2").toModule().attr("weight").toTensor();
  {
    torch::NoGradGuard no_grad;
    w.mul_(-1.5);
  }
  torch::Tensor after = method->attribute(model, x, t).map;
  torch::Tensor fresh = run(model, "lrp", x, t, {{"composite", "epsilon-gamma-box"}}).map;
  EXPECT_TRUE(torch::equal(after, fresh));
  EXPECT_GT(max_rel_err(after, before), 0.1);
  {
    torch::NoGradGuard no_grad;
    w.div_(-1.5);
  }
  EXPECT_LE(max_rel_err(method->attribute(model, x, t).map, before), 1e-5);
}

TEST(Lrp, RejectsAModelWithAnOpNoRuleCoversNamingTheOp) {
  // A softmax inside the network (a final one is the output head LRP starts under).
  torch::jit::Module m("Softmaxed");
  m.register_parameter("w", torch::randn({3, 4}), false);
  m.register_parameter("w2", torch::randn({3, 3}), false);
  m.define(R"(
    def forward(self, x):
        return torch.matmul(torch.softmax(torch.matmul(x, self.w.t()), 1), self.w2)
  )");
  Model model(m);
  torch::Tensor x = torch::randn({2, 4}), t = torch::zeros({2}, torch::kLong);
  for (const char* method : {"lrp", "deeplift"}) {
    try {
      run(model, method, x, t);
      ADD_FAILURE() << method << " explained a model it has no rule for";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("aten::softmax"), std::string::npos) << e.what();
    }
  }
  // Guided Backprop needs activations, and says so.
  try {
    run(model, "guided-backprop", x, t);
    ADD_FAILURE() << "guided-backprop on a model without an activation";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no activation"), std::string::npos) << e.what();
  }
}

TEST(Lrp, OptionsAreChecked) {
  EXPECT_THROW(Registry::builtin().create("lrp", {{"composite", "bogus"}}), Error);
  EXPECT_THROW(Registry::builtin().create("lrp", {{"alpha", 3.0}, {"beta", 1.0}}), Error);
  EXPECT_THROW(Registry::builtin().create("lrp", {{"low", "a,b"}}), Error);
  EXPECT_THROW(Registry::builtin().create("lrp", {{"low", -1.0}}), Error);  // high missing
}

// ---- DeepLIFT ----

TEST(DeepLift, SumsToTheOutputDifferenceAndMatchesCaptumsMultipliers) {
  Model model = load(kDemo);
  torch::Tensor x = read_npy(refdata(kDemo.input)), t = read_npy(refdata(kDemo.targets)).to(torch::kLong);
  Attribution a = run(model, "deeplift", x, t);
  EXPECT_LE(max_rel_err(a.map, read_npy(refdata("demo_deeplift.npy"))), 1e-4);
  for (const Case& c : {kDemo, kResNet}) {
    Model m = load(c);
    torch::Tensor xi = read_npy(refdata(c.input)), ti = read_npy(refdata(c.targets)).to(torch::kLong);
    for (const char* baseline : {"zeros", "blur:2"}) {
      Attribution d = run(m, "deeplift", xi, ti, {{"baseline", baseline}});
      torch::Tensor f0 = target_scores(m, torch::stack({Baseline::parse(baseline, {}).make(xi[0], 0),
                                                        Baseline::parse(baseline, {}).make(xi[1], 0)}), ti);
      for (int64_t i = 0; i < 2; ++i) {
        const double delta = d.scores[i].item<double>() - f0[i].item<double>();
        EXPECT_NEAR(d.map[i].sum().item<double>(), delta, 1e-4 * std::max(1.0, std::abs(delta))) << c.prefix << baseline;
        EXPECT_NEAR(d.diagnostics["f(x)-f(x0)"][i].get<double>(), delta, 1e-4 * std::max(1.0, std::abs(delta)));
      }
    }
  }
}

TEST(DeepLift, OnOneReluLayerIsTheRescaleRuleInClosedForm) {
  // f(x) = v . relu(W x): attributions (x - x0) * W^T (v * (relu(Wx) - relu(Wx0)) / (Wx - Wx0)).
  torch::manual_seed(5);
  torch::Tensor W = torch::randn({5, 3}), v = torch::randn({1, 5});
  torch::jit::Module m("OneLayer");
  m.register_parameter("W", W, false);
  m.register_parameter("v", v, false);
  m.define(R"(
    def forward(self, x):
        return torch.matmul(torch.relu(torch.matmul(x, self.W.t())), self.v.t())
  )");
  Model model(m);
  torch::Tensor x = torch::randn({2, 3}), x0 = torch::full({2, 3}, 0.1);
  torch::Tensor z = x.matmul(W.t()), z0 = x0.matmul(W.t());
  torch::Tensor mult = (z.clamp_min(0) - z0.clamp_min(0)) / (z - z0);
  torch::Tensor want = (x - x0) * (mult * v).matmul(W);
  Attribution a = run(model, "deeplift", x, torch::zeros({2}, torch::kLong), {{"baseline", "constant:0.1"}});
  EXPECT_LE(max_rel_err(a.map, want), 1e-5);
}

// ---- All of them ----

TEST(ModifiedBackprop, TracedAndScriptedResNet18GiveTheSameMaps) {
  Model traced(refdata("resnet18_traced.pt")), scripted(refdata("resnet18_scripted.pt"));
  torch::Tensor x = read_npy(refdata(kResNet.input)).slice(0, 0, 1), t = read_npy(refdata(kResNet.targets)).slice(0, 0, 1).to(torch::kLong);
  for (const char* method : {"guided-backprop", "lrp", "deeplift"}) {
    torch::Tensor a = run(traced, method, x, t).map, b = run(scripted, method, x, t).map;
    EXPECT_LE(max_rel_err(b, a), 1e-5) << method;
  }
}

TEST(ModifiedBackprop, TheUsersModelIsUnchanged) {
  Model model = load(kDemo);
  torch::Tensor x = read_npy(refdata(kDemo.input)), t = read_npy(refdata(kDemo.targets)).to(torch::kLong);
  const std::string graph = model.module().get_method("forward").graph()->toString();
  torch::Tensor before = model.forward(x).detach();
  torch::Tensor grad_before = target_gradient(model, x, t);
  for (const char* method : {"guided-backprop", "deconvnet", "lrp", "deeplift"}) run(model, method, x, t);
  EXPECT_EQ(model.module().get_method("forward").graph()->toString(), graph);
  EXPECT_TRUE(torch::equal(model.forward(x).detach(), before));
  EXPECT_TRUE(torch::equal(target_gradient(model, x, t), grad_before));  // plain gradients are plain again
}
