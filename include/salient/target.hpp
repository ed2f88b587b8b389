#pragma once
// Which output is explained: a class index, a label, the predicted class, the top k classes — or a
// function of the model's output (pytorch-grad-cam's targets as callables): several classes summed,
// a class summed over a region of a dense output [N, C, H, W] (a segmentation), an inner neuron
// (Captum's neuron methods), or every class a multi-label model assigns.
#include <functional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "salient/metadata.hpp"
#include "salient/model.hpp"

namespace salient {

class Target {
 public:
  enum class Kind { Top, TopK, Index, Function, Threshold };
  // A function target's reduction of the explained output to [N, 1]: methods then explain column 0.
  using Reduction = std::function<torch::Tensor(const torch::Tensor&)>;
  Target() = default;  // the predicted class
  static Target top() { return Target(); }
  static Target top_k(int k);
  static Target index(int64_t i);
  // "top", "top-3", "7", a label name from the metadata ("Sneaker"); "3+5" or "Bag+Sandal" (the
  // classes' outputs summed); "region:C" or "region:C:MASK.npy" (class C of a dense output [N, C, H,
  // W] summed over every pixel, or weighted by the mask [H, W], as pytorch-grad-cam's
  // SemanticSegmentationTarget).
  // "layer:PATH:I[,J,...]" (the neuron at that index of module PATH's output, one index per
  // dimension after the batch; see `salient layers`); "above:P" (multi-label: every class whose
  // probability is at least P, each explained in turn; none: the top class, with a warning).
  static Target parse(const std::string& text, const ModelMetadata& meta);
  static Target neuron(std::string layer, std::vector<int64_t> index, std::string text);
  static Target above(double threshold);
  static Target sum_of(std::vector<int64_t> classes, std::string text);
  static Target region(int64_t cls, torch::Tensor mask, std::string text);  // mask [H, W], or undefined: all
  const Reduction& reduction() const { return reduce_; }  // empty unless kind() == Function
  // The module whose output the reduction reads (an inner-neuron target); empty: the model's output.
  const std::string& layer() const { return layer_; }

  // For each input row of `outputs` [N,K], the classes to explain (1, or k for top-k, or those at
  // or above the threshold in `probabilities` [N,K]), checked against K: an index out of range
  // throws salient::Error.
  std::vector<std::vector<int64_t>> resolve(const torch::Tensor& outputs, const torch::Tensor& probabilities = {}) const;
  // Classes explained per input: 1, k for top-k; for a threshold it varies by input (at least 1).
  int count() const { return kind_ == Kind::TopK ? k_ : 1; }
  // Whether several classes per input may be explained (files and keys then name the class).
  bool several() const { return kind_ == Kind::TopK || kind_ == Kind::Threshold; }
  double threshold() const { return threshold_; }
  Kind kind() const { return kind_; }
  std::string to_string() const;

 private:
  Kind kind_ = Kind::Top;
  int k_ = 1;
  int64_t index_ = 0;
  double threshold_ = 0.5;
  Reduction reduce_;
  std::string layer_;
  std::string text_;
};

// Installs a model's output reduction (and the layer it reads, for an inner neuron) for its scope
// (a function target's), restoring the previous.
class ReductionScope {
 public:
  ReductionScope(Model& model, Model::OutputReduction f, const std::string& layer = "")
      : model_(model), saved_(model.output_reduction()), saved_layer_(model.output_layer()) {
    model_.set_output_layer(layer);
    model_.set_output_reduction(std::move(f));
  }
  ReductionScope(Model& model, const Target& target) : ReductionScope(model, target.reduction(), target.layer()) {}
  ~ReductionScope() {
    model_.set_output_reduction(saved_);
    try {
      model_.set_output_layer(saved_layer_);
    } catch (...) {  // restoring a layer that was set once cannot fail; a destructor never throws
    }
  }
  ReductionScope(const ReductionScope&) = delete;
  ReductionScope& operator=(const ReductionScope&) = delete;

 private:
  Model& model_;
  Model::OutputReduction saved_;
  std::string saved_layer_;
};

// The model's classes for a batch, as predictions list them: its [N, K] output, or a dense output's
// [N, C, ...] classes by their mean over the positions (a segmentation's per-class mean score).
torch::Tensor class_scores(Model& model, const torch::Tensor& batch);
// That reduction itself: [N, C, ...] -> [N, C] by the mean over the positions ([N, K] as it is).
torch::Tensor class_means(const torch::Tensor& output);
// The shape of the model's (selected) output for a batch, as the model gives it: [N, K], or a dense
// [N, C, H, W].
std::vector<int64_t> model_output_shape(Model& model, const torch::Tensor& batch);

}  // namespace salient
