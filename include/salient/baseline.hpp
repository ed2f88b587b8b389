#pragma once
// Baselines (reference inputs) for the path and Shapley methods, and sets of reference inputs.
#include <string>

#include <torch/script.h>

#include "salient/image.hpp"
#include "salient/metadata.hpp"

namespace salient {

struct Baseline {
  enum class Kind { Zeros, Black, Constant, Blur, Uniform, Tensor };
  Kind kind = Kind::Zeros;
  double value = 0.0;    // Constant: the value (model input space); Blur: the Gaussian sigma in pixels
  torch::Tensor tensor;  // Tensor: one input, loaded from a file
  std::string spec = "zeros";

  // "zeros" (0 in the model's input space, after normalisation: Captum's default), "black" (a
  // pixel value of 0 -- the metadata's value_range low -- before normalisation), "constant:V" or a
  // bare number V (model input space), "blur[:SIGMA]" (default 5 px), "uniform" (uniform noise
  // between the input's min and max), or a file: an image (preprocessed per `meta`) or an .npy
  // array of one input's shape (or [1, ...]). Files are read here, never by the methods. "zero" is
  // refused as ambiguous.
  static Baseline parse(const std::string& spec, const ModelMetadata& meta);
  // The baseline for one input x (no batch dimension). Throws salient::Error on a shape mismatch.
  torch::Tensor make(const torch::Tensor& x, uint64_t seed) const;

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

// Separable Gaussian blur of an image-like tensor [C,H,W] (edges replicated).
torch::Tensor gaussian_blur(const torch::Tensor& x, double sigma);

}  // namespace salient
