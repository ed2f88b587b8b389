// Targets, the registry and option checking.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "helpers.hpp"

#include "salient/error.hpp"
#include "salient/methods/smoothgrad.hpp"
#include "salient/option_table.hpp"
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

namespace {
enum class Shade { Light, Dark };
struct Toy {
  int64_t count = 3;
  double rate = 0.5;
  bool on = true;
  Shade shade = Shade::Dark;
  std::string mode = "a";
  uint64_t seed = 0;
};
const OptionTable<Toy>& toy_table() {
  static const auto t = OptionTable<Toy>()
                            .integer("count", &Toy::count, 1, "how many")
                            .real("rate", &Toy::rate, 0.0, "how fast", 1.0, /*min_open=*/true)
                            .flag("on", &Toy::on, "on or off")
                            .choice("shade", &Toy::shade, {"light", "dark"}, "which shade")
                            .choice("mode", &Toy::mode, {"a", "b"}, "which mode")
                            .seed("seed", &Toy::seed, "seed")
                            .finally([](Toy& o, const OptionContext& c) {
                              if (o.mode == "b" && o.count < 2) throw Error(c.method + ": mode b needs count >= 2");
                            });
  return t;
}
}  // namespace

TEST(OptionTable, ParsesValidatesReportsAndDescribesFromOneTable) {
  const ModelMetadata meta;
  const auto& t = toy_table();
  // Specs: names in order, types, defaults from the struct, choices.
  std::vector<std::string> names;
  for (const auto& s : t.specs()) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"count", "rate", "on", "shade", "mode", "seed"}));
  EXPECT_EQ(t.specs()[0].default_value, 3);
  EXPECT_EQ(t.specs()[3].default_value, "dark");
  EXPECT_EQ(t.specs()[3].choices, (std::vector<std::string>{"light", "dark"}));
  EXPECT_EQ(t.specs()[3].type, "choice");
  // Parse: given keys set their members, others keep the defaults, keys of other methods are ignored.
  Toy o = t.parse({{"count", 9}, {"shade", "light"}, {"seed", 4}, {"other.key", 1}, {"steps", 5}}, {"toy", meta});
  EXPECT_EQ(o.count, 9);
  EXPECT_EQ(o.shade, Shade::Light);
  EXPECT_EQ(o.seed, 4u);
  EXPECT_DOUBLE_EQ(o.rate, 0.5);
  // Params report every row, and reading them back gives the same options.
  nlohmann::json p = t.params(o);
  EXPECT_EQ(p, (nlohmann::json{{"count", 9}, {"rate", 0.5}, {"on", true}, {"shade", "light"}, {"mode", "a"}, {"seed", 4}}));
  EXPECT_EQ(t.params(t.parse(p, {"toy", meta})), p);
  // Validation, with the method's name in the message; the finally rule sees the whole struct.
  auto message = [&](const nlohmann::json& j) {
    try {
      t.parse(j, {"toy", meta});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"count", 0}}).find("toy: option 'count' must be >= 1"), std::string::npos) << message({{"count", 0}});
  EXPECT_NE(message({{"rate", 0.0}}).find("'rate' must be in (0, 1]"), std::string::npos) << message({{"rate", 0.0}});
  EXPECT_NE(message({{"rate", 1.5}}).find("'rate'"), std::string::npos);
  EXPECT_EQ(t.parse({{"rate", 1.0}}, {"toy", meta}).rate, 1.0);
  EXPECT_NE(message({{"on", "yes"}}).find("'on'"), std::string::npos);
  EXPECT_NE(message({{"shade", "grey"}}).find("unknown shade 'grey'"), std::string::npos);
  EXPECT_NE(message({{"mode", "b"}, {"count", 1}}).find("toy: mode b needs count >= 2"), std::string::npos);
  EXPECT_EQ(message({{"mode", "b"}, {"count", 2}}), "no error");
}

// Every registered method: params() reports each of its options, its advertised default is its
// default (given explicitly, it changes nothing), and params read back give the same params.
TEST(Registry, EveryMethodsParamsNameEveryOptionAndAdvertisedDefaultsAreTheDefaults) {
  const auto& reg = Registry::builtin();
  for (const auto& name : reg.names()) {
    SCOPED_TRACE(name);
    const MethodInfo& info = reg.info(name);
    const nlohmann::json p = reg.create(name)->params();
    nlohmann::json own = nlohmann::json::object();
    for (const auto& o : info.options) {
      SCOPED_TRACE(o.name);
      ASSERT_TRUE(p.contains(o.name)) << p.dump();
      own[o.name] = p[o.name];
      EXPECT_EQ(reg.create(name, {{o.name, o.default_value}})->params(), p);
    }
    EXPECT_EQ(reg.create(name, own)->params(), p) << own.dump();
  }
}

// The bounds `salient methods --json` advertises (the viewer validates with them) are the parser's:
// each bound accepted (a cross-option rule, LRP's alpha - beta = 1, may still refuse it, but not by
// the option's range), one step past it refused by name.
TEST(Registry, EveryAdvertisedBoundIsTheParsersBound) {
  const auto& reg = Registry::builtin();
  auto range_error = [&](const std::string& method, const std::string& option, const nlohmann::json& v) {
    try {
      reg.create(method, {{option, v}});
      return std::string();
    } catch (const Error& e) {
      const std::string what = e.what();
      return what.find("option '" + option + "'") != std::string::npos ? what : std::string();
    }
  };
  int checked = 0;
  for (const auto& name : reg.names())
    for (const auto& o : reg.info(name).options) {
      SCOPED_TRACE(name + "." + o.name);
      const bool whole = o.type == "int";
      auto value = [&](double v) { return whole ? nlohmann::json(static_cast<int64_t>(v)) : nlohmann::json(v); };
      const double step = whole ? 1 : 1e-6;
      if (!o.min.is_null()) {
        const double lo = o.min.get<double>();
        if (!o.min_open) EXPECT_EQ(range_error(name, o.name, value(lo)), "");
        EXPECT_NE(range_error(name, o.name, value(o.min_open ? lo : lo - step)), "");
        ++checked;
      }
      if (!o.max.is_null()) {
        const double hi = o.max.get<double>();
        EXPECT_EQ(range_error(name, o.name, value(hi)), "");
        EXPECT_NE(range_error(name, o.name, value(hi + step)), "");
        ++checked;
      }
    }
  EXPECT_GT(checked, 50);
}

TEST(Registry, EveryMethodHasARowInTheReadmesMethodsTable) {
  std::ifstream in(test::source_dir() + "/README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  for (const auto& name : Registry::builtin().names())
    EXPECT_NE(readme.find("| `" + name + "` |"), std::string::npos) << name << " is not in the README's methods table";
}
