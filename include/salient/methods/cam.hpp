#pragma once
// The CAM family: a class activation map is a weighted sum of a layer's activation channels; each
// variant only says how it weighs (a CamRule). Maps are [N, 1, H, W] at the input's resolution
// (bilinear), with the raw layer-resolution map kept in Attribution::extra["raw"].
#include <functional>
#include <memory>

#include "salient/layers.hpp"
#include "salient/method.hpp"
#include "salient/option_table.hpp"

namespace salient {

struct CamOptions {
  std::vector<std::string> layers;  // empty: the model's last Conv2d module
  bool relu = true;                 // keep only positive evidence (as the papers)
  int64_t reshape_drop = -1;        // >= 0: activations are tokens [N,T,C]; drop this many, make a grid
  int64_t batch = 32;               // masked inputs / ablated channels per forward (score-cam, ablation-cam)
};

// The CAMs' options (one table for every variant): layer, relu, reshape, batch-size.
const OptionTable<CamOptions>& cam_options_table();

// What a rule sees: activations A [N,C,h,w], gradients G (undefined when the variant needs none),
// and, for forward-only variants, the model, the capture and the inputs.
struct CamContext {
  Model& model;
  LayerCapture& capture;
  size_t layer;                 // index of the layer in the capture
  const torch::Tensor& inputs;  // [N, ...]
  const torch::Tensor& targets; // [N]
  const CamOptions& options;
  std::function<void(double)> progress;  // forward-only variants: fraction of their passes done
  const torch::Tensor& layer_output;     // the layer's activations as it gives them ([N,T,C] tokens
                                         // under --reshape; else A)
};
// Returns the map [N, h, w] before ReLU.
using CamRule = std::function<torch::Tensor(const torch::Tensor& A, const torch::Tensor& G, const CamContext&)>;

class Cam final : public Method {
 public:
  Cam(MethodInfo info, CamRule rule, CamOptions options);
  ~Cam() override;
  const MethodInfo& info() const override { return info_; }
  nlohmann::json params() const override;
  void check(Model& model, const torch::Tensor& example) override;

 protected:
  torch::Tensor compute(Model&, const torch::Tensor&, const torch::Tensor&, Attribution&) override;

 private:
  LayerCapture& capture_for(Model& model, const torch::Tensor& example = {});  // example: to choose the default layer
  MethodInfo info_;
  CamRule rule_;
  CamOptions options_;
  std::unique_ptr<LayerCapture> capture_;  // built for the module it last met
  c10::intrusive_ptr<c10::ivalue::Object> captured_module_;
  std::vector<std::string> layers_used_;
};

// The default layer: the last Conv2d module (throws salient::Error when there is none).
// With an example input, a last Conv2d whose output is the model's dense output (a segmentation's
// head) is passed over for the one before it.
std::string default_cam_layer(Model& model, const torch::Tensor& example = {});

}  // namespace salient
