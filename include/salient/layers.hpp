#pragma once
// Layer capture on TorchScript models, without hooks (TorchScript runs none) and without touching
// the user's module: a copy of forward's graph in which the prim::CallMethod nodes along a module
// path are inlined one level at a time, the wanted module's output is cloned for every later use
// (so in-place ops downstream cannot change it) and added to the outputs of a new function that
// runs on the user's module object (weights shared, nothing copied).
#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>

#include "salient/model.hpp"

namespace torch::jit {
struct GraphFunction;
}

namespace salient {

// Runs a function made from a copy of the model's forward graph on the user's module object, with
// `inputs` moved to the model's device and dtype (Model::cast_input; `cast` false: they already
// are) and any extra arguments; a failure of the model becomes a one-line salient::Error naming the
// input's shape.
c10::IValue run_on_module(torch::jit::GraphFunction& function, Model& model, const torch::Tensor& inputs,
                          const std::vector<c10::IValue>& extra = {}, bool cast = true);

struct LayerInfo {
  std::string path;                // "layer4.1.conv2"
  std::string type;                // "Conv2d"
  std::vector<int64_t> shape;      // output shape on the sample input (empty when not a tensor or not run)
  std::string note;                // why there is no shape, if there is none
};

// Every submodule with its type, and its output shape on `sample` [N, ...].
std::vector<LayerInfo> list_layers(Model& model, const torch::Tensor& sample);
// All submodule paths of the model, in definition order.
std::vector<std::string> module_paths(Model& model);

class LayerCapture {
 public:
  // Builds the capturing function for `paths`. Throws salient::Error for an unknown path, naming
  // the nearest valid paths, or for a module whose output cannot be captured.
  LayerCapture(Model& model, std::vector<std::string> paths);
  ~LayerCapture();

  struct Result {
    torch::Tensor output;                    // the explained output [N, K]
    std::vector<torch::Tensor> activations;  // one per path, the module's output at its last call
  };
  // One forward pass. Activations carry autograd history when `inputs` requires grad.
  Result run(const torch::Tensor& inputs);
  // The activation of path `index` alone (the model's output is not selected nor reduced): what an
  // inner-neuron target reads. Carries autograd history when `inputs` requires grad.
  torch::Tensor activation(const torch::Tensor& inputs, size_t index = 0);
  // Every path's activation of one pass, the model's output left as it is (any shape: listing the
  // layers of a segmentation model needs no [N, K] output).
  std::vector<torch::Tensor> activations(const torch::Tensor& inputs);
  // The output when the activation of path `index` is replaced by `replacement` (its batch may be
  // larger than the input's one row: the input is broadcast). Gradients flow to `replacement` when
  // it requires them (attribution at a text model's embeddings); ablation methods pass plain tensors.
  torch::Tensor run_replacing(size_t index, const torch::Tensor& inputs, const torch::Tensor& replacement);
  const std::vector<std::string>& paths() const { return paths_; }
  // Whether module `index` is called once, on the forward's first argument itself (no op between)
  // and otherwise only None (an EmbeddingBag's offsets and per-sample weights): then calling it
  // alone on the input gives its activation (an embedding lookup on the ids).
  bool called_on_input(size_t index) const;

 private:
  Model& model_;
  std::vector<std::string> paths_;
  std::unique_ptr<torch::jit::GraphFunction> capture_;
  std::vector<std::unique_ptr<torch::jit::GraphFunction>> replace_;  // built on first use
};

// Activations and d f(x)[target] / d activation from one forward and one backward pass.
struct LayerGradients {
  std::vector<torch::Tensor> activations, gradients;  // detached
  torch::Tensor scores;                               // f(x)[target]
};
LayerGradients layer_gradients(LayerCapture& capture, const torch::Tensor& inputs, const torch::Tensor& targets,
                               bool with_gradients = true);

// Turns transformer tokens [N, T, C] into a map [N, C, H, W] (dropping `drop` leading tokens, e.g.
// a class token); H*W must equal T - drop (H = W = sqrt when h <= 0).
torch::Tensor tokens_to_map(const torch::Tensor& tokens, int64_t drop, int64_t h = 0, int64_t w = 0);

}  // namespace salient
