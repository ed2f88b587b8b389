// salient explain: saliency maps for inputs, written under --out.
#include <unistd.h>

#include <iomanip>
#include <iostream>

#include "commands.hpp"
#include "salient/error.hpp"
#include "salient/explain.hpp"

namespace salient::cli {

namespace {

struct ExplainFlags {
  ModelFlags model;
  std::vector<std::string> inputs;
  std::string methods = "saliency,smoothgrad";
  std::string out;
  std::string target = "top";
  std::string colormap = "inferno";
  std::string reduce = "abs-sum";
  std::string resize = "none";
  std::vector<std::string> options;  // KEY=VALUE, passed to every method
  // Method options with flags of their own; only those given on the command line are passed.
  int64_t samples = 0, seed = 0, batch_size = 0;
  double sigma = 0;
  std::string noise, variant, steps, quadrature, baseline, baselines;
  double tolerance = 0;
  bool abs = true, relu = true;
  std::vector<std::string> layers;
  int64_t reshape = -1;
  std::string window, stride, features;
};

}  // namespace

void add_explain(CLI::App& app) {
  auto* cmd = app.add_subcommand("explain", "compute saliency maps for inputs and write them under --out");
  auto f = std::make_shared<ExplainFlags>();
  f->model.add_to(cmd);
  cmd->add_option("--input,-i", f->inputs, "image files (PNG, JPEG, BMP, ...) or .npy stacks [N, ...]")->required();
  cmd->add_option("--method", f->methods, "comma-separated methods (see `salient methods`)")->capture_default_str();
  cmd->add_option("--out,-o", f->out, "output folder")->required();
  cmd->add_option("--target,-t", f->target, "top, top-K, a class index or a label")->capture_default_str();
  auto* o_samples = cmd->add_option("--samples", f->samples, "samples of sampling methods (smoothgrad: 50)");
  auto* o_sigma = cmd->add_option("--sigma", f->sigma, "noise sd as a fraction of the input's max - min (0.15)");
  auto* o_seed = cmd->add_option("--seed", f->seed, "random seed (0)");
  auto* o_noise = cmd->add_option("--noise", f->noise, "noise sampler: gaussian, antithetic, quasi");
  auto* o_variant = cmd->add_option("--variant", f->variant, "smoothgrad statistic: smoothgrad, smoothgrad-sq, vargrad");
  auto* o_batch = cmd->add_option("--batch-size", f->batch_size, "inputs or noisy copies per forward/backward pass: bounds memory (10)");
  auto* o_abs = cmd->add_flag("--abs,!--no-abs", f->abs, "saliency: absolute gradient (default on)");
  auto* o_steps = cmd->add_option("--steps", f->steps, "integrated-gradients: quadrature nodes, or auto (50)");
  auto* o_quad = cmd->add_option("--quadrature", f->quadrature,
                                 "riemann-left, riemann-right, riemann-middle, trapezoid, gauss-legendre");
  auto* o_base = cmd->add_option("--baseline", f->baseline, "zeros (0 after normalisation), black (pixel 0 before it), a number V or constant:V, blur[:SIGMA], uniform, or an image/.npy file");
  auto* o_tol = cmd->add_option("--tolerance", f->tolerance, "integrated-gradients: relative completeness gap (0.01)");
  auto* o_bases = cmd->add_option("--baselines", f->baselines, "gradient-shap: folder of images, .npy stack or IDX file");
  auto* o_layer = cmd->add_option("--layer", f->layers, "layer methods: module path(s) (see `salient layers`)")->delimiter(',');
  auto* o_relu = cmd->add_flag("--relu,!--no-relu", f->relu, "CAMs: keep positive evidence only (default on)");
  auto* o_reshape = cmd->add_option("--reshape", f->reshape, "CAMs on tokens [N,T,C]: drop this many leading tokens, make a grid");
  auto* o_window = cmd->add_option("--window", f->window, "occlusion: window over the trailing dims, e.g. 4x4");
  auto* o_stride = cmd->add_option("--stride", f->stride, "occlusion: strides, e.g. 2x2");
  auto* o_features = cmd->add_option("--features", f->features, "black-box groups: slic[:SIZE], grid[:K], elements, or .npy labels");
  cmd->add_option("--option", f->options, "KEY=VALUE method option (repeatable), e.g. --option steps=64");
  cmd->add_option("--colormap", f->colormap, "heatmap colormap: inferno, viridis, magma, plasma, jet, turbo, hot, bwr")
      ->capture_default_str();
  cmd->add_option("--reduce", f->reduce, "channel reduction for display: abs-sum, sum (signed), max-abs")
      ->capture_default_str();
  add_resize_option(cmd, f->resize);

  cmd->callback([=] {
    ExplainRequest req;
    req.methods = split_list(f->methods);
    req.out_dir = f->out;
    req.render.colormap = f->colormap;
    req.render.reduce = parse_reduce(f->reduce);
    nlohmann::json& opt = req.method_options;
    if (o_samples->count()) opt["samples"] = f->samples;
    if (o_sigma->count()) opt["sigma"] = f->sigma;
    if (o_seed->count()) opt["seed"] = f->seed;
    if (o_noise->count()) opt["noise"] = f->noise;
    if (o_variant->count()) opt["variant"] = f->variant;
    if (o_batch->count()) opt["batch-size"] = f->batch_size;
    if (o_abs->count()) opt["abs"] = f->abs;
    if (o_steps->count()) {
      auto v = nlohmann::json::parse(f->steps, nullptr, false);
      opt["steps"] = v.is_number() ? v : nlohmann::json(f->steps);
    }
    if (o_quad->count()) opt["quadrature"] = f->quadrature;
    if (o_base->count()) opt["baseline"] = f->baseline;
    if (o_tol->count()) opt["tolerance"] = f->tolerance;
    if (o_bases->count()) opt["baselines"] = f->baselines;
    if (o_layer->count()) opt["layer"] = f->layers;
    if (o_relu->count()) opt["relu"] = f->relu;
    if (o_reshape->count()) opt["reshape"] = f->reshape;
    if (o_window->count()) opt["window"] = f->window;
    if (o_stride->count()) opt["stride"] = f->stride;
    if (o_features->count()) opt["features"] = f->features;
    opt.update(parse_assignments(f->options));
    // Everything that can be checked is checked before the first file is written.
    Model model = f->model.load();
    req.target = Target::parse(f->target, model.metadata());
    if (::isatty(2))
      req.progress = [](const std::string& method, double f) {
        const int width = 30, filled = static_cast<int>(width * std::min(1.0, f));
        std::cerr << "\r" << method << " [" << std::string(filled, '#') << std::string(width - filled, ' ') << "] "
                  << static_cast<int>(100 * f) << "%   " << (f >= 1.0 ? "\r" + std::string(width + method.size() + 12, ' ') + "\r" : "")
                  << std::flush;
      };
    MethodList methods = prepare(req, model.metadata());
    std::vector<InputItem> inputs;
    if (model.input_count() > 1) {  // one .npy per forward argument, rows paired, packed into one tensor
      std::vector<std::vector<int64_t>> shapes;
      inputs = load_paired_inputs(f->inputs, model.input_count(), shapes);
      model.set_input_shapes(shapes);
    } else {
      inputs = load_inputs(f->inputs, model.metadata(), parse_resize(f->resize));
    }
    std::vector<Error> failures;
    auto results = explain(model, inputs, req, methods, &failures);
    for (const auto& r : results) {
      std::cout << r.stem << ":";
      const auto& preds = r.json["predictions"];
      for (size_t k = 0; k < std::min<size_t>(3, preds.size()); ++k)
        std::cout << (k ? "," : "") << " " << preds[k]["label"].get<std::string>() << " " << std::fixed
                  << std::setprecision(1) << 100.0 * preds[k]["probability"].get<double>() << "%";
      std::cout << "  ->  " << r.dir << "/ (";
      bool first = true;
      for (const auto& [name, m] : r.json["explained"][0]["methods"].items()) {
        std::cout << (first ? "" : ", ") << name << " " << std::setprecision(3) << m["seconds"].get<double>() << " s";
        first = false;
      }
      std::cout << ")\n";
      for (const auto& w : r.warnings) std::cerr << "warning: " << r.stem << ": " << w << "\n";
    }
    if (!failures.empty()) {
      // The other methods' files are written; the run still fails, with the failures' own exit code.
      bool internal = false;
      for (size_t k = 1; k < failures.size(); ++k) {
        std::cerr << "error: " << failures[k].what() << "\n";
        internal = internal || failures[k].kind() == ErrorKind::Internal;
      }
      internal = internal || failures[0].kind() == ErrorKind::Internal;
      throw Error(failures[0].what(), internal ? ErrorKind::Internal : ErrorKind::BadInput);
    }
  });
}

}  // namespace salient::cli
