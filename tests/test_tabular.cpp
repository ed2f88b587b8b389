// Tabular models: CSV rows encoded as the metadata's features say, the breast-cancer demo's two
// models, Integrated Gradients' closed form on the logistic regression, bad CSVs refused by row and
// column with nothing written.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <fstream>
#include <sstream>

#include "helpers.hpp"
#include "salient/error.hpp"
#include "salient/global.hpp"
#include "salient/model.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"
#include "salient/tabular.hpp"

using namespace salient;

namespace {

std::string demo_dir() { return test::source_dir() + "/models/breast_cancer"; }

// The CSV read by the test's own simple split (the demo's CSV has no quotes).
std::vector<std::vector<std::string>> plain_rows(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> row;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, ',')) row.push_back(field);
    rows.push_back(row);
  }
  return rows;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

}  // namespace

TEST(Tabular, RowsAreStandardisedAsTheMetadataSaysAndNamedByTheirId) {
  const auto meta = ModelMetadata::load(demo_dir() + "/logreg.json");
  ASSERT_EQ(meta.features.size(), 30u);
  const TabularRows rows = read_csv_rows(demo_dir() + "/test.csv", meta);
  const auto plain = plain_rows(demo_dir() + "/test.csv");
  ASSERT_EQ(rows.items.size(), plain.size() - 1);
  ASSERT_EQ(rows.items.size(), 171u);
  for (size_t r : {size_t{0}, size_t{50}, size_t{170}}) {
    EXPECT_EQ(rows.items[r].stem, plain[r + 1][0]);
    for (size_t k = 0; k < 30; ++k) {
      ASSERT_EQ(plain[0][k + 1], meta.features[k].name);
      const double want = (std::stod(plain[r + 1][k + 1]) - meta.features[k].mean) / meta.features[k].std;
      EXPECT_NEAR(rows.items[r].tensor[static_cast<int64_t>(k)].item<double>(), want, 1e-5 * std::max(1.0, std::abs(want)));
    }
    EXPECT_EQ(rows.labels[r], plain[r + 1][31] == "malignant" ? 0 : 1);
  }
}

TEST(Tabular, BothDemoModelsAreAtLeast95PercentAccurateOnTheHeldOutRows) {
  for (const char* name : {"logreg", "mlp"}) {
    Model model(demo_dir() + "/" + name + ".pt");
    const TabularRows rows = read_csv_rows(demo_dir() + "/test.csv", model.metadata());
    std::vector<torch::Tensor> xs;
    for (const auto& item : rows.items) xs.push_back(item.tensor);
    const torch::Tensor predicted = model.predict(torch::stack(xs)).argmax(1);
    int64_t right = 0;
    for (size_t i = 0; i < rows.labels.size(); ++i) right += predicted[static_cast<int64_t>(i)].item<int64_t>() == rows.labels[i];
    EXPECT_GE(static_cast<double>(right) / static_cast<double>(rows.labels.size()), 0.95) << name;
  }
}

// In logit space a logistic regression's Integrated Gradients from the mean row (zeros once
// standardised) is w_c * (x - mean) / std, exactly: the path integral of a constant gradient.
TEST(Tabular, IntegratedGradientsOfTheLogisticRegressionIsWeightTimesStandardisedDeviation) {
  Model model(demo_dir() + "/logreg.pt");
  torch::Tensor w;
  for (const auto& p : model.module().named_parameters())
    if (p.name == "weight") w = p.value.detach();
  ASSERT_TRUE(w.defined());
  ASSERT_EQ(w.sizes(), (c10::IntArrayRef{2, 30}));
  const TabularRows rows = read_csv_rows(demo_dir() + "/test.csv", model.metadata());
  std::vector<torch::Tensor> xs;
  for (size_t i = 0; i < 20; ++i) xs.push_back(rows.items[i].tensor);
  const torch::Tensor x = torch::stack(xs);
  for (int64_t c : {0, 1}) {
    auto ig = Registry::builtin().create("integrated-gradients", {{"steps", 8}});
    const torch::Tensor map = ig->attribute(model, x, torch::full({20}, c, torch::kLong)).map;
    EXPECT_TRUE(torch::allclose(map, x * w[c], 1e-4, 1e-6)) << "class " << c << ": max difference "
                                                             << (map - x * w[c]).abs().max().item<double>();
  }
}

TEST(Tabular, QuotedFieldsAreReadAsCsvSaysAndBadCsvsAreRefusedByRowAndColumn) {
  const auto rec = parse_csv("a,\"b,c\",\"d\"\"e\"\r\n\n1,2,3", "t.csv");
  ASSERT_EQ(rec.size(), 2u);
  EXPECT_EQ(rec[0], (std::vector<std::string>{"a", "b,c", "d\"e"}));
  EXPECT_EQ(rec[1], (std::vector<std::string>{"1", "2", "3"}));

  const auto meta = ModelMetadata::load(demo_dir() + "/logreg.json");
  const auto plain = plain_rows(demo_dir() + "/test.csv");
  auto join = [](const std::vector<std::string>& row) {
    std::string s;
    for (const auto& f : row) s += (s.empty() ? "" : ",") + f;
    return s;
  };
  test::TempDir dir;
  struct Case {
    std::string name, text, words;
  };
  std::vector<std::string> bad_number = plain[2], bad_label = plain[2], header = plain[0];
  bad_number[4] = "n/a";
  bad_label[31] = "unsure";
  header.erase(header.begin() + 5);
  std::vector<std::string> short_row = plain[2];
  short_row.pop_back();
  std::vector<std::string> short_header_row = plain[1];
  short_header_row.erase(short_header_row.begin() + 5);
  const std::vector<Case> cases = {
      {"ragged.csv", join(plain[0]) + "\n" + join(plain[1]) + "\n" + join(short_row) + "\n", "row 2 has 31 fields; the header has 32"},
      {"number.csv", join(plain[0]) + "\n" + join(plain[1]) + "\n" + join(bad_number) + "\n", "row 2, column 'mean_area': 'n/a' is not a finite number"},
      {"label.csv", join(plain[0]) + "\n" + join(bad_label) + "\n", "row 1, column 'diagnosis': 'unsure' is not a label"},
      {"missing.csv", join(header) + "\n" + join(short_header_row) + "\n", "has no column 'mean_smoothness' (the metadata's features)"},
      {"empty.csv", "", "is empty"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    write(dir / c.name, c.text);
    try {
      read_csv_rows(dir / c.name, meta);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.words), std::string::npos) << e.what();
    }
    const auto r = test::run_cli("explain -m " + test::quoted(demo_dir() + "/logreg.pt") + " -i " + test::quoted(dir / c.name) +
                                 " --method saliency --out " + test::quoted(dir / ("out-" + c.name)));
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / ("out-" + c.name)));
  }
}

// explanation.json names the user's columns: values as in the CSV, sorted by |attribution|, the
// attributions the map's; a one-hot group is summed back to its column and shows its category.
TEST(Tabular, ExplanationsNameTheColumnsWithTheirValuesAndOneHotGroupsSummed) {
  test::TempDir dir;
  const auto plain = plain_rows(demo_dir() + "/test.csv");
  const auto r = test::run_cli("explain -m " + test::quoted(demo_dir() + "/logreg.pt") + " -i " + test::quoted(demo_dir() + "/test.csv") +
                               " --method integrated-gradients --out " + test::quoted(dir / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(dir / ("out/" + plain[1][0] + "/explanation.json"));
  const nlohmann::json j = nlohmann::json::parse(in);
  const nlohmann::json& f = j["explained"][0]["methods"]["integrated-gradients"]["features"];
  ASSERT_EQ(f.size(), 30u);
  const torch::Tensor map = read_npy(dir / ("out/" + plain[1][0] + "/integrated-gradients.npy"));
  double sum = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    if (i > 0) EXPECT_GE(std::abs(f[i - 1]["attribution"].get<double>()), std::abs(f[i]["attribution"].get<double>()));
    const auto col = std::find(plain[0].begin(), plain[0].end(), f[i]["name"].get<std::string>());
    ASSERT_NE(col, plain[0].end()) << f[i]["name"];
    EXPECT_DOUBLE_EQ(f[i]["value"].get<double>(), std::stod(plain[1][static_cast<size_t>(col - plain[0].begin())])) << f[i]["name"];
    sum += f[i]["attribution"].get<double>();
  }
  EXPECT_NEAR(sum, map.sum().item<double>(), 1e-5);
  // The bar chart: 12 columns and "18 others" (a row each), red for positive, blue for negative.
  EXPECT_EQ(j["explained"][0]["methods"]["integrated-gradients"]["png"], "integrated-gradients.png");
  const cv::Mat bars = cv::imread(dir / ("out/" + plain[1][0] + "/integrated-gradients.png"));
  ASSERT_FALSE(bars.empty());
  EXPECT_EQ(bars.rows, 36 + 22 * 13 + 10);

  ModelMetadata meta;
  meta.features = {Feature{"age", "numeric", 40, 10, {}}, Feature{"colour", "categorical", 0, 1, {"red", "green", "blue"}}};
  const auto g = feature_attributions(meta, torch::tensor({0.5f, 0.f, 1.f, 0.f}), torch::tensor({0.1f, 0.2f, -0.5f, 0.05f}));
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0]["name"], "colour");
  EXPECT_EQ(g[0]["value"], "green");
  EXPECT_NEAR(g[0]["attribution"].get<double>(), -0.25, 1e-7);
  EXPECT_EQ(g[1]["name"], "age");
  EXPECT_DOUBLE_EQ(g[1]["value"].get<double>(), 45.0);
}

// salient global on the logistic regression, against its closed forms: partial dependence of the
// logit is a line of slope w_cj / std_j per raw unit; IG's mean |attribution| of column j is
// |w_cj| * mean |z_j|; a column whose weights are zero has permutation importance 0, exactly.
TEST(Tabular, GlobalViewsOfTheLogisticRegressionMatchItsClosedForms) {
  test::TempDir dir;
  // A copy of the model that ignores column 0 (mean_radius): its weights zeroed for both classes.
  torch::jit::Module m = torch::jit::load(demo_dir() + "/logreg.pt");
  for (const auto& p : m.named_parameters())
    if (p.name == "weight") p.value.detach().select(1, 0).zero_();
  m.save(dir / "blind.pt");
  std::filesystem::copy_file(demo_dir() + "/logreg.json", dir / "blind.json");
  Model model(dir / "blind.pt");
  torch::Tensor w;
  for (const auto& p : model.module().named_parameters())
    if (p.name == "weight") w = p.value.detach().to(torch::kDouble);
  ASSERT_EQ(w[0][0].item<double>(), 0.0);

  GlobalRequest req;
  req.data = demo_dir() + "/test.csv";
  req.out_dir = dir / "out";
  req.methods = {"integrated-gradients"};
  req.method_options = {{"steps", 8}};
  req.features = {"worst_radius", "mean_texture"};
  const nlohmann::json report = global_report(model, req);
  EXPECT_EQ(report["class"], 1);
  const ModelMetadata& meta = model.metadata();
  auto index_of = [&](const std::string& name) {
    for (size_t j = 0; j < meta.features.size(); ++j)
      if (meta.features[j].name == name) return static_cast<int64_t>(j);
    return int64_t{-1};
  };
  // Partial dependence of the logit: equal steps of the grid, equal steps of the logit.
  for (const std::string name : {"worst_radius", "mean_texture"}) {
    const auto& pd = report["partial_dependence"][name];
    const int64_t j = index_of(name);
    const double slope = w[1][j].item<double>() / meta.features[static_cast<size_t>(j)].std;
    for (size_t g = 1; g < pd["grid"].size(); ++g) {
      const double dx = pd["grid"][g].get<double>() - pd["grid"][g - 1].get<double>();
      const double dy = pd["logit"][g].get<double>() - pd["logit"][g - 1].get<double>();
      EXPECT_NEAR(dy, slope * dx, 1e-4 * std::abs(slope * dx) + 1e-6) << name << " step " << g;
    }
  }
  // Mean |IG| per column = |w_1j| * mean |z_j|, and so its ranking.
  const TabularRows rows = read_csv_rows(req.data, meta);
  std::vector<torch::Tensor> xs;
  for (const auto& item : rows.items) xs.push_back(item.tensor);
  const torch::Tensor z = torch::stack(xs).to(torch::kDouble);
  const auto& per = report["methods"]["integrated-gradients"];
  ASSERT_EQ(per.size(), 30u);
  for (size_t k = 0; k < per.size(); ++k) {
    const int64_t j = index_of(per[k]["name"]);
    const double want = std::abs(w[1][j].item<double>()) * z.select(1, j).abs().mean().item<double>();
    EXPECT_NEAR(per[k]["attribution"].get<double>(), want, 1e-4 * want + 1e-7) << per[k]["name"];
  }
  // Permutation importance: the ignored column 0 exactly, its interval [0, 0]; every other moves.
  for (const auto& p : report["permutation"]) {
    if (p["name"] == "mean_radius") {
      EXPECT_EQ(p["importance"].get<double>(), 0.0);
      EXPECT_EQ(p["low"].get<double>(), 0.0);
      EXPECT_EQ(p["high"].get<double>(), 0.0);
    } else {
      EXPECT_NE(p["importance"].get<double>(), 0.0) << p["name"];
    }
  }
  for (const char* file : {"report.json", "report.md", "permutation.png", "importance_integrated-gradients.png", "pdp_worst_radius.png"})
    EXPECT_TRUE(std::filesystem::exists(dir / ("out/" + std::string(file)))) << file;

  // Bad requests: one line, exit 2, nothing written.
  const auto r = test::run_cli("global -m " + test::quoted(demo_dir() + "/logreg.pt") + " -d " + test::quoted(req.data) +
                               " --features no_such_column -o " + test::quoted(dir / "bad"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--features: the model has no feature 'no_such_column'"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "bad"));
}
