#pragma once
// Checks of one explanation that a person looks at (the viewer's "Is it noisy?" and "Can I trust
// it?" panels, `POST /api/checks`), on the metrics of salient/metrics: the maps of a few noisy
// copies of the input with each method's max-sensitivity over them; the deletion and insertion
// curves of a map against a random order; the maps of cascading parameter randomisation.
#include <functional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "salient/method.hpp"
#include "salient/metrics/metrics.hpp"
#include "salient/model.hpp"

namespace salient::checks {

using Progress = std::function<void(double)>;  // 0..1; may throw to cancel (salient::Cancelled)

struct NoisyCopies {
  double sigma = 0;                              // the noise's standard deviation, in input units
  std::vector<int64_t> predicted;                // each copy's predicted class; copy 0 is the input
  std::vector<std::vector<torch::Tensor>> maps;  // [method][copy], each as the method returns it
  std::vector<double> max_sensitivity;           // [method]: max over copies of relative_change
};
// `copies` noisy copies x + N(0, (sigma_fraction * (max x - min x))^2), seeded, besides x itself,
// each explained for `target` by every method.
NoisyCopies noisy_copies(Model& model, const std::vector<Method*>& methods, const torch::Tensor& x, int64_t target,
                         int copies, double sigma_fraction, uint64_t seed, const Progress& progress = {});

struct Faithfulness {
  metrics::Curve deletion, insertion;                // in the map's order
  metrics::Curve random_deletion, random_insertion;  // in a seeded random order: the bar to clear
};
Faithfulness faithfulness(Model& model, const torch::Tensor& x, int64_t target, const torch::Tensor& map, int steps,
                          uint64_t seed, metrics::Canvas canvas = metrics::Canvas::Black);

}  // namespace salient::checks
