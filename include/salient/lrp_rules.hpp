#pragma once
// LRP rules as data (Zennit's design: a rule is how it modifies inputs, parameters and outputs; a
// composite maps layers to rules). A rule is a list of passes; a pass is a sum of terms
// z = sum_t sign_t * layer(input_t; weight_t, bias_t), and passes down
// R_in = coefficient * sum_t sign_t * input_t * J_t^T (R_mask / stab(z)).
// Adding a rule is one entry in rules(); adding a composite is one entry in composites().
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <torch/script.h>

namespace salient::lrp {

using Params = std::map<std::string, double>;  // a rule's parameters by name: epsilon, gamma, alpha, beta

// What a term multiplies: the input, its positive or negative part, the z^B bounds, or ones
// (flat and w^2 spread relevance as if every input were 1). XPos is x itself and XNeg's terms are
// dropped when the input has no negative value.
enum class Input { X, XPos, XNeg, Low, High, Ones };
// Which outputs' relevance a pass takes (the generalised gamma rule splits by the output's sign).
enum class Mask { All, PositiveOutput, NegativeOutput };

// A weight (and bias) modifier: the layer's weight -> the term's (w, w+, w + gamma w+, w^2, ...).
using Modifier = std::function<torch::Tensor(const torch::Tensor& w, const Params& p)>;

struct Term {
  Input input = Input::X;
  Modifier weight;
  bool bias = false;  // the bias, through the same modifier, joins z
  double sign = 1.0;
};

struct Pass {
  std::string coefficient;  // a parameter's name ("alpha"), or empty for 1
  double sign = 1.0;        // -1: the pass's relevance is subtracted (alpha-beta's beta pass)
  Mask mask = Mask::All;
  std::vector<Term> terms;
};

struct Rule {
  std::string name;
  std::vector<std::string> params;  // the parameters it reads
  std::string stabiliser;           // a parameter's name, or empty for 1e-6 (as Zennit)
  bool times_input = true;          // false: relevance spread without multiplying by the input
  // z is the layer's own output (y = w x + b, batch norm folded): one vector-Jacobian product,
  // no weight copies. Only for rules whose single term is the unmodified layer (epsilon).
  bool output_is_z = false;
  std::vector<Pass> passes;
};

const std::vector<Rule>& rules();
const Rule& rule(const std::string& name);  // throws salient::Error naming the known rules

// A composite: ordered (layer predicate -> rule) pairs, the first that holds wins; and parameters it
// fixes (epsilon-alpha2-beta1: alpha 2, beta 1).
struct LayerInfo {
  bool convolution = false;
  bool first = false;  // the first layer on the input's path
};
struct Composite {
  std::string name;
  std::vector<std::pair<std::function<bool(const LayerInfo&)>, std::string>> map;
  Params fixed;
};
const std::vector<Composite>& composites();
const Composite& composite(const std::string& name);  // throws salient::Error naming the known ones
const std::string& rule_for(const Composite& c, const LayerInfo& layer);

}  // namespace salient::lrp
