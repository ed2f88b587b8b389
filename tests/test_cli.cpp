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

const auto q = test::quoted;

using test::count_files;

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
  expect_bad_input("explain" + model + " --input " + q(dir / "corrupt.png") + tail, out, "not an image");
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

// The edges where Salient used to be silently wrong or unclear (issue: no silently wrong map).
TEST(Cli, EdgesAreErrorsNamingTheProblem) {
  test::TempDir dir;
  const fs::path out = dir.path / "out";
  const std::string model = " --model " + q(test::demo_model());
  const std::string input = " --input " + q(test::first_sample());
  const std::string tail = " --out " + q(out.string());
  torch::Tensor nan = torch::zeros({2, 1, 28, 28});
  nan[1][0][3][4] = std::numeric_limits<float>::quiet_NaN();
  write_npy(dir / "nan.npy", nan);
  expect_bad_input("explain" + model + " -i " + q(dir / "nan.npy") + tail, out, "'" + (dir / "nan.npy") + "' row 1 has 1 non-finite");
  expect_bad_input("explain" + model + input + " --method integrated-gradients --option stpes=10" + tail, out, "did you mean 'steps'");
  expect_bad_input("explain" + model + input + " --method grad-cam --window 4x4" + tail, out, "occlusion takes it");
  expect_bad_input("explain" + model + input + " --method saliency --option frobnicate=1" + tail, out, "frobnicate");
  nlohmann::json meta = nlohmann::json::parse(read_file(test::source_dir() + "/models/fashion_cnn.json"));
  meta["labels"].push_back("Umbrella");
  write_file_atomic(dir / "eleven.json", meta.dump());
  expect_bad_input("explain" + model + input + " --metadata " + q(dir / "eleven.json") + tail, out, "11 labels");
  expect_bad_input("explain" + model + input + " --method integrated-gradients --baseline zero" + tail, out, "ambiguous");
  expect_bad_input("evaluate" + model + " --data " + q(test::first_sample()) + " --canvas zero" + tail, out, "ambiguous");
  write_file_atomic(dir / "bare.json", "{}");
  write_npy(dir / "flat.npy", torch::zeros({2, 5}));
  expect_bad_input("explain" + model + " --metadata " + q(dir / "bare.json") + " -i " + q(dir / "flat.npy") + tail, out,
                   "input of shape [2,5]");
  // A method that cannot run on the model is found before any other computes: nothing is written.
  expect_bad_input("explain" + model + input + " --method saliency,deeplift --option baseline=" + q(dir / "flat.npy") + tail,
                   out, "[2,5]");
  expect_bad_input("explain" + model + input + " --resize sideways" + tail, out, "sideways");
}

TEST(Cli, EdgesThatNowWork) {
  test::TempDir dir;
  const std::string model = " --model " + q(test::demo_model());
  const std::string input = " --input " + q(test::first_sample());
  // A number as a baseline (as Captum users write it) is constant:V.
  test::RunResult r = test::run_cli("explain" + model + input + " --method integrated-gradients --baseline 0 --out " + q(dir / "num"));
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(read_file(dir / "num/7-sneaker/explanation.json"));
  EXPECT_EQ(j["explained"][0]["methods"]["integrated-gradients"]["params"]["baseline"], "constant:0");
  // Integer label files group features.
  torch::Tensor labels = (torch::arange(28 * 28, torch::kLong) / 98).view({28, 28});
  {
    std::string bytes = encode_npy(torch::zeros({28, 28}));
    bytes.replace(bytes.find("<f4"), 3, "<i8");
    bytes.resize(bytes.size() - 28 * 28 * 4);
    bytes.append(static_cast<const char*>(labels.data_ptr()), 28 * 28 * 8);
    write_file_atomic(dir / "labels.npy", bytes);
  }
  r = test::run_cli("explain" + model + input + " --method feature-ablation --features " + q(dir / "labels.npy") + " --out " +
                    q(dir / "groups"));
  ASSERT_EQ(r.code, 0) << r.err;
  torch::Tensor map = read_npy(dir / "groups/7-sneaker/feature-ablation.npy")[0];
  for (int64_t g = 0; g < 8; ++g) {  // one value per group
    torch::Tensor in = map.flatten().index({labels.flatten() == g});
    EXPECT_EQ((in - in[0]).abs().max().item<double>(), 0.0) << g;
  }
  // Re-running into the same folder leaves only what the new explanation.json lists.
  r = test::run_cli("explain" + model + input + " --method saliency,smoothgrad --samples 4 --out " + q(dir / "again"));
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("explain" + model + input + " --method saliency --out " + q(dir / "again"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir.path / "again/7-sneaker/saliency.npy"));
  EXPECT_FALSE(fs::exists(dir.path / "again/7-sneaker/smoothgrad.npy"));
  EXPECT_FALSE(fs::exists(dir.path / "again/7-sneaker/smoothgrad.png"));
  // A folder is an input, as evaluate takes it.
  r = test::run_cli("explain" + model + " -i " + q(test::source_dir() + "/models/samples") + " --method saliency --out " +
                    q(dir / "folder"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir.path / "folder/0-t-shirt-top/saliency.npy"));
  EXPECT_TRUE(fs::exists(dir.path / "folder/9-ankle-boot/saliency.npy"));
  // Larger images: --resize crop in explain, --resize in evaluate.
  cv::Mat big(40, 56, CV_8UC1, cv::Scalar(0));
  big(cv::Rect(20, 12, 16, 16)).setTo(255);
  fs::create_directories(dir.path / "big");
  cv::imwrite(dir / "big/a.png", big);
  r = test::run_cli("explain" + model + " -i " + q(dir / "big/a.png") + " --resize crop --method saliency --out " + q(dir / "crop"));
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("evaluate" + model + " --data " + q(dir / "big") + " --resize --metrics sparseness --methods saliency --out " +
                    q(dir / "eval"));
  ASSERT_EQ(r.code, 0) << r.err;
  // info without metadata still says what it can.
  fs::copy_file(test::demo_model(), dir.path / "bare.pt");
  r = test::run_cli("info --json --model " + q(dir / "bare.pt"));
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["parameters"].get<int64_t>(), 1000);
  EXPECT_TRUE(j["output_shape"].is_null());
}

// One method failing at run time does not discard the others' work; the run still fails.
TEST(Cli, AFailingMethodKeepsTheOthersFilesAndExitsNonZero) {
  test::TempDir dir;
  torch::jit::Module m("SqrtModel");  // d sqrt|x| / dx is infinite at 0: the gradient map is not finite
  m.define(R"(
    def forward(self, x):
        return torch.sqrt(torch.abs(x)).sum(1, keepdim=True)
  )");
  m.save(dir / "sqrt.pt");
  write_npy(dir / "rows.npy", torch::tensor({{1.0f, 0.0f, 4.0f}}));
  test::RunResult r = test::run_cli("explain -m " + q(dir / "sqrt.pt") + " -i " + q(dir / "rows.npy") +
                                    " --method occlusion,saliency --out " + q(dir / "out"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("saliency: the map has"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir.path / "out/rows_0/occlusion.npy"));
  EXPECT_FALSE(fs::exists(dir.path / "out/rows_0/saliency.npy"));
  auto j = nlohmann::json::parse(read_file(dir / "out/rows_0/explanation.json"));
  EXPECT_TRUE(j["failed"].contains("saliency")) << j.dump();
}
