// Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop's fine-grained map times the Grad-CAM map
// upsampled to the input (bilinear, as Salient's grad-cam shows it; Captum upsamples nearest).
#include <algorithm>

#include "salient/error.hpp"
#include "salient/methods/guided_backprop.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

// Grad-CAM's description with its layer options (`reg` holds the CAMs already).
MethodInfo guided_grad_cam_info(const Registry& reg) {
  {
    MethodInfo m = reg.info("grad-cam");
    m.name = "guided-grad-cam";
    m.title = "Guided Grad-CAM";
    m.family = Family::ModifiedBackprop;
    m.paper = "Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization";
    m.summary = "Guided Backprop times the Grad-CAM map: fine detail where the class is localised";
    m.options.erase(std::remove_if(m.options.begin(), m.options.end(),
                                   [](const OptionSpec& o) { return o.name == "relu"; }),
                    m.options.end());
    for (auto& o : m.options)
      if (o.name == "batch-size") {
        o.default_value = GuidedOptions().batch;
        o.help = "inputs per forward/backward pass";
      }
    return m;
  }
}

}  // namespace

GuidedGradCam::GuidedGradCam(MethodInfo info, nlohmann::json options) : info_(std::move(info)) {
  OptionReader r(options, "guided-grad-cam");
  const int64_t batch = r.get_int("batch-size", GuidedOptions().batch, 1);
  guided_ = std::make_unique<GuidedBackprop>(ReluMode::Guided, GuidedOptions{batch});
  nlohmann::json cam = {{"relu", true}};
  for (const char* key : {"layer", "reshape"})  // transformer tokens: Grad-CAM's grid, as grad-cam takes it
    if (options.contains(key)) cam[key] = options[key];
  cam_ = Registry::builtin().create("grad-cam", cam);
}

nlohmann::json GuidedGradCam::params() const {
  nlohmann::json p = cam_->params();
  return {{"layer", p["layer"]}, {"reshape", p["reshape"]}, {"batch-size", guided_->params()["batch-size"]}};
}

torch::Tensor GuidedGradCam::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                     Attribution& out) {
  if (inputs.dim() != 4) throw Error("guided-grad-cam needs image inputs [N, C, H, W]; got " + c10::str(inputs.sizes()));
  guided_->set_progress([this](double f) { report_progress(0.5 * f); });
  Attribution g = guided_->attribute(model, inputs, targets);
  Attribution c = cam_->attribute(model, inputs, targets);
  report_progress(1.0);
  out.scores = g.scores;
  out.extra["guided-backprop"] = g.map;
  out.extra["grad-cam"] = c.map;
  return g.map * c.map;  // [N, C, H, W] * [N, 1, H, W]
}

void register_guided_grad_cam(Registry& r) {
  MethodInfo info = guided_grad_cam_info(r);
  r.add(info, [info](const nlohmann::json& o, const ModelMetadata&) { return std::make_unique<GuidedGradCam>(info, o); });
}

}  // namespace salient
