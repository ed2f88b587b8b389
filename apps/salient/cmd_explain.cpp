// salient explain: saliency maps for inputs, written under --out.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "commands.hpp"
#include "salient/error.hpp"
#include "salient/json.hpp"
#include "salient/detect_explain.hpp"
#include "salient/explain.hpp"
#include "salient/fsutil.hpp"
#include "salient/registry.hpp"
#include "salient/text_explain.hpp"

namespace salient::cli {

// Method options with flags of their own; only those given on the command line are passed.
struct MethodFlags::Values {
  int64_t samples = 0, seed = 0, batch_size = 0;
  double sigma = 0;
  std::string noise, variant, steps, quadrature, baseline, baselines;
  double tolerance = 0;
  bool abs = true, relu = true;
  std::vector<std::string> layers;
  int64_t reshape = -1;
  std::string window, stride, features;
  std::vector<CLI::Option*> given;  // in the order of `names`
};

void MethodFlags::add_to(CLI::App* cmd) {
  v = std::make_shared<Values>();
  Values& f = *v;
  cmd->add_option("--method", methods, "comma-separated methods (see `salient methods`)")->capture_default_str();
  cmd->add_option("--target,-t", target, "top, top-K, a class index or a label")->capture_default_str();
  f.given = {
      cmd->add_option("--samples", f.samples, "samples of sampling methods (smoothgrad: 50)"),
      cmd->add_option("--sigma", f.sigma, "noise sd as a fraction of the input's max - min (0.15)"),
      cmd->add_option("--seed", f.seed, "random seed (0)"),
      cmd->add_option("--noise", f.noise, "noise sampler: gaussian, antithetic, quasi"),
      cmd->add_option("--variant", f.variant, "smoothgrad statistic: smoothgrad, smoothgrad-sq, vargrad"),
      cmd->add_option("--batch-size", f.batch_size, "rows per forward/backward pass (inputs, or noisy copies of one or several inputs): bounds memory (10)"),
      cmd->add_flag("--abs,!--no-abs", f.abs, "saliency: absolute gradient (default on)"),
      cmd->add_option("--steps", f.steps, "integrated-gradients: quadrature nodes, or auto (50)"),
      cmd->add_option("--quadrature", f.quadrature, "riemann-left, riemann-right, riemann-middle, trapezoid, gauss-legendre"),
      cmd->add_option("--baseline", f.baseline, "zeros (0 after normalisation), black (pixel 0 before it), a number V or constant:V, blur[:SIGMA], uniform, an image/.npy file, mean (tabular: the mean row, their default), or a background set (sample:M:FILE, kmeans:K:FILE)"),
      cmd->add_option("--tolerance", f.tolerance, "integrated-gradients: relative completeness gap (0.01)"),
      cmd->add_option("--baselines", f.baselines, "gradient-shap: folder of images, .npy stack or IDX file"),
      cmd->add_option("--layer", f.layers, "layer methods: module path(s) (see `salient layers`)")->delimiter(','),
      cmd->add_flag("--relu,!--no-relu", f.relu, "CAMs: keep positive evidence only (default on)"),
      cmd->add_option("--reshape", f.reshape, "CAMs on tokens [N,T,C]: drop this many leading tokens, make a grid"),
      cmd->add_option("--window", f.window, "occlusion: window over the trailing dims, e.g. 4x4"),
      cmd->add_option("--stride", f.stride, "occlusion: strides, e.g. 2x2"),
      cmd->add_option("--features", f.features, "black-box groups: slic[:SIZE], grid[:K], elements, or .npy labels")};
  cmd->add_option("--option", options, "KEY=VALUE method option (repeatable): --option steps=64 for every method that has it, --option smoothgrad.samples=20 for one");
  cmd->add_option("--colormap", colormap, "heatmap colormap: inferno, viridis, magma, plasma, jet, turbo, hot, bwr")
      ->capture_default_str();
  cmd->add_option("--reduce", reduce, "channel reduction for display: abs-sum, sum (signed), max-abs")
      ->capture_default_str();
  add_resize_option(cmd, resize);
  add_background_options(cmd, background, background_max, background_k);
}

ExplainRequest MethodFlags::request(const ModelMetadata& meta) const {
  const Values& f = *v;
  ExplainRequest req;
  req.methods = split_list(methods);
  req.render.colormap = colormap;
  req.render.reduce = parse_reduce(reduce);
  const nlohmann::json values[] = {f.samples, f.sigma, f.seed, f.noise, f.variant, f.batch_size, f.abs,
                                   parse_json(f.steps).is_number() ? nlohmann::json::parse(f.steps) : nlohmann::json(f.steps),
                                   f.quadrature, f.baseline, f.tolerance, f.baselines, f.layers, f.relu, f.reshape,
                                   f.window, f.stride, f.features};
  static const char* names[] = {"samples", "sigma", "seed", "noise", "variant", "batch-size", "abs", "steps", "quadrature",
                                "baseline", "tolerance", "baselines", "layer", "relu", "reshape", "window", "stride", "features"};
  for (size_t i = 0; i < f.given.size(); ++i)
    if (f.given[i]->count()) req.method_options[names[i]] = values[i];
  req.method_options.update(parse_assignments(options));
  apply_background(req.method_options, req.methods, background, background_max, background_k);
  if (!meta.detector()) req.target = Target::parse(target, meta);  // a detector's: DetectionTarget
  return req;
}

namespace {

// `--input NAME=FILE.npy`: an input named by a forward argument or a dict key; {"", FILE} when
// not named (a file name may hold '=': only an identifier before it names an input).
std::pair<std::string, std::string> named_input(const std::string& arg) {
  const auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0 || eq > 64 || std::filesystem::exists(arg)) return {"", arg};
  const std::string name = arg.substr(0, eq);
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') return {"", arg};
  if (name == "." || name == "..") return {"", arg};
  return {name, arg.substr(eq + 1)};
}

// The files of a model of several inputs in the order of its inputs: by name when named (every
// one, each once), else as given. A dict model's inputs are the names given.
std::vector<std::string> order_named_inputs(Model& model, const std::vector<std::string>& args) {
  std::vector<std::pair<std::string, std::string>> given;
  size_t named = 0;
  for (const auto& a : args) {
    given.push_back(named_input(a));
    named += !given.back().first.empty();
  }
  if (named == 0) {
    if (model.dict_input())
      throw Error("the model's forward takes a dict of tensors (Dict[str, Tensor]): give each entry as --input KEY=FILE.npy");
    return args;
  }
  if (named != given.size()) throw Error("name every --input (NAME=FILE.npy) or none");
  std::vector<std::string> names, files;
  for (const auto& [n, f] : given) {
    names.push_back(n);
    files.push_back(f);
  }
  if (model.dict_input()) {
    model.set_input_names(names);
    return files;
  }
  std::vector<std::string> ordered;
  std::string known;
  for (const auto& n : model.input_names()) known += (known.empty() ? "" : ", ") + n;
  for (const auto& want : model.input_names()) {
    const auto at = std::find(names.begin(), names.end(), want);
    if (at == names.end()) throw Error("no --input " + want + "=FILE.npy given (the model's inputs: " + known + ")");
    if (std::find(at + 1, names.end(), want) != names.end()) throw Error("--input " + want + "= is given twice");
    ordered.push_back(files[static_cast<size_t>(at - names.begin())]);
  }
  for (const auto& n : names)
    if (std::find(model.input_names().begin(), model.input_names().end(), n) == model.input_names().end())
      throw Error("--input " + n + "=...: the model has no input '" + n + "' (its inputs: " + known + ")");
  return ordered;
}

// Images, .npy stacks, or one .npy per forward argument of a model of several inputs.
std::vector<ExplainedInput> explain_inputs(Model& model, const std::vector<std::string>& files, const MethodFlags& flags,
                                           const ExplainRequest& req, MethodList& methods, std::vector<Error>& failures) {
  std::vector<InputItem> inputs;
  if (model.input_count() > 1 || model.dict_input()) {  // one .npy per input, rows paired, packed into one tensor
    const std::vector<std::string> ordered = order_named_inputs(model, files);
    std::vector<std::vector<int64_t>> shapes;
    std::vector<torch::ScalarType> dtypes;
    inputs = load_paired_inputs(ordered, model.input_count(), shapes, &dtypes);
    model.set_input_shapes(shapes);
    model.set_input_dtypes(dtypes);
  } else {
    inputs = load_inputs(files, model.metadata(), parse_resize(flags.resize));
  }
  return explain(model, inputs, req, methods, &failures);
}

void print_results(const std::vector<ExplainedInput>& results) {
  for (const auto& r : results) {
    std::cout << r.stem << ":";
    const auto& preds = r.json["predictions"];
    for (size_t k = 0; k < std::min<size_t>(3, preds.size()); ++k) {
      std::string label = preds[k]["label"].get<std::string>();  // a newline in a label must not split the line
      for (size_t at = 0; (at = label.find('\n', at)) != std::string::npos; at += 2) label.replace(at, 1, "\\n");
      std::cout << (k ? "," : "") << " " << label;
      if (preds[k]["probability"].is_number())
        std::cout << " " << std::fixed << std::setprecision(1) << 100.0 * preds[k]["probability"].get<double>() << "%";
      else  // a regression's value
        std::cout << " = " << std::defaultfloat << std::setprecision(4) << preds[k].value("value", 0.0) << std::fixed;
    }
    std::cout << "  ->  " << r.dir << "/ (";
    bool first = true;
    for (const auto& [name, m] : r.json["explained"][0]["methods"].items()) {
      std::cout << (first ? "" : ", ") << name << " " << std::setprecision(3) << m["seconds"].get<double>() << " s";
      first = false;
    }
    std::cout << ")\n";
    for (const auto& w : r.warnings) std::cerr << "warning: " << r.stem << ": " << w << "\n";
  }
}

}  // namespace

void add_explain(CLI::App& app) {
  auto* cmd = app.add_subcommand("explain", "compute saliency maps for inputs and write them under --out");
  struct Flags {
    ModelFlags model;
    MethodFlags method;
    std::vector<std::string> inputs, texts;
    std::string out;
    int64_t max_boxes = 5;
  };
  auto f = std::make_shared<Flags>();
  f->model.add_to(cmd);
  cmd->add_option("--input,-i", f->inputs, "image files (PNG, JPEG, BMP, ...) or .npy stacks [N, ...]; a text model's .txt files (one example a line) or .npy token ids");
  cmd->add_option("--text", f->texts, "a text model's input text (repeatable)");
  cmd->add_option("--out,-o", f->out, "output folder")->required();
  f->method.add_to(cmd);
  cmd->add_option("--max-boxes", f->max_boxes, "detectors: boxes explained per input at most (of --target all or class:LABEL)")
      ->capture_default_str();

  cmd->callback([=] {
    // Everything that can be checked is checked before the first file is written.
    Model model = f->model.load();
    ExplainRequest req = f->method.request(model.metadata());
    req.out_dir = f->out;
    if (::isatty(2))
      req.progress = [](const std::string& method, double f) {
        const int width = 30, filled = static_cast<int>(width * std::min(1.0, f));
        progress_line() << "\r" << method << " [" << std::string(filled, '#') << std::string(width - filled, ' ') << "] "
                  << static_cast<int>(100 * f) << "%   " << (f >= 1.0 ? "\r" + std::string(width + method.size() + 12, ' ') + "\r" : "")
                  << std::flush;
      };
    std::vector<Error> failures;
    std::vector<ExplainedInput> results;
    if (model.metadata().detector()) {  // boxes: each one's D-RISE similarity is what is explained
      if (!f->texts.empty()) throw Error("--text is for text models; '" + model.path() + "' is a detector");
      if (f->inputs.empty()) throw Error("no input: give --input FILE (images)");
      const DetectionTarget target = DetectionTarget::parse(f->method.target, model.metadata(), f->max_boxes);
      MethodList methods = prepare(req, model.metadata());
      const std::vector<InputItem> inputs = load_inputs(f->inputs, model.metadata(), parse_resize(f->method.resize));
      std::vector<DetectionExplanation> done = explain_detections(model, inputs, req, target, methods, &failures);
      OutputLock lock(req.out_dir);
      for (const auto& e : done) {
        const std::string dir = (std::filesystem::path(req.out_dir) / e.input.stem).string();
        const nlohmann::json j = write_detection_files(e, dir, model, req.render);
        std::cout << e.input.stem << ": " << e.reported.size() << " detection(s), " << e.boxes.size() << " explained  ->  " << dir << "/\n";
        if (j.contains("warnings"))
          for (const auto& w : j["warnings"]) std::cerr << "warning: " << e.input.stem << ": " << w.get<std::string>() << "\n";
      }
    } else if (model.text()) {  // token attributions at the embedding layer; --layer names it
      if (auto it = req.method_options.find("layer"); it != req.method_options.end()) {
        const nlohmann::json one = it->is_array() && it->size() == 1 ? (*it)[0] : *it;
        if (!one.is_string()) throw Error("--layer: a text model takes one embedding layer (a module path)");
        req.embedding_layer = one.get<std::string>();
        req.method_options.erase(it);
      }
      MethodList methods = prepare(req, model.metadata());
      results = explain_text(model, load_text_inputs(f->texts, f->inputs), req, methods, &failures);
    } else {
      if (!f->texts.empty()) throw Error("--text is for text models; '" + model.path() + "' has no tokenizer in its metadata");
      if (f->inputs.empty()) throw Error("no input: give --input FILE (images or .npy)");
      MethodList methods = prepare(req, model.metadata());
      results = explain_inputs(model, f->inputs, f->method, req, methods, failures);
    }
    if (!model.metadata().detector()) print_results(results);
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
