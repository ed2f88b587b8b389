#include "salient/lrp_rules.hpp"

#include "salient/error.hpp"

namespace salient::lrp {

namespace {

torch::Tensor plus(const torch::Tensor& t) { return t.clamp_min(0); }
torch::Tensor minus(const torch::Tensor& t) { return t.clamp_max(0); }

const Modifier kSame = [](const torch::Tensor& w, const Params&) { return w; };
const Modifier kPos = [](const torch::Tensor& w, const Params&) { return plus(w); };
const Modifier kNeg = [](const torch::Tensor& w, const Params&) { return minus(w); };
const Modifier kGammaUp = [](const torch::Tensor& w, const Params& p) { return w + p.at("gamma") * plus(w); };
const Modifier kGammaDown = [](const torch::Tensor& w, const Params& p) { return w + p.at("gamma") * minus(w); };
const Modifier kOnes = [](const torch::Tensor& w, const Params&) { return torch::ones_like(w); };
const Modifier kSquare = [](const torch::Tensor& w, const Params&) { return w * w; };

// The entry of `table` called `name`, else an error listing the names.
template <class T>
const T& named(const std::vector<T>& table, const std::string& name, const std::string& what) {
  std::string known;
  for (const auto& t : table) {
    if (t.name == name) return t;
    known += (known.empty() ? "" : ", ") + t.name;
  }
  throw Error("lrp: unknown " + what + " '" + name + "' (expected one of " + known + ")");
}

// Positive contributions: x+ through w+ (with b+), x- through w-; negative ones the other way.
std::vector<Term> positive(const Modifier& up, const Modifier& down) {
  return {{Input::XPos, up, true, 1.0}, {Input::XNeg, down, false, 1.0}};
}

}  // namespace

const std::vector<Rule>& rules() {
  static const std::vector<Rule> r = {
      // epsilon: z = w x + b, stabilised by epsilon.
      {"epsilon", {"epsilon"}, "epsilon", true, true, {{"", 1.0, Mask::All, {{Input::X, kSame, true, 1.0}}}}},
      // generalised gamma (Andeol et al. 2021, as Zennit): positive outputs favour positive
      // contributions (w + gamma w+), negative outputs negative ones (w + gamma w-).
      {"gamma",
       {"gamma"},
       "",
       true,
       false,
       {{"", 1.0, Mask::PositiveOutput, positive(kGammaUp, kGammaDown)},
        {"", 1.0, Mask::NegativeOutput, positive(kGammaDown, kGammaUp)}}},
      // alpha-beta: alpha times the positive contributions' share minus beta times the negative.
      {"alpha-beta",
       {"alpha", "beta"},
       "",
       true,
       false,
       {{"alpha", 1.0, Mask::All, positive(kPos, kNeg)}, {"beta", -1.0, Mask::All, positive(kNeg, kPos)}}},
      // z+: alpha-beta with alpha 1, beta 0.
      {"zplus", {}, "", true, false, {{"", 1.0, Mask::All, positive(kPos, kNeg)}}},
      // z^B (bounded inputs): x w - low w+ - high w-; the biases cancel.
      {"zbox",
       {},
       "",
       true,
       false,
       {{"", 1.0, Mask::All, {{Input::X, kSame, false, 1.0}, {Input::Low, kPos, false, -1.0}, {Input::High, kNeg, false, -1.0}}}}},
      // flat and w^2: relevance spread as if inputs were 1, by weights 1 or w^2; no bias.
      {"flat", {}, "", false, false, {{"", 1.0, Mask::All, {{Input::Ones, kOnes, false, 1.0}}}}},
      {"wsquare", {}, "", false, false, {{"", 1.0, Mask::All, {{Input::Ones, kSquare, false, 1.0}}}}},
  };
  return r;
}

const Rule& rule(const std::string& name) { return named(rules(), name, "rule"); }

const std::vector<Composite>& composites() {
  const auto any = [](const LayerInfo&) { return true; };
  const auto conv = [](const LayerInfo& l) { return l.convolution; };
  const auto first = [](const LayerInfo& l) { return l.first; };
  static const std::vector<Composite> c = {
      {"epsilon", {{any, "epsilon"}}, {}},
      {"epsilon-plus", {{conv, "zplus"}, {any, "epsilon"}}, {}},
      {"epsilon-plus-flat", {{first, "flat"}, {conv, "zplus"}, {any, "epsilon"}}, {}},
      {"epsilon-gamma-box", {{first, "zbox"}, {conv, "gamma"}, {any, "epsilon"}}, {}},
      {"epsilon-alpha2-beta1", {{conv, "alpha-beta"}, {any, "epsilon"}}, {{"alpha", 2.0}, {"beta", 1.0}}},
      {"epsilon-alpha2-beta1-flat", {{first, "flat"}, {conv, "alpha-beta"}, {any, "epsilon"}}, {{"alpha", 2.0}, {"beta", 1.0}}},
  };
  return c;
}

const Composite& composite(const std::string& name) { return named(composites(), name, "composite"); }

const std::string& rule_for(const Composite& c, const LayerInfo& layer) {
  for (const auto& [holds, rule] : c.map)
    if (holds(layer)) return rule;
  throw Error("lrp: composite " + c.name + " gives no rule for a layer", ErrorKind::Internal);
}

}  // namespace salient::lrp
