#pragma once
// Model: a TorchScript module loaded through LibTorch, in eval mode, on one device.
#include <memory>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "salient/metadata.hpp"

namespace salient {

struct ModelOptions {
  std::string device = "cpu";  // any torch device string: "cpu", "cuda", "cuda:1"
  std::string output;          // which output to explain when the model returns a tuple/list/dict:
                               // an index ("0") or a dict key; empty = the metadata's
                               // "explained_output", else the one tensor (several: an error
                               // listing them)
  std::string metadata_path;   // empty = `<model>.json` beside the model, when it exists
  bool freeze = true;          // forward-only passes run a frozen, inference-optimised copy
                               // (measured 1.4x faster on ResNet-18, 2.9x on the demo CNN), once it
                               // has matched the plain module on the first batch (else frozen only,
                               // else plain: see Model::forward_mode)
  std::string id_column;       // tabular: a CSV's row-id column, over the metadata's (--id-column)
};

// How forward-only passes run: which copy of the model passed its check against the plain module.
struct ForwardMode {
  std::string mode = "plain";   // "optimised" (freeze + optimize_for_inference), "frozen", "plain", "onnx"
  nlohmann::json check;         // per candidate tried: its max |difference| from the plain module
                                // relative to the output's scale, or why it could not be built
};

enum class Backend { TorchScript, Onnx };

class LayerCapture;
class WordPiece;

class Model {
 public:
  // Loads a traced or scripted TorchScript file, or an ONNX file (by its `.onnx` extension) through
  // OpenCV's DNN module (forward passes only). Throws salient::Error (bad input) when the file is
  // missing or is not a model.
  explicit Model(const std::string& path, ModelOptions options = {});
  // Wraps a module built in C++ (tests, embedding applications). The module is put in eval mode.
  explicit Model(torch::jit::Module module, ModelOptions options = {}, ModelMetadata meta = {});

  // Runs the model on a batch [N, ...] and returns the explained output [N, K] (or [N] -> [N,1]).
  // Gradients flow when the input requires them.
  torch::Tensor forward(const torch::Tensor& batch);
  // The same, without autograd: for predictions and forward-only methods (on a frozen copy with
  // ModelOptions::freeze; through OpenCV DNN for ONNX models).
  torch::Tensor predict(const torch::Tensor& batch);
  Backend backend() const { return backend_; }
  // Which copy predict() runs (settled at its first call) and the evidence for it.
  const ForwardMode& forward_mode() const { return mode_; }
  // Number of input tensors forward() takes (the module's forward arguments after self), and their
  // names ("a", "b").
  size_t input_count() const { return input_names_.size(); }
  const std::vector<std::string>& input_names() const { return input_names_; }
  // A forward that takes one `Dict[str, Tensor]` (`forward(self, x: Dict[str, Tensor])`): its
  // entries are the inputs, named by their keys, which the schema does not know -- the caller names
  // them (`--input KEY=FILE.npy`) with set_input_names before the first forward.
  bool dict_input() const { return !dict_argument_.empty(); }
  // The dict's keys, one per input, in the order the packed inputs are given (dict models only).
  void set_input_names(std::vector<std::string> keys);
  // Models of several tensor inputs run on one packed tensor [N, F1 + F2 + ...]: every method sees
  // one input and its map, which splits back per input (pack()/unpack() below). `shapes` are the
  // inputs' shapes without the batch dimension, one per forward argument.
  void set_input_shapes(std::vector<std::vector<int64_t>> shapes);
  // Each packed input's own type: an integer input (token ids beside a float one) is given to the
  // model as that integer type, not as the packed float (its gradient, which ids do not have, is 0).
  void set_input_dtypes(std::vector<torch::ScalarType> dtypes) { input_dtypes_ = std::move(dtypes); }
  const std::vector<std::vector<int64_t>>& input_shapes() const { return input_shapes_; }
  bool packed() const { return input_shapes_.size() > 1; }
  // The forward arguments of a batch: [x] for one input, else x [N, F] split and reshaped per input.
  std::vector<c10::IValue> arguments(const torch::Tensor& x) const;
  // The default values of forward's arguments after the inputs (a detector's `targets=None`), for
  // a graph run on its own stack (a layer capture), which does not fill them in as forward() does.
  std::vector<c10::IValue> default_arguments() const;
  // A packed [N, F] tensor (a map) split into one tensor [N, shape_i] per input.
  std::vector<torch::Tensor> unpack(const torch::Tensor& x) const;

  // A function of the explained output applied before anything sees it (a function target: Target
  // ::reduction(), installed with a ReductionScope); it returns [N, K] from the output as the model
  // gives it (any shape after the batch dimension). Empty: none, and the output must be [N, K].
  using OutputReduction = std::function<torch::Tensor(const torch::Tensor&)>;
  void set_output_reduction(OutputReduction f) { reduction_ = std::move(f); }
  const OutputReduction& output_reduction() const { return reduction_; }

  // A function of the model's whole raw output (a tensor, a tuple, a detector's List[Dict]) as the
  // explained output: it returns [N, K] and takes the place of --output's selection and of the
  // reduction (a detector's box target: detection.hpp's box_function). Empty: none.
  using OutputFunction = std::function<torch::Tensor(const c10::IValue&)>;
  void set_output_function(OutputFunction f) { output_function_ = std::move(f); }
  const OutputFunction& output_function() const { return output_function_; }
  // The model's raw output for a batch (no autograd): what a detector's detections are read from.
  c10::IValue run_raw(const torch::Tensor& batch);
  // forward(self, images: List[Tensor]) (torchvision's detectors): a batch [N, ...] is given as the
  // list of its N rows.
  bool list_input() const { return list_input_; }

  // An inner layer's output as the explained output (an inner-neuron target, `layer:PATH:INDEX`):
  // forward() and predict() run the model up to module `path` and return its activation, reduced
  // by the output reduction (which picks the neuron). Empty: the model's output. TorchScript only.
  void set_output_layer(const std::string& path);
  const std::string& output_layer() const { return output_layer_; }

  // Text models (metadata "tokenizer"): their inputs are token ids [N, L] and stay int64 end to end
  // (a model of inputs "ids,mask" gets the mask ids != pad as its second argument, built here).
  bool text() const { return tokenizer_ != nullptr; }
  const WordPiece& tokenizer() const;  // salient::Error when the model is not a text model
  // The tensor a forward argument is made of: ids as int64 for a text model, else the model's dtype.
  torch::Tensor cast_input(const torch::Tensor& x) const;

  // Embedding mode (text): while set, forward() and predict() take the output of embedding layer
  // `layer` [M, L, D] (float) in place of ids, and run the model on `ids` [1, L] (broadcast to the M
  // rows) with that layer's output replaced -- attribution at the embeddings, as Captum's
  // LayerIntegratedGradients. Empty `layer`: off. See EmbeddingScope.
  void set_embedding_input(const std::string& layer, const torch::Tensor& ids);
  const std::string& embedding_layer() const { return embedding_layer_; }
  // The embedding layer's output for ids [N, L]: [N, L, D] (detached).
  torch::Tensor embed(const torch::Tensor& ids);
  // In embedding mode, the embeddings [L, D] of the context's ids with every token that is not
  // cls/sep/pad replaced by `token` ("pad", "unk" or "mask"): the baselines of text attributions.
  torch::Tensor token_baseline(const std::string& token);
  // The model's default embedding layer: its one nn.Embedding, or of several (token and position
  // embeddings) the one called on the ids themselves, or else its nn.EmbeddingBag; none, or several
  // of which none reads the ids, is a salient::Error saying why and what to give instead (--layer).
  // An EmbeddingBag's output is already pooled [N, D]: its tokens' own vectors are weight[ids]
  // [N, L, D], and in embedding mode those are replaced and pooled as the bag does (mode sum, mean
  // or max, padding_idx left out), checked once against the bag's own output.
  std::string default_embedding_layer();

  // The explained [N, K] tensor of a raw forward result (tuple/list/dict resolved per --output),
  // through the output reduction when one is installed. `reduce` false: the selected output as the
  // model gives it (any shape), before the reduction -- what relevance methods start from, each
  // element with its own share of the target function (see modified_gradient).
  torch::Tensor explained_output(const c10::IValue& out, bool reduce = true) const { return select_output(out, reduce); }
  // Every output of one forward pass on `batch`, one line each ("0: Tensor [1, 64]"): for `info`.
  std::vector<std::string> describe_outputs(const torch::Tensor& batch);
  // The installed reduction applied to a selected output: [N, K] (the output itself when none).
  torch::Tensor reduce_output(const torch::Tensor& selected) const;

  const torch::Device& device() const { return device_; }
  const ModelMetadata& metadata() const { return meta_; }
  const std::string& path() const { return path_; }
  const ModelOptions& options() const { return options_; }
  torch::jit::Module& module();  // TorchScript only (salient::Error for ONNX)
  // The same model with another module (parameters randomised by a sanity check): the options, the
  // metadata, the inputs' shapes, types and names, the output reduction and layer carry over.
  Model with_module(torch::jit::Module module) const;
  int64_t parameter_count() const;
  // Casts the parameters (e.g. to kDouble for finite-difference checks).
  void to(torch::Dtype dtype);
  torch::Dtype dtype() const { return dtype_; }

 private:
  void prepare();
  torch::Tensor select_output(const c10::IValue& out, bool reduce = true) const;
  void check_labels(int64_t columns) const;  // metadata labels must match the explained output

  std::string path_;
  torch::jit::Module module_;
  ModelOptions options_;
  ModelMetadata meta_;
  torch::Device device_{torch::kCPU};
  torch::Dtype dtype_ = torch::kFloat;
  Backend backend_ = Backend::TorchScript;
  std::shared_ptr<struct OnnxNet> onnx_;
  void choose_forward_copy(const torch::Tensor& x);
  torch::Tensor run_module(torch::jit::Module& m, const torch::Tensor& x, bool check_batch);

  std::optional<torch::jit::Module> fast_;  // the copy predict() runs, once checked
  bool mode_settled_ = false;
  ForwardMode mode_;
  std::vector<std::vector<int64_t>> input_shapes_;
  std::vector<torch::ScalarType> input_dtypes_;  // per packed input; empty: the model's float type
  std::vector<std::string> input_names_;  // forward's arguments after self (a dict model's keys)
  std::string dict_argument_;             // a dict model's one argument, by name; empty: not one
  OutputReduction reduction_;
  OutputFunction output_function_;
  bool list_input_ = false;
  std::string output_layer_;
  std::shared_ptr<LayerCapture> layer_capture_;  // built for output_layer_
  torch::Tensor layer_output(const torch::Tensor& x);
  std::shared_ptr<const WordPiece> tokenizer_;  // text models
  std::string embedding_layer_;                 // embedding mode: the replaced layer
  torch::Tensor embedding_ids_;                 // ... and the ids it runs on [1, L]
  std::map<std::string, torch::Tensor> token_baselines_;  // made once per embedding scope
  std::shared_ptr<LayerCapture> embedding_capture_;
  // The embedding module called alone on the ids, once it gave what the capture gives (a model
  // that transforms its ids before the layer fails that check and keeps the capture): -1 unknown.
  std::optional<torch::jit::Module> embedding_module_;
  int embedding_direct_ = -1;
  struct Bag {              // the embedding layer is an nn.EmbeddingBag
    std::string mode;       // sum, mean or max
    int64_t padding = -1;   // its padding_idx, or -1
    torch::Tensor weight;   // [V, D]
    bool checked = false;   // pooling its tokens' vectors gave the bag's own output
  };
  std::optional<Bag> bag_;
  static std::optional<Bag> embedding_bag(const torch::jit::Module& root, const std::string& path, const LayerCapture& capture);
  torch::Tensor pool_bag(const torch::Tensor& e, const torch::Tensor& ids) const;
  torch::Tensor embedding_output(const torch::Tensor& x);
};

// Embedding mode for a scope: attributions of a text input at its embedding layer.
class EmbeddingScope {
 public:
  EmbeddingScope(Model& model, const std::string& layer, const torch::Tensor& ids) : model_(model) {
    model_.set_embedding_input(layer, ids);
  }
  ~EmbeddingScope() { model_.set_embedding_input("", {}); }
  EmbeddingScope(const EmbeddingScope&) = delete;
  EmbeddingScope& operator=(const EmbeddingScope&) = delete;

 private:
  Model& model_;
};

// Sets LibTorch's intra-op thread count; n <= 0 means every core (LibTorch's own default is half).
void set_threads(int n);

// A model's outputs [N, K] as probabilities, as its metadata says: as they are ("probabilities", and
// a regression's values, which are no probabilities: callers check meta.regression()),
// each column's sigmoid (one column: a binary model; or multi-label), else the softmax over columns.
torch::Tensor output_probabilities(const ModelMetadata& meta, const torch::Tensor& outputs);

}  // namespace salient
