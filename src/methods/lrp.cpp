#include "salient/methods/lrp.hpp"

#include <map>

#include <torch/csrc/jit/ir/ir.h>

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/lrp_rules.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace jit = torch::jit;

namespace {

constexpr double kNormStabiliser = 1e-6;  // epsilon of pooling, additions and other affine ops (Zennit's Norm)

// A number, numbers as a list or as comma-separated text (one per channel); "" or [] is the default.
std::vector<double> parse_bounds(const nlohmann::json& v, const std::string& name) {
  const std::string what = "lrp: option '" + name + "' must be a number or a comma-separated list of numbers (one per channel)";
  if (v.is_number()) return {v.get<double>()};
  std::vector<double> out;
  if (v.is_array()) {
    for (const auto& e : v) {
      if (!e.is_number()) throw Error(what + "; got " + v.dump());
      out.push_back(e.get<double>());
    }
    return out;
  }
  if (!v.is_string()) throw Error(what);
  for (const auto& item : split_list(v.get<std::string>())) {
    double x = 0;
    if (!parse_number(item, x)) throw Error(what + "; got '" + v.get<std::string>() + "'");
    out.push_back(x);
  }
  return out;
}

}  // namespace

const std::vector<std::string>& Lrp::composites() {
  static const std::vector<std::string> c = [] {
    std::vector<std::string> out;
    for (const auto& k : lrp::composites()) out.push_back(k.name);
    return out;
  }();
  return c;
}

const std::vector<std::string>& Lrp::rules() {
  static const std::vector<std::string> r = [] {
    std::vector<std::string> out;
    for (const auto& k : lrp::rules()) out.push_back(k.name);
    return out;
  }();
  return r;
}

const OptionTable<LrpOptions>& Lrp::options_table() {
  using O = LrpOptions;
  static const auto t = [] {
    OptionTable<O> t;
    t.choice("composite", &O::composite, composites(),
             "rules by layer: epsilon (every layer; Captum's default), epsilon-plus (z+ convolutions), -flat (flat first "
             "layer), epsilon-gamma-box (z^B first, gamma convolutions), epsilon-alpha2-beta1[-flat]; dense layers epsilon")
        .field("rule", "choice", "one rule for every convolution and linear layer (overrides composite; \"\": none)",
               [](const nlohmann::json& v, const OptionContext& c, O& o) {
                 o.rule = v == "" ? "" : OptionReader(nlohmann::json{{"rule", v}}, c.method).get_choice("rule", "", rules());
               },
               [](const O& o) { return nlohmann::json(o.rule); }, nullptr, rules())
        .real("epsilon", &O::epsilon, 0.0, "the epsilon rule's stabiliser")
        .real("gamma", &O::gamma, 0.0, "the gamma rule's boost of positive weights")
        .real("alpha", &O::alpha, 0.0, "rule alpha-beta: weight of positive contributions (alpha - beta = 1)")
        .real("beta", &O::beta, 0.0, "rule alpha-beta: weight of negative contributions");
    auto bounds = [&t](const std::string& name, std::vector<double> O::*member, const std::string& help) {
      t.field(name, "string", help,
              [name, member](const nlohmann::json& v, const OptionContext&, O& o) { o.*member = parse_bounds(v, name); },
              [member](const O& o) { return nlohmann::json(o.*member); }, "");
    };
    bounds("low", &O::low, "z^B lowest input value, one or one per channel (default: the metadata's value_range after normalisation, else each input's minimum)");
    bounds("high", &O::high, "z^B highest input value, one or one per channel (default: the metadata's value_range after normalisation, else each input's maximum)");
    t.flag("canonize", &O::canonize, "fold batch norm into the convolution or linear layer before it")
        .flag("layers", &O::layers, "report relevance in and out of every layer in the diagnostics (costs ~15 %)")
        .integer("batch-size", &O::batch, 1, "inputs per forward/backward pass")
        .finally([](O& o, const OptionContext& c) {
          if (std::abs(o.alpha - o.beta - 1.0) > 1e-9)
            throw Error("lrp: alpha - beta must be 1 (relevance is conserved only then); got alpha=" + std::to_string(o.alpha) +
                        ", beta=" + std::to_string(o.beta));
          // Default bounds: the model's pixel range after its normalisation, per channel, when the
          // metadata states it; else each input's own min and max (never a [0, 1] default
          // standardised data disobeys).
          const ModelMetadata& meta = c.meta;
          auto from_meta = [&](double v) {
            std::vector<double> out;
            if (meta.mean.empty()) return std::vector<double>{v};
            for (size_t k = 0; k < meta.mean.size(); ++k)
              out.push_back((v - meta.mean[k]) / (k < meta.std.size() && meta.std[k] != 0 ? meta.std[k] : 1.0));
            return out;
          };
          if (meta.range_stated && o.low.empty()) o.low = from_meta(meta.range_lo);
          if (meta.range_stated && o.high.empty()) o.high = from_meta(meta.range_hi);
          if (o.low.empty() != o.high.empty()) throw Error("lrp: give both low and high (or neither)");
          if (o.low.size() == o.high.size())
            for (size_t k = 0; k < o.low.size(); ++k)
              if (o.low[k] > o.high[k]) throw Error("lrp: z^B bound low > high in channel " + std::to_string(k));
        });
    return t;
  }();
  return t;
}

const MethodInfo& Lrp::info() const {
  static const MethodInfo i = [] {
    MethodInfo m;
    m.name = "lrp";
    m.additive = true;
    m.title = "Layer-wise Relevance Propagation";
    m.family = Family::ModifiedBackprop;
    m.specificity = Specificity::ModelSpecific;
    m.paper = "Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance "
              "Propagation; Montavon et al. 2019, Layer-Wise Relevance Propagation: An Overview";
    m.summary = "the output's relevance redistributed layer by layer to the input by per-layer rules; sums to f(x)";
    m.options = options_table().specs();
    return m;
  }();
  return i;
}

LrpOptions Lrp::parse(const nlohmann::json& options, const ModelMetadata& meta) {
  return options_table().parse(options, {"lrp", meta});
}

nlohmann::json Lrp::params() const {
  nlohmann::json p = options_table().params(options_);
  p["bounds"] = options_.low.empty() ? "each input's min and max" : "per channel";
  return p;
}

BackpropGraph& Lrp::graph_for(Model& model) {
  return cache_.get(model, [this](BackpropGraph& g) {
    head_ = g.strip_output_head();
    if (const PathNode* u = g.first_unsupported())
      throw Error("lrp has no rule for " + u->op + (u->module.empty() ? "" : " (in " + u->module + ")") +
                  "; it covers convolutions, linear layers, batch norm, pooling, additions, scaling by constants, "
                  "activations and reshapes");
    std::set<jit::Node*> folded;
    for (const PathNode& p : g.path()) {
      jit::Node* n = p.node;
      if (folded.count(n)) continue;
      switch (p.kind) {
        case OpKind::Convolution:
        case OpKind::Linear: {
          // The rule (data: lrp_rules.hpp): the one given, else the composite's for this layer, whose
          // fixed parameters (alpha 2, beta 1) win over the options.
          const lrp::Composite& composite = lrp::composite(options_.composite);
          const lrp::Rule& rule = lrp::rule(options_.rule.empty() ? lrp::rule_for(composite, {p.kind == OpKind::Convolution, p.first})
                                                                 : options_.rule);
          lrp::Params params{{"epsilon", options_.epsilon}, {"gamma", options_.gamma}, {"alpha", options_.alpha}, {"beta", options_.beta}};
          if (options_.rule.empty())
            for (const auto& [k, v] : composite.fixed) params[k] = v;
          jit::Node* last = n;
          jit::Value* none = g.constant(c10::IValue());
          std::vector<jit::Value*> bn = {none, none, none, none, g.constant(0.0)};
          if (options_.canonize && n->output()->uses().size() == 1) {
            jit::Node* user = n->output()->uses()[0].user;
            if (user->kind() == c10::aten::batch_norm && user->input(0) == n->output()) {
              bn = {user->input(1), user->input(2), user->input(3), user->input(4), user->input(7)};
              folded.insert(user);
              last = user;
            }
          }
          const bool conv = p.kind == OpKind::Convolution;
          jit::Value* empty = g.constant(std::vector<int64_t>{});
          jit::Value* x = n->input(0);
          jit::Value* y = last->output();
          std::vector<jit::Value*> args = {x, y, n->input(1), n->input(2), g.constant(conv)};
          if (conv) {
            const bool underscore = p.op == "aten::_convolution";
            args.insert(args.end(), {n->input(3), n->input(4), n->input(5), n->input(underscore ? 8 : 6)});
          } else {
            args.insert(args.end(), {empty, empty, empty, g.constant(static_cast<int64_t>(1))});
          }
          args.insert(args.end(), bn.begin(), bn.end());
          args.push_back(g.constant(register_lrp_layer(rule, params, options_.low, options_.high, p.site)));
          g.detach_input(n, 0);
          g.wrap(last, y, "salient::lrp_layer", args);
          break;
        }
        case OpKind::Gate:  // the gate held constant: the product is linear in the signal
          g.detach_input(n, static_cast<size_t>(p.gate));
          [[fallthrough]];
        case OpKind::BatchNorm:
        case OpKind::Affine: {
          // Epsilon rule through the op's own Jacobian: R_x = x * J^T (R / stab(y)).
          jit::Value* site = g.constant(p.site);
          for (size_t i = 0; i < n->inputs().size(); ++i) {
            jit::Value* v = n->input(i);
            if (!g.on_path(v) || v->type()->kind() != c10::TypeKind::TensorType) continue;
            jit::WithInsertPoint guard(n);
            n->replaceInput(i, g.graph().insert(c10::Symbol::fromQualString("salient::lrp_in"), {v, site}));
          }
          g.wrap(n, n->output(), "salient::lrp_out", {n->output(), g.constant(kNormStabiliser), site});
          break;
        }
        case OpKind::Activation: {
          jit::Value* x = n->input(0);
          jit::Value* y = n->output();
          g.detach_input(n, 0);
          g.wrap(n, y, "salient::relu_rule", {x, y, g.constant(static_cast<int64_t>(ReluMode::Pass)), g.constant(p.site)});
          break;
        }
        case OpKind::MaxPool:  // winner takes all: the gradient
        case OpKind::Routing:
        case OpKind::Unsupported: break;
      }
    }
  });
}

torch::Tensor Lrp::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets, Attribution& out) {
  BackpropGraph& graph = graph_for(model);
  std::vector<torch::Tensor> maps, scores;
  std::vector<std::string> order;
  std::map<std::string, SiteRecord> layers;
  for_chunks(inputs.size(0), options_.batch, [&](int64_t b, int64_t e) {
    std::optional<SiteRecorder> recorder;
    if (options_.layers) recorder.emplace();
    scores.emplace_back();
    maps.push_back(modified_gradient(graph, inputs.slice(0, b, e), targets.slice(0, b, e), {}, /*times_output=*/true,
                                     &scores.back()).cpu());
    if (recorder)
      for (auto& r : recorder->records()) {
        auto [it, fresh] = layers.emplace(r.site, r);
        if (fresh) {
          order.push_back(r.site);
          continue;
        }
        auto append = [](std::vector<double>& into, const std::vector<double>& v) { into.insert(into.end(), v.begin(), v.end()); };
        append(it->second.in, r.in);
        append(it->second.out, r.out);
        append(it->second.min_in, r.min_in);
        append(it->second.input_min, r.input_min);
      }
    report_progress(static_cast<double>(e) / inputs.size(0));
  });
  torch::Tensor map = torch::cat(maps);
  out.scores = torch::cat(scores);
  report_conservation("lrp", map, out.scores, head_.empty() ? "f(x)" : "logit", out.diagnostics);
  // Relevance starts at the logit, not at a probability (whose sign would invert the map's).
  out.diagnostics["relevance_from"] = head_.empty() ? "the explained output" : "the logit before the final " + head_;
  if (options_.layers) {
    // Per input: every layer the relevance went through, output side first.
    nlohmann::json per_input = nlohmann::json::array();
    for (int64_t i = 0; i < map.size(0); ++i) {
      nlohmann::json list = nlohmann::json::array();
      auto at = [i](const std::vector<double>& v) { return static_cast<size_t>(i) < v.size() ? nlohmann::json(v[i]) : nlohmann::json(); };
      for (const auto& site : order) {
        const SiteRecord& r = layers.at(site);
        list.push_back({{"site", r.site}, {"rule", r.rule}, {"relevance_in", at(r.in)}, {"relevance_out", at(r.out)},
                        {"min_in", at(r.min_in)}, {"input_min", at(r.input_min)}});
      }
      per_input.push_back(list);
    }
    out.diagnostics["layers"] = per_input;
  }
  return map;
}

void register_lrp(Registry& r) {
  r.add(Lrp().info(), [](const nlohmann::json& o, const ModelMetadata& meta) {
    return std::make_unique<Lrp>(Lrp::parse(o, meta));
  });
}

}  // namespace salient
