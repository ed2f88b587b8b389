// Tabular models: CSV rows encoded as the metadata's features say, the breast-cancer demo's two
// models, Integrated Gradients' closed form on the logistic regression, bad CSVs refused by row and
// column with nothing written.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <fstream>
#include <random>
#include <sstream>

#include "helpers.hpp"
#include "salient/baseline.hpp"
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
  // IG is additive: a waterfall of 12 columns and "18 others" (a step each) from f(mean row) to f(x).
  EXPECT_EQ(j["explained"][0]["methods"]["integrated-gradients"]["png"], "integrated-gradients.png");
  const cv::Mat bars = cv::imread(dir / ("out/" + plain[1][0] + "/integrated-gradients.png"));
  ASSERT_FALSE(bars.empty());
  EXPECT_EQ(bars.rows, 48 + 22 * 13 + 40);

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
  // In probability space each ICE curve is the sigmoid of a line: its log-odds climb by
  // (w_1j - w_0j) / std_j per raw unit.
  for (const std::string name : {"worst_radius", "mean_texture"}) {
    const auto& pd = report["partial_dependence"][name];
    const int64_t j = index_of(name);
    const double slope = (w[1][j].item<double>() - w[0][j].item<double>()) / meta.features[static_cast<size_t>(j)].std;
    int checked = 0;
    for (size_t i = 0; i < 5; ++i) {
      const auto& p = pd["ice"][i]["probability"];
      for (size_t g = 1; g < p.size(); ++g) {
        const double a = p[g - 1].get<double>(), b = p[g].get<double>();
        if (std::min({a, b, 1 - a, 1 - b}) < 1e-4) continue;  // saturated: the log-odds lose their digits
        const double dx = pd["grid"][g].get<double>() - pd["grid"][g - 1].get<double>();
        EXPECT_NEAR(std::log(b / (1 - b)) - std::log(a / (1 - a)), slope * dx, 1e-3 * std::abs(slope * dx) + 1e-3) << name << " row " << i;
        ++checked;
      }
    }
    EXPECT_GT(checked, 10) << name << ": too few unsaturated steps to check";
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
  for (const char* file : {"report.json", "report.md", "permutation.png", "importance_integrated-gradients.png", "pdp_worst_radius.png",
                           "beeswarm_integrated-gradients.png", "attributions.jsonl"})
    EXPECT_TRUE(std::filesystem::exists(dir / ("out/" + std::string(file)))) << file;
  // Per class: class 0's mean |IG| is |w_0j| * mean |z_j|.
  for (const auto& p : report["per_class"]["integrated-gradients"]["malignant"]) {
    const int64_t j = index_of(p["name"]);
    const double want = std::abs(w[0][j].item<double>()) * z.select(1, j).abs().mean().item<double>();
    EXPECT_NEAR(p["attribution"].get<double>(), want, 1e-4 * want + 1e-7) << p["name"];
  }
  EXPECT_EQ(report["per_class"]["integrated-gradients"]["benign"], per);
  // Every row's attributions in a CSV: id, then each column's w_1j * z_ij.
  const auto csv = plain_rows(dir / "out/attributions_integrated-gradients.csv");
  ASSERT_EQ(csv.size(), rows.items.size() + 1);
  for (size_t i : {size_t{0}, size_t{100}}) {
    EXPECT_EQ(csv[i + 1][0], rows.items[i].stem);
    for (int64_t j : {int64_t{3}, int64_t{20}}) {
      ASSERT_EQ(csv[0][static_cast<size_t>(j) + 1], meta.features[static_cast<size_t>(j)].name);
      const double want = w[1][j].item<double>() * z[static_cast<int64_t>(i)][j].item<double>();
      EXPECT_NEAR(std::stod(csv[i + 1][static_cast<size_t>(j) + 1]), want, 1e-4 * std::abs(want) + 1e-6);
    }
  }
  // Resumable: a second run reads every chunk (2 classes x 3 chunks of 64 rows) from the log.
  EXPECT_EQ(report["resumed_chunks"], 0);
  const nlohmann::json again = global_report(model, req);
  EXPECT_EQ(again["resumed_chunks"], 6);
  EXPECT_EQ(again["methods"], report["methods"]);
  EXPECT_EQ(again["per_class"], report["per_class"]);
  // The intrinsic global view with the columns' names: linear-weights view=global is |w_1j| per column.
  req.methods = {"linear-weights"};
  req.method_options = {{"view", "global"}};
  req.out_dir = dir / "weights";
  for (const auto& p : global_report(model, req)["methods"]["linear-weights"])
    EXPECT_NEAR(p["attribution"].get<double>(), std::abs(w[1][index_of(p["name"])].item<double>()), 1e-6) << p["name"];

  // Bad requests: one line, exit 2, nothing written.
  const auto r = test::run_cli("global -m " + test::quoted(demo_dir() + "/logreg.pt") + " -d " + test::quoted(req.data) +
                               " --features no_such_column -o " + test::quoted(dir / "bad"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--features: the model has no feature 'no_such_column'"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "bad"));
}

namespace {

// A model of `features`' columns: logits = W z + b over the encoded row z (`linear`), else
// W tanh(H z) + b (a hidden layer: the columns interact), two classes.
struct Synthetic {
  torch::Tensor w, b;
  ModelMetadata meta;
  torch::jit::Module module{"Synthetic"};
};

Synthetic synthetic(const std::vector<Feature>& features, bool linear, uint64_t seed) {
  Synthetic s;
  s.meta.name = "synthetic";
  s.meta.modality = "tabular";
  s.meta.labels = {"no", "yes"};
  s.meta.features = features;
  int64_t width = 0;
  for (const auto& f : features) width += f.width();
  s.meta.input_shape = {width};
  s.meta.id_column = "id";
  torch::manual_seed(seed);
  s.w = torch::randn({2, linear ? width : 6});
  s.b = torch::randn({2});
  s.module.register_parameter("hidden", torch::randn({6, width}), false);
  s.module.register_parameter("weight", s.w, false);
  s.module.register_parameter("bias", s.b, false);
  s.module.define(linear ? R"(
    def forward(self, x):
        return torch.matmul(x, self.weight.t()) + self.bias
  )" : R"(
    def forward(self, x):
        return torch.matmul(torch.tanh(torch.matmul(x, self.hidden.t())), self.weight.t()) + self.bias
  )");
  return s;
}

std::vector<Feature> numeric_columns(int n) {
  std::vector<Feature> f;
  for (int j = 0; j < n; ++j) f.push_back(Feature{"c" + std::to_string(j), "numeric", 10.0 + j, 2.0, {}});
  return f;
}

// A CSV of `rows` seeded rows of the features (numeric ~ N(mean, std), categories uniform).
std::string synthetic_csv(const std::vector<Feature>& features, int rows, uint64_t seed) {
  std::mt19937 gen(static_cast<unsigned>(seed));
  std::normal_distribution<double> normal;
  std::ostringstream out;
  out << "id";
  for (const auto& f : features) out << "," << f.name;
  out << "\n";
  for (int r = 0; r < rows; ++r) {
    out << "r" << r;
    for (const auto& f : features) {
      if (f.type == "categorical") out << "," << f.values[gen() % f.values.size()];
      else out << "," << f.mean + f.std * normal(gen);
    }
    out << "\n";
  }
  return out.str();
}

torch::Tensor stacked(const TabularRows& rows) {
  std::vector<torch::Tensor> xs;
  for (const auto& item : rows.items) xs.push_back(item.tensor);
  return torch::stack(xs);
}

}  // namespace

// A logistic regression over 10 columns, in logit space: exact KernelSHAP (every coalition of the
// 10 columns enumerated) from the mean row is w_c * (x - mean) / std, as IG's; from a background
// set both are w_c * (x - E_w[b]) in encoded units (interventional Shapley values of a linear model),
// and their base value is E_w[f(b)].
TEST(Tabular, ExactKernelShapAndExpectedIgOfALinearModelAreItsWeightsTimesTheDeviation) {
  test::TempDir dir;
  const auto features = numeric_columns(10);
  Synthetic s = synthetic(features, /*linear=*/true, 3);
  Model model(s.module, {}, s.meta);
  write(dir / "rows.csv", synthetic_csv(features, 12, 5));
  write(dir / "background.csv", synthetic_csv(features, 40, 6));
  const torch::Tensor x = stacked(read_csv_rows(dir / "rows.csv", s.meta));
  const torch::Tensor t = torch::tensor({0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0}, torch::kLong);
  const torch::Tensor want = x * s.w.index_select(0, t);
  auto ks = Registry::builtin().create("kernel-shap", {{"samples", 1022}}, s.meta);
  EXPECT_EQ(ks->params()["baseline"], "mean");
  EXPECT_EQ(ks->params()["features"], "columns");  // a tabular row's default grouping: its columns
  const Attribution a = ks->attribute(model, x, t);
  EXPECT_TRUE(a.diagnostics["exact"][0].get<bool>());
  EXPECT_EQ(a.diagnostics["groups"][0], 10);
  EXPECT_TRUE(torch::allclose(a.map, want, 1e-4, 1e-5)) << (a.map - want).abs().max().item<double>();

  // Background: every one of the 40 rows (sample:40), then 4 k-means centroids with their weights.
  const torch::Tensor bg = stacked(read_csv_rows(dir / "background.csv", s.meta));
  for (const std::string spec : {"sample:40:" + (dir / "background.csv"), "kmeans:4:" + (dir / "background.csv")}) {
    SCOPED_TRACE(spec);
    const Baseline set = Baseline::parse(spec, s.meta);
    ASSERT_TRUE(set.is_set());
    const torch::Tensor centre = (set.tensor.to(torch::kDouble) * set.weights.unsqueeze(1)).sum(0).to(torch::kFloat);
    // k-means centroids weighted by their clusters' shares average to the rows' mean, as the rows do.
    EXPECT_TRUE(torch::allclose(centre, bg.mean(0), 1e-4, 1e-5));
    const torch::Tensor expect = (x - centre) * s.w.index_select(0, t);
    for (const std::string method : {"kernel-shap", "integrated-gradients", "shapley-sampling"}) {
      auto m = Registry::builtin().create(method, {{"samples", 1022}, {"baseline", spec}, {"steps", 4}}, s.meta);
      const Attribution r = m->attribute(model, x, t);
      EXPECT_TRUE(torch::allclose(r.map, expect, 1e-4, 1e-4)) << method << ": " << (r.map - expect).abs().max().item<double>();
      const torch::Tensor fb = (torch::linear(set.tensor, s.w, s.b).to(torch::kDouble) * set.weights.unsqueeze(1)).sum(0);
      for (int64_t i = 0; i < x.size(0); ++i)
        EXPECT_NEAR(r.diagnostics["f(baseline)"][static_cast<size_t>(i)].get<double>(), fb[t[i].item<int64_t>()].item<double>(), 1e-4) << method;
    }
  }
  // A method that takes one baseline refuses a set by name.
  EXPECT_THROW(
      {
        try {
          Registry::builtin().create("occlusion", {{"baseline", dir / "background.csv"}}, s.meta);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("occlusion: takes one baseline, not a background set"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
}

// A categorical column is one feature of the perturbation methods: its one-hot group's summed
// attribution is f(x) - f(x with the whole group at the baseline), feature ablation with the group as
// one feature. Ablating its elements one by one (features=elements) gives another, wrong, number
// on a non-linear model. The mean row puts 1/K on each category.
TEST(Tabular, AOneHotGroupIsAblatedAsOneColumn) {
  const std::vector<Feature> features = {Feature{"age", "numeric", 40, 10, {}},
                                         Feature{"colour", "categorical", 0, 1, {"red", "green", "blue"}},
                                         Feature{"size", "numeric", 3, 1, {}}};
  Synthetic s = synthetic(features, /*linear=*/false, 11);
  Model model(s.module, {}, s.meta);
  const torch::Tensor x = torch::tensor({{0.7f, 0.f, 1.f, 0.f, -1.2f}, {-0.3f, 0.f, 0.f, 1.f, 0.4f}});
  const torch::Tensor t = torch::tensor({1, 0}, torch::kLong);
  const torch::Tensor mean_row = Baseline::parse("mean", s.meta).make(x[0], 0);
  EXPECT_TRUE(torch::allclose(mean_row, torch::tensor({0.f, 1.f / 3, 1.f / 3, 1.f / 3, 0.f})));
  auto grouped = Registry::builtin().create("feature-ablation", {}, s.meta)->attribute(model, x, t);
  auto elements = Registry::builtin().create("feature-ablation", {{"features", "elements"}}, s.meta)->attribute(model, x, t);
  auto score = [&](const torch::Tensor& row, int64_t c) { return model.predict(row.unsqueeze(0))[0][c].item<double>(); };
  for (int64_t i = 0; i < 2; ++i) {
    const int64_t c = t[i].item<int64_t>();
    torch::Tensor ablated = x[i].clone();
    ablated.slice(0, 1, 4).copy_(mean_row.slice(0, 1, 4));
    const double want = score(x[i], c) - score(ablated, c);
    const auto f = feature_attributions(s.meta, x[i], grouped.map[i]);
    const auto colour = std::find_if(f.begin(), f.end(), [](const nlohmann::json& e) { return e["name"] == "colour"; });
    ASSERT_NE(colour, f.end());
    EXPECT_NEAR((*colour)["attribution"].get<double>(), want, 1e-5);
    EXPECT_GT(std::abs(elements.map[i].slice(0, 1, 4).sum().item<double>() - want), 1e-3) << "row " << i;
  }
  // KernelSHAP over the three columns (exact): efficiency against the mean row.
  auto ks = Registry::builtin().create("kernel-shap", {}, s.meta)->attribute(model, x, t);
  EXPECT_EQ(ks.diagnostics["groups"][0], 3);
  for (int64_t i = 0; i < 2; ++i)
    EXPECT_NEAR(ks.map[i].sum().item<double>(), score(x[i], t[i].item<int64_t>()) - score(mean_row, t[i].item<int64_t>()), 1e-5);
}

// The CLI: --background makes the base value E[f] over the background, explanation.json says so and
// base value + attributions = f(x); the PNG of an additive method is a waterfall, of saliency bars.
// The global mean |KernelSHAP| ranks the columns as |w_j| * mean |z_j - mean z_j| does.
TEST(Tabular, BackgroundBaseValuesWaterfallsAndTheGlobalShapRanking) {
  test::TempDir dir;
  const auto features = numeric_columns(8);
  Synthetic s = synthetic(features, /*linear=*/true, 17);
  s.module.save(dir / "lin.pt");
  write(dir / "lin.json", s.meta.to_json().dump(2));
  write(dir / "rows.csv", synthetic_csv(features, 30, 8));
  write(dir / "background.csv", synthetic_csv(features, 25, 9));
  const auto r = test::run_cli("explain -m " + test::quoted(dir / "lin.pt") + " -i " + test::quoted(dir / "rows.csv") +
                               " --method kernel-shap,saliency --background " + test::quoted(dir / "background.csv") +
                               " --background-max 25 --out " + test::quoted(dir / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(dir / "out/r0/explanation.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  const nlohmann::json& ks = j["explained"][0]["methods"]["kernel-shap"];
  const int64_t c = j["explained"][0]["class"];
  const torch::Tensor bg = stacked(read_csv_rows(dir / "background.csv", s.meta));
  const double fb = torch::linear(bg, s.w, s.b).select(1, c).mean().item<double>();
  EXPECT_EQ(ks["base_value_of"], "E[f(background)]");
  EXPECT_NEAR(ks["base_value"].get<double>(), fb, 1e-4);
  double sum = 0;
  for (const auto& f : ks["features"]) sum += f["attribution"].get<double>();
  EXPECT_NEAR(ks["base_value"].get<double>() + sum, ks["f(x)"].get<double>(), 1e-4);
  EXPECT_EQ(cv::imread(dir / "out/r0/kernel-shap.png").rows, 48 + 22 * 8 + 40);  // a waterfall: 8 steps
  EXPECT_EQ(cv::imread(dir / "out/r0/saliency.png").rows, 36 + 22 * 8 + 10);    // bars
  EXPECT_FALSE(j["explained"][0]["methods"]["saliency"].contains("base_value"));

  // Bad backgrounds: one line, exit 2, nothing written.
  for (const std::string tail : {" --method kernel-shap --background " + test::quoted(dir / "none.csv"),
                                 " --method saliency --background " + test::quoted(dir / "background.csv")}) {
    const auto bad = test::run_cli("explain -m " + test::quoted(dir / "lin.pt") + " -i " + test::quoted(dir / "rows.csv") + tail +
                                   " --out " + test::quoted(dir / "bad"));
    EXPECT_EQ(bad.code, 2) << bad.err;
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "bad"));
  }

  Model model(dir / "lin.pt");
  GlobalRequest req;
  req.data = dir / "rows.csv";
  req.out_dir = dir / "global";
  req.methods = {"kernel-shap"};
  req.method_options = {{"samples", 254}};
  const nlohmann::json report = global_report(model, req);
  const torch::Tensor z = stacked(read_csv_rows(req.data, s.meta)).to(torch::kDouble);
  std::vector<std::pair<double, std::string>> want;
  for (int64_t k = 0; k < 8; ++k)
    want.emplace_back(std::abs(s.w[1][k].item<double>()) * z.select(1, k).abs().mean().item<double>(), features[static_cast<size_t>(k)].name);
  std::sort(want.rbegin(), want.rend());
  const auto& per = report["methods"]["kernel-shap"];
  ASSERT_EQ(per.size(), 8u);
  for (size_t k = 0; k < 8; ++k) {
    EXPECT_EQ(per[k]["name"], want[k].second) << "rank " << k;
    EXPECT_NEAR(per[k]["attribution"].get<double>(), want[k].first, 1e-4 * want[k].first + 1e-6);
  }
}

// A CSV is a data set like any other: batch names each row's folder by its id column (or
// --id-column), reads its labels, resumes; evaluate runs on it; a repeated id is refused.
TEST(Tabular, CsvDataSetsRunThroughBatchAndEvaluate) {
  test::TempDir dir;
  const std::string model = " -m " + test::quoted(demo_dir() + "/logreg.pt");
  const std::string data = " -d " + test::quoted(demo_dir() + "/test.csv");
  const auto plain = plain_rows(demo_dir() + "/test.csv");
  auto r = test::run_cli("batch" + model + data + " --limit 12 --method integrated-gradients -o " + test::quoted(dir / "b"));
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream manifest(dir / "b/manifest.jsonl");
  std::string line;
  std::vector<std::string> ids;
  while (std::getline(manifest, line)) {
    const auto j = nlohmann::json::parse(line);
    ids.push_back(j["id"]);
    const size_t row = ids.size();
    EXPECT_EQ(j["id"], plain[row][0]);
    EXPECT_EQ(j["label"], plain[row][31] == "malignant" ? 0 : 1) << j.dump();
    EXPECT_TRUE(std::filesystem::exists(dir / ("b/" + plain[row][0] + "/integrated-gradients.png")));
  }
  EXPECT_EQ(ids.size(), 12u);
  r = test::run_cli("batch" + model + data + " --limit 12 --method integrated-gradients -o " + test::quoted(dir / "b"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("(12 done before"), std::string::npos) << r.out;

  // --id-column: another column names the rows; one whose values repeat is refused by row.
  std::string csv = "serial," + plain[0][0];
  for (size_t k = 1; k < plain[0].size(); ++k) csv += "," + plain[0][k];
  csv += "\n";
  for (size_t row = 1; row <= 3; ++row) {
    csv += "s" + std::to_string(row % 2);
    for (const auto& f : plain[row]) csv += "," + f;
    csv += "\n";
  }
  write(dir / "serial.csv", csv);
  r = test::run_cli("explain" + model + " --id-column serial -i " + test::quoted(dir / "serial.csv") + " --method saliency -o " + test::quoted(dir / "s"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("row 3, column 'serial': id 's1' is also row 1's"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "s"));

  r = test::run_cli("evaluate" + model + data + " --limit 10 --methods integrated-gradients,saliency --metrics deletion -o " + test::quoted(dir / "e"));
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(dir / "e/report.json");
  const auto report = nlohmann::json::parse(in);
  EXPECT_EQ(report["inputs"], 10) << report.dump().substr(0, 400);
  // A removed column takes its mean (the mean row), not a raw 0: the default canvas of a table.
  EXPECT_EQ(report["canvas"], "mean");
  r = test::run_cli("evaluate" + model + data + " --limit 10 --methods saliency --metrics deletion --canvas black -o " + test::quoted(dir / "f"));
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream black(dir / "f/report.json");
  EXPECT_EQ(nlohmann::json::parse(black)["canvas"], "black");
  r = test::run_cli("evaluate -m " + test::quoted(test::demo_model()) + " -d " + test::quoted(test::first_sample()) +
                    " --methods saliency --metrics deletion --canvas mean -o " + test::quoted(dir / "g"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--canvas mean (the mean row) needs a tabular model"), std::string::npos) << r.err;
}

// A CSV data set is streamed: the rows a data set holds are read again from their offsets exactly
// as a whole read gives them (quotes, CRLF, blank lines, a byte-order mark, over several 64 KiB
// buffers); `batch --limit` stops reading at the limit (a broken row after it is no error, and the
// whole file refuses it); a field over 1 MiB is refused and a long bad field is quoted in 80
// characters, in a one-line error.
TEST(Tabular, CsvDataSetsAreStreamedAndLongFieldsRefusedInOneLine) {
  test::TempDir dir;
  const auto meta = ModelMetadata::load(demo_dir() + "/logreg.json");
  const auto plain = plain_rows(demo_dir() + "/test.csv");
  auto join = [](const std::vector<std::string>& row, bool quote) {
    std::string s;
    for (const auto& f : row) s += (s.empty() ? "" : ",") + (quote ? "\"" + f + "\"" : f);
    return s;
  };
  std::string text = "\xEF\xBB\xBF" + join(plain[0], false) + "\r\n";
  int rows = 0;
  while (text.size() < 300000) {  // ~5 buffers
    for (size_t r = 1; r < plain.size() && text.size() < 300000; ++r) {
      std::vector<std::string> row = plain[r];
      row[0] = "id" + std::to_string(rows++);
      text += join(row, rows % 3 == 0) + (rows % 2 ? "\r\n" : "\n") + (rows % 7 == 0 ? "\n" : "");
    }
  }
  write(dir / "big.csv", text);
  const TabularRows whole = read_csv_rows(dir / "big.csv", meta);
  ASSERT_EQ(static_cast<int>(whole.items.size()), rows);
  const CsvTable table(dir / "big.csv", meta);
  ASSERT_EQ(table.size(), rows);
  for (int64_t r : {int64_t{0}, int64_t{1}, int64_t{rows / 2}, int64_t{rows - 1}}) {
    EXPECT_EQ(table.stem(r), whole.items[static_cast<size_t>(r)].stem);
    EXPECT_TRUE(table.item(r).tensor.equal(whole.items[static_cast<size_t>(r)].tensor)) << r;
    EXPECT_EQ(table.label(r), whole.labels[static_cast<size_t>(r)]);
  }
  EXPECT_EQ(CsvTable(dir / "big.csv", meta, 5).size(), 5);

  // A ragged row after the first 3: batch --limit 3 never reads it; the whole file is refused.
  std::vector<std::string> ragged = plain[4];
  ragged.pop_back();
  write(dir / "tail.csv", join(plain[0], false) + "\n" + join(plain[1], false) + "\n" + join(plain[2], false) + "\n" +
                              join(plain[3], false) + "\n" + join(ragged, false) + "\n");
  const std::string model = " -m " + test::quoted(demo_dir() + "/logreg.pt");
  auto r = test::run_cli("batch" + model + " -d " + test::quoted(dir / "tail.csv") + " --limit 3 --method saliency -o " +
                         test::quoted(dir / "b3"));
  EXPECT_EQ(r.code, 0) << r.err;
  r = test::run_cli("batch" + model + " -d " + test::quoted(dir / "tail.csv") + " --method saliency -o " + test::quoted(dir / "ball"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("row 4 has 31 fields"), std::string::npos) << r.err;

  // A 200 KB non-number: quoted in 80 characters; a 2 MiB field: refused as no table cell.
  std::vector<std::string> long_bad = plain[1];
  long_bad[4] = std::string(200000, 'x');
  write(dir / "long.csv", join(plain[0], false) + "\n" + join(long_bad, false) + "\n");
  std::vector<std::string> huge = plain[1];
  huge[4] = std::string(size_t{2} << 20, '7');
  write(dir / "huge.csv", join(plain[0], false) + "\n" + join(huge, false) + "\n");
  for (const char* name : {"long.csv", "huge.csv"}) {
    r = test::run_cli("batch" + model + " -d " + test::quoted(dir / name) + " --method saliency -o " + test::quoted(dir / "o"));
    EXPECT_EQ(r.code, 2) << name;
    EXPECT_LT(r.err.size(), 400u) << name << ": " << r.err.substr(0, 400);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << name;
  }
  EXPECT_NE(r.err.find("longer than 1 MiB"), std::string::npos) << r.err;
}
