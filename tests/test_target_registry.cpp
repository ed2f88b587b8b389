// Targets, the registry and option checking.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "helpers.hpp"

#include "salient/error.hpp"
#include "salient/methods/smoothgrad.hpp"
#include "salient/registry.hpp"
#include "salient/target.hpp"

using namespace salient;

namespace {
ModelMetadata labelled() {
  ModelMetadata m;
  m.labels = {"cat", "dog", "bird"};
  return m;
}
}  // namespace

TEST(Target, ParsesTopTopKIndexAndLabel) {
  torch::Tensor out = torch::tensor({{0.1, 2.0, 0.5}, {3.0, -1.0, 2.5}});
  EXPECT_EQ(Target::parse("top", labelled()).resolve(out), (std::vector<std::vector<int64_t>>{{1}, {0}}));
  EXPECT_EQ(Target::parse("top-2", labelled()).resolve(out), (std::vector<std::vector<int64_t>>{{1, 2}, {0, 2}}));
  EXPECT_EQ(Target::parse("2", labelled()).resolve(out), (std::vector<std::vector<int64_t>>{{2}, {2}}));
  EXPECT_EQ(Target::parse("dog", labelled()).resolve(out), (std::vector<std::vector<int64_t>>{{1}, {1}}));
  EXPECT_EQ(Target::parse("top-2", labelled()).count(), 2);
}

TEST(Target, RejectsOutOfRangeAndUnknownTargets) {
  torch::Tensor out = torch::zeros({1, 3});
  EXPECT_THROW(Target::parse("3", labelled()).resolve(out), Error);
  EXPECT_THROW(Target::parse("top-4", labelled()).resolve(out), Error);
  EXPECT_THROW(Target::parse("top-0", labelled()), Error);
  EXPECT_THROW(Target::parse("-1", labelled()), Error);
  try {
    Target::parse("horse", labelled());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cat, dog, bird"), std::string::npos) << e.what();
  }
}

TEST(Registry, ListsBuiltinsWithTaxonomyAndRejectsUnknownNames) {
  const Registry& r = Registry::builtin();
  ASSERT_TRUE(r.has("saliency"));
  ASSERT_TRUE(r.has("smoothgrad"));
  EXPECT_EQ(r.info("smoothgrad").family, Family::Gradient);
  EXPECT_EQ(r.info("saliency").access, Access::WhiteBox);
  try {
    r.create("gradcam");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("saliency"), std::string::npos) << e.what();
  }
}

TEST(Registry, OptionDefaultsAreTheTypedDefaultsAndBadValuesAreRejected) {
  const MethodInfo& info = Registry::builtin().info("smoothgrad");
  SmoothGradOptions d;
  for (const auto& o : info.options) {
    if (o.name == "samples") EXPECT_EQ(o.default_value.get<int64_t>(), d.samples);
    if (o.name == "sigma") EXPECT_DOUBLE_EQ(o.default_value.get<double>(), d.sigma);
  }
  auto params = Registry::builtin().create("smoothgrad", {{"samples", 7}, {"sigma", 0.3}})->params();
  EXPECT_EQ(params["samples"], 7);
  EXPECT_DOUBLE_EQ(params["sigma"].get<double>(), 0.3);
  EXPECT_THROW(Registry::builtin().create("smoothgrad", {{"samples", 0}}), Error);
  EXPECT_THROW(Registry::builtin().create("smoothgrad", {{"sigma", -0.1}}), Error);
  EXPECT_THROW(Registry::builtin().create("smoothgrad", {{"samples", "many"}}), Error);
  EXPECT_THROW(Registry::builtin().create("smoothgrad", {{"noise", "pink"}}), Error);
  EXPECT_THROW(Registry::builtin().create("saliency", {{"abs", 3}}), Error);
}

TEST(Registry, EveryMethodHasARowInTheReadmesMethodsTable) {
  std::ifstream in(test::source_dir() + "/README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  for (const auto& name : Registry::builtin().names())
    EXPECT_NE(readme.find("| `" + name + "` |"), std::string::npos) << name << " is not in the README's methods table";
}
