#include "salient/evaluate.hpp"
#include "salient/json.hpp"


#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "salient/baseline.hpp"
#include "salient/dataset.hpp"
#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/image.hpp"
#include "salient/metrics/metric.hpp"
#include "salient/registry.hpp"
#include "salient/target.hpp"

namespace salient {

namespace fs = std::filesystem;

const std::vector<std::string>& metric_names() { return metrics::MetricRegistry::builtin().names(); }

namespace {

std::vector<std::string> chosen_metrics(const EvaluateRequest& r) { return r.metrics.empty() ? metric_names() : r.metrics; }


// One input: every method, every metric (and the random order for metrics that have one).
nlohmann::json evaluate_one(Model& model, const torch::Tensor& x, int64_t index, const EvaluateRequest& req,
                            const Target& explained, std::vector<std::unique_ptr<Method>>& methods) {
  const auto& registry = metrics::MetricRegistry::builtin();
  const auto ms = chosen_metrics(req);
  // The predicted class, the class asked for, or a function target's one column (its reduction is
  // installed on the model for the whole run).
  const int64_t target = explained.resolve(model.predict(x.unsqueeze(0)))[0][0];
  const metrics::Canvas canvas = req.canvas == "blur"    ? metrics::Canvas::Blur
                                 : req.canvas == "zeros" ? metrics::Canvas::Zeros
                                 : req.canvas == "mean"  ? metrics::Canvas::Mean
                                                         : metrics::Canvas::Black;
  nlohmann::json line{{"index", index}, {"target", target}, {"methods", nlohmann::json::object()}};
  torch::Tensor t = torch::full({1}, target, torch::kLong);
  for (size_t k = 0; k < methods.size(); ++k) {
    Method& method = *methods[k];
    const torch::Tensor map = method.attribute(model, x.unsqueeze(0), t).map[0];
    const metrics::MetricContext c{model, method, x, target, map, canvas, req.steps, req.seed};
    nlohmann::json j = nlohmann::json::object();
    for (const auto& name : ms) j.update(registry.get(name).compute(c));
    line["methods"][req.methods[k]] = j;
  }
  // The baseline every method should beat: features in a random order.
  const torch::Tensor order = metrics::random_order(x, req.seed + static_cast<uint64_t>(index));
  const torch::Tensor dummy = torch::zeros(x.dim() == 3 ? std::vector<int64_t>{x.size(1), x.size(2)} : x.sizes().vec());
  const metrics::MetricContext c{model, *methods[0], x, target, dummy, canvas, req.steps, req.seed};
  nlohmann::json r = nlohmann::json::object();
  for (const auto& name : ms)
    if (nlohmann::json v = registry.get(name).random_order(c, order); v.is_object()) r.update(v);
  if (!r.empty()) line["methods"]["random order"] = r;
  return line;
}

// Every NaN or infinite number in `j` (dumped as null), by its path ("saliency.infidelity").
void list_non_finite(const nlohmann::json& j, const std::string& path, nlohmann::json& out) {
  if (j.is_number_float() && !std::isfinite(j.get<double>())) out.push_back(path);
  if (j.is_object())
    for (const auto& [k, v] : j.items()) list_non_finite(v, path.empty() ? k : path + "." + k, out);
  if (j.is_array())
    for (size_t i = 0; i < j.size(); ++i) list_non_finite(j[i], path + "[" + std::to_string(i) + "]", out);
}

bool all_numbers(const nlohmann::json& j) {
  if (!j.is_array()) return false;
  for (const auto& v : j)
    if (!v.is_number()) return false;
  return true;
}

struct Stat {
  double mean = 0, se = 0;
  int64_t n = 0;
};
Stat stat(const std::vector<double>& v) {
  Stat s;
  s.n = static_cast<int64_t>(v.size());
  if (v.empty()) return s;
  for (double x : v) s.mean += x / s.n;
  double var = 0;
  for (double x : v) var += (x - s.mean) * (x - s.mean);
  s.se = s.n > 1 ? std::sqrt(var / (s.n - 1) / s.n) : 0.0;
  return s;
}

std::string fmt(double v) {
  std::ostringstream o;
  o.precision(4);
  o << v;
  return o.str();
}

}  // namespace

// The request's target: one per input (top-k and thresholds explain several: not scored here).
Target evaluated_target(const EvaluateRequest& r, const ModelMetadata& meta) {
  Target t = Target::parse(r.target.empty() ? "top" : r.target, meta);
  if (t.several()) throw Error("evaluate scores one target per input; --target " + r.target + " names several");
  return t;
}

void validate(const EvaluateRequest& r, Model& model) {
  if (r.methods.empty()) throw Error("no method given (--methods)");
  evaluated_target(r, model.metadata());
  Registry::builtin().check_option_keys(r.method_options, r.methods);
  for (const auto& m : r.methods) Registry::builtin().create(m, r.method_options, model.metadata());
  for (const auto& m : r.metrics) metrics::MetricRegistry::builtin().get(m);  // unknown: an error listing them
  if (r.limit < 1) throw Error("--limit must be >= 1, got " + std::to_string(r.limit));
  if (r.steps < 2 || r.steps > 1000) throw Error("--steps must be between 2 and 1000, got " + std::to_string(r.steps));
  if (r.canvas == "zero")
    throw Error("--canvas zero is ambiguous: say black (a pixel value of 0 before normalisation) or zeros (0 in the "
                "model's input space, after normalisation)");
  if (!r.canvas.empty() && r.canvas != "black" && r.canvas != "zeros" && r.canvas != "blur" && r.canvas != "mean")
    throw Error("--canvas must be black, zeros, blur or mean, got '" + r.canvas + "'");
  if (r.canvas == "mean" && model.metadata().features.empty())
    throw Error("--canvas mean (the mean row) needs a tabular model: its metadata names no features");
  if (r.data.empty()) throw Error("no data given (--data)");
  if (!fs::exists(r.data)) throw Error("data '" + r.data + "' does not exist");
  if (r.out_dir.empty()) throw Error("no output folder given (--out)");
  check_writable_dir(r.out_dir);  // created when the run starts, not by a check that fails later
}

nlohmann::json evaluate(Model& model, const EvaluateRequest& request,
                        const std::function<void(int64_t, int64_t, const std::string&)>& progress) {
  EvaluateRequest req = request;
  // Removing a table's feature means its mean, not a raw 0 (proline = 0): the mean row by default.
  if (req.canvas.empty()) req.canvas = model.metadata().features.empty() ? "black" : "mean";
  validate(req, model);
  // The first --limit items, decoded one at a time as they are evaluated (never the whole data set).
  const Dataset data = Dataset::open(req.data, model.metadata(), req.resize, "", req.limit).limit(req.limit);
  const int64_t n = data.size();
  std::vector<std::unique_ptr<Method>> methods;
  for (const auto& m : req.methods) methods.push_back(Registry::builtin().create(m, req.method_options, model.metadata()));
  const Target target = evaluated_target(req, model.metadata());
  ReductionScope scope(model, target);  // a function target's value is what the metrics score

  // Resume: inputs already in the log (for the same model file, data, methods, metrics and options)
  // are not recomputed.
  OutputLock lock(req.out_dir);  // two runs on one --out would both do all the work
  remove_stale_temporaries(req.out_dir);
  const std::string log = (fs::path(req.out_dir) / "results.jsonl").string();
  nlohmann::json signature{{"methods", req.methods}, {"metrics", chosen_metrics(req)},
                                 {"options", req.method_options}, {"canvas", req.canvas}, {"steps", req.steps},
                                 {"model", fingerprint(model.path())}, {"data", fingerprint(req.data)}};
  if (target.kind() != Target::Kind::Top) signature["target"] = target.to_string();  // (older logs: top)
  std::map<int64_t, nlohmann::json> done;
  nlohmann::json log_warnings = nlohmann::json::array();
  {
    std::vector<std::string> repairs;
    const std::vector<std::string> lines = read_log_lines(log, repairs);
    for (const auto& r : repairs) log_warnings.push_back(r);
    for (size_t number = 1; number <= lines.size(); ++number) {
      auto j = parse_json(lines[number - 1]);
      if (j.is_discarded() || !j.is_object() || !j.contains("index") || !j["index"].is_number_integer() ||
          !j.contains("methods") || !j["methods"].is_object()) {
        log_warnings.push_back("skipped line " + std::to_string(number) + " of results.jsonl: not a result record");
        continue;
      }
      if (j.value("signature", nlohmann::json()) == signature) done[j["index"].get<int64_t>()] = j;
    }
  }
  {
    AppendLog out(log);
    for (int64_t i = 0; i < n; ++i) {
      if (progress) progress(i, n, done.count(i) ? "resumed" : "evaluating");
      if (done.count(i)) continue;
      nlohmann::json line = evaluate_one(model, data.get(i, false).input.tensor, i, req, target, methods);
      // NaN and infinities become null in JSON: say where, so the report can count them.
      nlohmann::json bad = nlohmann::json::array();
      list_non_finite(line, "", bad);
      if (!bad.empty()) line["non_finite"] = bad;
      line["signature"] = signature;
      out.append(line.dump() + "\n");  // one write per line; each finished input survives a kill
      done[i] = nlohmann::json::parse(line.dump());
    }
    if (progress) progress(n, n, "done");
  }

  // Aggregate: mean and standard error of every scalar, mean curves, mean randomisation curves.
  std::vector<std::string> rows = req.methods;
  if (done.begin()->second["methods"].contains("random order")) rows.push_back("random order");
  // What the curves follow: a probability, or a value (a regression's output, a function target's).
  const bool value = model.metadata().regression() || target.kind() == Target::Kind::Function;
  const std::string score = value ? "target value" : "target probability";
  nlohmann::json report{{"model", model.path()}, {"data", req.data}, {"inputs", n}, {"canvas", req.canvas},
                        {"target", target.to_string()}, {"score", value ? "value" : "probability"},
                        {"methods", nlohmann::json::object()}};
  // The report's columns, from the metrics themselves; curves ("<key>_auc") are averaged below.
  std::vector<std::string> scalar_keys, columns;
  std::map<std::string, std::string> better;
  for (const auto& name : metric_names())
    for (const auto& col : metrics::MetricRegistry::builtin().get(name).columns()) {
      columns.push_back(col.key);
      better[col.key] = col.better;
      if (col.key.size() < 4 || col.key.compare(col.key.size() - 4, 4, "_auc") != 0) scalar_keys.push_back(col.key);
    }
  std::vector<PlotSeries> del_plot, ins_plot, rand_plot;
  nlohmann::json non_finite = nlohmann::json::object();
  for (const auto& row : rows) {
    nlohmann::json agg;
    std::map<std::string, std::vector<double>> scalars;
    std::map<std::string, std::vector<std::vector<double>>> curves;
    std::vector<std::vector<double>> rand_curves;
    std::vector<std::string> rand_layers;
    // Non-finite values (null in the log) are skipped and counted, never averaged.
    auto skipped = [&](const std::string& k) { non_finite[row + "." + k] = non_finite.value(row + "." + k, 0) + 1; };
    for (int64_t i = 0; i < n; ++i) {
      const auto& j = done[i]["methods"].contains(row) ? done[i]["methods"][row] : nlohmann::json::object();
      for (const auto& k : scalar_keys)
        if (j.contains(k)) j[k].is_number() ? scalars[k].push_back(j[k].get<double>()) : skipped(k);
      for (const auto& [c, v] : j.items())
        if (v.is_object() && v.contains("auc")) {
          if (j[c].is_object() && j[c].value("auc", nlohmann::json()).is_number() && all_numbers(j[c].value("curve", nlohmann::json()))) {
            scalars[c + "_auc"].push_back(j[c]["auc"].get<double>());
            curves[c].push_back(j[c]["curve"].get<std::vector<double>>());
          } else {
            skipped(c);
          }
        }
      if (j.contains("randomisation") && j["randomisation"].is_array()) {
        std::vector<double> s;
        std::vector<std::string> layers;
        for (const auto& st : j["randomisation"]) {
          if (!st.is_object() || !st.value("spearman", nlohmann::json()).is_number()) break;
          s.push_back(st["spearman"].get<double>());
          layers.push_back(st.value("layer", std::string()));
        }
        if (s.size() != j["randomisation"].size()) {
          skipped("randomisation");
          continue;
        }
        rand_layers = layers;
        rand_curves.push_back(s);
      }
    }
    for (const auto& [k, v] : scalars) {
      Stat s = stat(v);
      agg[k] = {{"mean", s.mean}, {"se", s.se}, {"n", s.n}};
    }
    for (const auto& [c, list] : curves) {
      std::vector<double> mean(list[0].size(), 0.0), xs;
      for (const auto& l : list)
        for (size_t p = 0; p < mean.size(); ++p) mean[p] += l[p] / list.size();
      for (size_t p = 0; p < mean.size(); ++p) xs.push_back(static_cast<double>(p) / (mean.size() - 1));
      agg[c + "_curve"] = mean;
      (c == "deletion" ? del_plot : ins_plot).push_back({row, xs, mean});
    }
    if (!rand_curves.empty()) {
      std::vector<double> mean(rand_curves[0].size(), 0.0), xs;
      for (const auto& l : rand_curves)
        for (size_t p = 0; p < mean.size(); ++p) mean[p] += l[p] / rand_curves.size();
      for (size_t p = 0; p < mean.size(); ++p) xs.push_back(static_cast<double>(p + 1));
      agg["randomisation_spearman"] = mean;
      agg["randomisation_layers"] = rand_layers;
      rand_plot.push_back({row, xs, mean});
    }
    report["methods"][row] = agg;
  }
  if (!non_finite.empty()) report["non_finite"] = non_finite;  // metric -> inputs where it was NaN/Inf
  if (!log_warnings.empty()) report["log_warnings"] = log_warnings;

  // Markdown: mean +- standard error.
  std::vector<std::string> cols;
  for (const auto& k : columns)
    for (const auto& row : rows)
      if (report["methods"][row].contains(k)) {
        cols.push_back(k);
        break;
      }
  std::ostringstream md;
  md << "# Salient evaluation\n\nModel `" << model.path() << "`, data `" << req.data << "`, " << n
     << " inputs, target " << target.to_string() << " (curves follow its " << (value ? "value" : "probability")
     << "), canvas " << req.canvas << ". Mean ± standard error; under each metric, which is better.\n\n| method |";
  for (const auto& c : cols) md << " " << c << " (" << better[c] << ") |";
  md << "\n|---|";
  for (size_t i = 0; i < cols.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& row : rows) {
    md << "| " << row << " |";
    for (const auto& c : cols) {
      const auto& a = report["methods"][row];
      if (a.contains(c)) md << " " << fmt(a[c]["mean"].get<double>()) << " ± " << fmt(a[c]["se"].get<double>()) << " |";
      else md << " |";
    }
    md << "\n";
  }
  if (!rand_plot.empty()) {
    md << "\nCascading randomisation (Spearman rank correlation with the original |map|, layers randomised from the output side):\n\n| method |";
    const auto layers = report["methods"][req.methods[0]].value("randomisation_layers", std::vector<std::string>{});
    for (const auto& l : layers) md << " " << l << " |";
    md << "\n|---|";
    for (size_t i = 0; i < layers.size(); ++i) md << "---|";
    md << "\n";
    for (const auto& s : rand_plot) {
      md << "| " << s.name << " |";
      for (double v : s.ys) md << " " << fmt(v) << " |";
      md << "\n";
    }
  }
  write_file_atomic((fs::path(req.out_dir) / "report.json").string(), report.dump(2) + "\n");
  write_file_atomic((fs::path(req.out_dir) / "report.md").string(), md.str());
  if (!del_plot.empty())
    write_png((fs::path(req.out_dir) / "deletion.png").string(),
              plot_lines("Deletion: " + score + " as the most relevant features are removed", "fraction removed", del_plot));
  if (!ins_plot.empty())
    write_png((fs::path(req.out_dir) / "insertion.png").string(),
              plot_lines("Insertion: " + score + " as the most relevant features are put back", "fraction inserted", ins_plot));
  if (!rand_plot.empty())
    write_png((fs::path(req.out_dir) / "randomisation.png").string(),
              plot_lines("Cascading randomisation: rank correlation with the original map", "layers randomised (from the output)",
                         rand_plot));
  return report;
}

}  // namespace salient
