#pragma once
// The black-box (perturbation) methods: they only call the model forward, so they work on any
// model, TorchScript or ONNX. Each method file supplies its own typed options (a struct deriving
// from BlackBoxCommon, with its option table) and its rule (how it perturbs one input and turns
// the scores into a map); this file runs the rule over a batch and adds the shared options.
#include <functional>
#include <memory>
#include <type_traits>

#include "salient/method.hpp"
#include "salient/option_table.hpp"
#include "salient/perturb.hpp"
#include "salient/registry.hpp"

namespace salient {

// The options every black-box method has.
struct BlackBoxCommon {
  Baseline baseline;   // what removed features become (default zeros)
  int64_t batch = 32;  // perturbed inputs per forward pass
  uint64_t seed = 0;
};

// One input x (no batch dimension) and its baseline (or background set) -> the map of x's shape; may add per-input
// diagnostics (scalars) to `diag`.
struct BlackBoxCall {
  Model& model;
  const torch::Tensor& x;
  const torch::Tensor& baseline;                 // x's shape, or a background set [M, ...x]
  const torch::Tensor& weights;                  // a set's weights [M] (double; undefined for one baseline)
  int64_t target;
  int64_t batch;                                 // perturbed inputs per forward pass
  uint64_t seed;
  nlohmann::json& diag;                          // per-input scalars
  std::map<std::string, torch::Tensor>& extra;   // per-input extra maps (x's shape)
  std::function<void(double)> progress;          // fraction of this input's forward passes done
};

// The loop over a batch's inputs, whatever the method's options.
class BlackBox : public Method {
 public:
  explicit BlackBox(MethodInfo info) : info_(std::move(info)) {}
  const MethodInfo& info() const override { return info_; }
  void check(Model&, const torch::Tensor& example) override { common().baseline.make(example[0], common().seed); }

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;
  virtual const BlackBoxCommon& common() const = 0;
  virtual torch::Tensor explain_one(const BlackBoxCall& call) = 0;

 private:
  MethodInfo info_;
};

template <class O>
class TypedBlackBox final : public BlackBox {
 public:
  using Rule = std::function<torch::Tensor(const BlackBoxCall&, const O&)>;
  TypedBlackBox(MethodInfo info, std::shared_ptr<const OptionTable<O>> table, Rule rule, O options)
      : BlackBox(std::move(info)), table_(std::move(table)), rule_(std::move(rule)), options_(std::move(options)) {}
  nlohmann::json params() const override { return table_->params(options_); }

 protected:
  const BlackBoxCommon& common() const override { return options_; }
  torch::Tensor explain_one(const BlackBoxCall& call) override { return rule_(call, options_); }

 private:
  std::shared_ptr<const OptionTable<O>> table_;
  Rule rule_;
  O options_;
};

// The `features` row of the methods that perturb feature groups (a GroupSpec member).
template <class O>
OptionTable<O>& add_features_row(OptionTable<O>& t, GroupSpec O::*m) {
  return t.template parsed<GroupSpec>(
      "features", m, "string", "slic[:SIZE], grid[:K], elements, columns (tabular: a one-hot group as one; their default), tokens (text: their default), or an .npy label file",
      [](const std::string& s, const OptionContext&) { return GroupSpec::parse(s); },
      [](const GroupSpec& g) { return nlohmann::json(g.spec); })
      .field("spread", "choice",
             "how a group's value goes on its elements: whole (each carries it, Captum's convention; the group values "
             "sum to f(x) - f(baseline), see <method>.groups.npy) or split (divided over the group's elements: the map sums)",
             [m](const nlohmann::json& v, const OptionContext& c, O& o) {
               const std::string s = OptionReader(nlohmann::json{{"spread", v}}, c.method).get_choice("spread", "whole", {"whole", "split"});
               (o.*m).split = s == "split";
             },
             [m](const O& o) { return nlohmann::json((o.*m).split ? "split" : "whole"); }, "whole", {"whole", "split"})
      .finally([m](O& o, const OptionContext& c) {  // superpixels mean nothing on a row or a text: its columns or tokens are the features
        if (!c.meta.features.empty() && (o.*m).spec == "slic") (o.*m).spec = "columns";
        if (!c.meta.tokenizer.empty() && (o.*m).spec == "slic") (o.*m).spec = "tokens";
        const std::string& spec = (o.*m).spec;
        if (!c.meta.tokenizer.empty() && spec != "tokens" && spec != "elements" && !(o.*m).mask.defined())
          throw Error(c.method + ": features '" + spec + "' do not apply to a text model: tokens (its default), elements or an .npy label file");
      });
}

// Registers a black-box method: `table` holds its own options; baseline, batch-size and seed are
// added to it for every one. Access, family and gradients are set here.
template <class O>
void add_blackbox(Registry& reg, MethodInfo info, OptionTable<O> table, typename TypedBlackBox<O>::Rule rule) {
  static_assert(std::is_base_of_v<BlackBoxCommon, O>, "black-box options derive from BlackBoxCommon");
  table.baseline("baseline", &O::baseline, info.background)
      .integer("batch-size", &O::batch, 1, "perturbed inputs per forward pass")
      .seed("seed", &O::seed, "random seed");
  info.access = Access::BlackBox;
  info.needs_gradients = false;
  info.family = Family::Perturbation;
  info.options = table.specs();
  auto shared = std::make_shared<const OptionTable<O>>(std::move(table));
  reg.add(info, [info, shared, rule](const nlohmann::json& o, const ModelMetadata& meta) {
    return std::make_unique<TypedBlackBox<O>>(info, shared, rule, shared->parse(o, {info.name, meta}));
  });
}

}  // namespace salient
