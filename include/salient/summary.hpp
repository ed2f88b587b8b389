#pragma once
// Global explanations from local ones: per class, the count, the mean input and the mean and mean
// absolute map of each method, kept as sums (sum, sum of |map|, n) so that shards merge exactly;
// and the most and least confident example of each class. Written as .npy means and an atlas PNG.
#include <map>
#include <string>

#include <torch/script.h>

#include "salient/image.hpp"
#include "salient/metadata.hpp"

namespace salient {

class ClassSummary {
 public:
  // Groupings: "predicted" (the model's top class) and "label" (the data's true label).
  // `confidence` is the probability of `cls` for this input; `maps`: method -> its map.
  void add(const std::string& by, int64_t cls, double confidence, const std::string& id, const torch::Tensor& input,
           const std::map<std::string, torch::Tensor>& maps);
  void merge(const ClassSummary& other);
  bool empty() const { return groups_.empty(); }

  // DIR/summary/: state.json and sums/*.npy (the exact state: load() reads it back, merge() adds
  // it); <method>_class<k>.npy and <method>_class<k>.abs.npy (mean and mean |map| by predicted
  // class), <method>_label<k>.npy and .abs.npy (by true label), input_class<k>.npy, and
  // atlas_predicted.png / atlas_label.png: a row per class with the mean input, each method's mean
  // |map|, and the most and least confident examples. Every file is written atomically.
  void write(const std::string& dir, const ModelMetadata& meta, const RenderOptions& render) const;
  static ClassSummary load(const std::string& dir);  // DIR/summary/; throws salient::Error

  struct Group {
    int64_t n = 0;
    torch::Tensor input_sum;                                             // float64
    std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> sums;  // method -> (sum, sum |.|), float64
    double most_p = -1, least_p = 2;
    std::string most_id, least_id;
    torch::Tensor most_input, least_input;
  };
  const std::map<std::string, std::map<int64_t, Group>>& groups() const { return groups_; }

 private:
  std::map<std::string, std::map<int64_t, Group>> groups_;  // by -> class -> group
};

}  // namespace salient
