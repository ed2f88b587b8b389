#pragma once
// Shared mechanics of the black-box (perturbation) methods: feature groups, coalitions of groups
// applied against a baseline, and their scores through forward passes only.
#include <functional>
#include <map>
#include <string>

#include <torch/script.h>

#include "salient/baseline.hpp"
#include "salient/model.hpp"

namespace salient {

// A partition of one input's elements into `count` groups: labels has the input's shape (int64).
struct FeatureGroups {
  torch::Tensor labels;
  int64_t count = 0;
  // The group's value is split evenly over its elements (a tabular column: a one-hot group summed
  // back is the column's value); else every element carries it whole (Captum's feature_mask).
  bool split = false;
};

// How features are grouped, as an option: "slic[:SIZE]" (SLIC superpixels of about SIZE px;
// default: ~50 regions), "grid[:K]" (K x K cells, default 7), "elements" (every element alone), or
// an .npy file of integer labels (one input's shape, or [H, W] for images). Channels of an image
// always share a group. A tabular row (metadata features) is grouped by the user's columns unless
// "elements" is asked for: a one-hot group is one feature ("columns").
struct GroupSpec {
  std::string spec = "slic";
  torch::Tensor mask;  // the file's labels, loaded by the factory
  bool split = false;  // option spread=split: every group's value divided over its elements, so the
                       // map sums as the group values do (a table's columns and a text's tokens
                       // always are); else each element carries its group's whole value (Captum's)
  static GroupSpec parse(const std::string& spec);
  FeatureGroups make(const torch::Tensor& x, const ModelMetadata& meta) const;  // x: one input

 private:
  FeatureGroups make_groups(const torch::Tensor& x, const ModelMetadata& meta) const;
};

// Inputs where group g is kept (z[b][g] = 1) or replaced by the baseline (0): [B, ...]; with a
// background set [M, ...] as the baseline, [B*M, ...] (coalition-major).
torch::Tensor apply_coalitions(const torch::Tensor& x, const torch::Tensor& baseline, const FeatureGroups& groups,
                               const torch::Tensor& z);
// f(input)[target] for every coalition row of z, `batch` forward passes at a time: [B] (double, CPU).
// With a background set (baseline [M, ...x], weights [M]) a removed group takes each reference
// input's values in turn and the score is their weighted mean (interventional Shapley values, as
// SHAP's KernelExplainer with background data). `progress` (optional) hears the fraction of rows done.
torch::Tensor coalition_scores(Model& model, const torch::Tensor& x, const torch::Tensor& baseline,
                               const torch::Tensor& weights, const FeatureGroups& groups, const torch::Tensor& z, int64_t target, int64_t batch,
                               const std::function<void(double)>& progress = {});
// f(baseline)[target], or its weighted mean over a background set [M, ...] (baseline.dim() > x_dim).
double reference_score(Model& model, const torch::Tensor& baseline, const torch::Tensor& weights, int64_t x_dim,
                       int64_t target, int64_t batch);

// Per-group values [G] spread over the input's shape (split over a group's elements when groups.split).
torch::Tensor spread(const torch::Tensor& values, const FeatureGroups& groups);
// The same, and the group values themselves [G] and the segment labels (the input's shape) kept as
// the map's extras "groups" and "segments" (files <method>.groups.npy, <method>.segments.npy).
// Rows of different lengths [n_i, L_i] as one [sum n_i, max L_i], the short rows padded with NaN (a
// batch's "groups" extras: each input has its own number of superpixels); trim_padding() undoes it.
torch::Tensor cat_ragged(const std::vector<torch::Tensor>& parts);
torch::Tensor trim_padding(const torch::Tensor& row);  // a 1-D row less its trailing NaN
torch::Tensor spread_and_keep(const torch::Tensor& values, const FeatureGroups& groups, std::map<std::string, torch::Tensor>& extra);

// f(inputs)[target] for a stack of inputs [B, ...], `batch` at a time (forward only): [B] double CPU.
// Coalition matrices [rows, groups] (and LIME's groups x groups system) are held whole: above
// kMaxCoalitionValues values, or kMaxSurrogateGroups groups for a surrogate, this is an error naming
// the method and what to lower, never a many-GB allocation.
constexpr int64_t kMaxCoalitionValues = int64_t{1} << 27;
constexpr int64_t kMaxSurrogateGroups = 8192;
void check_coalitions(const std::string& method, int64_t rows, int64_t groups, bool surrogate = false);

torch::Tensor batched_scores(Model& model, const torch::Tensor& inputs, int64_t target, int64_t batch);

}  // namespace salient
