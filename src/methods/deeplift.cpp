#include "salient/methods/deeplift.hpp"

#include <map>

#include <torch/csrc/jit/ir/ir.h>

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace jit = torch::jit;

const OptionTable<DeepLiftOptions>& DeepLift::options_table() {
  using O = DeepLiftOptions;
  static const auto t = OptionTable<O>()
      .baseline("baseline", &O::baseline)
      .integer("batch-size", &O::batch, 1, "inputs per pass (with their baselines: twice as many rows)")
      .seed("seed", &O::seed, "seed of the uniform baseline");
  return t;
}

const MethodInfo& DeepLift::info() const {
  static const MethodInfo i = [] {
    MethodInfo m;
    m.name = "deeplift";
    m.additive = true;
    m.title = "DeepLIFT (rescale)";
    m.family = Family::ModifiedBackprop;
    m.specificity = Specificity::ModelSpecific;
    m.paper = "Shrikumar, Greenside & Kundaje 2017, Learning Important Features Through Propagating Activation Differences";
    m.summary = "differences from a baseline propagated with multipliers (f(x)-f(x0))/(x-x0); sums to f(x) - f(x0)";
    m.options = options_table().specs();
    return m;
  }();
  return i;
}

DeepLiftOptions DeepLift::parse(const nlohmann::json& options, const ModelMetadata& meta) {
  return options_table().parse(options, {"deeplift", meta});
}

nlohmann::json DeepLift::params() const { return options_table().params(options_); }

BackpropGraph& DeepLift::graph_for(Model& model) {
  return cache_.get(model, [](BackpropGraph& g) {
    // Max pools of any rank, plain or adaptive, by their kind for the rule op (see backprop_ops.cpp).
    static const std::map<std::string, int64_t> pools = {
        {"aten::max_pool1d", 1},          {"aten::max_pool2d", 2},          {"aten::max_pool3d", 3},
        {"aten::max_pool2d_with_indices", 2}, {"aten::adaptive_max_pool1d", 11}, {"aten::adaptive_max_pool2d", 12},
        {"aten::adaptive_max_pool3d", 13}};
    for (const PathNode& p : g.path()) {
      const bool other_pool = p.kind == OpKind::MaxPool && !pools.count(p.op);
      if (p.kind == OpKind::Unsupported || other_pool)
        throw Error("deeplift has no rule for " + p.op + (p.module.empty() ? "" : " (in " + p.module + ")") +
                    "; it covers elementwise activations, max pooling, gates and ops linear in the input");
    }
    for (const PathNode& p : g.path()) {
      jit::Node* n = p.node;
      jit::Value* x = n->input(0);
      jit::Value* y = n->outputs()[0];
      if (p.kind == OpKind::Activation) {
        // The op keeps its own gradient where x == x0 (it flows through y), so its input stays attached.
        g.wrap(n, y, "salient::dl_rescale", {x, y});
      } else if (p.kind == OpKind::Gate) {
        g.detach_input(n, static_cast<size_t>(p.gate));  // the gate held constant: linear in the signal
      } else if (p.kind == OpKind::MaxPool) {
        const int64_t kind = pools.at(p.op);
        g.detach_input(n, 0);
        std::vector<jit::Value*> args = {x, y, g.constant(kind)};
        if (kind < 10) {
          args.insert(args.end(), {n->input(1), n->input(2), n->input(3), n->input(4), n->input(5)});
        } else {
          jit::Value* none = g.constant(std::vector<int64_t>{});
          args.insert(args.end(), {n->input(1), none, none, none, g.constant(false)});
        }
        g.wrap(n, y, "salient::dl_maxpool", args);
      }
    }
  });
}

torch::Tensor DeepLift::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets, Attribution& out) {
  BackpropGraph& graph = graph_for(model);
  const int64_t n = inputs.size(0);
  std::vector<torch::Tensor> baselines;
  for (int64_t i = 0; i < n; ++i) baselines.push_back(options_.baseline.make(inputs[i], options_.seed, &model));
  const torch::Tensor x0 = torch::stack(baselines);
  std::vector<torch::Tensor> maps, fx, fx0;
  for_chunks(n, options_.batch, [&](int64_t b, int64_t e) {
    const int64_t k = e - b;
    torch::Tensor both = torch::cat({inputs.slice(0, b, e), x0.slice(0, b, e)});
    torch::Tensor t = targets.slice(0, b, e);
    torch::Tensor weight = torch::cat({torch::ones({k}), torch::zeros({k})});  // only the inputs' outputs are explained
    torch::Tensor f;
    torch::Tensor m = modified_gradient(graph, both, torch::cat({t, t}), weight, false, &f).slice(0, 0, k).cpu();
    maps.push_back(m * (inputs.slice(0, b, e) - x0.slice(0, b, e)).to(m.scalar_type()));
    fx.push_back(f.slice(0, 0, k));
    fx0.push_back(f.slice(0, k));
    report_progress(static_cast<double>(e) / n);
  });
  torch::Tensor map = torch::cat(maps);
  out.scores = torch::cat(fx);
  report_conservation("deeplift", map, out.scores - torch::cat(fx0), "f(x)-f(x0)", out.diagnostics);
  const torch::Tensor base = torch::cat(fx0).to(torch::kCPU, torch::kDouble).contiguous();
  out.diagnostics["f(baseline)"] = std::vector<double>(base.data_ptr<double>(), base.data_ptr<double>() + n);
  return map;
}

void register_deeplift(Registry& r) {
  r.add(DeepLift().info(), [](const nlohmann::json& o, const ModelMetadata& meta) {
    return std::make_unique<DeepLift>(DeepLift::parse(o, meta));
  });
}

}  // namespace salient
