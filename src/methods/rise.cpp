// RISE (Petsiuk et al. 2018): the output on randomly masked inputs, averaged per element over the
// masks that keep it. That raw map carries an offset, the mean output over the masks, even on
// elements the model ignores: the map returned is raw - offset (0 where the model does not look);
// the raw map is kept as extra "raw" and the offset in diagnostics "offset".
#include <ATen/CPUGeneratorImpl.h>

#include "salient/error.hpp"
#include "salient/methods/blackbox.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

struct RiseOptions : BlackBoxCommon {
  int64_t samples = 4000;  // masks
  int64_t grid = 7;        // mask grid cells per side
  double keep = 0.5;       // probability a cell is kept
};

torch::Tensor rise(const BlackBoxCall& c, const RiseOptions& o) {
  if (c.x.dim() != 3) throw Error("rise needs image inputs [C, H, W]");
  const int64_t n = o.samples, s = o.grid, h = c.x.size(1), w = c.x.size(2);
  const int64_t ch = (h + s - 1) / s, cw = (w + s - 1) / s;
  if (n > kMaxCoalitionValues / (s * s))
    throw Error("rise: " + std::to_string(n) + " masks of a " + std::to_string(s) + "x" + std::to_string(s) +
                " grid exceed Salient's cap of " + std::to_string(kMaxCoalitionValues) + " cells; lower samples or grid");
  // All random draws up front (grids and shifts are small), so chunking cannot change them.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
  auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  torch::Tensor grids = (at::rand({n, 1, s, s}, gen, f32) < o.keep).to(torch::kFloat);
  torch::Tensor dy = (at::rand({n}, gen, f32) * ch).floor().to(torch::kLong);
  torch::Tensor dx = (at::rand({n}, gen, f32) * cw).floor().to(torch::kLong);
  torch::Tensor sal = torch::zeros({h, w}, torch::kDouble);
  double total = 0;
  for (int64_t b = 0; b < n; b += c.batch) {
    const int64_t e = std::min(n, b + c.batch);
    // Upsampled grids, each cropped at its own shift (one gather per axis for the whole chunk).
    torch::Tensor up = torch::upsample_bilinear2d(grids.slice(0, b, e), {(s + 1) * ch, (s + 1) * cw}, false).squeeze(1);
    const int64_t nb = e - b;
    torch::Tensor rows = dy.slice(0, b, e).view({nb, 1}) + torch::arange(h, torch::kLong).view({1, h});
    torch::Tensor cols = dx.slice(0, b, e).view({nb, 1}) + torch::arange(w, torch::kLong).view({1, w});
    torch::Tensor m = up.gather(1, rows.unsqueeze(2).expand({nb, h, up.size(2)}))
                          .gather(2, cols.unsqueeze(1).expand({nb, h, w}));  // [B,H,W]
    torch::Tensor inputs = c.baseline.unsqueeze(0) + (c.x - c.baseline).unsqueeze(0) * m.unsqueeze(1).to(c.x.options());
    torch::Tensor f = batched_scores(c.model, inputs, c.target, c.batch);
    sal += torch::matmul(f.unsqueeze(0), m.reshape({nb, h * w}).to(torch::kDouble)).view({h, w});
    total += f.sum().item<double>();
    c.progress(static_cast<double>(e) / n);
  }
  const double offset = total / static_cast<double>(n);
  c.diag["offset"] = offset;
  torch::Tensor raw = (sal / (static_cast<double>(n) * o.keep)).unsqueeze(0).expand(c.x.sizes()).contiguous();
  c.extra["raw"] = raw;
  return raw - offset;
}

}  // namespace

void register_rise(Registry& r) {
  MethodInfo m;
  m.name = "rise";
  m.title = "RISE";
  m.paper = "Petsiuk, Das & Saenko 2018, RISE: Randomized Input Sampling for Explanation of Black-box Models";
  m.summary = "mean output over random smooth masks per element, minus the mean output over all masks";
  auto t = OptionTable<RiseOptions>()
               .integer("samples", &RiseOptions::samples, 1, "number of masks")
               .integer("grid", &RiseOptions::grid, 1, "mask grid cells per side")
               .real("keep", &RiseOptions::keep, 0.0, "probability that a cell is kept", 1.0, /*min_open=*/true);
  add_blackbox(r, m, std::move(t), rise);
}

}  // namespace salient
