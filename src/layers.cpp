#include "salient/layers.hpp"

#include <algorithm>
#include <set>

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include "salient/error.hpp"
#include "salient/method.hpp"

namespace salient {

namespace jit = torch::jit;

namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : path) {
    if (c == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

std::string nearest_paths(const std::string& path, const std::vector<std::string>& valid) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& v : valid) scored.emplace_back(edit_distance(path, v), v);
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out;
  for (size_t i = 0; i < std::min<size_t>(3, scored.size()); ++i) out += (i ? ", " : "") + scored[i].second;
  return out;
}

// Splices the plain graph of the method a prim::CallMethod node calls in place of the node;
// `captured` values that were the call's output are pointed at the spliced body's output.
void inline_call(jit::Node* call, std::vector<jit::Value*>& captured) {
  auto cls = call->input(0)->type()->expect<c10::ClassType>();
  jit::GraphFunction& fn = jit::toGraphFunction(cls->getMethod(call->s(c10::attr::name)));
  jit::Value* old = call->outputs().size() == 1 ? call->output() : nullptr;
  auto outs = jit::inlineCallTo(call, &fn, fn.graph().get());
  for (auto& v : captured)
    if (v == old && outs.size() == 1) v = outs[0];
}

bool is_call_on(jit::Node* n, const std::set<jit::Value*>& targets) {
  return n->kind() == c10::prim::CallMethod && targets.count(n->input(0));
}

// Values that are `selves`' attribute `name` (prim::GetAttr nodes anywhere in the graph).
std::set<jit::Value*> attribute_values(jit::Block* block, const std::set<jit::Value*>& selves, const std::string& name) {
  std::set<jit::Value*> out;
  for (jit::Node* n : block->nodes()) {
    if (n->kind() == c10::prim::GetAttr && selves.count(n->input(0)) && n->s(c10::attr::name) == name)
      out.insert(n->output());
    for (jit::Block* b : n->blocks()) {
      auto inner = attribute_values(b, selves, name);
      out.insert(inner.begin(), inner.end());
    }
  }
  return out;
}

bool called_in_nested_block(jit::Block* block, const std::set<jit::Value*>& targets, bool nested) {
  for (jit::Node* n : block->nodes()) {
    if (nested && is_call_on(n, targets)) return true;
    for (jit::Block* b : n->blocks())
      if (called_in_nested_block(b, targets, true)) return true;
  }
  return false;
}

// Inlines, in `graph`, the calls along `path` down to the module itself, and returns the
// top-level prim::CallMethod nodes that call the module (in graph order).
std::vector<jit::Node*> find_module_calls(jit::Graph& graph, const std::string& path, std::vector<jit::Value*>& captured) {
  std::set<jit::Value*> selves{graph.inputs()[0]};
  const auto parts = split_path(path);
  std::vector<jit::Node*> calls;
  for (size_t level = 0; level < parts.size(); ++level) {
    // Helper methods of the current module (e.g. ResNet's _forward_impl) are inlined first.
    for (bool again = true; again;) {
      again = false;
      for (jit::Node* n : graph.nodes())
        if (is_call_on(n, selves)) {
          inline_call(n, captured);
          again = true;
          break;
        }
    }
    std::set<jit::Value*> child = attribute_values(graph.block(), selves, parts[level]);
    calls.clear();
    for (jit::Node* n : graph.nodes())
      if (is_call_on(n, child)) calls.push_back(n);
    if (calls.empty() && level + 1 < parts.size() && !child.empty()) {
      selves = child;  // its calls were inlined by an earlier capture of one of its submodules
      continue;
    }
    if (calls.empty()) {
      std::string here = parts[0];
      for (size_t i = 1; i <= level; ++i) here += "." + parts[i];
      // Called (directly, or from a helper method of its parent) only inside an if or a loop whose
      // branch is chosen at run time: there is no one value to capture.
      if (called_in_nested_block(graph.block(), child, false) || called_in_nested_block(graph.block(), selves, false)) {
        std::string parent = level == 0 ? std::string("the model's forward") : "'" + here.substr(0, here.rfind('.')) + "'";
        throw Error("layer '" + here + "' is only called inside control flow of " + parent +
                    " (an if or loop decided at run time, e.g. TransformerEncoderLayer's choice between its fused fast "
                    "path and its sub-modules), so it has no one output to capture; capture " + parent + " instead");
      }
      throw Error("layer '" + here + "' is never called by the model's forward");
    }
    if (level + 1 < parts.size()) {
      for (jit::Node* n : calls) inline_call(n, captured);
      selves = child;
    }
  }
  return calls;
}

std::string type_name(const torch::jit::Module& m) {
  auto qn = m.type()->name();
  return qn ? qn->name() : "?";
}

}  // namespace

std::vector<std::string> module_paths(Model& model) {
  std::vector<std::string> out;
  for (const auto& item : model.module().named_modules())
    if (!item.name.empty()) out.push_back(item.name);
  return out;
}

LayerCapture::LayerCapture(Model& model, std::vector<std::string> paths) : model_(model), paths_(std::move(paths)) {
  if (paths_.empty()) throw Error("no layer given (--layer PATH; `salient layers` lists them)");
  const auto valid = module_paths(model);
  for (const auto& p : paths_)
    if (std::find(valid.begin(), valid.end(), p) == valid.end())
      throw Error("unknown layer '" + p + "'" +
                  (valid.empty() ? std::string(" (the model has no submodules)") : " (nearest: " + nearest_paths(p, valid) + ")"));

  auto forward = model.module().get_method("forward").graph();
  // The capturing graph: original output plus one cloned-for-later-uses activation per path.
  {
    auto graph = forward->copy();
    // Parents before children: a parent's call is captured before a child's capture inlines it.
    std::vector<size_t> order(paths_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return std::count(paths_[a].begin(), paths_[a].end(), '.') < std::count(paths_[b].begin(), paths_[b].end(), '.');
    });
    std::vector<jit::Value*> captured(paths_.size(), nullptr);
    for (size_t idx : order) {
      const std::string& p = paths_[idx];
      jit::Node* last = find_module_calls(*graph, p, captured).back();  // a module called twice: its last call
      jit::Value* a = last->output();
      if (a->type()->kind() != c10::TypeKind::TensorType)
        throw Error("layer '" + p + "' returns " + a->type()->str() + ", not a tensor");
      // Later uses read a clone, so in-place ops downstream (ResNet's add_/relu_) leave `a` as the
      // module returned it, and gradients reach `a` through the clone.
      jit::WithInsertPoint guard(last->next());
      jit::Value* none = graph->insertConstant(c10::IValue());
      jit::Node* copy = graph->create(c10::aten::clone, {a, none});
      copy->output()->setType(a->type());
      copy->insertAfter(none->node());
      a->replaceAllUsesAfterNodeWith(copy, copy->output());
      captured[idx] = a;
    }
    std::vector<jit::Value*> outs{graph->outputs()[0]};
    outs.insert(outs.end(), captured.begin(), captured.end());
    graph->eraseOutput(0);
    jit::Node* tuple = graph->createTuple(outs);
    graph->appendNode(tuple);
    graph->registerOutput(tuple->output());
    graph->lint();
    capture_ = std::make_unique<jit::GraphFunction>("salient_capture", graph, nullptr);
  }
  replace_.resize(paths_.size());
}

LayerCapture::~LayerCapture() = default;

bool LayerCapture::called_on_input(size_t index) const {
  auto graph = model_.module().get_method("forward").graph()->copy();
  std::vector<jit::Value*> none;
  const auto calls = find_module_calls(*graph, paths_.at(index), none);
  if (calls.size() != 1 || graph->inputs().size() < 2 || calls[0]->inputs().size() < 2 ||
      calls[0]->inputs()[1] != graph->inputs()[1])
    return false;
  for (size_t k = 2; k < calls[0]->inputs().size(); ++k)  // further arguments only None (a bag's offsets, weights)
    if (calls[0]->inputs()[k]->type()->kind() != c10::TypeKind::NoneType) return false;
  return true;
}

c10::IValue run_on_module(jit::GraphFunction& function, Model& model, const torch::Tensor& inputs,
                          const std::vector<c10::IValue>& extra, bool cast) {
  torch::Tensor x = cast ? model.cast_input(inputs) : inputs;
  jit::Stack stack{model.module()._ivalue()};
  for (auto& a : model.arguments(x)) stack.push_back(std::move(a));
  for (auto& a : model.default_arguments()) stack.push_back(std::move(a));
  stack.insert(stack.end(), extra.begin(), extra.end());
  try {
    function.run(stack);
  } catch (const std::exception& e) {
    throw Error("the model failed on an input of shape " + c10::str(x.sizes()) + ": " + one_line(e));
  }
  return stack.back();
}

LayerCapture::Result LayerCapture::run(const torch::Tensor& inputs) {
  auto elems = run_on_module(*capture_, model_, inputs).toTupleRef().elements();
  Result r;
  r.output = model_.explained_output(elems[0]);
  for (size_t i = 1; i < elems.size(); ++i) r.activations.push_back(elems[i].toTensor());
  return r;
}

std::vector<torch::Tensor> LayerCapture::activations(const torch::Tensor& inputs) {
  auto elems = run_on_module(*capture_, model_, inputs).toTupleRef().elements();
  std::vector<torch::Tensor> out;
  for (size_t i = 1; i < elems.size(); ++i) out.push_back(elems[i].toTensor());
  return out;
}

torch::Tensor LayerCapture::activation(const torch::Tensor& inputs, size_t index) {
  auto elems = run_on_module(*capture_, model_, inputs).toTupleRef().elements();
  return elems.at(1 + index).toTensor();
}

torch::Tensor LayerCapture::run_replacing(size_t index, const torch::Tensor& inputs, const torch::Tensor& replacement) {
  if (!replace_.at(index)) {
    // Every use of the activation reads a new input instead; what only fed it is dropped.
    auto graph = model_.module().get_method("forward").graph()->copy();
    std::vector<jit::Value*> none;
    jit::Node* last = find_module_calls(*graph, paths_[index], none).back();
    jit::Value* r = graph->addInput("replacement");
    r->setType(last->output()->type());
    last->output()->replaceAllUsesWith(r);
    jit::EliminateDeadCode(graph);
    replace_[index] = std::make_unique<jit::GraphFunction>("salient_replace", graph, nullptr, jit::ExecutorExecutionMode::SIMPLE);
  }
  torch::Tensor x = model_.cast_input(inputs);
  if (x.size(0) != replacement.size(0)) {  // the input's rows repeated for the replacement's (checked before)
    std::vector<int64_t> shape = x.sizes().vec();
    shape[0] = replacement.size(0);
    x = x.expand(shape);
  }
  return model_.explained_output(run_on_module(*replace_[index], model_, x, {replacement}, /*cast=*/false));
}

LayerGradients layer_gradients(LayerCapture& capture, const torch::Tensor& inputs, const torch::Tensor& targets,
                               bool with_gradients) {
  LayerGradients out;
  torch::Tensor x = inputs.detach().clone().requires_grad_(with_gradients);
  std::optional<torch::NoGradGuard> no_grad;
  if (!with_gradients) no_grad.emplace();
  auto r = capture.run(x);
  torch::Tensor picked = r.output.gather(1, targets.to(r.output.device()).view({-1, 1})).squeeze(1);
  out.scores = picked.detach();
  if (with_gradients) {
    if (!picked.requires_grad())
      throw Error("the model's output does not depend on the layer through autograd (an integer or detached output)");
    auto grads = torch::autograd::grad({picked.sum()}, r.activations, {}, false, false, /*allow_unused=*/true);
    for (size_t i = 0; i < grads.size(); ++i)
      out.gradients.push_back(grads[i].defined() ? grads[i] : torch::zeros_like(r.activations[i]));
  }
  for (auto& a : r.activations) out.activations.push_back(a.detach());
  return out;
}

std::vector<LayerInfo> list_layers(Model& model, const torch::Tensor& sample) {
  std::vector<LayerInfo> out;
  std::vector<std::string> paths;
  for (const auto& item : model.module().named_modules()) {
    if (item.name.empty()) continue;
    out.push_back(LayerInfo{item.name, type_name(item.value), {}, ""});
    paths.push_back(item.name);
  }
  if (paths.empty()) return out;
  torch::NoGradGuard no_grad;
  // A nested tensor (a transformer's fast path on a padded batch) has no one shape: said, not thrown.
  auto describe = [](LayerInfo& info, const torch::Tensor& t) {
    if (t.is_nested()) info.note = "a nested tensor (the transformer fast path's padded batch): no single shape";
    else info.shape = t.sizes().vec();
  };
  try {  // every layer in one pass
    LayerCapture cap(model, paths);
    auto acts = cap.activations(sample);
    for (size_t i = 0; i < out.size(); ++i) describe(out[i], acts[i]);
    return out;
  } catch (const std::exception&) {
  }
  for (auto& info : out) {  // some layer cannot be captured: one pass each, saying why
    try {
      LayerCapture cap(model, {info.path});
      describe(info, cap.activations(sample)[0]);
    } catch (const std::exception& e) {
      info.note = one_line(e);
    }
  }
  return out;
}

torch::Tensor tokens_to_map(const torch::Tensor& tokens, int64_t drop, int64_t h, int64_t w) {
  if (tokens.dim() != 3) throw Error("--reshape expects token activations [N, T, C]; got " + c10::str(tokens.sizes()));
  const int64_t t = tokens.size(1) - drop;
  if (h <= 0 || w <= 0) {
    h = w = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(t))));
  }
  if (t <= 0 || h * w != t)
    throw Error("--reshape: " + std::to_string(t) + " tokens (after dropping " + std::to_string(drop) +
                ") do not form a " + std::to_string(h) + "x" + std::to_string(w) + " grid");
  return tokens.slice(1, drop).reshape({tokens.size(0), h, w, tokens.size(2)}).permute({0, 3, 1, 2});
}

}  // namespace salient
