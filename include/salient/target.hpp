#pragma once
// Which output is explained: a class index, a label, the predicted class, the top k classes — or a
// function of the model's output (pytorch-grad-cam's targets as callables): several classes summed,
// or a class summed over a region of a dense output [N, C, H, W] (a segmentation).
#include <functional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "salient/metadata.hpp"
#include "salient/model.hpp"

namespace salient {

class Target {
 public:
  enum class Kind { Top, TopK, Index, Function };
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
  static Target parse(const std::string& text, const ModelMetadata& meta);
  static Target sum_of(std::vector<int64_t> classes, std::string text);
  static Target region(int64_t cls, torch::Tensor mask, std::string text);  // mask [H, W], or undefined: all
  const Reduction& reduction() const { return reduce_; }  // empty unless kind() == Function

  // For each input row of `outputs` [N,K], the classes to explain (1, or k for top-k), checked
  // against K: an index out of range throws salient::Error.
  std::vector<std::vector<int64_t>> resolve(const torch::Tensor& outputs) const;
  int count() const { return kind_ == Kind::TopK ? k_ : 1; }
  Kind kind() const { return kind_; }
  std::string to_string() const;

 private:
  Kind kind_ = Kind::Top;
  int k_ = 1;
  int64_t index_ = 0;
  Reduction reduce_;
  std::string text_;
};

// Installs a model's output reduction for its scope (a function target's), restoring the previous.
class ReductionScope {
 public:
  ReductionScope(Model& model, Model::OutputReduction f) : model_(model), saved_(model.output_reduction()) {
    model_.set_output_reduction(std::move(f));
  }
  ~ReductionScope() { model_.set_output_reduction(saved_); }
  ReductionScope(const ReductionScope&) = delete;
  ReductionScope& operator=(const ReductionScope&) = delete;

 private:
  Model& model_;
  Model::OutputReduction saved_;
};

}  // namespace salient
