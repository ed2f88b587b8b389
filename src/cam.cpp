#include "salient/methods/cam.hpp"

#include "salient/error.hpp"
#include "salient/gradients.hpp"
#include "salient/registry.hpp"
#include "salient/target.hpp"

namespace salient {

std::string default_cam_layer(Model& model, const torch::Tensor& example) {
  std::vector<std::string> convs;
  for (const auto& item : model.module().named_modules()) {
    auto qn = item.value.type()->name();
    if (!item.name.empty() && qn && qn->name() == "Conv2d") convs.push_back(item.name);
  }
  if (convs.empty()) throw Error("the model has no Conv2d module to default to: pass --layer (see `salient layers`)");
  // A segmentation's last convolution is often its head, whose output is the model's dense output:
  // a CAM there weights the class maps themselves. The last feature layer before it is meant.
  if (convs.size() > 1 && example.defined()) {
    try {
      torch::NoGradGuard no_grad;
      torch::Tensor out;
      ReductionScope seen(model, Model::OutputReduction([&out](const torch::Tensor& t) {
                            out = t;
                            return class_means(t);
                          }),
                          "");
      LayerCapture capture(model, {convs.back()});
      const torch::Tensor act = capture.activation(example.to(model.device()));
      model.predict(example);
      if (out.dim() == 4 && act.sizes() == out.sizes() && torch::allclose(act.to(out.dtype()), out, 1e-5, 1e-6))
        return convs[convs.size() - 2];
    } catch (const std::exception&) {  // the methods' own checks say what is wrong
    }
  }
  return convs.back();
}

Cam::Cam(MethodInfo info, CamRule rule, CamOptions options)
    : info_(std::move(info)), rule_(std::move(rule)), options_(std::move(options)) {}

Cam::~Cam() = default;

const OptionTable<CamOptions>& cam_options_table() {
  using O = CamOptions;
  static const auto t = OptionTable<O>()
      .field("layer", "string", "module path(s), comma-separated (default: the last Conv2d); see `salient layers`",
             [](const nlohmann::json& v, const OptionContext& c, O& o) {
               o.layers.clear();
               if (v.is_string()) {
                 o.layers = split_list(v.get<std::string>());
               } else if (v.is_array()) {
                 for (const auto& e : v) {
                   if (!e.is_string()) throw Error(c.method + ": option 'layer' must be module paths (see `salient layers`)");
                   o.layers.push_back(e.get<std::string>());
                 }
               } else {
                 throw Error(c.method + ": option 'layer' must be a module path (see `salient layers`)");
               }
             },
             [](const O& o) { return nlohmann::json(o.layers); }, "")
      .flag("relu", &O::relu, "keep positive evidence only")
      .integer("reshape", &O::reshape_drop, -1, ">= 0: token activations [N,T,C] to a grid, dropping this many leading tokens")
      .integer("batch-size", &O::batch, 1, "masked inputs or ablated channels per forward pass (score-cam, ablation-cam)");
  return t;
}

nlohmann::json Cam::params() const {
  nlohmann::json p = cam_options_table().params(options_);
  if (!layers_used_.empty()) p["layer"] = layers_used_;  // the default layer, once resolved
  return p;
}

LayerCapture& Cam::capture_for(Model& model, const torch::Tensor& example) {
  // Rebuilt for another module (not another Model object: randomisation makes a new Model on a
  // copy of the module, possibly at the same address). Holding the module keeps its address unique.
  auto module = model.module()._ivalue();
  if (!capture_ || captured_module_ != module) {
    layers_used_ = options_.layers.empty() ? std::vector<std::string>{default_cam_layer(model, example)} : options_.layers;
    capture_ = std::make_unique<LayerCapture>(model, layers_used_);
    captured_module_ = module;
  }
  return *capture_;
}

void Cam::check(Model& model, const torch::Tensor& example) {
  // One pass captures the layers' shapes: each must be a map [1,C,h,w], tokens that --reshape makes
  // one, or (methods with gradients) [1,C].
  LayerCapture& capture = capture_for(model, example);
  const torch::Tensor target = model.predict(example).argmax(1);
  LayerGradients lg = layer_gradients(capture, example, target, false);
  for (size_t l = 0; l < lg.activations.size(); ++l) {
    torch::Tensor a = lg.activations[l];
    if (options_.reshape_drop >= 0) a = tokens_to_map(a, options_.reshape_drop);
    if (a.dim() == 4 || (a.dim() == 2 && info_.needs_gradients && options_.reshape_drop < 0 && lg.activations.size() == 1)) continue;
    throw Error(info_.name + ": layer '" + layers_used_[l] + "' gives activations of shape " + c10::str(a.sizes()) +
                "; CAMs need [N, C, h, w] (use --reshape for transformer tokens [N, T, C])");
  }
}

torch::Tensor Cam::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets, Attribution& out) {
  capture_for(model, inputs.slice(0, 0, 1));
  LayerGradients lg = layer_gradients(*capture_, inputs, targets, info_.needs_gradients);
  out.scores = lg.scores;
  const bool image = inputs.dim() == 4;
  torch::Tensor total;
  for (size_t l = 0; l < lg.activations.size(); ++l) {
    const torch::Tensor raw = lg.activations[l];
    torch::Tensor a = raw, g = info_.needs_gradients ? lg.gradients[l] : torch::Tensor();
    if (options_.reshape_drop >= 0) {
      a = tokens_to_map(a, options_.reshape_drop);
      if (g.defined()) g = tokens_to_map(g, options_.reshape_drop);
    }
    if (a.dim() == 2 && g.defined() && options_.reshape_drop < 0) {
      // A layer without spatial dims ([N, C], a linear layer): the gradients themselves are the
      // weights, one value per input (as Captum's LayerGradCam on a non-convolutional layer).
      torch::Tensor cam = (g * a).sum(1, true);
      if (options_.relu) cam = cam.clamp_min(0);
      out.extra[lg.activations.size() == 1 ? "raw" : "raw-" + layers_used_[l]] = cam.detach().cpu();
      if (lg.activations.size() > 1)
        throw Error(info_.name + ": layer '" + layers_used_[l] + "' has no spatial dims [N, C]; it cannot be averaged with other layers");
      out.diagnostics["note"] = "layer '" + layers_used_[l] + "' has activations [N, C]: the map is one value per input";
      return cam;
    }
    if (a.dim() != 4)
      throw Error(info_.name + ": layer '" + layers_used_[l] + "' gives activations of shape " + c10::str(a.sizes()) +
                  "; CAMs need [N, C, h, w] (use --reshape for transformer tokens [N, T, C])");
    CamContext ctx{model, *capture_, l, inputs, targets, options_, [this](double f) { report_progress(f); }, raw};
    torch::Tensor cam = rule_(a, g, ctx);
    if (options_.relu) cam = cam.clamp_min(0);
    out.extra[lg.activations.size() == 1 ? "raw" : "raw-" + layers_used_[l]] = cam.detach().cpu();
    cam = cam.unsqueeze(1);
    if (image) cam = torch::upsample_bilinear2d(cam, {inputs.size(2), inputs.size(3)}, /*align_corners=*/false);
    if (lg.activations.size() > 1) {
      // Layers have their own scales: each is brought to [0, 1] before averaging.
      torch::Tensor peak = cam.abs().flatten(1).amax(1).clamp_min(1e-12).view({-1, 1, 1, 1});
      cam = cam / peak;
    }
    total = total.defined() ? total + cam : cam;
  }
  return total / static_cast<double>(lg.activations.size());
}

// ---- The variants: each is how it weighs, and its entry in the registry. ----

namespace {

torch::Tensor weighted_sum(const torch::Tensor& w, const torch::Tensor& A) {  // w [N,C] -> [N,h,w]
  return (w.unsqueeze(-1).unsqueeze(-1) * A).sum(1);
}

torch::Tensor grad_cam(const torch::Tensor& A, const torch::Tensor& G, const CamContext&) {
  return weighted_sum(G.mean({2, 3}), A);
}

torch::Tensor grad_cam_pp(const torch::Tensor& A, const torch::Tensor& G, const CamContext&) {
  torch::Tensor g2 = G.square(), g3 = g2 * G;
  torch::Tensor sum_a = A.sum({2, 3}, true);
  torch::Tensor alpha = g2 / (2 * g2 + sum_a * g3 + 1e-7);
  alpha = torch::where(G != 0, alpha, torch::zeros_like(alpha));
  return weighted_sum((alpha * G.clamp_min(0)).sum({2, 3}), A);
}

torch::Tensor xgrad_cam(const torch::Tensor& A, const torch::Tensor& G, const CamContext&) {
  return weighted_sum((G * A).sum({2, 3}) / (A.sum({2, 3}) + 1e-7), A);
}

torch::Tensor hires_cam(const torch::Tensor& A, const torch::Tensor& G, const CamContext&) { return (G * A).sum(1); }

torch::Tensor layer_cam(const torch::Tensor& A, const torch::Tensor& G, const CamContext&) {
  return (G.clamp_min(0) * A).sum(1);
}

torch::Tensor eigen_cam(const torch::Tensor& A, const torch::Tensor&, const CamContext&) {
  std::vector<torch::Tensor> maps;
  for (int64_t i = 0; i < A.size(0); ++i) {
    torch::Tensor m = A[i].flatten(1).t().to(torch::kDouble);  // [hw, C]
    m = m - m.mean(0, true);
    torch::Tensor v = std::get<2>(torch::linalg_svd(m, false)).select(0, 0);  // first right singular vector
    torch::Tensor proj = torch::matmul(m, v);
    // A singular vector's sign is arbitrary: point it along the channels' total activation.
    if ((proj * A[i].sum(0).flatten().to(torch::kDouble)).sum().item<double>() < 0) proj = -proj;
    maps.push_back(proj.view({A.size(2), A.size(3)}).to(A.scalar_type()));
  }
  return torch::stack(maps);
}

torch::Tensor score_cam(const torch::Tensor& A, const torch::Tensor&, const CamContext& c) {
  if (c.inputs.dim() != 4) throw Error("score-cam needs image inputs [N, C, H, W]");
  std::vector<torch::Tensor> maps;
  for (int64_t i = 0; i < A.size(0); ++i) {
    // Each channel, upsampled and scaled to [0, 1], masks the input; its weight is the softmax
    // over channels of the target output on the masked inputs. Batched over channels.
    const int64_t channels = A.size(1), t = c.targets[i].item<int64_t>();
    const torch::Tensor x = c.inputs[i].unsqueeze(0);
    std::vector<torch::Tensor> scores;
    // Masks are made a chunk at a time (a ResNet layer4 has 512 channels: 100 MB of masks at once).
    for_chunks(channels, c.options.batch, [&](int64_t b, int64_t e) {
      torch::Tensor up = torch::upsample_bilinear2d(A[i].slice(0, b, e).unsqueeze(1), {c.inputs.size(2), c.inputs.size(3)}, false);
      torch::Tensor lo = up.flatten(1).amin(1).view({-1, 1, 1, 1}), hi = up.flatten(1).amax(1).view({-1, 1, 1, 1});
      torch::Tensor masks = (up - lo) / (hi - lo).clamp_min(1e-12);
      scores.push_back(c.model.predict(x * masks).select(1, t));
      if (c.progress) c.progress((static_cast<double>(i) + static_cast<double>(e) / channels) / A.size(0));
    });
    maps.push_back(weighted_sum(torch::cat(scores).softmax(0).unsqueeze(0), A[i].unsqueeze(0))[0]);
  }
  return torch::stack(maps);
}

torch::Tensor ablation_cam(const torch::Tensor& A, const torch::Tensor&, const CamContext& c) {
  std::vector<torch::Tensor> maps;
  for (int64_t i = 0; i < A.size(0); ++i) {
    // The drop of the target output when one channel is zeroed, relative to the output.
    const int64_t channels = A.size(1), t = c.targets[i].item<int64_t>();
    const torch::Tensor x = c.inputs[i].unsqueeze(0);
    // The layer's own layout: channels first [C,h,w], or tokens [T,C] (--reshape), whose patch
    // tokens (after the dropped ones) are what the map shows.
    const bool tokens = c.options.reshape_drop >= 0;
    const torch::Tensor own = c.layer_output[i].unsqueeze(0);
    const double y = c.capture.run_replacing(c.layer, x, own)[0][t].item<double>();
    std::vector<torch::Tensor> scores;
    for_chunks(channels, c.options.batch, [&](int64_t b, int64_t e) {
      std::vector<int64_t> reps(own.dim(), 1);
      reps[0] = e - b;
      torch::Tensor batch = own.repeat(reps);
      for (int64_t k = b; k < e; ++k) {
        if (tokens) batch[k - b].slice(0, c.options.reshape_drop).select(-1, k).zero_();
        else batch[k - b][k].zero_();
      }
      scores.push_back(c.capture.run_replacing(c.layer, x, batch).select(1, t));
      if (c.progress) c.progress((static_cast<double>(i) + static_cast<double>(e) / channels) / A.size(0));
    });
    torch::Tensor w = (y - torch::cat(scores)) / (std::abs(y) > 1e-12 ? y : 1e-12);
    maps.push_back(weighted_sum(w.unsqueeze(0), A[i].unsqueeze(0))[0]);
  }
  return torch::stack(maps);
}

void add_cam(Registry& reg, const std::string& name, const std::string& title, const std::string& paper,
             const std::string& summary, bool gradients, CamRule rule) {
  MethodInfo m;
  m.name = name;
  m.title = title;
  m.family = Family::Layer;
  m.specificity = Specificity::ModelSpecific;
  m.needs_gradients = gradients;
  m.paper = paper;
  m.summary = summary;
  m.options = cam_options_table().specs();
  reg.add(m, [m, rule](const nlohmann::json& o, const ModelMetadata&) {
    return std::make_unique<Cam>(m, rule, cam_options_table().parse(o, {m.name, ModelMetadata{}}));
  });
}

}  // namespace

void register_cams(Registry& r) {
  add_cam(r, "grad-cam", "Grad-CAM", "Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
          "channels weighted by their spatially averaged gradient", true, grad_cam);
  add_cam(r, "grad-cam++", "Grad-CAM++", "Chattopadhay et al. 2018, Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks",
          "channels weighted by positive gradients with higher-order pixel weights", true, grad_cam_pp);
  add_cam(r, "xgrad-cam", "XGrad-CAM", "Fu et al. 2020, Axiom-based Grad-CAM",
          "channels weighted by activation-normalised gradient x activation", true, xgrad_cam);
  add_cam(r, "hires-cam", "HiResCAM", "Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations",
          "element-wise gradient x activation summed over channels", true, hires_cam);
  add_cam(r, "layer-cam", "LayerCAM", "Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps",
          "element-wise positive gradient x activation summed over channels", true, layer_cam);
  add_cam(r, "eigen-cam", "Eigen-CAM", "Muhammad & Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components",
          "first principal component of the activations (class-agnostic, no gradients)", false, eigen_cam);
  add_cam(r, "score-cam", "Score-CAM", "Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for CNNs",
          "channels weighted by the softmax of the target output on channel-masked inputs (forward only)", false, score_cam);
  add_cam(r, "ablation-cam", "Ablation-CAM", "Desai & Ramaswamy 2020, Ablation-CAM",
          "channels weighted by the output drop when each is zeroed (forward only)", false, ablation_cam);
}

}  // namespace salient
