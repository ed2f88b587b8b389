// The CLI as users script it: a real run on the demo model, and every bad input exiting 2 with one
// line `error: ...` and no file left in --out.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "helpers.hpp"
#include "salient/fsutil.hpp"
#include "salient/npy.hpp"

using namespace salient;
namespace fs = std::filesystem;

namespace {

std::string q(const std::string& s) { return "'" + s + "'"; }

int count_files(const fs::path& dir) {
  if (!fs::exists(dir)) return 0;
  int n = 0;
  for (auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

void expect_bad_input(const std::string& args, const fs::path& out, const std::string& must_mention) {
  test::RunResult r = test::run_cli(args);
  EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "not one line: " << r.err;
  EXPECT_NE(r.err.find(must_mention), std::string::npos) << "message lacks '" << must_mention << "': " << r.err;
  EXPECT_EQ(count_files(out), 0) << args;
}

}  // namespace

TEST(Cli, ExplainWritesEveryOutputForEachInput) {
  test::TempDir dir;
  test::RunResult r = test::run_cli("explain --model " + q(test::demo_model()) + " --input " + q(test::first_sample()) +
                                    " " + q(test::sample("8-bag.png")) + " --method saliency,smoothgrad --samples 10 --out " +
                                    q(dir / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Sneaker"), std::string::npos) << r.out;
  for (std::string stem : {"7-sneaker", "8-bag"})
    for (std::string f : {"saliency.npy", "saliency.png", "smoothgrad.npy", "smoothgrad.png", "grid.png", "explanation.json"})
      EXPECT_TRUE(fs::exists(dir.path / "out" / stem / f)) << stem << "/" << f;
  auto j = nlohmann::json::parse(read_file(dir / "out/7-sneaker/explanation.json"));
  ASSERT_EQ(j["predictions"].size(), 5u);
  EXPECT_EQ(j["predictions"][0]["label"], "Sneaker");
  double total = 0;
  for (auto& p : j["predictions"]) total += p["probability"].get<double>();
  EXPECT_LE(total, 1.0 + 1e-6);
  EXPECT_EQ(j["explained"][0]["methods"]["smoothgrad"]["params"]["samples"], 10);
  EXPECT_EQ(read_npy(dir / "out/7-sneaker/saliency.npy").sizes(), (std::vector<int64_t>{1, 28, 28}));
  cv::Mat grid = cv::imread(dir / "out/7-sneaker/grid.png");
  EXPECT_GT(grid.cols, 3 * 224);  // input + two maps
}

TEST(Cli, NpyStacksGiveOneOutputPerRowAndTopKGivesOneMapPerClass) {
  test::TempDir dir;
  write_npy(dir / "stack.npy", torch::randn({3, 1, 28, 28}));
  test::RunResult r = test::run_cli("explain -m " + q(test::demo_model()) + " -i " + q(dir / "stack.npy") +
                                    " --method saliency --target top-2 --out " + q(dir / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  for (int i = 0; i < 3; ++i) {
    auto j = nlohmann::json::parse(read_file(dir / ("out/stack_" + std::to_string(i) + "/explanation.json")));
    ASSERT_EQ(j["explained"].size(), 2u);
    for (auto& e : j["explained"])
      EXPECT_TRUE(fs::exists(dir.path / ("out/stack_" + std::to_string(i)) / e["methods"]["saliency"]["npy"].get<std::string>()));
  }
}

TEST(Cli, MethodsAndInfoDescribeTheRegistryAndTheModel) {
  test::RunResult m = test::run_cli("methods");
  ASSERT_EQ(m.code, 0);
  EXPECT_NE(m.out.find("smoothgrad"), std::string::npos);
  EXPECT_NE(m.out.find("white-box"), std::string::npos);
  test::RunResult i = test::run_cli("info --json --model " + q(test::demo_model()));
  ASSERT_EQ(i.code, 0) << i.err;
  auto j = nlohmann::json::parse(i.out);
  EXPECT_EQ(j["output_shape"], (std::vector<int64_t>{1, 10}));
  EXPECT_EQ(j["metadata"]["labels"].size(), 10u);
}

TEST(Cli, LayersListsModulePathsAndCamsWriteRawMaps) {
  test::RunResult r = test::run_cli("layers --model " + q(test::demo_model()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("conv2"), std::string::npos);
  EXPECT_NE(r.out.find("[1,64,14,14]"), std::string::npos) << r.out;
  test::TempDir dir;
  r = test::run_cli("explain -m " + q(test::demo_model()) + " -i " + q(test::first_sample()) +
                    " --method grad-cam,score-cam --layer conv2 --out " + q(dir / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_npy(dir / "out/7-sneaker/grad-cam.npy").sizes(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(read_npy(dir / "out/7-sneaker/grad-cam.raw.npy").sizes(), (std::vector<int64_t>{14, 14}));
  EXPECT_TRUE(fs::exists(dir.path / "out/7-sneaker/score-cam.raw.npy"));
}

TEST(Cli, BadInputExitsTwoWithOneLineAndNoFiles) {
  test::TempDir dir;
  const fs::path out = dir.path / "out";
  const std::string model = " --model " + q(test::demo_model());
  const std::string input = " --input " + q(test::first_sample());
  const std::string tail = " --out " + q(out.string());

  write_file_atomic(dir / "notes.pt", "this is not a model");
  std::string png = read_file(test::first_sample());
  write_file_atomic(dir / "truncated.png", png.substr(0, png.size() / 2));
  write_file_atomic(dir / "corrupt.png", std::string(200, '\x42'));
  cv::imwrite(dir / "big.png", cv::Mat(32, 32, CV_8UC1, cv::Scalar(9)));
  cv::imwrite(dir / "rgb.png", cv::Mat(28, 28, CV_8UC3, cv::Scalar(1, 2, 3)));
  write_file_atomic(dir / "afile", "x");

  expect_bad_input("explain --model " + q(dir / "missing.pt") + input + tail, out, "does not exist");
  expect_bad_input("explain --model " + q(dir / "notes.pt") + input + tail, out, "not a TorchScript");
  expect_bad_input("explain" + model + " --input " + q(dir / "truncated.png") + tail, out, "truncated.png");
  expect_bad_input("explain" + model + " --input " + q(dir / "corrupt.png") + tail, out, "cannot decode");
  expect_bad_input("explain" + model + " --input " + q(dir / "big.png") + tail, out, "expects 28x28");
  expect_bad_input("explain" + model + " --input " + q(dir / "rgb.png") + tail, out, "expects 1 channel");
  expect_bad_input("explain" + model + input + " " + q(dir / "truncated.png") + tail, out, "truncated.png");
  expect_bad_input("explain" + model + input + " --target 12" + tail, out, "out of range");
  expect_bad_input("explain" + model + input + " --target Umbrella" + tail, out, "Umbrella");
  expect_bad_input("explain" + model + input + " --samples 0" + tail, out, "samples");
  expect_bad_input("explain" + model + input + " --sigma -0.5" + tail, out, "sigma");
  expect_bad_input("explain" + model + input + " --method saliency,gradcam" + tail, out, "gradcam");
  expect_bad_input("explain" + model + input + " --out " + q(dir / "afile/out"), out, "output folder");
  expect_bad_input("explain" + model + input + " --colormap rainbow" + tail, out, "colormap");
  expect_bad_input("explain" + model + input + " --device tpu" + tail, out, "device");
  expect_bad_input("explain" + model + tail, out, "--input");
  expect_bad_input("frobnicate", out, "subcommand");
  // Path-method options.
  write_npy(dir / "wrong.npy", torch::zeros({3, 5}));
  const std::string ig = " --method saliency,integrated-gradients";
  expect_bad_input("explain" + model + input + ig + " --steps 0" + tail, out, "steps");
  expect_bad_input("explain" + model + input + ig + " --steps lots" + tail, out, "steps");
  expect_bad_input("explain" + model + input + ig + " --quadrature simpson" + tail, out, "simpson");
  expect_bad_input("explain" + model + input + ig + " --baseline " + q(dir / "wrong.npy") + tail, out, "[3,5]");
  expect_bad_input("explain" + model + input + " --method linear-weights" + tail, out, "not a single linear layer");
  expect_bad_input("explain" + model + input + " --method grad-cam --layer conv3" + tail, out, "nearest: conv1, conv2");
  expect_bad_input("explain" + model + input + " --method occlusion --window 40x40" + tail, out, "larger than the input");
  expect_bad_input("explain" + model + input + " --method rise --samples 0" + tail, out, "samples");
  expect_bad_input("explain" + model + input + " --method lime --features hexagons" + tail, out, "hexagons");
  // Modified back-propagation.
  expect_bad_input("explain" + model + input + " --method lrp --option composite=bogus" + tail, out, "bogus");
  expect_bad_input("explain" + model + input + " --method lrp --option alpha=3" + tail, out, "alpha - beta");
  expect_bad_input("explain" + model + input + " --method lrp --option low=5" + tail, out, "low > high");
  expect_bad_input("explain" + model + input + " --method deeplift --baseline " + q(dir / "wrong.npy") + tail, out, "[3,5]");
  expect_bad_input("explain" + model + input + " --method guided-grad-cam --layer fc9" + tail, out, "fc9");
  expect_bad_input("explain --model " + q(std::string(SALIENT_TESTDATA) + "/fashion_cnn.onnx") + input +
                       " --method guided-backprop" + tail, out, "TorchScript");
  // evaluate.
  const std::string data = " --data " + q(test::source_dir() + "/models/samples");
  expect_bad_input("evaluate" + model + data + " --metrics deletion,teleportation" + tail, out, "teleportation");
  expect_bad_input("evaluate" + model + data + " --limit 0" + tail, out, "--limit");
  expect_bad_input("evaluate" + model + " --data " + q(dir / "nothing-here") + tail, out, "does not exist");
  expect_bad_input("evaluate" + model + data + " --methods saliency,nope" + tail, out, "nope");
}
