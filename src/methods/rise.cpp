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

// D-RISE (Petsiuk et al. 2021): RISE's masks weighted by a detection's similarity (a box target's
// value: IoU x class cosine x objectness of the best match). The paper's map sum_i s_i M_i / (N p)
// is extra "raw"; as for RISE the map returned is raw minus the mean similarity over the masks
// (diagnostics "offset"), 0 where the detector does not look (the paper's map is that offset
// everywhere plus this: a heatmap of it was one flat colour). keep-masks adds the masks as extra
// "masks" [N, H, W], so an independent implementation can score the same ones.
struct DriseOptions : BlackBoxCommon {
  int64_t samples = 1000;
  int64_t grid = 16;
  double keep = 0.5;
  bool keep_masks = false;
};

// The masked-input loop of both: the weighted mask sum / (N p), the scores' sum, and the masks when
// asked for.
torch::Tensor masked_sum(const BlackBoxCall& c, const char* name, int64_t n, int64_t s, double keep, double& total,
                         torch::Tensor* masks) {
  if (c.x.dim() != 3) throw Error(std::string(name) + " needs image inputs [C, H, W]");
  const int64_t h = c.x.size(1), w = c.x.size(2);
  const int64_t ch = (h + s - 1) / s, cw = (w + s - 1) / s;
  if (n > kMaxCoalitionValues / (s * s))
    throw Error(std::string(name) + ": " + std::to_string(n) + " masks of a " + std::to_string(s) + "x" + std::to_string(s) +
                " grid exceed Salient's cap of " + std::to_string(kMaxCoalitionValues) + " cells; lower samples or grid");
  // All random draws up front (grids and shifts are small), so chunking cannot change them.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed);
  auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  torch::Tensor grids = (at::rand({n, 1, s, s}, gen, f32) < keep).to(torch::kFloat);
  torch::Tensor dy = (at::rand({n}, gen, f32) * ch).floor().to(torch::kLong);
  torch::Tensor dx = (at::rand({n}, gen, f32) * cw).floor().to(torch::kLong);
  torch::Tensor sal = torch::zeros({h, w}, torch::kDouble);
  total = 0;
  std::vector<torch::Tensor> kept;
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
    if (masks) kept.push_back(m.to(torch::kFloat));
    sal += torch::matmul(f.unsqueeze(0), m.reshape({nb, h * w}).to(torch::kDouble)).view({h, w});
    total += f.sum().item<double>();
    c.progress(static_cast<double>(e) / n);
  }
  if (masks) *masks = torch::cat(kept);
  return (sal / (static_cast<double>(n) * keep)).unsqueeze(0).expand(c.x.sizes()).contiguous();
}

torch::Tensor rise(const BlackBoxCall& c, const RiseOptions& o) {
  double total = 0;
  torch::Tensor raw = masked_sum(c, "rise", o.samples, o.grid, o.keep, total, nullptr);
  const double offset = total / static_cast<double>(o.samples);
  c.diag["offset"] = offset;
  c.extra["raw"] = raw;
  return raw - offset;
}

torch::Tensor drise(const BlackBoxCall& c, const DriseOptions& o) {
  double total = 0;
  torch::Tensor masks;
  torch::Tensor raw = masked_sum(c, "d-rise", o.samples, o.grid, o.keep, total, o.keep_masks ? &masks : nullptr);
  const double offset = total / static_cast<double>(o.samples);
  c.diag["offset"] = offset;
  c.extra["raw"] = raw;
  if (o.keep_masks) c.extra["masks"] = masks;
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

  MethodInfo d;
  d.name = "d-rise";
  d.title = "D-RISE";
  d.paper = "Petsiuk et al. 2021, Black-box Explanation of Object Detectors via Saliency Maps";
  d.summary = "a detected box's similarity (IoU x class cosine x objectness of its best match) on randomly masked images, per pixel";
  auto dt = OptionTable<DriseOptions>()
                .integer("samples", &DriseOptions::samples, 1, "number of masks")
                .integer("grid", &DriseOptions::grid, 1, "mask grid cells per side")
                .real("keep", &DriseOptions::keep, 0.0, "probability that a cell is kept", 1.0, /*min_open=*/true)
                .flag("keep-masks", &DriseOptions::keep_masks, "also write the masks [samples, H, W] (d-rise.masks.npy)");
  add_blackbox(r, d, std::move(dt), drise);
}

}  // namespace salient
