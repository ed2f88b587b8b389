#pragma once
// Baselines (reference inputs) for the path and Shapley methods, and sets of reference inputs.
#include <string>

#include <torch/script.h>

#include "salient/image.hpp"
#include "salient/metadata.hpp"
#include "salient/model.hpp"

namespace salient {

struct Baseline {
  enum class Kind { Zeros, Black, Constant, Blur, Uniform, Tensor, Mean, Set, Tokens };
  Kind kind = Kind::Zeros;
  double value = 0.0;    // Constant: the value (model input space); Blur: the Gaussian sigma in pixels
  torch::Tensor tensor;  // Tensor: one input, loaded from a file; Set: the reference inputs [M, ...]
  torch::Tensor weights; // Set: each reference input's weight [M] (double, summing to 1)
  std::string spec = "zeros";
  bool defaulted = true; // no spec was given: a tabular model's default is "mean" (see resolve_default)

  // "zeros" (0 in the model's input space, after normalisation: Captum's default), "black" (a
  // pixel value of 0 -- the metadata's value_range low -- before normalisation), "constant:V" or a
  // bare number V (model input space), "blur[:SIGMA]" (default 5 px), "uniform" (uniform noise
  // between the input's min and max), or a file: an image (preprocessed per `meta`) or an .npy
  // array of one input's shape (or [1, ...]). Files are read here, never by the methods. "zero" is
  // refused as ambiguous.
  // Tabular models (metadata features) also take "mean" (the mean row: every numeric column at its
  // metadata mean, a categorical one at 1/K per category) and a background set, the baseline
  // distribution of the Shapley and path methods: "FILE.csv" or an .npy stack [M, ...] (a seeded
  // sample of at most 100 rows), "sample:M:FILE" (at most M rows) or "kmeans:K:FILE" (K k-means
  // centroids weighted by their clusters' sizes, as SHAP's kmeans summary).
  // Text models (metadata "tokenizer") take "pad" (their default), "unk" or "mask": the input's
  // embeddings with every token but cls/sep/pad replaced by that token; "zeros" is the zero vector.
  static Baseline parse(const std::string& spec, const ModelMetadata& meta);
  // The baseline for one input x (no batch dimension); for a set, the reference inputs [M, ...x].
  // A text baseline (Tokens) is made by `model` in embedding mode. Throws salient::Error on a shape
  // mismatch.
  torch::Tensor make(const torch::Tensor& x, uint64_t seed, Model* model = nullptr) const;
  bool is_set() const { return kind == Kind::Set; }
  // Whether parse() reads `spec` as a background set (sample:, kmeans: or a .csv file).
  static bool is_set_spec(const std::string& spec);
  // The default of a method's baseline option, once the model is known: "mean" for a tabular model
  // (the mean row), else zeros. A given spec is kept.
  static Baseline resolve_default(const Baseline& b, const ModelMetadata& meta);

 private:
  ModelMetadata meta_;  // Black: the preprocessing that maps pixel 0 into the input space
};

// An input of x's shape whose every pixel is black (value_range low) after `meta`'s normalisation.
torch::Tensor black_canvas(const torch::Tensor& x, const ModelMetadata& meta);

// A set of inputs [M, ...] (e.g. baselines of GradientShap): a folder of images, an .npy stack, or
// an IDX image file such as Fashion-MNIST's (plain or .gz). At most `limit` inputs (a seeded random
// subset when there are more; limit <= 0: all).
torch::Tensor load_input_set(const std::string& spec, const ModelMetadata& meta, int64_t limit, uint64_t seed,
                             Resize resize = Resize::None);

// K centroids of `rows` [N, D] by k-means (k-means++ seeding, seeded; Lloyd's iterations) and the
// share of rows nearest each [K] (double, summing to 1). K >= N returns the rows, equally weighted.
std::pair<torch::Tensor, torch::Tensor> kmeans(const torch::Tensor& rows, int64_t k, uint64_t seed);

// At most `limit` of a set's inputs [M, ...]: a seeded random subset in their order (limit <= 0: all).
torch::Tensor load_limit(const torch::Tensor& set, int64_t limit, uint64_t seed);

// Separable Gaussian blur of an image-like tensor [C,H,W] (edges replicated).
torch::Tensor gaussian_blur(const torch::Tensor& x, double sigma);

}  // namespace salient
