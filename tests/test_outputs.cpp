// The shapes of forward() users bring: several outputs (a (features, logits) tuple, a dict),
// arguments with defaults, and the torch.save checkpoint newcomers hand in for TorchScript.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>


#include "helpers.hpp"
#include "salient/error.hpp"
#include "salient/npy.hpp"

using namespace salient;

namespace {

// (features [N, 8], logits [N, 3]) from x [N, 4]: the logits are a linear map of the features.
torch::jit::Module two_outputs(bool dict) {
  torch::manual_seed(11);
  torch::jit::Module m("TwoOutputs");
  m.register_parameter("a", torch::randn({8, 4}), false);
  m.register_parameter("b", torch::randn({3, 8}), false);
  m.define(dict ? R"(
    def forward(self, x):
        h = torch.relu(torch.matmul(x, self.a.t()))
        return {"features": h, "logits": torch.matmul(h, self.b.t())}
  )"
                : R"(
    def forward(self, x):
        h = torch.relu(torch.matmul(x, self.a.t()))
        return (h, torch.matmul(h, self.b.t()))
  )");
  return m;
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// With several outputs and no choice, the model is refused with each output and its shape (it used
// to be explained on the first, the features, without a word); --output, the metadata's
// "explained_output" and labels given for one output each choose.
TEST(Outputs, SeveralOutputsAreAChoiceNeverTheFirstByDefault) {
  const torch::Tensor x = torch::randn({2, 4});
  for (bool dict : {false, true}) {
    Model model(two_outputs(dict));
    const std::string err = what_of([&] { model.forward(x); });
    const std::string first = dict ? "features" : "0", second = dict ? "logits" : "1";
    EXPECT_NE(err.find("returns 2 outputs (" + first + ": Tensor [2,8]; " + second + ": Tensor [2,3])"), std::string::npos) << err;
    EXPECT_NE(err.find("--output"), std::string::npos) << err;
    const torch::Tensor want = two_outputs(dict).forward({x}).toIValue().isTuple()
                                   ? two_outputs(dict).forward({x}).toTupleRef().elements()[1].toTensor()
                                   : two_outputs(dict).forward({x}).toGenericDict().at("logits").toTensor();
    ModelOptions by_flag;
    by_flag.output = second;
    EXPECT_TRUE(torch::allclose(Model(two_outputs(dict), by_flag).forward(x), want));
    ModelMetadata meta;
    meta.explained_output = second;
    EXPECT_TRUE(torch::allclose(Model(two_outputs(dict), ModelOptions{}, meta).forward(x), want));
    ModelMetadata labelled;
    labelled.output_labels[second] = {"a", "b", "c"};
    Model by_labels(two_outputs(dict), ModelOptions{}, labelled);
    EXPECT_TRUE(torch::allclose(by_labels.forward(x), want));
    EXPECT_EQ(by_labels.metadata().labels.size(), 3u);
    ModelOptions wrong;
    wrong.output = "nosuch";
    EXPECT_NE(what_of([&] { Model(two_outputs(dict), wrong).forward(x); }).find("not one of the model's outputs (" + first + ", " + second + ")"),
              std::string::npos);
  }
}

TEST(Outputs, InfoListsEveryOutputAndExplainRefusesWithoutAChoice) {
  test::TempDir dir;
  two_outputs(false).save(dir / "m.pt");
  const auto info = test::run_cli("info -m " + test::quoted(dir / "m.pt") + " --input-shape 4");
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_NE(info.out.find("output 0: Tensor [1,8]"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("output 1: Tensor [1,3]"), std::string::npos) << info.out;
  const auto chosen = test::run_cli("info -m " + test::quoted(dir / "m.pt") + " --input-shape 4 --output 1 --json");
  ASSERT_EQ(chosen.code, 0) << chosen.err;
  EXPECT_EQ(nlohmann::json::parse(chosen.out)["output_shape"], nlohmann::json({1, 3}));
  write_npy(dir / "x.npy", torch::randn({1, 4}));
  const auto r = test::run_cli("explain -m " + test::quoted(dir / "m.pt") + " -i " + test::quoted(dir / "x.npy") + " --out " + test::quoted(dir / "o"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("returns 2 outputs (0: Tensor"), std::string::npos) << r.err;
  EXPECT_EQ(test::count_files(dir / "o"), 0);
  const auto ok = test::run_cli("explain -m " + test::quoted(dir / "m.pt") + " -i " + test::quoted(dir / "x.npy") + " --output 1 --out " +
                                test::quoted(dir / "o"));
  EXPECT_EQ(ok.code, 0) << ok.err;
}

// forward(x, temperature: float = 1.0, mask: Optional[Tensor] = None): one input, the rest left to
// their defaults (they used to be counted as required inputs).
TEST(Outputs, ArgumentsWithDefaultsAreNotInputs) {
  torch::jit::Module m("Defaults");
  m.register_parameter("w", torch::randn({3, 4}), false);
  m.define(R"(
    def forward(self, x, temperature: float = 2.0, mask: Optional[Tensor] = None):
        y = torch.matmul(x, self.w.t()) / temperature
        if mask is not None:
            y = y * mask
        return y
  )");
  Model model(m);
  EXPECT_EQ(model.input_count(), 1u);
  const torch::Tensor x = torch::randn({2, 4});
  const torch::Tensor g = model.forward(x.clone().requires_grad_(true));
  EXPECT_TRUE(torch::allclose(g, torch::matmul(x, m.attr("w").toTensor().t()) / 2.0));
}

// torch.save writes a zip of pickles with no TorchScript code: named, with the export to use
// (tools/zoo_models.py saves a state_dict and a whole module as newcomers do).
TEST(Outputs, ATorchSaveCheckpointIsNamedWithTheFix) {
  for (const char* name : {"torch_save_state_dict.pt", "torch_save_module.pt"}) {
    const auto r = test::run_cli("info -m " + test::quoted(std::string(SALIENT_TESTDATA) + "/zoo/" + name));
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find("is a torch.save checkpoint (a pickled module or state_dict)"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("torch.jit.trace"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// forward(x: float [N, 5], ids: int64 [N, 3]): each input keeps its own type (the ids were cast to
// float with the packed inputs), and a failure names each input's shape, not the packed [N, 8].
TEST(Outputs, AnIntegerInputBesideAFloatOneKeepsItsType) {
  test::TempDir dir;
  torch::manual_seed(12);
  torch::jit::Module m("Mixed");
  m.register_parameter("w", torch::randn({2, 5}), false);
  m.register_parameter("e", torch::randn({10, 2}), false);
  m.define(R"(
    def forward(self, x, ids):
        return torch.matmul(x, self.w.t()) + torch.embedding(self.e, ids).sum(1)
  )");
  m.save(dir / "m.pt");
  const torch::Tensor x = torch::randn({2, 5});
  write_npy(dir / "x.npy", x);
  write_npy(dir / "ids.npy", torch::tensor({1, 2, 3, 4, 5, 6}, torch::kLong).view({2, 3}));
  const auto r = test::run_cli("explain -m " + test::quoted(dir / "m.pt") + " -i " + test::quoted(dir / "x.npy") + " -i " +
                               test::quoted(dir / "ids.npy") + " --method saliency --no-abs --target 1 --out " + test::quoted(dir / "o"));
  ASSERT_EQ(r.code, 0) << r.err;
  // The gradient with respect to x is w[1], for both rows.
  const torch::Tensor w = m.attr("w").toTensor();
  for (const char* item : {"x_0", "x_1"}) {
    const nlohmann::json j = nlohmann::json::parse(std::ifstream(dir / (std::string("o/") + item + "/explanation.json")));
    const std::string file = j["explained"][0]["methods"]["saliency"]["npy"]["x"];
    EXPECT_TRUE(torch::allclose(read_npy(dir / (std::string("o/") + item + "/" + file)), w[1], 1e-5, 1e-6)) << item;
  }
  write_npy(dir / "bad.npy", torch::tensor({1, 2, 30, 4, 5, 6}, torch::kLong).view({2, 3}));  // id 30: no such row
  const auto bad = test::run_cli("explain -m " + test::quoted(dir / "m.pt") + " -i " + test::quoted(dir / "x.npy") + " -i " +
                                 test::quoted(dir / "bad.npy") + " --method saliency --out " + test::quoted(dir / "p"));
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_NE(bad.err.find("inputs x [2,5] (Float), ids [2,3] (Long)"), std::string::npos) << bad.err;
}
