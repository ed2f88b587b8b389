// Targets as functions of the model's output: several classes summed, a class over a region of a
// dense output (segmentation), with closed forms on linear models.
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "salient/error.hpp"
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
