#pragma once
// Which output is explained: a class index, a label, the predicted class, or the top k classes.
#include <string>
#include <vector>

#include <torch/script.h>

#include "salient/metadata.hpp"

namespace salient {

class Target {
 public:
  enum class Kind { Top, TopK, Index };
  Target() = default;  // the predicted class
  static Target top() { return Target(); }
  static Target top_k(int k);
  static Target index(int64_t i);
  // "top", "top-3", "7", or a label name from the metadata ("Sneaker").
  static Target parse(const std::string& text, const ModelMetadata& meta);

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
};

}  // namespace salient
