// One case table (method x options x model) that the cross-cutting properties run through, as
// Captum's tests/attr/helpers/test_config.py: chunking invariance, determinism by seed, a batch
// equals its inputs one at a time, frozen equals plain and ONNX equals TorchScript for forward-only
// methods, no NaN on a zero input. Every registered method must have a case.
#include <gtest/gtest.h>

#include <set>

#include "helpers.hpp"
#include "salient/dataset.hpp"
#include "salient/error.hpp"
#include "salient/registry.hpp"

using namespace salient;

namespace {

struct Case {
  std::string method;
  nlohmann::json options;
  bool linear = false;  // the case runs on a linear model (linear-weights); else the demo CNN
  // Relative tolerance of the chunking and batch properties. LibTorch's kernels give a row other
  // float bits in batches of other sizes (~1e-7); most maps keep that, but Grad-CAM++'s cubed
  // gradients, LRP's stabilised divisions and the ratios of XGrad-CAM and Ablation-CAM amplify it.
  double tol = 1e-5;
};

// Small options: every case runs in well under a second per property.
const std::vector<Case>& cases() {
  static const std::vector<Case> table = {
      {"saliency", {}},
      {"saliency", {{"abs", false}}},
      {"smoothgrad", {{"samples", 6}}},
      {"smoothgrad", {{"samples", 6}, {"noise", "quasi"}, {"variant", "vargrad"}}},
      {"input-x-gradient", {}},
      {"integrated-gradients", {{"steps", 8}}},
      {"integrated-gradients", {{"steps", 8}, {"quadrature", "trapezoid"}, {"baseline", "black"}}},
      {"gradient-shap", {{"samples", 6}, {"sigma", 0.1}}},
      {"noise-tunnel", {{"base", "integrated-gradients"}, {"samples", 3}, {"steps", 8}}},
      {"noise-tunnel", {{"base", "guided-backprop"}, {"samples", 3}, {"variant", "smoothgrad-sq"}}},
      {"linear-weights", {}, true},
      {"grad-cam", {}},
      {"grad-cam++", {}, false, 1e-3},
      {"xgrad-cam", {}, false, 1e-4},
      {"hires-cam", {}},
      {"layer-cam", {{"layer", "conv1"}}},
      {"eigen-cam", {}},
      {"score-cam", {}},
      {"ablation-cam", {}, false, 1e-4},
      {"guided-backprop", {}},
      {"deconvnet", {}},
      {"guided-grad-cam", {}},
      {"lrp", {}, false, 1e-4},
      {"lrp", {{"composite", "epsilon"}}, false, 1e-4},
      {"deeplift", {}},
      {"occlusion", {{"window", "7x7"}, {"stride", "7x7"}}},
      {"feature-ablation", {{"features", "grid:4"}}},
      {"rise", {{"samples", 64}, {"grid", 4}}},
      {"d-rise", {{"samples", 64}, {"grid", 4}}},
      {"lime", {{"samples", 64}, {"features", "grid:4"}}},
      {"kernel-shap", {{"samples", 64}, {"features", "grid:4"}}},
      {"shapley-sampling", {{"samples", 2}, {"features", "grid:4"}}},
  };
  return table;
}

// GoogleTest prints a failing parameter; bytes of a struct say nothing.
void PrintTo(const Case& c, std::ostream* os) { *os << c.method << " " << c.options.dump(); }

std::string name_of(const testing::TestParamInfo<Case>& info) {
  std::string s = info.param.method + "_" + std::to_string(info.index);
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

torch::Tensor inputs(const ModelMetadata& meta) {
  Dataset d = Dataset::open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", meta).limit(3);
  std::vector<torch::Tensor> xs;
  for (int64_t i = 0; i < 3; ++i) xs.push_back(d.get(i, false).input.tensor);
  return torch::stack(xs);
}

Model model_for(const Case& c, bool freeze = true) {
  if (c.linear) {
    torch::manual_seed(11);
    return Model(test::linear_module(torch::randn({10, 784}), torch::randn({10})));
  }
  ModelOptions o;
  o.freeze = freeze;
  return Model(test::demo_model(), o);
}

torch::Tensor run(const Case& c, Model& model, const torch::Tensor& x, const torch::Tensor& t, nlohmann::json extra = {}) {
  nlohmann::json o = c.options;
  if (extra.is_object()) o.update(extra);
  auto m = Registry::builtin().create(c.method, o, model.metadata());
  m->check(model, x.slice(0, 0, 1));
  return m->attribute(model, x, t).map;
}

bool forward_only(const Case& c) { return Registry::builtin().info(c.method).access == Access::BlackBox; }

// Relative closeness: |a - b| <= tol * max|b| (maps' scales differ by orders of magnitude).
::testing::AssertionResult close(const torch::Tensor& a, const torch::Tensor& b, double tol) {
  const double scale = std::max(b.abs().max().item<double>(), 1e-12), diff = (a - b).abs().max().item<double>();
  if (diff <= tol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max diff " << diff << " of scale " << scale;
}

class CaseTable : public testing::TestWithParam<Case> {};
class ForwardOnlyCaseTable : public testing::TestWithParam<Case> {};  // the black-box methods' cases

std::vector<Case> forward_only_cases() {
  std::vector<Case> out;
  for (const auto& c : cases())
    if (forward_only(c) && !c.linear) out.push_back(c);
  return out;
}

}  // namespace

TEST(CaseTable, EveryRegisteredMethodHasACase) {
  std::set<std::string> covered;
  for (const auto& c : cases()) covered.insert(c.method);
  for (const auto& name : Registry::builtin().names()) EXPECT_TRUE(covered.count(name)) << name << " has no case in the table";
}

TEST_P(CaseTable, ChunkingDoesNotChangeTheMap) {
  const Case& c = GetParam();
  Model model = model_for(c);
  const torch::Tensor x = inputs(model.metadata()), t = torch::tensor({9, 2, 1}, torch::kLong);
  EXPECT_TRUE(close(run(c, model, x, t, {{"batch-size", 1}}), run(c, model, x, t), c.tol));
}

TEST_P(CaseTable, TheSameSeedGivesTheSameMap) {
  const Case& c = GetParam();
  Model model = model_for(c);
  const torch::Tensor x = inputs(model.metadata()), t = torch::tensor({9, 2, 1}, torch::kLong);
  EXPECT_TRUE(torch::equal(run(c, model, x, t, {{"seed", 4}}), run(c, model, x, t, {{"seed", 4}})));
}

TEST_P(CaseTable, ABatchEqualsItsInputsOneAtATime) {
  const Case& c = GetParam();
  Model model = model_for(c);
  const torch::Tensor x = inputs(model.metadata()), t = torch::tensor({9, 2, 1}, torch::kLong);
  const torch::Tensor together = run(c, model, x, t);
  for (int64_t i = 0; i < 3; ++i)
    EXPECT_TRUE(close(together[i], run(c, model, x.slice(0, i, i + 1), t.slice(0, i, i + 1))[0], c.tol)) << "input " << i;
}

TEST_P(ForwardOnlyCaseTable, FrozenForwardPassesEqualThePlainModule) {  // (gradients always run the plain module)
  const Case& c = GetParam();
  Model frozen = model_for(c, true), plain = model_for(c, false);
  const torch::Tensor x = inputs(frozen.metadata()), t = torch::tensor({9, 2, 1}, torch::kLong);
  EXPECT_TRUE(close(run(c, frozen, x, t), run(c, plain, x, t), 1e-3));
}

TEST_P(ForwardOnlyCaseTable, OnnxEqualsTorchScript) {  // (ONNX models run the black-box methods only)
  const Case& c = GetParam();
  Model ts = model_for(c), onnx(std::string(SALIENT_TESTDATA) + "/fashion_cnn.onnx");
  const torch::Tensor x = inputs(ts.metadata()), t = torch::tensor({9, 2, 1}, torch::kLong);
  EXPECT_TRUE(close(run(c, onnx, x, t), run(c, ts, x, t), 1e-3));
}

TEST_P(CaseTable, AZeroInputGivesAFiniteMap) {
  const Case& c = GetParam();
  Model model = model_for(c);
  const torch::Tensor x = torch::zeros({2, 1, 28, 28}), t = torch::tensor({0, 5}, torch::kLong);
  const torch::Tensor map = run(c, model, x, t);
  EXPECT_TRUE(torch::isfinite(map).all().item<bool>());
  EXPECT_EQ(map.sizes(), x.sizes());
}

INSTANTIATE_TEST_SUITE_P(Methods, CaseTable, testing::ValuesIn(cases()), name_of);
INSTANTIATE_TEST_SUITE_P(Methods, ForwardOnlyCaseTable, testing::ValuesIn(forward_only_cases()), name_of);

TEST(CaseTable, TheForwardOnlyCasesAreEveryBlackBoxMethod) {
  std::set<std::string> black_box, covered;
  for (const auto& name : Registry::builtin().names())
    if (Registry::builtin().info(name).access == Access::BlackBox) black_box.insert(name);
  for (const auto& c : forward_only_cases()) covered.insert(c.method);
  EXPECT_EQ(covered, black_box);
  EXPECT_GE(black_box.size(), 6u);
}
