#include "salient/explain.hpp"

#include <filesystem>
#include <iomanip>
#include <set>
#include <sstream>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/gradients.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

std::string percent(double p) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << 100.0 * p << "%";
  return s.str();
}

// Diagnostics are per-input arrays (length N) or batch-wide values: take input i's share.
// Files an earlier explanation.json in `dir` listed that this run did not write again: a re-run
// into the same --out leaves no stale map beside a new explanation.json. Only listed files go.
void remove_stale_files(const std::string& dir, const std::set<std::string>& written) {
  const fs::path old = fs::path(dir) / "explanation.json";
  std::error_code ec;
  if (!fs::is_regular_file(old, ec)) return;
  nlohmann::json j = nlohmann::json::parse(read_file(old.string()), nullptr, false);
  if (!j.is_object()) return;
  std::set<std::string> listed;
  if (j.contains("grid") && j["grid"].is_string()) listed.insert(j["grid"].get<std::string>());
  if (j.contains("explained") && j["explained"].is_array())
    for (const auto& t : j["explained"])
      if (t.is_object() && t.contains("methods") && t["methods"].is_object())
        for (const auto& [name, m] : t["methods"].items()) {
          if (!m.is_object()) continue;
          for (const char* key : {"npy", "png"})
            if (m.contains(key) && m[key].is_string()) listed.insert(m[key].get<std::string>());
          for (const char* key : {"npy", "extra_npy"})  // per-input maps, extra arrays: name -> file
            if (m.contains(key) && m[key].is_object())
              for (const auto& [k, f] : m[key].items())
                if (f.is_string()) listed.insert(f.get<std::string>());
        }
  for (const auto& f : listed)
    if (!written.count(f) && f.find('/') == std::string::npos && f != ".." && f != ".") fs::remove(fs::path(dir) / f, ec);
}

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
  for (const auto& [key, ts] : extra_parts) res.extra[key] = torch::cat(ts);
  return res;
}

}  // namespace

MethodList prepare(const ExplainRequest& request, const ModelMetadata& meta) {
  if (request.methods.empty()) throw Error("no method given (see `salient methods`)");
  Registry::builtin().check_option_keys(request.method_options, request.methods);
  MethodList methods;
  for (const auto& name : request.methods) methods.push_back(Registry::builtin().create(name, request.method_options, meta));
  render_heatmap(torch::zeros({2, 2}), cv::Mat(), request.render);  // checks the colormap
  if (request.out_dir.empty()) throw Error("no output folder given (--out)");
  check_writable_dir(request.out_dir);  // created only when the run starts writing
  return methods;
}

std::vector<ExplainedInput> explain(Model& model, const std::vector<InputItem>& inputs, const ExplainRequest& request,
                                    MethodList& methods, std::vector<Error>* failures) {
  if (methods.size() != request.methods.size()) throw Error("explain: methods do not match the request", ErrorKind::Internal);
  if (inputs.empty()) throw Error("no input given");
  std::vector<torch::Tensor> xs;
  for (const auto& it : inputs) xs.push_back(it.tensor);
  torch::Tensor batch;
  try {
    batch = torch::stack(xs);
  } catch (const c10::Error&) {
    throw Error("the inputs do not all have the same shape");
  }
  const int64_t n = batch.size(0);
  const ModelMetadata& meta = model.metadata();

  torch::Tensor logits = model.predict(batch).to(torch::kCPU, torch::kFloat);
  for (int64_t i = 0; i < n; ++i)
    if (!torch::isfinite(logits[i]).all().item<bool>())
      throw Error("the model's output for input '" + inputs[i].stem + "' is not finite (NaN or Inf): nothing to explain");
  // One output column is a binary model: sigmoid of a logit (or the probability itself).
  const bool binary = logits.size(1) == 1;
  torch::Tensor probs = meta.output == "probabilities" ? logits : binary ? logits.sigmoid() : logits.softmax(1);
  auto targets = request.target.resolve(logits);
  // Every method is checked against the model (graph rules, layers and their shapes) before any
  // of them computes: a method that cannot run fails here, before one file is written. So is every
  // input's output folder.
  {
    const torch::Tensor example = batch.slice(0, 0, 1).to(model.device());
    for (auto& m : methods) m->check(model, example);
    for (const auto& item : inputs) check_writable_dir((fs::path(request.out_dir) / item.stem).string());
  }
  OutputLock lock(request.out_dir);  // creates --out; a concurrent run on it is an error, not a mix
  const int ranks = request.target.count();
  const int64_t top = std::min<int64_t>(request.top_predictions, logits.size(1));
  auto top_idx = std::get<1>(probs.topk(top, 1));

  int64_t chunk = kDefaultBatch;
  if (request.method_options.contains("batch-size") && request.method_options["batch-size"].is_number_integer())
    chunk = std::max<int64_t>(1, request.method_options["batch-size"].get<int64_t>());

  // attributions[rank][method] = the map stack [N, ...] and its per-input facts
  std::vector<std::vector<MethodResult>> results(ranks, std::vector<MethodResult>(request.methods.size()));
  std::map<std::string, Error> failed;  // a method that failed at run time: the others' work is kept
  for (int r = 0; r < ranks; ++r) {
    torch::Tensor t = torch::empty({n}, torch::kLong);
    for (int64_t i = 0; i < n; ++i) t[i] = targets[i][r];
    for (size_t m = 0; m < request.methods.size(); ++m) {
      Method* method = methods[m].get();
      const std::string& mname = request.methods[m];
      if (failed.count(mname)) continue;
      try {
        results[r][m] = run_method(*method, model, batch, t, chunk, mname, request.progress);
      } catch (const Error& e) {
        failed.emplace(mname, Error(mname + ": " + std::string(e.what()), e.kind()));
      } catch (const std::exception& e) {
        failed.emplace(mname, Error(mname + " failed: " + one_line(e), ErrorKind::Internal));
      }
    }
  }
  if (failed.size() == request.methods.size()) throw failed.begin()->second;  // nothing to write

  std::vector<ExplainedInput> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const InputItem& item = inputs[i];
    ExplainedInput ex;
    std::set<std::string> written;  // file names, for removing what an earlier run left
    ex.stem = item.stem;
    ex.dir = (fs::path(request.out_dir) / item.stem).string();
    ensure_writable_dir(ex.dir);
    remove_stale_temporaries(ex.dir);
    nlohmann::json j;
    j["model"] = model.path();
    j["forward"] = {{"mode", model.forward_mode().mode}, {"check", model.forward_mode().check}};
    j["input"] = item.source;
    j["stem"] = item.stem;
    nlohmann::json preds = nlohmann::json::array();
    for (int64_t k = 0; k < top; ++k) {
      int64_t c = top_idx[i][k].item<int64_t>();
      ex.predicted.push_back(c);
      preds.push_back({{"class", c}, {"label", meta.label(c)}, {"probability", probs[i][c].item<double>()},
                       {"logit", logits[i][c].item<double>()}});
    }
    j["predictions"] = preds;
    if (binary) j["binary"] = "one output column: its probability is the sigmoid of the logit (positive class)";
    j["target"] = request.target.to_string();
    j["explained"] = nlohmann::json::array();
    std::vector<cv::Mat> panels;
    std::vector<std::string> captions;
    if (!item.display.empty()) {
      panels.push_back(upscale_for_display(item.display, request.render.min_size));
      captions.push_back("input");
    }
    for (int r = 0; r < ranks; ++r) {
      const int64_t c = targets[i][r];
      nlohmann::json tj{{"class", c}, {"label", meta.label(c)}, {"probability", probs[i][c].item<double>()},
                        {"methods", nlohmann::json::object()}};
      for (size_t m = 0; m < request.methods.size(); ++m) {
        const MethodResult& res = results[r][m];
        const std::string& name = request.methods[m];
        if (failed.count(name)) continue;
        const std::string base = ranks > 1 ? name + "_c" + std::to_string(c) : name;
        torch::Tensor map = res.map[i];
        nlohmann::json npy = base + ".npy";
        if (model.packed()) {  // a model of several inputs: one map per input, named by its argument
          const auto parts = model.unpack(map.unsqueeze(0));
          const auto names = model.input_names();
          npy = nlohmann::json::object();
          for (size_t k = 0; k < parts.size(); ++k) {
            const std::string file = base + "." + names[k] + ".npy";
            write_npy((fs::path(ex.dir) / file).string(), parts[k][0]);
            written.insert(file);
            npy[names[k]] = file;
          }
        } else {
          write_npy((fs::path(ex.dir) / (base + ".npy")).string(), map);
          written.insert(base + ".npy");
        }
        nlohmann::json extra_files = nlohmann::json::object();
        for (const auto& [key, t] : res.extra) {
          std::string file = base + "." + key + ".npy";
          for (auto& ch : file)
            if (ch == '/') ch = '_';
          write_npy((fs::path(ex.dir) / file).string(), t[i]);
          written.insert(file);
          extra_files[key] = file;
        }
        nlohmann::json diag = diagnostics_of(res.diagnostics, i, n);
        if (diag.contains("warning") && diag["warning"].is_string()) ex.warnings.push_back(diag["warning"]);
        nlohmann::json mj{{"params", res.params}, {"seconds", res.seconds / n}, {"score", logits[i][c].item<double>()},
                          {"npy", npy}, {"diagnostics", diag}};
        if (!extra_files.empty()) mj["extra_npy"] = extra_files;
        if (is_image_like(map)) {
          cv::Mat heat = render_heatmap(map, item.display, request.render);
          write_png((fs::path(ex.dir) / (base + ".png")).string(), heat);
          written.insert(base + ".png");
          mj["png"] = base + ".png";
          panels.push_back(heat);
          captions.push_back(ranks > 1 ? name + ": " + meta.label(c) : name);
        }
        tj["methods"][name] = mj;
      }
      j["explained"].push_back(tj);
    }
    if (!panels.empty()) {
      const int64_t p = ex.predicted.empty() ? 0 : ex.predicted[0];
      std::string title = item.stem + ": predicted " + meta.label(p) + " (" + percent(probs[i][p].item<double>()) + ")";
      if (ranks == 1 && targets[i][0] != p) title += ", explaining " + meta.label(targets[i][0]);
      write_png((fs::path(ex.dir) / "grid.png").string(), make_grid(panels, captions, title));
      j["grid"] = "grid.png";
      written.insert("grid.png");
    }
    if (!failed.empty()) {
      j["failed"] = nlohmann::json::object();
      for (const auto& [name, e] : failed) j["failed"][name] = e.what();
    }
    remove_stale_files(ex.dir, written);
    write_file_atomic((fs::path(ex.dir) / "explanation.json").string(), j.dump(2) + "\n");
    ex.json = std::move(j);
    out.push_back(std::move(ex));
  }
  if (!failed.empty()) {
    if (!failures) throw failed.begin()->second;  // written what succeeded; never a silent partial result
    for (const auto& [name, e] : failed) failures->push_back(e);
  }
  return out;
}

}  // namespace salient
