#pragma once
// Modified back-propagation on TorchScript, without hooks (TorchScript runs none) and without
// touching the user's module: an inlined, mutation-free copy of forward's graph in which chosen
// nodes are wrapped in operators registered from C++ (src/backprop_ops.cpp) whose autograd
// backward applies a rule: Guided Backprop's ReLU, an LRP rule, DeepLIFT's multipliers. The copy
// runs on the user's module object (weights shared, nothing copied); a rewritten graph is complete
// before its first run.
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "salient/model.hpp"

namespace torch::jit {
struct GraphFunction;
struct Block;
}

namespace salient {

// What an op on the input-to-output path is, as the rules see it.
enum class OpKind {
  Convolution,  // aten::_convolution, aten::conv1d/2d/3d (not transposed, integer padding)
  Linear,       // aten::linear
  BatchNorm,    // aten::batch_norm
  Affine,       // other ops affine in their path inputs: average pooling, means and sums, additions,
                // scaling by a constant, matmul by a constant, transposed convolutions, interpolation
  Activation,   // elementwise non-linearities: relu, sigmoid, tanh, gelu, ...
  MaxPool,      // max pooling: the gradient routes to the maximum
  Routing,      // reshapes, views, selection, concatenation, padding, dropout: no arithmetic
  Gate,         // an elementwise product of a signal and a sigmoid gate computed from the same input
                // (squeeze-and-excitation): rules hold the gate constant ("signal takes all", Arras
                // et al. 2017), so the product is linear in the signal
  Unsupported,  // anything else with an input on the path (softmax, layer norm, products of two paths)
};

struct PathNode {
  torch::jit::Node* node;
  OpKind kind;
  std::string op;      // "aten::_convolution"
  std::string module;  // "layer1.0.conv1" (empty: the top-level forward)
  bool first = false;  // a Convolution/Linear reached from the input through no other such layer
  std::string site;    // "layer1.0.conv1 (aten::_convolution)", numbered " #2" when a module runs twice
  int gate = -1;       // Gate: which input of the product is the gate
};

class BackpropGraph {
 public:
  // Copies and inlines forward's graph, makes in-place ops out-of-place, and lists the nodes on the
  // path from the input. Throws salient::Error when the model is not TorchScript, when control
  // flow depends on the input, or when an in-place op on the path cannot be made out-of-place.
  explicit BackpropGraph(Model& model);
  ~BackpropGraph();
  BackpropGraph(const BackpropGraph&) = delete;
  BackpropGraph& operator=(const BackpropGraph&) = delete;

  torch::jit::Graph& graph() { return *graph_; }
  const std::vector<PathNode>& path() const { return path_; }
  // Removes a final sigmoid, softmax or log-softmax (one whose output reaches the model's output
  // through reshapes and selections only), so that the graph returns the logits: relevance starts
  // there, as in Captum and Zennit. Returns what was removed ("aten::sigmoid (in 1)"), or "".
  std::string strip_output_head();
  // The first Unsupported node of the path, or nullptr.
  const PathNode* first_unsupported() const;
  // Whether a value depends on the input.
  bool on_path(torch::jit::Value* v) const { return on_path_.count(v) > 0; }

  // Inserts `op(args...)` right after `after` and points every later use of `replaced` (and of the
  // values that alias it) at its output. Returns the new node. `args` may use `replaced`.
  torch::jit::Node* wrap(torch::jit::Node* after, torch::jit::Value* replaced, const std::string& op,
                         const std::vector<torch::jit::Value*>& args);
  // Makes `node` read input `index` detached (no autograd history: the rule's op carries the
  // gradient around it).
  void detach_input(torch::jit::Node* node, size_t index);
  // A constant at the top of the graph.
  torch::jit::Value* constant(const c10::IValue& v);

  // Runs the rewritten forward (autograd on when `inputs` requires grad); the explained output [N, K].
  torch::Tensor run(const torch::Tensor& inputs);
  // The same output before a function target's reduction (Model::explained_output(out, false)).
  torch::Tensor run_unreduced(const torch::Tensor& inputs);
  Model& model() { return model_; }

 private:
  void scan(torch::jit::Block* block, std::set<torch::jit::Value*>& behind_layer, std::map<std::string, int>& seen);

  Model& model_;
  std::shared_ptr<torch::jit::Graph> graph_;
  std::vector<PathNode> path_;
  std::set<torch::jit::Value*> on_path_;
  std::unique_ptr<torch::jit::GraphFunction> function_;  // built at the first run
};

// A method's rewritten graph, rebuilt when the method meets another module (the rewrite depends on
// the graph only: the weights are read at each run).
class BackpropCache {
 public:
  using Rewrite = std::function<void(BackpropGraph&)>;
  BackpropGraph& get(Model& model, const Rewrite& rewrite);

 private:
  std::unique_ptr<BackpropGraph> graph_;
  c10::intrusive_ptr<c10::ivalue::Object> module_;  // held, so that its address stays its own
};

// Conservation of a relevance map: per input, `name` (the value the map should sum to: f(x), or
// f(x) - f(x0)), `sum`, `conservation_gap` (sum - expected) and `relative_gap` in the diagnostics,
// and a warning where the relative gap exceeds kConservationTolerance.
constexpr double kConservationTolerance = 0.1;
void report_conservation(const std::string& method, const torch::Tensor& map, const torch::Tensor& expected,
                         const std::string& name, nlohmann::json& diagnostics);

// One forward and one modified backward of `graph`: d/d inputs of the sum over rows of
// weight[i] * f(x_i)[target_i] (weight undefined: 1), each term also multiplied by f(x_i)[target_i]
// itself when `times_output` (LRP's initial relevance). `scores` receives f(x)[target] [N] on the CPU.
torch::Tensor modified_gradient(BackpropGraph& graph, const torch::Tensor& inputs, const torch::Tensor& targets,
                                const torch::Tensor& weight, bool times_output, torch::Tensor* scores);

// Per-site relevance totals recorded by the rule ops' backward while a SiteRecorder is alive
// (one at a time, process-wide). Sites are named by PathNode::site().
struct SiteRecord {
  std::string site;
  std::string rule;
  // Per input of the batch: relevance passed down and received, the smallest value passed down,
  // and the smallest value of the layer's input (>= 0 after a ReLU).
  std::vector<double> in, out, min_in, input_min;
};

class SiteRecorder {
 public:
  SiteRecorder();
  ~SiteRecorder();
  SiteRecorder(const SiteRecorder&) = delete;
  SiteRecorder& operator=(const SiteRecorder&) = delete;
  // In the order the backward pass first reached each site (output side first).
  std::vector<SiteRecord> records() const;

  // Called by the rule ops.
  static void add_out(const std::string& site, const std::string& rule, const torch::Tensor& relevance);
  static void add_in(const std::string& site, const std::string& rule, const torch::Tensor& relevance,
                     const torch::Tensor& input);

 private:
  std::unique_ptr<std::vector<SiteRecord>> store_;
};

// The ops' numbering of rules (src/backprop_ops.cpp).
// GuidedAny: Guided Backprop on any activation (the input stays attached; the rule passes the positive
// part of the gradient to the activation's own backward).
enum class ReluMode : int64_t { Guided = 0, Deconv = 1, Pass = 2, GuidedAny = 3 };

// An LRP layer's rule, parameters (by name), z^B bounds and name, for the salient::lrp_layer op that
// wraps it: returns the id the op takes (see lrp_rules.hpp for rules as data).
namespace lrp { struct Rule; }
int64_t register_lrp_layer(const lrp::Rule& rule, std::map<std::string, double> params, std::vector<double> low,
                           std::vector<double> high, std::string site);

// The BatchNorm canonizer's arithmetic: the weight and bias of the convolution (or linear layer)
// `w, b` followed by eval-mode batch norm (gamma, beta, running mean, running var, eps) as one
// layer. `b` may be undefined.
std::pair<torch::Tensor, torch::Tensor> fold_batch_norm(const torch::Tensor& w, const torch::Tensor& b,
                                                        const torch::Tensor& gamma, const torch::Tensor& beta,
                                                        const torch::Tensor& mean, const torch::Tensor& var,
                                                        double eps);

}  // namespace salient
