#include "salient/explain.hpp"
#include "salient/json.hpp"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <set>
#include <sstream>

#include "salient/baseline.hpp"
#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/gradients.hpp"
#include "salient/npy.hpp"
#include "salient/perturb.hpp"
#include "salient/registry.hpp"
#include "salient/tabular.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

std::string percent(double p) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << 100.0 * p << "%";
  return s.str();
}

std::string format_number(double v) {  // a regression's value: 4 significant digits
  std::ostringstream s;
  s << std::setprecision(4) << v;
  return s.str();
}

torch::Tensor stack_inputs(const std::vector<InputItem>& items) {
  std::vector<torch::Tensor> xs;
  for (const auto& it : items) xs.push_back(it.tensor);
  try {
    return torch::stack(xs);
  } catch (const c10::Error&) {
    throw Error("the inputs do not all have the same shape");
  }
}

// Diagnostics are per-input arrays (length N) or batch-wide values: take input i's share.
nlohmann::json diagnostics_of(const nlohmann::json& d, size_t i, size_t n) {
  nlohmann::json out = nlohmann::json::object();
  for (auto it = d.begin(); it != d.end(); ++it)
    out[it.key()] = it.value().is_array() && it.value().size() == n ? it.value()[i] : it.value();
  return out;
}

// One method over every input, in chunks of `chunk` inputs: the map stack [N, ...] and its
// per-input facts.
struct MethodResult {
  torch::Tensor map;
  std::map<std::string, torch::Tensor> extra;
  nlohmann::json params, diagnostics = nlohmann::json::object();
  double seconds = 0;
};

MethodResult run_method(Method& method, Model& model, const torch::Tensor& batch, const torch::Tensor& targets,
                        int64_t chunk, const std::string& name,
                        const std::function<void(const std::string&, double)>& progress) {
  const int64_t n = batch.size(0);
  MethodResult res;
  std::vector<torch::Tensor> parts;
  std::map<std::string, std::vector<torch::Tensor>> extra_parts;
  struct ResetProgress {  // the callback refers to this function's locals
    Method& m;
    ~ResetProgress() { m.set_progress({}); }
  } reset{method};
  for_chunks(n, chunk, [&](int64_t b, int64_t e) {
    if (progress) method.set_progress([&, b, e](double f) { progress(name, (b + f * (e - b)) / static_cast<double>(n)); });
    Attribution a = method.attribute(model, batch.slice(0, b, e), targets.slice(0, b, e));
    parts.push_back(a.map);
    for (const auto& [key, t] : a.extra) extra_parts[key].push_back(t);
    res.params = a.params;
    res.seconds += a.seconds;
    for (int64_t i = 0; i < e - b; ++i) {
      nlohmann::json di = diagnostics_of(a.diagnostics, i, e - b);
      for (auto it = di.begin(); it != di.end(); ++it) res.diagnostics[it.key()].push_back(it.value());
    }
  });
  res.map = torch::cat(parts);
  for (const auto& [key, ts] : extra_parts) res.extra[key] = cat_ragged(ts);
  return res;
}

}  // namespace

void remove_stale_files(const std::string& dir, const std::set<std::string>& written) {
  const fs::path old = fs::path(dir) / "explanation.json";
  std::error_code ec;
  if (!fs::is_regular_file(old, ec)) return;
  nlohmann::json j = parse_json(read_file(old.string()));
  if (!j.is_object()) return;
  std::set<std::string> listed;
  if (j.contains("grid") && j["grid"].is_string()) listed.insert(j["grid"].get<std::string>());
  if (j.contains("explained") && j["explained"].is_array())
    for (const auto& t : j["explained"])
      if (t.is_object() && t.contains("methods") && t["methods"].is_object())
        for (const auto& [name, m] : t["methods"].items()) {
          if (!m.is_object()) continue;
          for (const char* key : {"npy", "png", "html"})
            if (m.contains(key) && m[key].is_string()) listed.insert(m[key].get<std::string>());
          for (const char* key : {"npy", "extra_npy"})  // per-input maps, extra arrays: name -> file
            if (m.contains(key) && m[key].is_object())
              for (const auto& [k, f] : m[key].items())
                if (f.is_string()) listed.insert(f.get<std::string>());
        }
  for (const auto& f : listed)
    if (!written.count(f) && f.find('/') == std::string::npos && f != ".." && f != ".") fs::remove(fs::path(dir) / f, ec);
}

MethodList prepare(const ExplainRequest& request, const ModelMetadata& meta) {
  if (request.methods.empty()) throw Error("no method given (see `salient methods`)");
  Registry::builtin().check_option_keys(request.method_options, request.methods);
  MethodList methods;
  for (const auto& name : request.methods) methods.push_back(Registry::builtin().create(name, request.method_options, meta));
  render_heatmap(torch::zeros({2, 2}), cv::Mat(), request.render);  // checks the colormap
  if (!request.out_dir.empty()) check_writable_dir(request.out_dir);  // created only when the run starts writing
  return methods;
}

Explainer::Explainer(Model& model, const ExplainRequest& request, MethodList methods)
    : model_(model), request_(request), methods_(std::move(methods)) {
  if (methods_.size() != request_.methods.size()) throw Error("explain: methods do not match the request", ErrorKind::Internal);
  const auto& o = request_.method_options;
  if (o.contains("batch-size") && o["batch-size"].is_number_integer()) chunk_ = std::max<int64_t>(1, o["batch-size"].get<int64_t>());
}

Method& Explainer::method(const std::string& name) {
  for (size_t m = 0; m < methods_.size(); ++m)
    if (request_.methods[m] == name) return *methods_[m];
  throw Error("no method '" + name + "' in this run", ErrorKind::Internal);
}

void Explainer::check(const torch::Tensor& example) {
  if (!request_.target.layer().empty())  // an inner neuron: only methods that call the model as a function
    for (size_t m = 0; m < methods_.size(); ++m) {
      const MethodInfo& info = methods_[m]->info();
      std::string name = request_.methods[m];
      bool specific = info.specificity == Specificity::ModelSpecific;
      if (!info.options_of.empty()) {  // noise-tunnel: its base method decides
        const nlohmann::json p = methods_[m]->params();
        if (p.contains(info.options_of) && p[info.options_of].is_string()) {
          name = p[info.options_of].get<std::string>();
          specific = Registry::builtin().info(name).specificity == Specificity::ModelSpecific;
        }
      }
      if (specific)
        throw Error("target '" + request_.target.to_string() + "': " + name +
                    " builds its own pass over the whole model and cannot explain an inner neuron; use a "
                    "model-agnostic method (saliency, input-x-gradient, integrated-gradients, smoothgrad, gradient-shap, "
                    "noise-tunnel around them, or a black-box method)");
    }
  ReductionScope target_scope(model_, request_.target);  // methods see a function target's value
  // A model with an op that has no derivative: its gradient methods are refused by name before any
  // work, the black-box ones run.
  refused_ = refused_for_gradients(model_, example.to(model_.device()), request_.methods, methods_);
  for (const auto& [name, why] : refused_) failures_.emplace(name, Error(why));
  for (size_t m = 0; m < methods_.size(); ++m)
    if (!refused_.count(request_.methods[m])) methods_[m]->check(model_, example.to(model_.device()));
  checked_ = true;
}

std::map<std::string, std::string> refused_for_gradients(Model& model, const torch::Tensor& example,
                                                         const std::vector<std::string>& names, const MethodList& methods) {
  std::map<std::string, std::string> refused;
  const bool any = std::any_of(methods.begin(), methods.end(), [](const auto& m) { return m->info().access == Access::WhiteBox; });
  const std::string op = any ? missing_derivative(model, example) : "";
  if (op.empty()) return refused;
  for (size_t m = 0; m < methods.size(); ++m)
    if (methods[m]->info().access == Access::WhiteBox) refused.emplace(names[m], missing_derivative_message(names[m], op));
  return refused;
}

std::vector<Explanation> Explainer::run(const std::vector<InputItem>& chunk) {
  if (chunk.empty()) return {};
  const torch::Tensor batch = stack_inputs(chunk);
  const int64_t n = batch.size(0);
  const ModelMetadata& meta = model_.metadata();
  // A function target (a sum of classes, a region of a dense output): predictions are still the
  // model's classes (a dense output's classes by their mean over the pixels); the methods and the
  // score see the function's value.
  const Target::Reduction& fn = request_.target.reduction();
  std::vector<torch::Tensor> outs, fn_outs;
  for_chunks(n, chunk_, [&](int64_t b, int64_t e) {
    const torch::Tensor part = batch.slice(0, b, e);
    outs.push_back((fn ? class_scores(model_, part) : model_.predict(part)).to(torch::kCPU, torch::kFloat));
  });
  ReductionScope target_scope(model_, request_.target);  // from here on the model's output is the target function's
  if (fn) for_chunks(n, chunk_, [&](int64_t b, int64_t e) { fn_outs.push_back(model_.predict(batch.slice(0, b, e)).to(torch::kCPU, torch::kFloat)); });
  torch::Tensor logits = torch::cat(outs);
  const torch::Tensor fn_values = fn ? torch::cat(fn_outs) : torch::Tensor();
  std::vector<Explanation> out(static_cast<size_t>(n));
  std::vector<int64_t> good;
  torch::Tensor finite = torch::isfinite(logits).all(1);
  if (fn) finite = finite & torch::isfinite(fn_values).all(1);
  finite = finite.contiguous();
  const bool* fin = finite.data_ptr<bool>();
  for (int64_t i = 0; i < n; ++i) {
    out[i].input = chunk[i];
    if (fin[i]) good.push_back(i);
    else out[i].error = "the model's output for input '" + chunk[i].stem + "' is not finite (NaN or Inf): nothing to explain";
  }
  if (good.empty()) return out;
  const torch::Tensor rows = torch::tensor(good, torch::kLong);
  const torch::Tensor x = batch.index_select(0, rows), lg = logits.index_select(0, rows);
  const torch::Tensor fv = fn ? fn_values.index_select(0, rows).to(torch::kDouble).contiguous() : torch::Tensor();
  const int64_t g = x.size(0);
  if (!checked_) check(x.slice(0, 0, 1));
  // One output column is a binary model (sigmoid of a logit, or the probability itself) unless the
  // metadata says it is a regression; a model that does not say is told how it was read.
  const bool regression = meta.regression();
  const bool binary = lg.size(1) == 1 && !regression;
  const torch::Tensor probs = output_probabilities(meta, lg);
  const auto targets = fn ? request_.target.resolve(fv) : request_.target.resolve(lg, probs);
  // Ranks: the most classes any input has (a threshold target's count varies by input); an input
  // with fewer repeats its last class in the passes and keeps only its own ranks.
  int ranks = 1;
  for (const auto& t : targets) ranks = std::max(ranks, static_cast<int>(t.size()));
  const int64_t top = std::min<int64_t>(request_.top_predictions, lg.size(1));
  // Read once into accessors: per-input tensor ops (an item() per number) cost more than a
  // saliency map of the demo CNN.
  const torch::Tensor top_idx = std::get<1>(probs.topk(top, 1)).contiguous();
  const torch::Tensor probs_c = probs.to(torch::kDouble).contiguous(), lg_c = lg.to(torch::kDouble).contiguous();
  const auto top_a = top_idx.accessor<int64_t, 2>();
  const auto prob_a = probs_c.accessor<double, 2>(), lg_a = lg_c.accessor<double, 2>();

  // results[rank][method]: the maps [g, ...] of this chunk and their facts
  std::vector<std::vector<MethodResult>> results(ranks, std::vector<MethodResult>(methods_.size()));
  std::map<std::string, std::string> failed = refused_;  // a method that failed on this chunk: the others' work is kept
  for (int r = 0; r < ranks; ++r) {
    torch::Tensor t = torch::empty({g}, torch::kLong);
    for (int64_t i = 0; i < g; ++i) t[i] = targets[i][std::min<size_t>(static_cast<size_t>(r), targets[i].size() - 1)];
    for (size_t m = 0; m < methods_.size(); ++m) {
      const std::string& name = request_.methods[m];
      if (failed.count(name)) continue;
      try {
        results[r][m] = run_method(*methods_[m], model_, x, t, chunk_, name, request_.progress);
      } catch (const Cancelled&) {
        throw;
      } catch (const Error& e) {
        failed.emplace(name, name + ": " + std::string(e.what()));
        failures_.emplace(name, Error(name + ": " + std::string(e.what()), e.kind()));
      } catch (const std::exception& e) {
        failed.emplace(name, name + " failed: " + one_line(e));
        failures_.emplace(name, Error(name + " failed: " + one_line(e), ErrorKind::Internal));
      }
    }
  }

  for (int64_t k = 0; k < g; ++k) {
    Explanation& ex = out[good[k]];
    ex.probabilities = probs[k];
    nlohmann::json j;
    j["model"] = model_.path();
    j["forward"] = {{"mode", model_.forward_mode().mode}, {"check", model_.forward_mode().check}};
    j["input"] = ex.input.source;
    j["stem"] = ex.input.stem;
    nlohmann::json preds = nlohmann::json::array();
    for (int64_t p = 0; p < top; ++p) {
      const int64_t c = top_a[k][p];
      ex.predicted.push_back(c);
      if (regression)  // a value in the target's units: no probability, no logit
        preds.push_back({{"class", c}, {"label", meta.label(c)}, {"value", lg_a[k][c]}, {"probability", nullptr}});
      else
        preds.push_back({{"class", c}, {"label", meta.label(c)}, {"probability", prob_a[k][c]}, {"logit", lg_a[k][c]}});
    }
    j["predictions"] = preds;
    if (regression) j["regression"] = true;
    if (binary) {
      j["binary"] = "one output column: its probability is the sigmoid of the logit (positive class)";
      if (!meta.output_stated) {
        ex.warnings.push_back(
            "the model has one output column and its metadata states no \"output\": it is read as a binary classifier's "
            "logit (sigmoid); a regression says \"output\": \"regression\" in <model>.json, a probability \"probabilities\"");
        j["warnings"] = {ex.warnings.back()};
      }
    }
    j["target"] = request_.target.to_string();
    j["explained"] = nlohmann::json::array();
    const int own = static_cast<int>(targets[k].size());
    ex.several = request_.target.several();
    ex.maps.resize(own);
    if (request_.target.kind() == Target::Kind::Threshold && prob_a[k][targets[k][0]] < request_.target.threshold()) {
      ex.warnings.push_back("no class reached probability " + request_.target.to_string().substr(6) +
                            ": the top class is explained");
      j["warnings"] = {ex.warnings.back()};
    }
    for (int r = 0; r < own; ++r) {
      const int64_t c = fn ? -1 : targets[k][r];
      ex.targets.push_back(c);
      const double score = fn ? fv[k][0].item<double>() : lg_a[k][c];
      nlohmann::json tj{{"class", fn ? nlohmann::json() : nlohmann::json(c)},
                        {"label", fn ? request_.target.to_string() : meta.label(c)},
                        {"probability", fn || regression ? nlohmann::json() : nlohmann::json(prob_a[k][c])},
                        {"methods", nlohmann::json::object()}};
      for (size_t m = 0; m < methods_.size(); ++m) {
        const std::string& name = request_.methods[m];
        if (failed.count(name)) continue;
        const MethodResult& res = results[r][m];
        MethodMap mm{res.map[k], {}};
        for (const auto& [key, t] : res.extra) mm.extra[key] = t[k];
        nlohmann::json diag = diagnostics_of(res.diagnostics, static_cast<size_t>(k), static_cast<size_t>(g));
        if (diag.contains("warning") && diag["warning"].is_string()) ex.warnings.push_back(diag["warning"]);
        tj["methods"][name] = {{"params", res.params}, {"seconds", res.seconds / static_cast<double>(g)},
                               {"score", score}, {"diagnostics", diag}};
        if (!meta.features.empty())  // a tabular model: the map as the user's columns, largest first
          if (nlohmann::json f = feature_attributions(meta, ex.input.tensor, res.map[k]); !f.empty()) {
            nlohmann::json& mj = tj["methods"][name];
            mj["features"] = f;
            // Where the attributions start from: f(baseline), E[f] over a background set, or (an
            // additive method without a baseline, LRP) what f(x) leaves after their sum.
            const MethodInfo& info = methods_[m]->info();
            mj["f(x)"] = score;
            mj["additive"] = info.additive;
            if (diag.contains("f(baseline)")) {
              const std::string spec = res.params.value("baseline", res.params.value("baselines", std::string()));
              mj["base_value"] = diag["f(baseline)"];
              // gradient-shap's "baselines" is a set unless it is the single zeros baseline
              const bool set = Baseline::is_set_spec(spec) || (res.params.contains("baselines") && spec != "zeros");
              mj["base_value_of"] = set ? "E[f(background)]" : "f(baseline)";
            } else if (info.additive) {
              mj["base_value"] = score - res.map[k].sum().item<double>();
              mj["base_value_of"] = "f(x) - sum of attributions";
            }
          }
        ex.maps[r].emplace(name, std::move(mm));
      }
      j["explained"].push_back(tj);
    }
    if (!failed.empty()) j["failed"] = failed;
    ex.record = std::move(j);
  }
  return out;
}

nlohmann::json write_explanation_files(const Explanation& e, const std::string& dir, const Model& model,
                                       const RenderOptions& render, bool pngs) {
  const ModelMetadata& meta = model.metadata();
  nlohmann::json j = e.record;
  std::set<std::string> written;  // file names, for removing what an earlier run left
  ensure_inner_dir(dir);
  remove_stale_temporaries(dir);
  const size_t ranks = e.maps.size();
  std::vector<cv::Mat> panels;
  std::vector<std::string> captions;
  if (pngs && !e.input.display.empty()) {
    panels.push_back(upscale_for_display(e.input.display, render.min_size));
    captions.push_back("input");
  }
  for (size_t r = 0; r < ranks; ++r) {
    const int64_t c = e.targets[r];
    for (const auto& [name, mm] : e.maps[r]) {
      nlohmann::json& mj = j["explained"][r]["methods"][name];
      const std::string base = e.several ? name + "_c" + std::to_string(c) : name;
      nlohmann::json npy = base + ".npy";
      if (model.packed()) {  // a model of several inputs: one map per input, named by its argument
        const auto parts = model.unpack(mm.map.unsqueeze(0));
        const auto names = model.input_names();
        npy = nlohmann::json::object();
        for (size_t k = 0; k < parts.size(); ++k) {
          const std::string file = base + "." + names[k] + ".npy";
          write_npy((fs::path(dir) / file).string(), parts[k][0]);
          written.insert(file);
          npy[names[k]] = file;
        }
      } else {
        write_npy((fs::path(dir) / (base + ".npy")).string(), mm.map);
        written.insert(base + ".npy");
      }
      mj["npy"] = npy;
      nlohmann::json extra_files = nlohmann::json::object();
      for (const auto& [key, t] : mm.extra) {
        std::string file = base + "." + key + ".npy";
        for (auto& ch : file)
          if (ch == '/') ch = '_';
        write_npy((fs::path(dir) / file).string(), trim_padding(t));
        written.insert(file);
        extra_files[key] = file;
      }
      if (!extra_files.empty()) mj["extra_npy"] = extra_files;
      if (pngs && mj.contains("features")) {  // a tabular row: its columns as bars
        const std::string label = c >= 0 ? meta.label(c) : j["explained"][r].value("label", std::string());
        const bool waterfall = mj.value("additive", false) && mj.contains("base_value") && mj["base_value"].is_number();
        write_png((fs::path(dir) / (base + ".png")).string(),
                  waterfall ? feature_waterfall(mj["features"], mj["base_value"].get<double>(), mj["f(x)"].get<double>(),
                                                mj["base_value_of"].get<std::string>(), name + ": " + label)
                            : feature_bar_chart(mj["features"], name + ": " + label));
        written.insert(base + ".png");
        mj["png"] = base + ".png";
      } else if (pngs && is_image_like(mm.map)) {
        cv::Mat heat = render_heatmap(mm.map, e.input.display, render);
        write_png((fs::path(dir) / (base + ".png")).string(), heat);
        written.insert(base + ".png");
        mj["png"] = base + ".png";
        panels.push_back(heat);
        captions.push_back(e.several && c >= 0 ? name + ": " + meta.label(c) : name);
      }
    }
  }
  if (pngs && !panels.empty()) {
    const int64_t p = e.predicted.empty() ? 0 : e.predicted[0];
    std::string title;
    for (const auto& pr : j["predictions"])
      if (pr["class"] == p)
        title = e.input.stem + ": predicted " +
                (pr["probability"].is_number() ? meta.label(p) + " (" + percent(pr["probability"].get<double>()) + ")"
                                               : meta.label(p) + " = " + format_number(pr.value("value", 0.0)));
    if (ranks == 1 && e.targets[0] != p)
      title += ", explaining " + (e.targets[0] < 0 ? j["target"].get<std::string>() : meta.label(e.targets[0]));
    write_png((fs::path(dir) / "grid.png").string(), make_grid(panels, captions, title));
    j["grid"] = "grid.png";
    written.insert("grid.png");
  }
  remove_stale_files(dir, written);
  write_file_atomic((fs::path(dir) / "explanation.json").string(), j.dump(2) + "\n");
  return j;
}

std::vector<ExplainedInput> explain(Model& model, const std::vector<InputItem>& inputs, const ExplainRequest& request,
                                    MethodList& methods, std::vector<Error>* failures) {
  if (inputs.empty()) throw Error("no input given");
  Explainer explainer(model, request, std::move(methods));
  // Everything that can be refused is refused before the first file: every input's output (one
  // forward pass each, in chunks), every method against the model, every input's output folder.
  {
    const torch::Tensor batch = stack_inputs(inputs);
    ReductionScope target_scope(model, request.target);  // a function target's value is what must be finite
    for_chunks(batch.size(0), kDefaultBatch, [&](int64_t b, int64_t e) {
      torch::Tensor lg = model.predict(batch.slice(0, b, e)).to(torch::kCPU, torch::kFloat);
      for (int64_t i = 0; i < e - b; ++i)
        if (!torch::isfinite(lg[i]).all().item<bool>())
          throw Error("the model's output for input '" + inputs[b + i].stem + "' is not finite (NaN or Inf): nothing to explain");
      if (request.target.kind() != Target::Kind::Threshold) request.target.resolve(lg);  // a class index out of range
    });
    explainer.check(batch.slice(0, 0, 1));  // (under the target's scope: methods see its value)
    for (const auto& item : inputs) check_writable_dir((fs::path(request.out_dir) / item.stem).string());
  }
  OutputLock lock(request.out_dir);  // creates --out; a concurrent run on it is an error, not a mix
  std::vector<ExplainedInput> out;
  out.reserve(inputs.size());
  const size_t per_chunk = 64;  // inputs whose maps are held at once
  for (size_t b = 0; b < inputs.size(); b += static_cast<size_t>(per_chunk)) {
    std::vector<InputItem> chunk(inputs.begin() + b, inputs.begin() + std::min(inputs.size(), b + per_chunk));
    std::vector<Explanation> results = explainer.run(chunk);
    for (auto& e : results) {
      if (!e.error.empty()) throw Error(e.error);
      // Every method failed on this input: nothing to write for it.
      if (e.maps.empty() || e.maps[0].empty()) throw explainer.failures().at(e.record["failed"].begin().key());
      ExplainedInput ex;
      ex.stem = e.input.stem;
      ex.dir = (fs::path(request.out_dir) / ex.stem).string();
      ex.predicted = e.predicted;
      ex.warnings = e.warnings;
      ex.json = write_explanation_files(e, ex.dir, model, request.render);
      out.push_back(std::move(ex));
    }
  }
  const auto& failed = explainer.failures();
  if (!failed.empty()) {
    if (!failures) throw failed.begin()->second;  // written what succeeded; never a silent partial result
    for (const auto& [name, e] : failed) failures->push_back(e);
  }
  return out;
}

}  // namespace salient
