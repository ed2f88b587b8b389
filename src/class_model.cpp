#include "salient/class_model.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "salient/baseline.hpp"
#include "salient/error.hpp"
#include "salient/gradients.hpp"

namespace salient {

ClassModel class_model(Model& model, int64_t cls, const ClassModelOptions& o) {
  const ModelMetadata& meta = model.metadata();
  if (meta.input_shape.empty()) throw Error("class-model needs the model's input_shape (metadata)");
  if (o.steps < 1 || o.steps > 100000) throw Error("class-model: --steps must be between 1 and 100000");
  if (!(o.step_size > 0) || !(o.decay >= 0) || o.jitter < 0 || o.jitter > 64 || !(o.blur >= 0) || o.blur_every < 1)
    throw Error("class-model: step size must be > 0, decay >= 0, jitter 0..64 pixels, blur >= 0, blur-every >= 1");
  const auto& shape = meta.input_shape;
  // The valid input range per channel: value_range after normalisation.
  const int64_t c = shape.size() == 3 ? shape[0] : 1;
  torch::Tensor lo = torch::empty({c}), hi = torch::empty({c});
  for (int64_t k = 0; k < c; ++k) {
    const double m = meta.mean.empty() ? 0.0 : meta.mean[std::min<size_t>(k, meta.mean.size() - 1)];
    const double s = meta.std.empty() ? 1.0 : meta.std[std::min<size_t>(k, meta.std.size() - 1)];
    lo[k] = (meta.range_lo - m) / s;
    hi[k] = (meta.range_hi - m) / s;
  }
  std::vector<int64_t> bshape(shape.size(), 1);
  if (shape.size() == 3) bshape[0] = c;
  lo = lo.view(bshape);
  hi = hi.view(bshape);
  const double range = (hi - lo).abs().max().item<double>();
  // The start: the mean image of the data as normalisation sees it (zeros), clamped into range.
  torch::Tensor x = torch::max(torch::min(torch::zeros(shape), hi), lo);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const torch::Tensor t = torch::full({1}, cls, torch::kLong);
  const bool image = shape.size() == 3;
  ClassModel out;
  torch::Tensor score;
  target_gradient(model, x.unsqueeze(0), t, &score);
  out.start_score = score[0].item<double>();
  for (int64_t step = 0; step < o.steps; ++step) {
    int64_t dy = 0, dx = 0;
    if (image && o.jitter > 0) {
      torch::Tensor r = at::randint(-o.jitter, o.jitter + 1, {2}, gen, torch::TensorOptions().dtype(torch::kLong));
      dy = r[0].item<int64_t>(), dx = r[1].item<int64_t>();
    }
    torch::Tensor xj = image ? torch::roll(x, {dy, dx}, {1, 2}) : x;
    torch::Tensor g = target_gradient(model, xj.unsqueeze(0), t)[0].to(torch::kCPU, torch::kFloat);
    if (image) g = torch::roll(g, {-dy, -dx}, {1, 2});
    const double scale = g.abs().mean().item<double>();
    if (!(scale > 0)) break;  // a flat score: nothing to climb
    x = (1.0 - o.decay) * x + o.step_size * range * (g / scale);  // L2 decay, then a normalised ascent step
    if (image && o.blur > 0 && (step + 1) % o.blur_every == 0) x = gaussian_blur(x, o.blur);
    x = torch::max(torch::min(x, hi), lo);
  }
  torch::Tensor logits = model.predict(x.unsqueeze(0)).to(torch::kCPU, torch::kFloat)[0];
  out.input = x;
  out.score = logits[cls].item<double>();
  out.top_class = logits.argmax().item<int64_t>();
  out.probability = (meta.output == "probabilities" ? logits : logits.size(0) == 1 ? logits.sigmoid() : logits.softmax(0))[cls].item<double>();
  return out;
}

}  // namespace salient
