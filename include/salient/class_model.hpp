#pragma once
// Class models (Simonyan, Vedaldi & Zisserman 2014, section 2): the input that maximises a class's
// score, the global half of the saliency paper. Gradient ascent on the unnormalised score S_c(I)
// with L2 decay (arg max S_c(I) - lambda ||I||^2), plus the jitter and periodic blur that make the
// images legible (Yosinski et al. 2015), kept inside the input's value range.
#include <cstdint>
#include <vector>

#include <torch/script.h>

#include "salient/model.hpp"

namespace salient {

struct ClassModelOptions {
  int64_t steps = 200;
  double step_size = 0.01;  // mean |change| per step, as a fraction of the input range (gradient / mean |g|)
  double decay = 0.01;      // L2 decay: x <- (1 - decay) x before each step (the gradient of lambda ||x||^2)
  int64_t jitter = 2;       // pixels of random shift before each step (0: none)
  double blur = 0.5;        // Gaussian blur sigma in pixels, every `blur_every` steps (0: none)
  int64_t blur_every = 4;
  uint64_t seed = 0;
};

struct ClassModel {
  torch::Tensor input;       // [shape...] in the model's input space
  double score = 0;          // S_c at the result
  double start_score = 0;    // S_c at the start (the mean input: zeros after normalisation)
  int64_t top_class = -1;    // the model's prediction for the result
  double probability = 0;    // of class c at the result
};

// One class model per class, computed together (a row each). Throws salient::Error when the model
// has no input_shape or the options are out of range.
std::vector<ClassModel> class_models(Model& model, const std::vector<int64_t>& classes, const ClassModelOptions& options);

}  // namespace salient
