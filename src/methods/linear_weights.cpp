#include "salient/methods/linear_weights.hpp"

#include <set>

#include <torch/csrc/jit/passes/inliner.h>

#include "salient/error.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

using torch::jit::Node;
using torch::jit::Value;

// The module attribute a value reads (a chain of prim::GetAttr from the graph's `self`).
c10::IValue resolve_attr(Value* v, const torch::jit::Module& root, Value* self) {
  if (v == self) return root._ivalue();
  Node* n = v->node();
  if (n->kind() != c10::prim::GetAttr) throw Error("linear-weights: the layer's weight is not a model parameter");
  c10::IValue parent = resolve_attr(n->input(0), root, self);
  return parent.toObject()->getAttr(n->s(c10::attr::name));
}

}  // namespace

torch::Tensor linear_model_weights(Model& model) {
  auto graph = model.module().get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  // Ops that only move data, read attributes or make constants; and what may follow the layer.
  static const std::set<std::string> plumbing{
      "prim::Constant", "prim::GetAttr", "prim::ListConstruct", "prim::TupleConstruct", "prim::NumToTensor",
      "aten::size", "aten::Int", "aten::flatten", "aten::view", "aten::reshape", "aten::contiguous",
      "aten::t", "aten::transpose", "aten::permute", "aten::dropout", "aten::to", "prim::ListUnpack",
      "aten::sigmoid", "aten::softmax", "aten::log_softmax", "aten::add", "aten::detach"};
  Node* layer = nullptr;
  int layers = 0;
  for (Node* n : graph->nodes()) {
    const std::string kind = n->kind().toQualString();
    if (kind == "aten::linear" || kind == "aten::matmul" || kind == "aten::addmm" || kind == "aten::mm") {
      layer = n;
      ++layers;
    } else if (!layer && (kind == "aten::sigmoid" || kind == "aten::softmax" || kind == "aten::log_softmax")) {
      throw Error("linear-weights: the model applies " + kind + " before its linear layer, so it is not linear in its input");
    } else if (!plumbing.count(kind)) {
      throw Error("linear-weights: the model is not a single linear layer (it uses " + kind +
                  "); use a post-hoc method such as integrated-gradients");
    }
  }
  if (layers != 1)
    throw Error("linear-weights: the model is not a single linear layer (it has " + std::to_string(layers) +
                " matrix products); use a post-hoc method");
  Value* self = graph->inputs()[0];
  const std::string kind = layer->kind().toQualString();
  // linear(x, W[K,F], b) uses W as it is; matmul(x, B) / mm(x, B) / addmm(b, x, B) use B [F,K].
  Value* wv = kind == "aten::linear" ? layer->input(1) : kind == "aten::addmm" ? layer->input(2) : layer->input(1);
  bool transposed = kind != "aten::linear";
  if (wv->node()->kind() == c10::aten::t) {
    wv = wv->node()->input(0);
    transposed = !transposed;
  }
  torch::Tensor w = resolve_attr(wv, model.module(), self).toTensor().detach();
  if (w.dim() != 2) throw Error("linear-weights: the layer's weight is not a matrix");
  return transposed ? w.t().contiguous() : w;
}

const MethodInfo& LinearWeights::info() const {
  static const MethodInfo i = [] {
    MethodInfo m;
    m.name = "linear-weights";
    m.title = "Linear model weights";
    m.family = Family::Intrinsic;
    m.scope = Scope::LocalAndGlobal;
    m.stage = Stage::Intrinsic;
    m.specificity = Specificity::ModelSpecific;
    m.needs_gradients = false;
    m.paper = "the weights of a linear/logistic model (e.g. Molnar, Interpretable Machine Learning, ch. 5.1)";
    m.summary = "for a single linear layer: its weights (global) or weights * input (local)";
    m.options = options_table().specs();
    return m;
  }();
  return i;
}

const OptionTable<LinearWeightsOptions>& LinearWeights::options_table() {
  // "local" is index 0 (global = false), "global" index 1.
  static const auto t = OptionTable<LinearWeightsOptions>().choice("view", &LinearWeightsOptions::global, {"local", "global"},
                                                                   "local: weights * input; global: the weights");
  return t;
}

torch::Tensor LinearWeights::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                     Attribution&) {
  torch::Tensor w = linear_model_weights(model).to(inputs.device(), inputs.scalar_type());
  const int64_t features = inputs[0].numel();
  if (w.size(1) != features)
    throw Error("linear-weights: the layer has " + std::to_string(w.size(1)) + " inputs, the model's input has " +
                std::to_string(features) + " elements");
  torch::Tensor rows = w.index_select(0, targets).view(inputs.sizes());
  return options_.global ? rows : rows * inputs;
}

void register_linear_weights(Registry& r) {
  r.add(LinearWeights().info(), [](const nlohmann::json& o, const ModelMetadata&) {
    return std::make_unique<LinearWeights>(LinearWeights::options_table().parse(o, {"linear-weights", ModelMetadata{}}));
  });
}

}  // namespace salient
