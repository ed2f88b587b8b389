#include "salient/backprop.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/remove_mutation.h>

#include "salient/error.hpp"
#include "salient/layers.hpp"
#include "salient/method.hpp"

namespace salient {

void backprop_ops_linked();  // src/backprop_ops.cpp

namespace jit = torch::jit;

namespace {

bool carries_tensor(const c10::TypePtr& t) {
  switch (t->kind()) {
    case c10::TypeKind::TensorType: return true;
    case c10::TypeKind::ListType: return carries_tensor(t->expectRef<c10::ListType>().getElementType());
    case c10::TypeKind::OptionalType: return carries_tensor(t->expectRef<c10::OptionalType>().getElementType());
    case c10::TypeKind::TupleType:
      for (const auto& e : t->expectRef<c10::TupleType>().elements())
        if (carries_tensor(e)) return true;
      return false;
    default: return false;
  }
}

// The module path of an inlined node, from its inlined call stack: "layer1.0.conv1".
std::string module_of(jit::Node* n) {
  std::string path;
  if (auto cs = n->callstack()) {
    for (auto& entry : (*cs)->vec()) {
      const auto& info = std::get<2>(entry);
      if (!info || info->instance_name() == "SELF") continue;
      path += (path.empty() ? "" : ".") + info->instance_name();
    }
  }
  return path;
}

const std::set<std::string>& names(OpKind kind) {
  static const std::map<OpKind, std::set<std::string>> table = {
      {OpKind::Affine,
       {"aten::avg_pool1d", "aten::avg_pool2d", "aten::avg_pool3d", "aten::adaptive_avg_pool1d",
        "aten::adaptive_avg_pool2d", "aten::adaptive_avg_pool3d", "aten::mean", "aten::sum", "aten::add", "aten::sub",
        "aten::rsub", "aten::neg", "aten::mul", "aten::div", "aten::matmul", "aten::mm", "aten::bmm", "aten::addmm",
        "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d", "aten::upsample_bilinear2d",
        "aten::upsample_linear1d", "aten::upsample_bicubic2d", "aten::upsample_trilinear3d"}},
      {OpKind::Activation,
       {"aten::relu", "aten::relu6", "aten::hardtanh", "aten::leaky_relu", "aten::elu", "aten::selu", "aten::celu",
        "aten::gelu", "aten::silu", "aten::mish", "aten::sigmoid", "aten::tanh", "aten::softplus", "aten::hardsigmoid",
        "aten::hardswish", "aten::threshold", "aten::prelu", "aten::softsign", "aten::log_sigmoid"}},
      {OpKind::MaxPool,
       {"aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d", "aten::adaptive_max_pool1d",
        "aten::adaptive_max_pool2d", "aten::adaptive_max_pool3d", "aten::max_pool2d_with_indices", "aten::amax",
        "aten::max"}},
      {OpKind::Routing,
       {"aten::view", "aten::reshape", "aten::flatten", "aten::unflatten", "aten::permute", "aten::transpose",
        "aten::t", "aten::contiguous", "aten::clone", "aten::dropout", "aten::feature_dropout", "aten::alpha_dropout",
        "aten::feature_alpha_dropout", "aten::detach", "aten::slice", "aten::select", "aten::narrow",
        "aten::index_select", "aten::cat", "aten::concat", "aten::stack", "aten::squeeze", "aten::unsqueeze",
        "aten::expand", "aten::expand_as", "aten::repeat", "aten::chunk", "aten::split", "aten::split_with_sizes",
        "aten::unbind", "aten::constant_pad_nd", "aten::pad", "aten::reflection_pad1d", "aten::reflection_pad2d",
        "aten::replication_pad1d", "aten::replication_pad2d", "aten::replication_pad3d", "aten::upsample_nearest1d",
        "aten::upsample_nearest2d", "aten::upsample_nearest3d", "aten::pixel_shuffle", "aten::pixel_unshuffle",
        "aten::channel_shuffle", "aten::to", "aten::type_as", "aten::view_as", "aten::reshape_as", "aten::movedim",
        "aten::flip", "aten::roll", "aten::__getitem__", "aten::alias", "aten::zeros_like", "aten::ones_like",
        "aten::empty_like", "aten::full_like", "prim::ListConstruct", "prim::ListUnpack", "prim::TupleConstruct",
        "prim::TupleUnpack", "prim::TupleIndex", "prim::ConstantChunk", "prim::unchecked_cast",
        "prim::DictConstruct"}}};
  return table.at(kind);
}

// The gate of an elementwise product: the factor made by a sigmoid-like op (through reshapes), as in
// squeeze-and-excitation blocks (MobileNetV3, EfficientNet). -1 when neither factor is one.
int gate_input(jit::Node* n) {
  static const std::set<std::string> gates = {"aten::sigmoid", "aten::hardsigmoid"};
  for (int i = 0; i < 2; ++i) {
    jit::Node* p = n->input(i)->node();
    while (names(OpKind::Routing).count(p->kind().toQualString()) && p->inputs().size() > 0) p = p->input(0)->node();
    if (gates.count(p->kind().toQualString())) return i;
  }
  return -1;
}

OpKind classify(jit::Node* n, const std::set<jit::Value*>& path) {
  const std::string op = n->kind().toQualString();
  size_t on_path = 0;
  for (jit::Value* v : n->inputs()) on_path += path.count(v);
  if (op == "aten::_convolution") {
    auto transposed = jit::toIValue(n->input(6));
    return transposed && transposed->isBool() && !transposed->toBool() && on_path == 1 ? OpKind::Convolution
                                                                                        : OpKind::Affine;
  }
  if (op == "aten::conv1d" || op == "aten::conv2d" || op == "aten::conv3d") {
    // conv2d.padding (padding="same") is affine but has no integer padding to give the rules.
    const auto* schema = n->maybeSchema();
    return schema && schema->overload_name().empty() && on_path == 1 ? OpKind::Convolution : OpKind::Affine;
  }
  if (op == "aten::linear") return on_path == 1 ? OpKind::Linear : OpKind::Unsupported;
  if (op == "aten::batch_norm") return on_path == 1 ? OpKind::BatchNorm : OpKind::Unsupported;
  for (OpKind k : {OpKind::Affine, OpKind::Activation, OpKind::MaxPool, OpKind::Routing}) {
    if (!names(k).count(op)) continue;
    // A product of two values on the path is not affine in them.
    static const std::set<std::string> products = {"aten::mul", "aten::div", "aten::matmul", "aten::mm", "aten::bmm"};
    if (k == OpKind::Affine && op == "aten::mul" && on_path == 2 && gate_input(n) >= 0) return OpKind::Gate;
    if (k == OpKind::Affine && products.count(op) && on_path > 1) return OpKind::Unsupported;
    if (k == OpKind::Affine && op == "aten::addmm" && (on_path > 1 || path.count(n->input(0)))) return OpKind::Unsupported;
    if (k == OpKind::Activation && on_path > 1) return OpKind::Unsupported;
    return k;
  }
  return OpKind::Unsupported;
}

bool uses_any(jit::Block* block, const std::set<jit::Value*>& values) {
  for (jit::Node* n : block->nodes()) {
    for (jit::Value* v : n->inputs())
      if (values.count(v)) return true;
    for (jit::Block* b : n->blocks())
      if (uses_any(b, values)) return true;
  }
  for (jit::Value* v : block->outputs())
    if (values.count(v)) return true;
  return false;
}

// Replaces reads of the module's non-tensor attributes (padding modes, `downsample is None`,
// `training`) by their values, so that constant propagation can drop the ifs on them: scripted
// models then have one straight-line path, like traced ones. The graph is rebuilt for each module.
void bake_attributes(jit::Graph& graph, jit::Block* block, std::map<jit::Value*, c10::IValue>& objects) {
  for (auto it = block->nodes().begin(); it != block->nodes().end(); ++it) {
    jit::Node* n = *it;
    for (jit::Block* b : n->blocks()) bake_attributes(graph, b, objects);
    if (n->kind() != c10::prim::GetAttr) continue;
    auto owner = objects.find(n->input(0));
    if (owner == objects.end() || !owner->second.isObject()) continue;
    const c10::IValue value = owner->second.toObjectRef().getAttr(n->s(c10::attr::name));
    if (value.isObject()) {
      objects[n->output()] = value;
    } else if (value.isNone() || value.isBool() || value.isInt() || value.isDouble() || value.isString() ||
               value.isIntList() || value.isDoubleList()) {
      jit::WithInsertPoint guard(n);
      if (auto c = graph.insertConstant(value, c10::nullopt, n->scope()); c->type()->isSubtypeOf(*n->output()->type()))
        n->output()->replaceAllUsesWith(c);
    }
  }
}

// Dropout in eval mode (`train` constant false) is the identity, in-place or not
// (torchvision EfficientNet's Dropout(inplace=True)): its output becomes its input.
void remove_eval_dropout(jit::Block* block) {
  static const std::set<std::string> dropouts = {"aten::dropout",         "aten::dropout_",      "aten::feature_dropout",
                                                 "aten::feature_dropout_", "aten::alpha_dropout", "aten::alpha_dropout_",
                                                 "aten::feature_alpha_dropout", "aten::feature_alpha_dropout_"};
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    jit::Node* n = *it;
    ++it;
    for (jit::Block* b : n->blocks()) remove_eval_dropout(b);
    if (!dropouts.count(n->kind().toQualString()) || n->inputs().size() != 3) continue;
    auto train = jit::toIValue(n->input(2));
    if (!train || !train->isBool() || train->toBool()) continue;
    n->output()->replaceAllUsesWith(n->input(0));
    n->destroy();
  }
}

// A fresh tensor: made by an op whose result aliases none of its inputs.
bool fresh(jit::Value* v) {
  const auto* schema = v->node()->maybeSchema();
  return schema && schema->returns().size() == v->node()->outputs().size() && !schema->returns()[v->offset()].alias_info();
}

// In-place ops that torch's RemoveTensorMutation leaves (it is conservative around if-blocks, as in
// scripted ResNets' `out += identity`) become out-of-place when the mutated tensor is fresh and
// nothing seen before the op can alias it; later reads of it read the new value.
void make_out_of_place(jit::Graph& graph, jit::Block* block) {
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    jit::Node* n = *it;
    ++it;
    for (jit::Block* b : n->blocks()) make_out_of_place(graph, b);
    const auto* schema = n->maybeSchema();
    const std::string name = n->kind().toUnqualString();
    if (!schema || !schema->is_mutable() || n->outputs().size() != 1 || name.size() < 2 || name.back() != '_' ||
        name[name.size() - 2] == '_')
      continue;
    jit::Value* target = n->input(0);
    if (!fresh(target)) continue;
    bool aliased = false;
    for (const jit::Use& u : target->uses()) {
      if (u.user == n || !u.user->isBefore(n)) continue;
      const auto* us = u.user->maybeSchema();
      if (!us) {
        aliased = true;
        continue;
      }
      for (const auto& r : us->returns()) aliased = aliased || r.alias_info();
    }
    if (aliased) continue;
    const auto functional = c10::Symbol::fromQualString(std::string(n->kind().ns().toUnqualString()) + "::" +
                                                        name.substr(0, name.size() - 1));
    // Same inputs, same positions: the functional overload mirrors the in-place one.
    jit::Node* f = graph.create(functional, n->inputs(), 1);
    f->insertBefore(n);
    if (!f->maybeSchema()) {
      f->destroy();
      continue;  // no out-of-place variant: left for the scan to report
    }
    jit::Value* out = f->output();
    out->setType(n->output()->type());
    n->output()->replaceAllUsesWith(out);
    target->replaceAllUsesAfterNodeWith(out->node(), out);
    n->destroy();
  }
}

}  // namespace

BackpropGraph::BackpropGraph(Model& model) : model_(model) {
  backprop_ops_linked();
  graph_ = model.module().get_method("forward").graph()->copy();
  jit::Inline(*graph_);
  std::map<jit::Value*, c10::IValue> objects{{graph_->inputs()[0], model.module()._ivalue()}};
  bake_attributes(*graph_, graph_->block(), objects);
  jit::ConstantPropagation(graph_);
  remove_eval_dropout(graph_->block());
  jit::RemoveListMutation(graph_);
  jit::RemoveTensorMutation(graph_);
  make_out_of_place(*graph_, graph_->block());
  jit::EliminateDeadCode(graph_);

  for (size_t i = 1; i < graph_->inputs().size(); ++i) on_path_.insert(graph_->inputs()[i]);
  std::set<jit::Value*> behind_layer;
  std::map<std::string, int> seen;
  scan(graph_->block(), behind_layer, seen);
}

void BackpropGraph::scan(jit::Block* block, std::set<jit::Value*>& behind_layer, std::map<std::string, int>& seen) {
  std::set<jit::Value*>& on_path = on_path_;
  auto where = [](jit::Node* n) { return module_of(n).empty() ? std::string("forward") : module_of(n); };
  for (jit::Node* n : block->nodes()) {
    bool touches = false, behind = false;
    for (jit::Value* v : n->inputs()) {
      touches = touches || on_path.count(v);
      behind = behind || behind_layer.count(v);
    }
    if (!n->blocks().empty()) {
      bool inside = false;
      for (jit::Block* b : n->blocks()) inside = inside || uses_any(b, on_path);
      if (!touches && !inside) continue;
      // An if whose condition does not depend on the input (scripted models' `if self.downsample
      // is not None`): both branches are scanned and rewritten.
      if (n->kind() != c10::prim::If || touches)
        throw Error("the model's control flow (" + std::string(n->kind().toQualString()) + " in " + where(n) +
                    ") depends on the input; modified back-propagation needs a traced model or one without it");
      for (jit::Block* b : n->blocks()) {
        scan(b, behind_layer, seen);
        for (size_t i = 0; i < b->outputs().size(); ++i) {
          if (on_path.count(b->outputs()[i]) && carries_tensor(n->outputs()[i]->type())) on_path.insert(n->outputs()[i]);
          if (behind_layer.count(b->outputs()[i])) behind_layer.insert(n->outputs()[i]);
        }
      }
      continue;
    }
    if (!touches) continue;
    bool tensor_out = false;
    for (jit::Value* o : n->outputs())
      if (carries_tensor(o->type())) {
        on_path.insert(o);
        tensor_out = true;
      }
    if (!tensor_out) continue;  // aten::size and the like: shapes, not values
    const auto* schema = n->maybeSchema();
    if (schema && schema->is_mutable())
      throw Error("in-place op " + std::string(n->kind().toQualString()) + " in " + where(n) +
                  " changes a value on the input's path and could not be made out-of-place");
    PathNode p{n, classify(n, on_path), n->kind().toQualString(), module_of(n), false, ""};
    if (p.kind == OpKind::Gate) p.gate = gate_input(n);
    p.site = (p.module.empty() ? std::string("forward") : p.module) + " (" + p.op + ")";
    if (const int k = ++seen[p.site]; k > 1) p.site += " #" + std::to_string(k);
    const bool layer = p.kind == OpKind::Convolution || p.kind == OpKind::Linear;
    p.first = layer && !behind;
    if (layer || behind)
      for (jit::Value* o : n->outputs()) behind_layer.insert(o);
    path_.push_back(std::move(p));
  }
}

BackpropGraph::~BackpropGraph() = default;

namespace {

bool routes_to_output(jit::Value* v, jit::Node* ret) {
  for (const jit::Use& u : v->uses()) {
    if (u.user == ret) continue;
    if (!names(OpKind::Routing).count(u.user->kind().toQualString())) return false;
    for (jit::Value* o : u.user->outputs())
      if (!routes_to_output(o, ret)) return false;
  }
  return true;
}

}  // namespace

std::string BackpropGraph::strip_output_head() {
  static const std::set<std::string> heads = {"aten::sigmoid", "aten::softmax", "aten::log_softmax"};
  std::string stripped;
  for (size_t i = path_.size(); i-- > 0;) {
    jit::Node* n = path_[i].node;
    if (!heads.count(path_[i].op) || !routes_to_output(n->output(), graph_->return_node())) continue;
    stripped += (stripped.empty() ? "" : ", ") + path_[i].op + (path_[i].module.empty() ? "" : " (in " + path_[i].module + ")");
    n->output()->replaceAllUsesWith(n->input(0));
    on_path_.erase(n->output());
    path_.erase(path_.begin() + static_cast<std::ptrdiff_t>(i));
    n->destroy();
  }
  return stripped;
}

const PathNode* BackpropGraph::first_unsupported() const {
  for (const auto& p : path_)
    if (p.kind == OpKind::Unsupported) return &p;
  return nullptr;
}

jit::Node* BackpropGraph::wrap(jit::Node* after, jit::Value* replaced, const std::string& op,
                               const std::vector<jit::Value*>& args) {
  jit::WithInsertPoint guard(after->next());
  std::vector<jit::NamedValue> named(args.begin(), args.end());
  jit::Value* out = graph_->insert(c10::Symbol::fromQualString(op), named);
  replaced->replaceAllUsesAfterNodeWith(out->node(), out);
  if (on_path(replaced)) on_path_.insert(out);
  return out->node();
}

void BackpropGraph::detach_input(jit::Node* node, size_t index) {
  jit::WithInsertPoint guard(node);
  jit::Value* d = graph_->insert(c10::aten::detach, {node->input(index)});
  node->replaceInput(index, d);
}

jit::Value* BackpropGraph::constant(const c10::IValue& v) {
  jit::WithInsertPoint guard(*graph_->nodes().begin());
  return graph_->insertConstant(v);
}

torch::Tensor BackpropGraph::run(const torch::Tensor& inputs) { return model_.reduce_output(run_unreduced(inputs)); }

torch::Tensor BackpropGraph::run_unreduced(const torch::Tensor& inputs) {
  if (!function_) {
    graph_->lint();
    function_ = std::make_unique<jit::GraphFunction>("salient_backprop", graph_, nullptr);
  }
  return model_.explained_output(run_on_module(*function_, model_, inputs), /*reduce=*/false);
}

BackpropGraph& BackpropCache::get(Model& model, const Rewrite& rewrite) {
  auto module = model.module()._ivalue();
  if (!graph_ || module_ != module) {
    graph_.reset();
    auto g = std::make_unique<BackpropGraph>(model);
    rewrite(*g);
    graph_ = std::move(g);
    module_ = module;
  }
  return *graph_;
}

torch::Tensor modified_gradient(BackpropGraph& graph, const torch::Tensor& inputs, const torch::Tensor& targets,
                                const torch::Tensor& weight, bool times_output, torch::Tensor* scores) {
  torch::Tensor x = inputs.detach().clone().requires_grad_(true);
  // With a function target (classes summed, a region of a dense output) relevance starts at the
  // model's own output elements, each with its share of the target function S: f_i dS/df_i (for a
  // weighted sum S = sum w_i f_i, exactly w_i f_i). Seeding the reduced S instead would hand every
  // element the whole S times w_i.
  const bool function_target = times_output && static_cast<bool>(graph.model().output_reduction());
  torch::Tensor raw = function_target ? graph.run_unreduced(x) : torch::Tensor();
  torch::Tensor out = function_target ? graph.model().reduce_output(raw) : graph.run(x);
  torch::Tensor t = targets.to(out.device()).view({-1, 1});
  torch::Tensor seed = torch::zeros_like(out).scatter_(1, t, 1.0);
  if (times_output && !function_target) seed = seed * out.detach();
  if (weight.defined()) seed = seed * weight.to(out.device(), out.scalar_type()).view({-1, 1});
  torch::Tensor g;
  try {
    if (function_target) {
      const torch::Tensor share = torch::autograd::grad({out}, {raw}, {seed}, /*retain_graph=*/true)[0];
      g = torch::autograd::grad({raw}, {x}, {share * raw.detach()}, false, false, /*allow_unused=*/true)[0];
    } else {
      g = torch::autograd::grad({out}, {x}, {seed}, false, false, /*allow_unused=*/true)[0];
    }
  } catch (const c10::Error& e) {
    throw Error("modified back-propagation failed: " + one_line(e));
  }
  if (scores) *scores = out.detach().gather(1, t).squeeze(1).cpu();
  return g.defined() ? g : torch::zeros_like(x);
}

void report_conservation(const std::string& method, const torch::Tensor& map, const torch::Tensor& expected,
                         const std::string& name, nlohmann::json& diagnostics) {
  nlohmann::json want = nlohmann::json::array(), sum = nlohmann::json::array(), gap = nlohmann::json::array(),
                 rel = nlohmann::json::array();
  for (int64_t i = 0; i < map.size(0); ++i) {
    const double f = expected[i].item<double>(), s = map[i].sum().item<double>();
    want.push_back(f);
    sum.push_back(s);
    gap.push_back(s - f);
    const double r = std::abs(s - f) / std::max(std::abs(f), 1e-12);
    rel.push_back(r);
    if (r > kConservationTolerance) {
      std::ostringstream w;
      w << method << ": the map sums to " << s << ", " << r * 100 << "% away from " << name << " = " << f
        << " (biases, stabilisers or held gates absorb relevance; the map's proportions may mislead)";
      add_warning(diagnostics, map.size(0), i, w.str());
    }
  }
  diagnostics[name] = want;
  diagnostics["sum"] = sum;
  diagnostics["conservation_gap"] = gap;
  diagnostics["relative_gap"] = rel;
}

// ---- The recorder ----

namespace {

struct RecorderState {
  std::mutex mutex;
  std::vector<SiteRecord>* records = nullptr;
  std::map<std::string, size_t> index;
};

// One per thread: a recorder hears the backward passes of its own thread only (LibTorch runs a CPU
// backward on the thread that called it), so concurrent explanations in a server do not mix.
// (A CUDA backward runs on the device's autograd thread: per-layer totals are then not recorded.)
RecorderState& recorder() {
  static thread_local RecorderState s;
  return s;
}

std::vector<double> to_vector(const torch::Tensor& t) {
  torch::Tensor s = t.to(torch::kDouble).cpu().contiguous();
  return std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
}

// Per input (row) of the batch: the sum, or the minimum.
std::vector<double> per_input(const torch::Tensor& t, bool minimum = false) {
  torch::Tensor flat = t.detach().reshape({t.size(0), -1});
  return to_vector(minimum ? flat.amin(1) : flat.sum(1));
}

SiteRecord* record_for(RecorderState& s, const std::string& site, const std::string& rule) {
  auto it = s.index.find(site);
  if (it != s.index.end()) return &(*s.records)[it->second];
  s.index[site] = s.records->size();
  SiteRecord r;
  r.site = site;
  r.rule = rule;
  s.records->push_back(std::move(r));
  return &s.records->back();
}

void accumulate(std::vector<double>& into, const std::vector<double>& v) {
  if (into.empty()) into.assign(v.size(), 0.0);
  for (size_t i = 0; i < v.size() && i < into.size(); ++i) into[i] += v[i];
}

}  // namespace

SiteRecorder::SiteRecorder() {
  auto& s = recorder();
  std::lock_guard<std::mutex> lock(s.mutex);
  store_ = std::make_unique<std::vector<SiteRecord>>();
  s.records = store_.get();
  s.index.clear();
}

SiteRecorder::~SiteRecorder() {
  auto& s = recorder();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.records == store_.get()) s.records = nullptr;
}

std::vector<SiteRecord> SiteRecorder::records() const {
  std::lock_guard<std::mutex> lock(recorder().mutex);
  return *store_;
}

void SiteRecorder::add_out(const std::string& site, const std::string& rule, const torch::Tensor& relevance) {
  auto& s = recorder();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.records || !relevance.defined()) return;
  accumulate(record_for(s, site, rule)->out, per_input(relevance));
}

void SiteRecorder::add_in(const std::string& site, const std::string& rule, const torch::Tensor& relevance,
                          const torch::Tensor& input) {
  auto& s = recorder();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.records || !relevance.defined()) return;
  SiteRecord* r = record_for(s, site, rule);
  const bool first = r->in.empty();
  accumulate(r->in, per_input(relevance));
  auto lowest = [first](std::vector<double>& into, const std::vector<double>& v) {
    if (first || into.size() != v.size()) {
      into = v;
      return;
    }
    for (size_t i = 0; i < v.size(); ++i) into[i] = std::min(into[i], v[i]);
  };
  if (relevance.numel()) lowest(r->min_in, per_input(relevance, true));
  if (input.defined() && input.numel()) lowest(r->input_min, per_input(input, true));
}

// ---- The BatchNorm canonizer ----

std::pair<torch::Tensor, torch::Tensor> fold_batch_norm(const torch::Tensor& w, const torch::Tensor& b,
                                                        const torch::Tensor& gamma, const torch::Tensor& beta,
                                                        const torch::Tensor& mean, const torch::Tensor& var,
                                                        double eps) {
  // bn(z) = gamma * (z - mean) / sqrt(var + eps) + beta = scale * z + shift, per output channel.
  torch::Tensor scale = (var + eps).rsqrt();
  if (gamma.defined()) scale = scale * gamma;
  torch::Tensor shift = -mean * scale;
  if (beta.defined()) shift = shift + beta;
  std::vector<int64_t> shape(w.dim(), 1);
  shape[0] = w.size(0);
  torch::Tensor folded_b = b.defined() ? b * scale + shift : shift;
  return {w * scale.view(shape), folded_b};
}

}  // namespace salient
