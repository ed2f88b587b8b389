// Regression heads ("output": "regression") on a trained model: Efron's diabetes data and the MLP of
// models/diabetes/train.py, whose eager predictions and test error are in reference.json. A
// regression's one output is a value in the target's units: never a sigmoid, never a class.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "helpers.hpp"
#include "salient/global.hpp"
#include "salient/npy.hpp"

using namespace salient;

namespace {

std::string dir_of() { return test::source_dir() + "/models/diabetes"; }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

}  // namespace

TEST(Regression, ExplainGivesTheModelsValueAndIntegratedGradientsIsComplete) {
  test::TempDir dir;
  const nlohmann::json ref = read_json(dir_of() + "/reference.json");
  const auto r = test::run_cli("explain -m " + test::quoted(dir_of() + "/mlp.pt") + " -i " + test::quoted(dir_of() + "/test.csv") +
                               " --method integrated-gradients,kernel-shap --steps 300 --out " + test::quoted(dir / "o"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find('%'), std::string::npos) << "a regression printed as a probability:\n" << r.out.substr(0, 300);
  EXPECT_EQ(r.err.find("binary"), std::string::npos) << r.err;
  for (size_t k = 0; k < 5; ++k) {
    const std::string id = std::to_string(ref["ids"][k].get<int>());
    const nlohmann::json j = read_json(dir / ("o/" + id + "/explanation.json"));
    const double want = ref["predictions"][k];
    ASSERT_EQ(j["predictions"].size(), 1u);
    EXPECT_TRUE(j["predictions"][0]["probability"].is_null()) << j["predictions"].dump();
    EXPECT_NEAR(j["predictions"][0]["value"].get<double>(), want, 1e-3 * std::abs(want)) << id;
    EXPECT_NE(r.out.find(id + ": progression = "), std::string::npos) << r.out.substr(0, 300);
    EXPECT_FALSE(j.contains("binary"));
    // IG from the mean row: its sum is f(x) - f(baseline), in the target's units.
    const auto& ig = j["explained"][0]["methods"]["integrated-gradients"];
    EXPECT_NEAR(ig["score"].get<double>(), want, 1e-3 * std::abs(want));
    EXPECT_LT(ig["diagnostics"]["relative_gap"].get<double>(), 1e-2) << ig["diagnostics"].dump();
  }
}

TEST(Regression, GlobalRanksColumnsByTheRiseOfTheErrorAndGivesPartialDependenceInOutputUnits) {
  test::TempDir dir;
  const nlohmann::json ref = read_json(dir_of() + "/reference.json");
  const auto r = test::run_cli("global -m " + test::quoted(dir_of() + "/mlp.pt") + " --data " + test::quoted(dir_of() + "/test.csv") +
                               " --methods integrated-gradients --features bmi,sex,bmi --repeats 3 --out " + test::quoted(dir / "g"));
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json report = read_json(dir / "g/report.json");
  EXPECT_TRUE(report["regression"].get<bool>());
  EXPECT_FALSE(report.contains("accuracy"));
  // The model's error on the rows is the eager model's.
  EXPECT_NEAR(report["mse"].get<double>(), ref["mse"].get<double>(), 1e-3 * ref["mse"].get<double>());
  EXPECT_NEAR(report["mae"].get<double>(), ref["mae"].get<double>(), 1e-3 * ref["mae"].get<double>());
  // Permutation importance is the rise of the MSE: bmi and s5 (the data's known strongest columns)
  // lead, by tens of squared units (a saturated sigmoid's drop would be ~0).
  std::vector<std::string> top;
  for (size_t k = 0; k < 3; ++k) top.push_back(report["permutation"][k]["name"]);
  EXPECT_NE(std::find(top.begin(), top.end(), "bmi"), top.end()) << report["permutation"].dump();
  EXPECT_NE(std::find(top.begin(), top.end(), "s5"), top.end()) << report["permutation"].dump();
  EXPECT_GT(report["permutation"][0]["importance"].get<double>(), 100.0);
  EXPECT_TRUE(report["permutation"][0].contains("mae_increase"));
  // Partial dependence in output units: its mean over the grid lies among the model's predictions
  // (tens to hundreds), where a mean of sigmoids would lie in [0, 1]; bmi raises progression.
  ASSERT_TRUE(report["partial_dependence"].contains("bmi"));
  const auto& pd = report["partial_dependence"]["bmi"]["value"];
  EXPECT_GT(pd.back().get<double>() - pd.front().get<double>(), 20.0) << pd.dump();
  EXPECT_GT(pd[pd.size() / 2].get<double>(), 50.0);
  EXPECT_EQ(report["partial_dependence"].size(), 2u) << "--features bmi,sex,bmi: bmi once";
  EXPECT_EQ(report["partial_dependence"]["sex"]["grid"], nlohmann::json({"1", "2"}));
  EXPECT_TRUE(std::filesystem::exists(dir / "g/pdp_sex.png")) << "a categorical column gets its picture";
  std::ifstream md(dir / "g/report.md");
  const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("## Partial dependence on bmi"), std::string::npos);
  EXPECT_NE(text.find("rise of MSE"), std::string::npos);
}

TEST(Regression, AOneColumnModelWithNoDeclaredOutputIsReadAsABinaryLogitAndSaysSo) {
  test::TempDir dir;
  std::filesystem::copy_file(dir_of() + "/mlp.pt", dir / "m.pt");
  nlohmann::json meta = read_json(dir_of() + "/mlp.json");
  meta.erase("output");
  meta.erase("label_column");  // (a regression's true values are no class labels)
  std::ofstream(dir / "m.json") << meta.dump();
  const auto r = test::run_cli("explain -m " + test::quoted(dir / "m.pt") + " -i " + test::quoted(dir_of() + "/test.csv") +
                               " --method saliency --out " + test::quoted(dir / "o"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("read as a binary classifier's logit"), std::string::npos) << r.err.substr(0, 400);
  EXPECT_NE(r.err.find("\"output\": \"regression\""), std::string::npos) << r.err.substr(0, 400);
  // A metadata "output" of another name is refused by name.
  meta["output"] = "regresion";
  std::ofstream(dir / "m.json") << meta.dump();
  const auto bad = test::run_cli("explain -m " + test::quoted(dir / "m.pt") + " -i " + test::quoted(dir_of() + "/test.csv") +
                                 " --method saliency --out " + test::quoted(dir / "p"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("output must be logits, probabilities or regression"), std::string::npos) << bad.err;
}

// A method that cannot explain a table (a CAM needs convolution maps) is refused before anything is
// written (it failed after the folder and its attributions log existed).
TEST(Regression, GlobalChecksItsMethodsBeforeWriting) {
  test::TempDir dir;
  const auto r = test::run_cli("global -m " + test::quoted(dir_of() + "/mlp.pt") + " --data " + test::quoted(dir_of() + "/test.csv") +
                               " --methods integrated-gradients,grad-cam --out " + test::quoted(dir / "g"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--methods grad-cam"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "g"));
}

// Deletion and insertion follow the regression's value (a softmax over its one column was 1 for
// every input: every curve flat at 1, every method and the random order alike).
TEST(Regression, EvaluateFollowsTheValueNotAOneColumnSoftmax) {
  test::TempDir dir;
  const auto r = test::run_cli("evaluate -m " + test::quoted(dir_of() + "/mlp.pt") + " -d " + test::quoted(dir_of() + "/test.csv") +
                               " --limit 6 --methods integrated-gradients --metrics deletion,insertion -o " + test::quoted(dir / "e"));
  ASSERT_EQ(r.code, 0) << r.err;
  // The curves are in the target's units (tens to hundreds), and they move.
  std::vector<double> values;
  std::ifstream in(dir / "e/results.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    for (const auto& [name, m] : j["methods"].items())
      for (const char* metric : {"deletion", "insertion"})
        if (m.contains(metric))
          for (const auto& v : m[metric]["curve"]) values.push_back(v.get<double>());
  }
  const std::string dump = read_json(dir / "e/report.json").dump();
  ASSERT_FALSE(values.empty()) << dump.substr(0, 400);
  EXPECT_GT(*std::max_element(values.begin(), values.end()), 20.0);
  EXPECT_GT(*std::max_element(values.begin(), values.end()) - *std::min_element(values.begin(), values.end()), 10.0);
}
