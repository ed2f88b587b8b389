#include "salient/class_model.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "salient/baseline.hpp"
#include "salient/error.hpp"
#include "salient/gradients.hpp"

namespace salient {

std::vector<ClassModel> class_models(Model& model, const std::vector<int64_t>& classes, const ClassModelOptions& o) {
  if (classes.empty()) return {};
  constexpr size_t kRows = 16;  // classes per pass: bounds memory (a 1000-class model climbs 16 at a time)
  if (classes.size() > kRows) {
    std::vector<ClassModel> out;
    for (size_t b = 0; b < classes.size(); b += kRows) {
      auto part = class_models(model, std::vector<int64_t>(classes.begin() + b, classes.begin() + std::min(classes.size(), b + kRows)), o);
      for (auto& m : part) out.push_back(std::move(m));
    }
    return out;
  }
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
  // All classes climb at once, a row each (one forward/backward per step); each row's jitter comes
  // from a generator seeded by (seed, class), so a class's image does not depend on the others asked.
  const int64_t k = static_cast<int64_t>(classes.size());
  std::vector<int64_t> xshape{k};
  xshape.insert(xshape.end(), shape.begin(), shape.end());
  torch::Tensor x = torch::max(torch::min(torch::zeros(xshape), hi), lo);
  std::vector<at::Generator> gens;
  for (int64_t c : classes) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(o.seed * 1000003 + static_cast<uint64_t>(c)));
  const torch::Tensor t = torch::tensor(classes, torch::kLong);
  const bool image = shape.size() == 3;
  torch::Tensor start;
  target_gradient(model, x, t, &start);
  for (int64_t step = 0; step < o.steps; ++step) {
    std::vector<std::pair<int64_t, int64_t>> shifts(static_cast<size_t>(k), {0, 0});
    torch::Tensor xj = x.clone();
    if (image && o.jitter > 0)
      for (int64_t i = 0; i < k; ++i) {
        torch::Tensor r = at::randint(-o.jitter, o.jitter + 1, {2}, gens[i], torch::TensorOptions().dtype(torch::kLong));
        shifts[i] = {r[0].item<int64_t>(), r[1].item<int64_t>()};
        xj[i] = torch::roll(x[i], {shifts[i].first, shifts[i].second}, {1, 2});
      }
    torch::Tensor g = target_gradient(model, xj, t).to(torch::kCPU, torch::kFloat);
    for (int64_t i = 0; i < k; ++i) {
      torch::Tensor gi = image ? torch::roll(g[i], {-shifts[i].first, -shifts[i].second}, {1, 2}) : g[i];
      const double scale = gi.abs().mean().item<double>();
      if (!(scale > 0)) continue;  // a flat score: nothing to climb
      torch::Tensor xi = (1.0 - o.decay) * x[i] + o.step_size * range * (gi / scale);  // L2 decay, then a normalised ascent step
      if (image && o.blur > 0 && (step + 1) % o.blur_every == 0) xi = gaussian_blur(xi, o.blur);
      x[i] = torch::max(torch::min(xi, hi), lo);
    }
  }
  torch::Tensor logits = model.predict(x).to(torch::kCPU, torch::kFloat);
  std::vector<ClassModel> out(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const int64_t c = classes[i];
    torch::Tensor l = logits[i];
    out[i].input = x[i].clone();
    out[i].start_score = start[i].item<double>();
    out[i].score = l[c].item<double>();
    out[i].top_class = l.argmax().item<int64_t>();
    out[i].probability = (meta.output == "probabilities" ? l : l.size(0) == 1 ? l.sigmoid() : l.softmax(0))[c].item<double>();
  }
  return out;
}

}  // namespace salient
