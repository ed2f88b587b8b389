// The streaming core and data-set scale: datasets as lazy views, cross-input batching, per-method
// options, `salient batch` (shards, merge, summaries), class models.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <opencv2/imgcodecs.hpp>

#include "helpers.hpp"
#include "salient/class_model.hpp"
#include "salient/dataset.hpp"
#include "salient/error.hpp"
#include "salient/evaluate.hpp"
#include "salient/fsutil.hpp"
#include "salient/idx.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"

namespace fs = std::filesystem;
using namespace salient;
using test::quoted;

namespace {

const std::string kImages = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
const std::string kLabels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";

Model demo() { return Model(test::demo_model()); }

// An 8-bit grayscale image preprocessed as the demo's metadata says (value range [0, 1], mean 0.286, std 0.353).
torch::Tensor demo_input(const torch::Tensor& raw) { return (raw.to(torch::kFloat) / 255.0 - 0.286) / 0.353; }

std::vector<nlohmann::json> manifest(const fs::path& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir / "manifest.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    out.push_back(j);
  }
  return out;
}

// id -> method -> map, read from wherever a manifest line says (stack part row or .npy file).
std::map<std::string, std::map<std::string, torch::Tensor>> maps_of(const fs::path& dir) {
  std::map<std::string, std::map<std::string, torch::Tensor>> out;
  std::map<std::string, torch::Tensor> parts;
  for (const auto& line : manifest(dir)) {
    if (!line.contains("explained")) continue;
    for (const auto& [name, m] : line["explained"][0]["methods"].items()) {
      torch::Tensor map;
      if (m.contains("map")) {
        const std::string part = m["map"]["part"];
        if (!parts.count(part)) parts[part] = read_npy((dir / part).string());
        map = parts[part][m["map"]["row"].get<int64_t>()];
      } else {
        map = read_npy((dir / m["npy"].get<std::string>()).string());
      }
      out[line["id"]][name] = map;
    }
  }
  return out;
}

}  // namespace

TEST(Dataset, ViewsDecodeNothingAndShardsCoverEveryIdExactlyOnce) {
  Model model = demo();
  const int64_t before = decoded_count();
  Dataset all = Dataset::open(kImages, model.metadata());
  ASSERT_EQ(all.size(), 10000);
  EXPECT_TRUE(all.has_labels());  // the labels-idx1 sibling
  Dataset first = all.limit(100);
  std::multiset<std::string> ids;
  for (int k = 0; k < 3; ++k) {
    Dataset s = first.shard(k, 3);
    EXPECT_EQ(s.size(), k == 0 ? 34 : 33);
    for (int64_t i = 0; i < s.size(); ++i) ids.insert(s.id(i));
  }
  EXPECT_EQ(decoded_count(), before) << "opening, limiting and sharding decoded an item";
  ASSERT_EQ(ids.size(), 100u);
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(ids.count(std::to_string(i)), 1u) << "id " << i;
  // A shard's item is the data set's item (checked against the whole file read independently).
  const torch::Tensor raw = read_idx(kImages), labels = read_idx(kLabels);
  const DataItem item = first.shard(2, 3).get(5);  // row 2 + 3*5 = 17
  EXPECT_EQ(item.id, "17");
  EXPECT_EQ(item.label, labels[17].item<int64_t>());
  EXPECT_TRUE(torch::allclose(item.input.tensor[0], demo_input(raw[17])));
  // Backwards in a .gz (zlib rewinds) gives the same bytes.
  EXPECT_TRUE(torch::allclose(all.get(9999).input.tensor[0], demo_input(raw[9999])));
  EXPECT_TRUE(torch::allclose(all.get(3).input.tensor[0], demo_input(raw[3])));
  EXPECT_EQ(decoded_count(), before + 3);
}

TEST(Dataset, FoldersAreRecursiveWithClassLabelsAndListsAndNpyRows) {
  test::TempDir dir;
  Model model = demo();
  const torch::Tensor raw = read_idx(kImages);
  fs::create_directories(dir.path / "data" / "Trouser");
  fs::create_directories(dir.path / "data" / "Bag");
  cv::Mat a(28, 28, CV_8UC1, raw[0].data_ptr()), b(28, 28, CV_8UC1, raw[1].data_ptr());
  cv::imwrite(dir / "data/Trouser/a.png", a);
  cv::imwrite(dir / "data/Bag/b.png", b);
  Dataset d = Dataset::open(dir / "data", model.metadata());
  ASSERT_EQ(d.size(), 2);
  EXPECT_EQ(d.id(0), "Bag/b.png");
  EXPECT_EQ(d.label(0), 8);  // the folder's name is a label of the model
  EXPECT_EQ(d.label(1), 1);
  EXPECT_EQ(d.stem(0), "Bag_b.png");
  EXPECT_TRUE(torch::allclose(d.get(1).input.tensor[0], demo_input(raw[0]), 1e-5, 1e-6));
  // A list file: paths relative to it; ids are the lines.
  { std::ofstream(dir / "list.txt") << "data/Trouser/a.png\n# a comment\n\ndata/Bag/b.png\n"; }
  Dataset l = Dataset::open(dir / "list.txt", model.metadata());
  ASSERT_EQ(l.size(), 2);
  EXPECT_EQ(l.id(1), "data/Bag/b.png");
  EXPECT_TRUE(torch::equal(l.get(1).input.tensor, d.get(0).input.tensor));
  // An .npy stack, a row at a time.
  const torch::Tensor stack = torch::rand({5, 1, 28, 28});
  write_npy(dir / "x.npy", stack);
  Dataset n = Dataset::open(dir / "x.npy", model.metadata());
  ASSERT_EQ(n.size(), 5);
  EXPECT_TRUE(torch::equal(n.get(3).input.tensor, stack[3]));
  write_npy(dir / "bad.npy", torch::rand({5, 1, 27, 28}));
  EXPECT_THROW(Dataset::open(dir / "bad.npy", model.metadata()), salient::Error);
}

TEST(Evaluate, LimitDecodesOnlyThoseInputs) {
  test::TempDir dir;
  Model model = demo();
  EvaluateRequest req;
  req.data = kImages;
  req.methods = {"saliency"};
  req.metrics = {"sparseness"};
  req.limit = 20;
  req.out_dir = dir / "eval";
  const int64_t before = decoded_count();
  nlohmann::json report = evaluate(model, req);
  EXPECT_EQ(report["inputs"], 20);
  EXPECT_EQ(decoded_count() - before, 20) << "evaluate --limit 20 decoded more than 20 of the 10,000 images";
}

TEST(SmoothGrad, CrossInputPassesGiveTheMapsOfOneInputAtATime) {
  Model model = demo();
  Dataset d = Dataset::open(kImages, model.metadata()).limit(6);
  std::vector<torch::Tensor> xs;
  for (int64_t i = 0; i < d.size(); ++i) xs.push_back(d.get(i).input.tensor);
  const torch::Tensor x = torch::stack(xs), t = torch::arange(6, torch::kLong);
  for (const std::string noise : {"gaussian", "quasi"}) {
    // 7 samples in passes of 10 rows: passes hold copies of two inputs, and the split moves.
    auto mixed = Registry::builtin().create("smoothgrad", {{"samples", 7}, {"batch-size", 10}, {"noise", noise}});
    const torch::Tensor together = mixed->attribute(model, x, t).map;
    for (int64_t i = 0; i < 6; ++i) {
      auto alone = Registry::builtin().create("smoothgrad", {{"samples", 7}, {"batch-size", 3}, {"noise", noise}});
      const torch::Tensor one = alone->attribute(model, x.slice(0, i, i + 1), t.slice(0, i, i + 1)).map[0];
      EXPECT_TRUE(torch::allclose(together[i], one, 1e-5, 1e-7))
          << noise << " input " << i << ": max diff " << (together[i] - one).abs().max().item<double>();
    }
    // The maps differ between inputs (the noise is shared, the inputs are not).
    EXPECT_FALSE(torch::allclose(together[0], together[1]));
  }
}

TEST(Registry, QualifiedOptionsApplyToOneMethodAndWin) {
  const nlohmann::json o{{"samples", 5}, {"smoothgrad.samples", 20}};
  Registry::builtin().check_option_keys(o, {"smoothgrad", "gradient-shap"});
  EXPECT_EQ(Registry::builtin().create("smoothgrad", o)->params()["samples"], 20);
  EXPECT_EQ(Registry::builtin().create("gradient-shap", o)->params()["samples"], 5);
  auto refused = [](const nlohmann::json& opts, const std::string& mention) {
    try {
      Registry::builtin().check_option_keys(opts, {"smoothgrad", "saliency"});
      ADD_FAILURE() << opts.dump() << " was accepted";
    } catch (const salient::Error& e) {
      EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
    }
  };
  refused({{"lime.samples", 3}}, "does not use");
  refused({{"smoothgrad.steps", 3}}, "steps");
  refused({{"smoothgrad.sample", 3}}, "did you mean 'samples'");
}

TEST(ClassModel, EachClassModelIsPredictedAsItsClass) {
  Model model = demo();
  ClassModelOptions o;
  o.steps = 60;
  const std::vector<int64_t> classes{1, 8, 5};
  const auto models = class_models(model, classes, o);
  ASSERT_EQ(models.size(), 3u);
  for (size_t i = 0; i < classes.size(); ++i) {
    EXPECT_EQ(models[i].top_class, classes[i]);
    EXPECT_GT(models[i].score, models[i].start_score + 5.0) << "class " << classes[i];
    // Inside the value range [0, 1] after normalisation.
    EXPECT_LE(models[i].input.max().item<double>(), (1 - 0.286) / 0.353 + 1e-5);
    EXPECT_GE(models[i].input.min().item<double>(), -0.286 / 0.353 - 1e-5);
  }
  // A class's image does not depend on which others are asked with it.
  const auto alone = class_models(model, {8}, o);
  EXPECT_TRUE(torch::allclose(alone[0].input, models[1].input, 1e-4, 1e-5));
  // A class named many times, by index and by label, is one class model.
  test::TempDir dir;
  std::string many = "Bag";
  for (int i = 0; i < 2000; ++i) many += ",8";
  const auto r = test::run_cli("class-model -m " + quoted(test::demo_model()) + " --steps 2 -t " + many + " -o " + quoted(dir / "cm"));
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(read_file((dir.path / "cm" / "class-model.json").string()));
  EXPECT_EQ(j["classes"].size(), 1u) << j["classes"].size();
}

TEST(Batch, ShardsTakenFromFlagsOrSchedulersMergeToTheUnshardedRun) {
  test::TempDir dir;
  const std::string common = "batch -m " + quoted(test::demo_model()) + " -d " + quoted(kImages) +
                             " --limit 60 --method saliency,smoothgrad --samples 8 --format stack --part-rows 16 --summary --no-png --threads 1";
  test::RunResult r = test::run_cli(common + " --out " + quoted(dir / "whole"));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(test::run_cli(common + " --out " + quoted(dir / "sharded") + " --shard 0/3").code, 0);
  // K and N from the scheduler's environment (inherited by the CLI).
  ::setenv("SLURM_ARRAY_TASK_ID", "1", 1);
  ::setenv("SLURM_ARRAY_TASK_COUNT", "3", 1);
  r = test::run_cli(common + " --out " + quoted(dir / "sharded"));
  ::unsetenv("SLURM_ARRAY_TASK_ID");
  ::unsetenv("SLURM_ARRAY_TASK_COUNT");
  ASSERT_EQ(r.code, 0) << r.err;
  ::setenv("JOB_COMPLETION_INDEX", "2", 1);
  r = test::run_cli(common + " --shards 3 --out " + quoted(dir / "sharded"));
  ::unsetenv("JOB_COMPLETION_INDEX");
  ASSERT_EQ(r.code, 0) << r.err;
  for (int k = 0; k < 3; ++k) EXPECT_TRUE(fs::exists(dir.path / "sharded" / ("shard-" + std::to_string(k) + "-of-3") / "manifest.jsonl"));
  r = test::run_cli("merge " + quoted(dir / "sharded"));
  ASSERT_EQ(r.code, 0) << r.err;
  // Every id exactly once; maps bit-identical to the unsharded run's.
  const auto whole = maps_of(dir.path / "whole"), merged = maps_of(dir.path / "sharded");
  ASSERT_EQ(whole.size(), 60u);
  ASSERT_EQ(merged.size(), 60u);
  EXPECT_EQ(manifest(dir.path / "sharded").size(), 60u);
  for (const auto& [id, ms] : whole)
    for (const auto& [m, map] : ms) EXPECT_TRUE(torch::equal(map, merged.at(id).at(m))) << id << " " << m;
  // Summaries equal up to float summation order.
  for (const char* f : {"smoothgrad_class1.npy", "saliency_label8.abs.npy", "input_class9.npy"}) {
    const torch::Tensor a = read_npy(dir / ("whole/summary/" + std::string(f))),
                        b = read_npy(dir / ("sharded/summary/" + std::string(f)));
    EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << f;
  }
  EXPECT_TRUE(fs::exists(dir.path / "sharded" / "summary" / "atlas_predicted.png"));
  // A missing shard: merge names how many ids are missing, exit 2.
  fs::remove_all(dir.path / "sharded" / "shard-1-of-3");
  r = test::run_cli("merge " + quoted(dir / "sharded"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("20 ids missing"), std::string::npos) << r.err;
  // A rerun of a finished run computes nothing; other settings on the same folder are refused.
  r = test::run_cli(common + " --out " + quoted(dir / "whole"));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("explained 0 inputs (60 done before"), std::string::npos) << r.out;
  r = test::run_cli(common + " --out " + quoted(dir / "whole") + " --option smoothgrad.samples=9");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("other settings"), std::string::npos) << r.err;
}

TEST(Batch, ClassSummaryIsTheMeanOfEachClassesMaps) {
  test::TempDir dir;
  test::RunResult r = test::run_cli("batch -m " + quoted(test::demo_model()) + " -d " + quoted(kImages) +
                                    " --limit 80 --method saliency --format stack --summary --no-png --threads 1 --out " + quoted(dir / "b"));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto maps = maps_of(dir.path / "b");
  std::map<int64_t, std::vector<torch::Tensor>> by_pred, by_label;
  for (const auto& line : manifest(dir.path / "b")) {
    by_pred[line["predictions"][0]["class"].get<int64_t>()].push_back(maps.at(line["id"]).at("saliency"));
    by_label[line["label"].get<int64_t>()].push_back(maps.at(line["id"]).at("saliency"));
  }
  for (const auto& [group, suffix] : {std::pair{&by_pred, "_class"}, std::pair{&by_label, "_label"}})
    for (const auto& [k, ms] : *group) {
      const torch::Tensor stack = torch::stack(ms);
      const std::string base = dir / ("b/summary/saliency" + std::string(suffix) + std::to_string(k));
      EXPECT_TRUE(torch::allclose(read_npy(base + ".npy"), stack.mean(0), 1e-5, 1e-7)) << base;
      EXPECT_TRUE(torch::allclose(read_npy(base + ".abs.npy"), stack.abs().mean(0), 1e-5, 1e-7)) << base;
    }
  // Trousers and bags are looked at differently.
  const torch::Tensor trouser = read_npy(dir / "b/summary/saliency_label1.abs.npy"), bag = read_npy(dir / "b/summary/saliency_label8.abs.npy");
  const double corr = torch::corrcoef(torch::stack({trouser.flatten(), bag.flatten()}))[0][1].item<double>();
  EXPECT_LT(corr, 0.8) << "the trouser and bag atlases are alike";
}

TEST(Batch, FilesFormatEqualsExplainAndBadItemsAreRecordedNotFatal) {
  test::TempDir dir;
  fs::create_directories(dir.path / "data");
  fs::copy_file(test::first_sample(), dir.path / "data" / "good.png");
  { std::ofstream(dir.path / "data" / "broken.png") << "not a png"; }
  test::RunResult r = test::run_cli("batch -m " + quoted(test::demo_model()) + " -d " + quoted(dir / "data") +
                                    " --method saliency,smoothgrad --samples 6 --threads 1 --out " + quoted(dir / "b"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("broken.png"), std::string::npos) << r.err;
  const auto lines = manifest(dir.path / "b");
  ASSERT_EQ(lines.size(), 2u);
  int errors = 0;
  for (const auto& l : lines) errors += l.contains("error");
  EXPECT_EQ(errors, 1);
  r = test::run_cli("explain -m " + quoted(test::demo_model()) + " -i " + quoted(dir / "data/good.png") +
                    " --method saliency,smoothgrad --samples 6 --out " + quoted(dir / "e"));
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* m : {"saliency", "smoothgrad"})
    EXPECT_TRUE(torch::equal(read_npy(dir / ("b/good.png/" + std::string(m) + ".npy")), read_npy(dir / ("e/good/" + std::string(m) + ".npy"))));
  EXPECT_TRUE(fs::exists(dir.path / "b" / "good.png" / "grid.png"));
  // Bad flags: one line, exit 2, nothing written.
  for (const std::string bad : {"--format zip", "--shard 3/3", "--shards 2", "--limit 5 --option lime.samples=3"}) {
    r = test::run_cli("batch -m " + quoted(test::demo_model()) + " -d " + quoted(dir / "data") + " --out " + quoted(dir / "x") + " " + bad);
    EXPECT_EQ(r.code, 2) << bad << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(dir.path / "x")) << bad;
  }
}

TEST(Batch, DeployFilesUseOnlyFlagsBatchHas) {
  const test::RunResult help = test::run_cli("batch --help");
  ASSERT_EQ(help.code, 0);
  auto flags_in = [](const std::string& text) {
    std::vector<std::string> out;
    for (size_t p = text.find("--"); p != std::string::npos; p = text.find("--", p + 2)) {
      size_t e = p + 2;
      while (e < text.size() && (std::isalnum(static_cast<unsigned char>(text[e])) || text[e] == '-')) ++e;
      if (e > p + 2) out.push_back(text.substr(p, e - p));
    }
    return out;
  };
  // The sbatch script's `salient batch` command (from `exec salient batch` to the end), and the
  // Job's container command.
  const std::string sbatch = read_file(test::source_dir() + "/deploy/slurm/batch.sbatch");
  const std::string k8s = read_file(test::source_dir() + "/deploy/k8s/batch-job.yaml");
  const std::string sbatch_cmd = sbatch.substr(sbatch.find("exec salient batch"));
  const std::string k8s_cmd = k8s.substr(k8s.find("- batch"), k8s.find("resources:") - k8s.find("- batch"));
  int checked = 0;
  for (const auto& text : {sbatch_cmd, k8s_cmd})
    for (const auto& flag : flags_in(text)) {
      EXPECT_NE(help.out.find(flag), std::string::npos) << flag << " is not a flag of salient batch";
      ++checked;
    }
  EXPECT_GE(checked, 14);
  EXPECT_NE(k8s.find("--shards=8"), std::string::npos);
  EXPECT_NE(k8s.find("completions: 8"), std::string::npos);  // N equals the Job's completions
}

// Fashion-MNIST's "T-shirt/top" cannot be a folder name: class folders map to labels exactly, then
// sanitised ("T-shirt_top"), then by an index prefix ("8-bag"); a folder that maps to nothing is
// named in a warning (the labels used to vanish without a word: no labels, no label atlas).
TEST(Batch, ClassFoldersMapToLabelsByTheDocumentedRuleAndStrayFoldersAreNamed) {
  const ModelMetadata meta = Model(test::demo_model()).metadata();
  ASSERT_EQ(meta.labels[0], "T-shirt/top");
  EXPECT_EQ(class_of_folder("Trouser", meta), 1);
  EXPECT_EQ(class_of_folder("T-shirt_top", meta), 0);
  EXPECT_EQ(class_of_folder("t shirt top", meta), 0);
  EXPECT_EQ(class_of_folder("ankle-boot", meta), 9);
  EXPECT_EQ(class_of_folder("8-bag", meta), 8);
  EXPECT_EQ(class_of_folder("03_dress", meta), 3);
  EXPECT_EQ(class_of_folder("5", meta), 5);
  EXPECT_EQ(class_of_folder("12", meta), -1);  // no class 12
  EXPECT_EQ(class_of_folder("2020-photos", meta), -1);
  EXPECT_EQ(class_of_folder("misc", meta), -1);
  test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> files = {
      {"T-shirt_top", "0-t-shirt-top.png"}, {"1-trouser", "1-trouser.png"}, {"Sneaker", "7-sneaker.png"}, {"8", "8-bag.png"}};
  for (const auto& [folder, file] : files) {
    fs::create_directories(dir.path / "data" / folder);
    fs::copy_file(test::sample(file), dir.path / "data" / folder / file);
  }
  auto r = test::run_cli("batch -m " + quoted(test::demo_model()) + " -d " + quoted(dir / "data") +
                         " --method saliency --summary --no-png --out " + quoted(dir / "b"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  std::map<std::string, int64_t> want = {{"T-shirt_top/0-t-shirt-top.png", 0}, {"1-trouser/1-trouser.png", 1},
                                         {"Sneaker/7-sneaker.png", 7}, {"8/8-bag.png", 8}};
  int seen = 0;
  for (const auto& line : manifest(dir.path / "b")) {
    ASSERT_TRUE(line.contains("label")) << line.dump();
    EXPECT_EQ(line["label"].get<int64_t>(), want.at(line["id"])) << line["id"];
    ++seen;
  }
  EXPECT_EQ(seen, 4);
  EXPECT_TRUE(fs::exists(dir.path / "b" / "summary" / "saliency_label0.npy"));
  // A stray folder: the run goes on unlabelled and says which folder.
  fs::create_directories(dir.path / "data" / "misc");
  fs::copy_file(test::sample("2-pullover.png"), dir.path / "data" / "misc" / "p.png");
  r = test::run_cli("batch -m " + quoted(test::demo_model()) + " -d " + quoted(dir / "data") + " --method saliency --no-png --out " +
                    quoted(dir / "c"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: class folder 'misc' maps to no label"), std::string::npos) << r.err;
}

// Shards of different runs merged without a word (other method options, other data at the same
// path), a merge that cut a finished unsharded run's manifest, a run.json whose signature is an
// array (json type_error 306): each is refused by name now.
TEST(Batch, MergeRefusesMixedRunsAndNeverRewritesAnUnshardedRun) {
  test::TempDir dir;
  fs::create_directories(dir.path / "data");
  for (const char* f : {"0-t-shirt-top.png", "1-trouser.png", "7-sneaker.png", "8-bag.png"})
    fs::copy_file(test::sample(f), dir.path / "data" / f);
  const std::string base = "batch -m " + quoted(test::demo_model()) + " -d " + quoted(dir / "data") + " --method saliency --no-png ";
  ASSERT_EQ(test::run_cli(base + "--shard 0/2 --out " + quoted(dir / "mixed")).code, 0);
  auto r = test::run_cli(base + "--shard 1/2 --option saliency.abs=false --out " + quoted(dir / "mixed"));
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("merge " + quoted(dir / "mixed"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("are parts of different runs (their options differ)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.path / "mixed" / "manifest.jsonl"));
  // Other data at the same path: its content differs, so its run does.
  ASSERT_EQ(test::run_cli(base + "--shard 0/2 --out " + quoted(dir / "moved")).code, 0);
  fs::remove(dir.path / "data" / "8-bag.png");
  fs::copy_file(test::sample("2-pullover.png"), dir.path / "data" / "8-bag.png");
  ASSERT_EQ(test::run_cli(base + "--shard 1/2 --out " + quoted(dir / "moved")).code, 0);
  r = test::run_cli("merge " + quoted(dir / "moved"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("data differ"), std::string::npos) << r.err;
  // A finished unsharded run plus a stray shard folder: the run's manifest is never replaced.
  ASSERT_EQ(test::run_cli(base + "--out " + quoted(dir / "whole")).code, 0);
  const std::string before = read_file((dir.path / "whole" / "manifest.jsonl").string());
  fs::copy(dir.path / "moved" / "shard-1-of-2", dir.path / "whole" / "shard-1-of-2", fs::copy_options::recursive);
  r = test::run_cli("merge " + quoted(dir / "whole"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("holds an unsharded run"), std::string::npos) << r.err;
  EXPECT_EQ(read_file((dir.path / "whole" / "manifest.jsonl").string()), before);
  // A run.json whose signature is not an object is refused as other settings, exit 2.
  write_file_atomic((dir.path / "whole" / "run.json").string(), "{\"signature\": [1, 2]}");
  r = test::run_cli(base + "--out " + quoted(dir / "whole"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("other settings"), std::string::npos) << r.err;

  // A shard folder that is a link: batch does not write through it, merge does not read it.
  fs::create_directories(dir.path / "elsewhere");
  fs::create_directories(dir.path / "linked");
  fs::create_directory_symlink(dir.path / "elsewhere", dir.path / "linked" / "shard-0-of-2");
  r = test::run_cli(base + "--shard 0/2 --out " + quoted(dir / "linked"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("symbolic link"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(dir.path / "elsewhere"));
  fs::copy(dir.path / "moved" / "shard-1-of-2", dir.path / "elsewhere" / "shard-1-of-2", fs::copy_options::recursive);
  fs::create_directory_symlink(dir.path / "elsewhere" / "shard-1-of-2", dir.path / "linked" / "shard-1-of-2");
  fs::remove(dir.path / "linked" / "shard-0-of-2");
  r = test::run_cli("merge " + quoted(dir / "linked"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("is a symbolic link"), std::string::npos) << r.err;

  // Shard summaries of another shape (edited sums): a clear refusal, never a broadcast.
  const std::string summed = base + "--summary --out " + quoted(dir / "summed");
  ASSERT_EQ(test::run_cli(summed + " --shard 0/2").code, 0);
  ASSERT_EQ(test::run_cli(summed + " --shard 1/2").code, 0);
  int edited = 0;
  for (const auto& e : fs::directory_iterator(dir.path / "summed" / "shard-1-of-2" / "summary" / "sums"))
    if (e.path().extension() == ".npy") {
      const torch::Tensor t = read_npy(e.path().string());
      write_npy(e.path().string(), torch::zeros({3, t.size(-2), t.size(-1)}));
      ++edited;
    }
  ASSERT_GT(edited, 0);
  r = test::run_cli("merge " + quoted(dir / "summed"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("cannot be added"), std::string::npos) << r.err;
}
