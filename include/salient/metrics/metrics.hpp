#pragma once
// Metrics of an explanation: how faithful it is to the model (deletion/insertion, AOPC,
// infidelity), how stable (sensitivity), whether it depends on the model at all (parameter
// randomisation), and how concentrated it is (sparseness, complexity). One metric per file in
// src/metrics/; all take one input x (no batch dimension) and its map (x's shape or [1,H,W]).
#include <functional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "salient/method.hpp"
#include "salient/model.hpp"

namespace salient::metrics {

// The score a metric follows: softmax probability of the target for logit models (as Petsiuk et
// al. 2018), the output itself otherwise. [B] double CPU, forward passes only, `batch` at a time.
torch::Tensor target_probability(Model& model, const torch::Tensor& inputs, int64_t target, int64_t batch = 32);

// A map reduced to one relevance per spatial position [H*W] (sum over channels), or per element.
torch::Tensor relevance(const torch::Tensor& map, const torch::Tensor& x);

enum class Canvas { Black, Zeros, Blur, Mean };  // black: pixel 0 before normalisation; zeros: 0 after;
                                                 // mean: a table's mean row (baseline "mean")
// What removed features become: black (pixel value 0 before preprocessing, per the metadata; 0
// without metadata) or a blurred copy of the input.
torch::Tensor canvas_for(Model& model, const torch::Tensor& x, Canvas canvas);

// ---- deletion_insertion.cpp: Petsiuk et al. 2018 ----
struct Curve {
  std::vector<double> fraction, score;  // fraction of features removed/inserted, target probability
  double auc = 0;                       // trapezoid area under the curve, fraction in [0, 1]
};
// Deletion: the most relevant features first replaced by the canvas; insertion: the canvas with the
// most relevant features put back first. `order` (optional) overrides the map's order.
Curve deletion(Model&, const torch::Tensor& x, int64_t target, const torch::Tensor& map, Canvas canvas, int steps = 20,
               const torch::Tensor& order = {});
Curve insertion(Model&, const torch::Tensor& x, int64_t target, const torch::Tensor& map, Canvas canvas, int steps = 20,
                const torch::Tensor& order = {});

// A seeded random feature order for x (over pixels for an image [C,H,W], over elements otherwise):
// the baseline every map's curves should beat.
torch::Tensor random_order(const torch::Tensor& x, uint64_t seed);

// ---- aopc.cpp: Samek et al. 2017, region perturbation ----
// Mean over k = 1..steps of f(x) - f(x with the k most (MoRF) or least (LeRF) relevant r x r
// regions replaced by the canvas).
double aopc(Model&, const torch::Tensor& x, int64_t target, const torch::Tensor& map, bool most_relevant_first,
            int region = 4, int steps = 20, Canvas canvas = Canvas::Black);

// ---- infidelity.cpp: Yeh et al. 2019 ----
// E_I[(I . map - (f(x) - f(x - I)))^2] over Gaussian perturbations I (sd sigma x the input's range).
double infidelity(Model&, const torch::Tensor& x, int64_t target, const torch::Tensor& map, int samples = 50,
                  double sigma = 0.1, uint64_t seed = 0);

// ---- sensitivity.cpp: Yeh et al. 2019 ----
struct Sensitivity {
  double max = 0, mean = 0;  // max- and average: ||map(x') - map(x)|| / max(||map(x)||, ||map(x')||)
};
// Over `samples` points x' uniform in the L-infinity ball of radius `radius` x the input's range.
Sensitivity sensitivity(Model&, Method&, const torch::Tensor& x, int64_t target, int samples = 10,
                        double radius = 0.02, uint64_t seed = 0);
// How far `moved` is from `base`: ||moved - base|| / max(||base||, ||moved||), in [0, 2], 0 for
// two zero maps (sensitivity's distance; the viewer's noise panel uses it on its copies).
double relative_change(const torch::Tensor& base, const torch::Tensor& moved);

// ---- randomisation.cpp: Adebayo et al. 2018 ----
struct RandomisationStep {
  std::string layer;       // the layer (module) whose parameters were last randomised
  double spearman = 0;     // rank correlation of |map| with the original |map|
  double ssim = 0;         // structural similarity of the normalised |maps|
};
// Re-initialises the parameters of a copy of the model layer by layer from the output side
// (cascading: each step keeps the earlier randomisations; independent: one layer at a time) and
// compares the maps. Layers are the modules that own parameters, in definition order.
// `maps` (optional) receives the compared |maps| as 2-D planes: the original first, then one per step.
std::vector<RandomisationStep> randomisation(Model&, Method&, const torch::Tensor& x, int64_t target, bool cascading,
                                             uint64_t seed = 0, std::vector<torch::Tensor>* maps = nullptr,
                                             const std::function<void(double)>& progress = {});
double spearman(const torch::Tensor& a, const torch::Tensor& b);  // ties take their average rank
torch::Tensor average_ranks(const torch::Tensor& v);               // as scipy.stats.rankdata (from 0)
double ssim(const torch::Tensor& a, const torch::Tensor& b);  // 2-D maps, 7x7 windows, scaled to [0,1]

// ---- complexity.cpp ----
double gini(const torch::Tensor& map);     // sparseness of |map|: 0 for a constant map, -> 1 one-hot
double entropy(const torch::Tensor& map);  // complexity: Shannon entropy (nats) of |map| / sum

}  // namespace salient::metrics
