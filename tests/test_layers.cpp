// Layer capture on TorchScript models and the CAM family, against eager-PyTorch hook references
// made by tools/layer_reference.py (the ctest fixture `layer_reference`).
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "salient/error.hpp"
#include "salient/layers.hpp"
#include "salient/methods/cam.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"

using namespace salient;

namespace {

std::string refdata(const std::string& name) { return std::string(SALIENT_TESTDATA) + "/" + name; }

double max_rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item<double>();
}

torch::Tensor grad_cam_raw(Model& model, const torch::Tensor& x, const torch::Tensor& t, const std::string& layer) {
  auto m = Registry::builtin().create("grad-cam", {{"layer", layer}});
  return m->attribute(model, x, t).extra.at("raw");
}

}  // namespace

TEST(LayerCapture, GradCamMatchesEagerHooksOnResNet18TracedAndScripted) {
  set_threads(0);
  torch::Tensor x = read_npy(refdata("resnet_input.npy"));
  torch::Tensor t = read_npy(refdata("resnet_targets.npy")).to(torch::kLong);
  torch::Tensor want = read_npy(refdata("resnet_gradcam_layer4.npy"));
  for (const char* file : {"resnet18_traced.pt", "resnet18_scripted.pt"}) {
    Model model(refdata(file));
    torch::Tensor got = grad_cam_raw(model, x, t, "layer4");
    ASSERT_EQ(got.sizes(), want.sizes()) << file;
    EXPECT_LE(max_rel_err(got, want), 1e-4) << file;
  }
}

TEST(LayerCapture, GradCamMatchesEagerHooksOnTheDemoCnn) {
  Model model(test::demo_model());
  torch::Tensor x = read_npy(refdata("demo_input.npy"));
  torch::Tensor t = read_npy(refdata("demo_targets.npy")).to(torch::kLong);
  torch::Tensor want = read_npy(refdata("demo_gradcam_conv2.npy"));
  torch::Tensor got = grad_cam_raw(model, x, t, "conv2");
  EXPECT_LE(max_rel_err(got, want), 1e-4);
  // And the default layer is that last convolution.
  EXPECT_EQ(default_cam_layer(model), "conv2");
}

TEST(LayerCapture, InPlaceOpsAfterTheModuleAndSharedModulesAreCapturedRight) {
  // layer4.1.bn2's output is modified by ResNet's in-place `+=`; layer4.1.relu is called twice.
  torch::Tensor x = read_npy(refdata("resnet_input.npy"));
  torch::Tensor t = read_npy(refdata("resnet_targets.npy")).to(torch::kLong);
  for (const char* file : {"resnet18_traced.pt", "resnet18_scripted.pt"}) {
    Model model(refdata(file));
    LayerCapture cap(model, {"layer4.1.bn2", "layer4.1.relu"});
    LayerGradients lg = layer_gradients(cap, x, t);
    for (size_t i = 0; i < 2; ++i) {
      const std::string name = cap.paths()[i];
      EXPECT_LE(max_rel_err(lg.activations[i], read_npy(refdata("resnet_" + name + "_act.npy"))), 1e-4) << file << " " << name;
      EXPECT_LE(max_rel_err(lg.gradients[i], read_npy(refdata("resnet_" + name + "_grad.npy"))), 1e-4) << file << " " << name;
    }
    // The pre-add activation differs from what the block finally returns: the in-place add did not leak in.
    LayerCapture block(model, {"layer4.1"});
    torch::NoGradGuard g;
    EXPECT_GT((block.run(x).activations[0] - lg.activations[0]).abs().max().item<double>(), 1e-3);
  }
}

TEST(LayerCapture, TheUsersModelIsUnchanged) {
  Model model(refdata("resnet18_traced.pt"));
  torch::Tensor x = read_npy(refdata("resnet_input.npy")).slice(0, 0, 1);
  const std::string graph_before = model.module().get_method("forward").graph()->toString();
  torch::Tensor before = model.predict(x);
  {
    LayerCapture cap(model, {"layer4.1.bn2", "layer2.0.relu", "fc"});
    torch::NoGradGuard g;
    torch::Tensor through_capture = cap.run(x).output;
    EXPECT_TRUE(torch::allclose(through_capture, before, 1e-5, 1e-5));
    cap.run_replacing(0, x, cap.run(x).activations[0]);
  }
  EXPECT_TRUE(torch::equal(model.predict(x), before));
  EXPECT_EQ(model.module().get_method("forward").graph()->toString(), graph_before);
}

TEST(LayerCapture, ListsLayersWithShapesAndRejectsUnknownPathsWithTheNearestOnes) {
  Model model(refdata("resnet18_scripted.pt"));
  auto layers = list_layers(model, torch::zeros({1, 3, 224, 224}));
  ASSERT_EQ(layers.size(), module_paths(model).size());
  std::map<std::string, LayerInfo> by_path;
  for (const auto& l : layers) by_path[l.path] = l;
  EXPECT_EQ(by_path["layer4"].shape, (std::vector<int64_t>{1, 512, 7, 7}));
  EXPECT_EQ(by_path["layer4.1.conv2"].type, "Conv2d");
  EXPECT_EQ(by_path["fc"].shape, (std::vector<int64_t>{1, 1000}));
  try {
    LayerCapture(model, {"layer4.1.conv3"});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer4.1.conv2"), std::string::npos) << e.what();
  }
}

TEST(Cam, GradCamLooksWhereTheLastConvolutionLooks) {
  // A model whose last convolution only sees the left half of the image: >= 90% of the map's
  // mass must be there.
  torch::manual_seed(3);
  torch::jit::Module last("Last");
  last.register_parameter("weight", torch::randn({8, 4, 3, 3}), false);
  last.define(R"(
    def forward(self, x):
        return torch.conv2d(x, self.weight, None, [1, 1], [1, 1])
  )");
  torch::jit::Module m("HalfSight");
  m.register_parameter("w1", torch::randn({4, 3, 3, 3}), false);
  m.register_parameter("fc", torch::randn({5, 8}), false);
  m.register_buffer("mask", torch::cat({torch::ones({1, 1, 16, 8}), torch::zeros({1, 1, 16, 8})}, 3));
  m.register_module("last", last);
  m.define(R"(
    def forward(self, x):
        h = torch.relu(torch.conv2d(x, self.w1, None, [1, 1], [1, 1])) * self.mask
        h = torch.relu(self.last.forward(h))
        return torch.matmul(h.mean([2, 3]), self.fc.t())
  )");
  Model model(m);
  torch::Tensor x = torch::rand({3, 3, 16, 16});
  torch::Tensor t = model.predict(x).argmax(1);
  for (const char* name : {"grad-cam", "grad-cam++", "xgrad-cam", "hires-cam", "layer-cam", "score-cam", "ablation-cam"}) {
    torch::Tensor map = Registry::builtin().create(name, {{"layer", "last"}})->attribute(model, x, t).map;
    ASSERT_EQ(map.sizes(), (std::vector<int64_t>{3, 1, 16, 16})) << name;
    torch::Tensor mass = map.clamp_min(0);
    torch::Tensor left = mass.slice(3, 0, 8).sum({1, 2, 3}), total = mass.sum({1, 2, 3});
    // Score-CAM and Ablation-CAM weigh channels by forward passes (softmax weights are all
    // positive), so the one column of 3x3-kernel spill right of the border keeps a little more mass:
    // measured 0.899 for Score-CAM on one input. The issue's claim is about Grad-CAM: >= 0.9.
    const bool forward_only = std::string(name) == "score-cam" || std::string(name) == "ablation-cam";
    for (int i = 0; i < 3; ++i)
      EXPECT_GE((left[i] / total[i]).item<double>(), forward_only ? 0.85 : 0.9) << name << " input " << i;
  }
}

TEST(Cam, VariantsAgreeWithTheirDefinitionsOnCapturedTensors) {
  // Recomputed from the captured activation and gradient with plain tensor maths.
  Model model(test::demo_model());
  torch::Tensor x = read_npy(refdata("demo_input.npy"));
  torch::Tensor t = read_npy(refdata("demo_targets.npy")).to(torch::kLong);
  LayerCapture cap(model, {"conv2"});
  LayerGradients lg = layer_gradients(cap, x, t);
  const torch::Tensor& A = lg.activations[0];
  const torch::Tensor& G = lg.gradients[0];
  auto raw = [&](const char* name) {
    return Registry::builtin().create(name, {{"layer", "conv2"}, {"relu", false}})->attribute(model, x, t).extra.at("raw");
  };
  EXPECT_TRUE(torch::allclose(raw("hires-cam"), (A * G).sum(1), 1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(raw("layer-cam"), (A * G.clamp_min(0)).sum(1), 1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(raw("grad-cam"), (A * G.mean({2, 3}, true)).sum(1), 1e-4, 1e-6));
  // Ablation-CAM's first channel weight, by zeroing the channel through the replacing graph.
  torch::Tensor y = model.predict(x.slice(0, 0, 1))[0][t[0].item<int64_t>()];
  torch::Tensor ablated = A.slice(0, 0, 1).clone();
  ablated[0][0].zero_();
  torch::Tensor y0 = cap.run_replacing(0, x.slice(0, 0, 1), ablated)[0][t[0].item<int64_t>()];
  EXPECT_GT(std::abs((y - y0).item<double>()), 0.0);  // the replacement really flows to the output
  torch::Tensor same = cap.run_replacing(0, x.slice(0, 0, 1), A.slice(0, 0, 1));
  EXPECT_TRUE(torch::allclose(same, model.predict(x.slice(0, 0, 1)), 1e-5, 1e-5));
}

TEST(Cam, TokensReshapeToAGrid) {
  torch::Tensor tokens = torch::arange(2 * 5 * 3, torch::kFloat).view({2, 5, 3});  // 1 class token + 2x2
  torch::Tensor map = tokens_to_map(tokens, 1);
  ASSERT_EQ(map.sizes(), (std::vector<int64_t>{2, 3, 2, 2}));
  EXPECT_EQ(map[0][2][1][0].item<float>(), tokens[0][3][2].item<float>());
  EXPECT_THROW(tokens_to_map(tokens, 0), Error);  // 5 tokens are no grid
}
