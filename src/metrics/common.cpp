#include "salient/baseline.hpp"
#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/metrics/metrics.hpp"

namespace salient::metrics {

torch::Tensor target_probability(Model& model, const torch::Tensor& inputs, int64_t target, int64_t batch) {
  // As predictions read the output: a softmax over classes, a one-column (binary or multi-label)
  // model's sigmoid, a regression's value as it is. (A softmax over one column is 1 whatever the
  // input: every curve of a binary model or a regression was flat at 1.)
  std::vector<torch::Tensor> parts;
  for_chunks(inputs.size(0), batch, [&](int64_t b, int64_t e) {
    torch::Tensor out = model.predict(inputs.slice(0, b, e)).to(torch::kCPU, torch::kDouble);
    // A function target's value (a region's summed logits, a sum of classes) is scored as it is.
    parts.push_back(model.output_reduction() || model.output_function() ? out.select(1, target) : output_probabilities(model.metadata(), out).select(1, target));
  });
  return torch::cat(parts);
}

// What removed features become: black pixels (value 0 before preprocessing) or a blurred copy.
torch::Tensor canvas_for(Model& model, const torch::Tensor& x, Canvas canvas) {
  switch (canvas) {
    case Canvas::Blur: return gaussian_blur(x, std::max(1.0, x.size(-1) / 10.0));
    case Canvas::Zeros: return torch::zeros_like(x);
    case Canvas::Mean: return Baseline::parse("mean", model.metadata()).make(x, 0);
    case Canvas::Black: break;
  }
  return black_canvas(x, model.metadata());
}

torch::Tensor relevance(const torch::Tensor& map, const torch::Tensor& x) {
  torch::Tensor m = map.detach().to(torch::kCPU, torch::kDouble);
  if (x.dim() == 3) {
    if (m.dim() == 3) m = m.sum(0);
    if (m.dim() != 2 || m.size(0) != x.size(1) || m.size(1) != x.size(2))
      throw Error("metric: the map's shape " + c10::str(map.sizes()) + " does not fit the input " + c10::str(x.sizes()));
    return m.flatten();
  }
  if (m.numel() != x.numel()) throw Error("metric: the map's shape does not fit the input");
  return m.flatten();
}

}  // namespace salient::metrics
