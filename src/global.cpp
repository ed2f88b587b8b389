#include "salient/global.hpp"
#include "salient/json.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/image.hpp"
#include "salient/registry.hpp"
#include "salient/tabular.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

struct Column {
  const Feature* feature;
  int64_t offset, width;
};

// Logits of many rows, in passes of 256.
torch::Tensor logits_of(Model& model, const torch::Tensor& x) {
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < x.size(0); b += 256) parts.push_back(model.predict(x.slice(0, b, std::min(x.size(0), b + 256))).to(torch::kCPU, torch::kDouble));
  return torch::cat(parts);
}

// A CSV field: quoted when it holds a comma, a quote or a line break.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
  return out;
}

}  // namespace

nlohmann::json global_report(Model& model, const GlobalRequest& req) {
  const ModelMetadata& meta = model.metadata();
  if (meta.features.empty())
    throw Error("salient global needs the model's metadata to name its features (\"features\": [...]; see the README's Tabular models)");
  if (req.repeats < 1 || req.repeats > 1000) throw Error("--repeats must be in 1..1000, got " + std::to_string(req.repeats));
  if (req.grid < 2 || req.grid > 1000) throw Error("--grid must be in 2..1000, got " + std::to_string(req.grid));
  const TabularRows rows = read_csv_rows(req.data, meta);
  std::vector<Column> columns;
  int64_t offset = 0;
  for (const auto& f : meta.features) {
    columns.push_back({&f, offset, f.width()});
    offset += f.width();
  }
  for (const auto& name : req.features)
    if (std::none_of(meta.features.begin(), meta.features.end(), [&](const Feature& f) { return f.name == name; }))
      throw Error("--features: the model has no feature '" + name + "'");
  std::vector<torch::Tensor> xs;
  for (const auto& item : rows.items) xs.push_back(item.tensor);
  const torch::Tensor x = torch::stack(xs);
  const int64_t n = x.size(0);
  const torch::Tensor logits = logits_of(model, x), probs = output_probabilities(meta, logits);
  const int64_t classes = probs.size(1);
  const int64_t c = req.klass >= 0 ? req.klass : (classes == 2 ? 1 : 0);
  if (c >= classes) throw Error("--class " + std::to_string(c) + " is out of range: the model has " + std::to_string(classes) + " classes");
  const bool labelled = std::all_of(rows.labels.begin(), rows.labels.end(), [](int64_t l) { return l >= 0; });
  const torch::Tensor labels = torch::tensor(rows.labels, torch::kLong);
  const torch::Tensor predicted = probs.argmax(1);
  nlohmann::json report = {{"model", model.path()}, {"data", req.data}, {"rows", n}, {"class", c}, {"label", meta.label(c)}};
  // A regression: its one output in the target's units; its error against the true values (MSE, MAE)
  // where the rows have them, in place of accuracy.
  const bool regression = meta.regression();
  if (regression && classes != 1)
    throw Error("the model is a regression (metadata \"output\": \"regression\") with " + std::to_string(classes) +
                " outputs; global explains a regression of one output");
  const torch::Tensor truth = regression && labelled ? torch::tensor(rows.values, torch::kDouble) : torch::Tensor();
  auto squared_error = [&](const torch::Tensor& out) { return (out.select(1, 0).to(torch::kDouble) - truth).pow(2).mean().item<double>(); };
  auto absolute_error = [&](const torch::Tensor& out) { return (out.select(1, 0).to(torch::kDouble) - truth).abs().mean().item<double>(); };
  if (regression) report["regression"] = true;
  if (regression && labelled) {
    report["mse"] = squared_error(logits);
    report["mae"] = absolute_error(logits);
  } else if (labelled) {
    report["accuracy"] = predicted.eq(labels).to(torch::kDouble).mean().item<double>();
  }
  // Every method is built and checked on the first row before anything is written (a CAM on a table,
  // or a method whose options cannot apply, failed after the folder and its log existed).
  for (const auto& name : req.methods) {
    auto method = Registry::builtin().create(name, req.method_options, meta);
    try {
      method->check(model, x.slice(0, 0, 1));
      method->attribute(model, x.slice(0, 0, 1), torch::full({1}, c, torch::kLong));
    } catch (const Error& e) {
      throw Error("--methods " + name + ": " + e.what(), e.kind());
    }
  }
  ensure_writable_dir(req.out_dir);
  const fs::path out(req.out_dir);

  // 1. Each method's attributions per row and column (one-hot groups summed), for class c and, for a
  // classifier of up to 10 classes, every other class too. The costly part: logged per 64 rows in
  // attributions.jsonl, so an interrupted run resumes where it stopped (same model, data, options).
  OutputLock lock(req.out_dir);
  remove_stale_temporaries(req.out_dir);
  const nlohmann::json signature{{"model", fingerprint(model.path())}, {"data", fingerprint(req.data)},
                                 {"options", req.method_options}};
  const std::string log_path = (out / "attributions.jsonl").string();
  std::map<std::tuple<std::string, int64_t, int64_t>, torch::Tensor> logged;  // (method, class, first row) -> [rows, columns]
  {
    std::vector<std::string> repairs;
    for (const auto& line : read_log_lines(log_path, repairs)) {
      const auto j = parse_json(line);
      if (j.is_discarded() || !j.is_object() || j.value("signature", nlohmann::json()) != signature || !j.contains("rows")) continue;
      std::vector<double> flat;
      for (const auto& r : j["rows"]) flat.insert(flat.end(), r.begin(), r.end());
      const int64_t count = static_cast<int64_t>(j["rows"].size());
      if (count == 0 || static_cast<int64_t>(flat.size()) != count * static_cast<int64_t>(columns.size())) continue;
      logged[{j["method"], j["class"], j["first"]}] = torch::tensor(flat, torch::kDouble).view({count, -1});
    }
  }
  int64_t resumed = 0;
  AppendLog log(log_path);
  auto column_attributions = [&](const std::string& name, Method& method, int64_t klass) {
    std::vector<torch::Tensor> parts;
    for (int64_t b = 0; b < n; b += 64) {
      const torch::Tensor part = x.slice(0, b, std::min(n, b + 64));
      if (auto it = logged.find({name, klass, b}); it != logged.end() && it->second.size(0) == part.size(0)) {
        parts.push_back(it->second);
        ++resumed;
        continue;
      }
      const torch::Tensor map = method.attribute(model, part, torch::full({part.size(0)}, klass, torch::kLong)).map.to(torch::kCPU, torch::kDouble).reshape({part.size(0), -1});
      std::vector<torch::Tensor> cols;
      for (const auto& col : columns) cols.push_back(map.slice(1, col.offset, col.offset + col.width).sum(1));
      parts.push_back(torch::stack(cols, 1));
      nlohmann::json rows_json = nlohmann::json::array();
      for (int64_t i = 0; i < part.size(0); ++i) {
        const torch::Tensor r = parts.back()[i].contiguous();
        rows_json.push_back(std::vector<double>(r.data_ptr<double>(), r.data_ptr<double>() + r.numel()));
      }
      log.append(nlohmann::json{{"signature", signature}, {"method", name}, {"class", klass}, {"first", b}, {"rows", rows_json}}.dump() + "\n");
    }
    return torch::cat(parts);  // [n, columns]
  };
  auto ranked = [&](const torch::Tensor& attr) {
    nlohmann::json per = nlohmann::json::array();
    for (size_t k = 0; k < columns.size(); ++k)
      per.push_back({{"name", columns[k].feature->name}, {"attribution", attr.select(1, static_cast<int64_t>(k)).abs().mean().item<double>()}});
    std::stable_sort(per.begin(), per.end(), [](const nlohmann::json& a, const nlohmann::json& b) { return a["attribution"].get<double>() > b["attribution"].get<double>(); });
    return per;
  };
  report["methods"] = nlohmann::json::object();
  report["per_class"] = nlohmann::json::object();
  for (const auto& name : req.methods) {
    auto method = Registry::builtin().create(name, req.method_options, meta);
    const torch::Tensor attr = column_attributions(name, *method, c);
    const nlohmann::json per = ranked(attr);
    report["methods"][name] = per;
    write_png((out / ("importance_" + file_safe(name) + ".png")).string(),
              feature_bar_chart(per, name + ": mean |attribution| for " + meta.label(c) + " over " + std::to_string(n) + " rows"));
    // The beeswarm: every row's attribution per column, coloured by the column's value.
    std::vector<SwarmColumn> swarm;
    for (size_t k = 0; k < per.size() && k < 12; ++k) {
      const std::string col_name = per[k]["name"];
      const size_t j = static_cast<size_t>(std::find_if(columns.begin(), columns.end(), [&](const Column& col) { return col.feature->name == col_name; }) - columns.begin());
      const Column& col = columns[j];
      // Colour: a numeric column's standardised value, a categorical one's category index.
      const torch::Tensor value = col.feature->type == "categorical" ? x.slice(1, col.offset, col.offset + col.width).argmax(1).to(torch::kDouble)
                                                                     : x.select(1, col.offset).to(torch::kDouble);
      // A categorical column's colours run over its categories in the metadata's order: named, blue to red.
      std::string shown = col_name;
      if (col.feature->type == "categorical") {
        shown += " (";
        for (size_t v = 0; v < col.feature->values.size(); ++v) shown += (v ? " < " : "") + col.feature->values[v];
        shown += ")";
      }
      swarm.push_back({shown, attr.select(1, static_cast<int64_t>(j)).contiguous(), value.contiguous()});
    }
    write_png((out / ("beeswarm_" + file_safe(name) + ".png")).string(),
              beeswarm(swarm, name + ": attribution to " + meta.label(c) + " per row (colour: low blue, high red)"));
    // Every row's attributions as a CSV: id, then the columns.
    std::ostringstream csv;
    csv << "id";
    for (const auto& col : columns) csv << "," << csv_field(col.feature->name);
    csv << "\n";
    const torch::Tensor a = attr.contiguous();
    for (int64_t i = 0; i < n; ++i) {
      csv << csv_field(rows.items[static_cast<size_t>(i)].stem);
      for (int64_t k = 0; k < a.size(1); ++k) csv << "," << a[i][k].item<double>();
      csv << "\n";
    }
    write_file_atomic((out / ("attributions_" + file_safe(name) + ".csv")).string(), csv.str());
    // Per class: the same summary for every class of a classifier (up to 10 classes).
    if (classes <= 10) {
      report["per_class"][name] = nlohmann::json::object();
      for (int64_t k = 0; k < classes; ++k)
        report["per_class"][name][meta.label(k)] = k == c ? per : ranked(column_attributions(name, *method, k));
    }
  }
  report["resumed_chunks"] = resumed;

  // 2. Permutation importance: the mean drop of each row's score (its true class's probability, or
  // class c's without labels) when one column is shuffled across the rows; repeats give an interval.
  // A regression: the rise of the mean squared error against the true values (of the mean absolute
  // change of the output without them), in the target's units.
  const torch::Tensor who = labelled && !regression ? labels : torch::full({n}, c, torch::kLong);
  const torch::Tensor base = probs.gather(1, who.unsqueeze(1)).squeeze(1);
  const double base_mse = regression && labelled ? report["mse"].get<double>() : 0.0;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(req.seed);
  nlohmann::json perm = nlohmann::json::array();
  for (const auto& col : columns) {
    std::vector<double> drops, accuracy_drops;
    for (int r = 0; r < req.repeats; ++r) {
      const torch::Tensor order = at::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
      torch::Tensor shuffled = x.clone();
      shuffled.slice(1, col.offset, col.offset + col.width).copy_(x.index_select(0, order).slice(1, col.offset, col.offset + col.width));
      const torch::Tensor p = output_probabilities(meta, logits_of(model, shuffled));
      if (regression) {
        drops.push_back(labelled ? squared_error(p) - base_mse : (p.select(1, 0) - base).abs().mean().item<double>());
        if (labelled) accuracy_drops.push_back(absolute_error(p) - report["mae"].get<double>());
        continue;
      }
      drops.push_back((base - p.gather(1, who.unsqueeze(1)).squeeze(1)).mean().item<double>());
      if (labelled) accuracy_drops.push_back(report["accuracy"].get<double>() - p.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>());
    }
    const torch::Tensor d = torch::tensor(drops, torch::kDouble);
    const double mean = d.mean().item<double>(), sd = req.repeats > 1 ? d.std().item<double>() : 0.0;
    const double half = 1.96 * sd / std::sqrt(static_cast<double>(req.repeats));
    nlohmann::json one = {{"name", col.feature->name}, {"importance", mean}, {"std", sd}, {"low", mean - half}, {"high", mean + half}};
    if (labelled) one[regression ? "mae_increase" : "accuracy_drop"] = torch::tensor(accuracy_drops, torch::kDouble).mean().item<double>();
    perm.push_back(one);
  }
  std::stable_sort(perm.begin(), perm.end(), [](const nlohmann::json& a, const nlohmann::json& b) { return a["importance"].get<double>() > b["importance"].get<double>(); });
  report["permutation"] = perm;
  nlohmann::json perm_bars = nlohmann::json::array();
  for (const auto& p : perm) perm_bars.push_back({{"name", p["name"]}, {"attribution", p["importance"]}});
  write_png((out / "permutation.png").string(),
            feature_bar_chart(perm_bars, (regression ? std::string(labelled ? "permutation importance: rise of the mean squared error"
                                                                                      : "permutation importance: mean |change| of the output")
                                                     : std::string("permutation importance: drop of ") +
                                                           (labelled ? "the true class's" : "the class's") + " probability") +
                                             " (" + std::to_string(req.repeats) + " shuffles)"));

  // 3. Partial dependence and ICE of chosen columns: the column set to each grid value for every row.
  std::vector<std::string> chosen = req.features;
  if (chosen.empty())
    for (size_t k = 0; k < perm.size() && k < 3; ++k) chosen.push_back(perm[k]["name"]);
  report["partial_dependence"] = nlohmann::json::object();
  for (const auto& name : chosen) {
    const Column& col = *std::find_if(columns.begin(), columns.end(), [&](const Column& k) { return k.feature->name == name; });
    const Feature& f = *col.feature;
    std::vector<nlohmann::json> grid;
    std::vector<torch::Tensor> settings;  // the column's encoded values per grid point
    if (f.type == "categorical") {
      for (int64_t j = 0; j < col.width; ++j) {
        grid.push_back(f.values[static_cast<size_t>(j)]);
        settings.push_back(torch::zeros({col.width}, torch::kFloat).index_fill_(0, torch::tensor({j}), 1.0));
      }
    } else {
      const torch::Tensor raw = x.select(1, col.offset).to(torch::kDouble) * f.std + f.mean;
      const double lo = raw.min().item<double>(), hi = raw.max().item<double>();
      for (int g = 0; g < req.grid; ++g) {
        const double v = lo + (hi - lo) * g / (req.grid - 1);
        grid.push_back(v);
        settings.push_back(torch::full({1}, static_cast<float>((v - f.mean) / f.std)));
      }
    }
    std::vector<double> pd_logit, pd_prob;
    std::vector<torch::Tensor> ice;
    for (const auto& s : settings) {
      torch::Tensor set = x.clone();
      set.slice(1, col.offset, col.offset + col.width).copy_(s.expand({n, col.width}));
      const torch::Tensor lg = logits_of(model, set), p = output_probabilities(meta, lg);
      pd_logit.push_back(lg.select(1, std::min(c, lg.size(1) - 1)).mean().item<double>());
      pd_prob.push_back(p.select(1, c).mean().item<double>());
      ice.push_back(p.select(1, c));
    }
    const torch::Tensor curves = torch::stack(ice, 1);  // [n, grid]
    nlohmann::json ice_rows = nlohmann::json::array();
    for (int64_t i = 0; i < std::min<int64_t>(n, 50); ++i) {
      std::vector<double> v(curves[i].data_ptr<double>(), curves[i].data_ptr<double>() + curves.size(1));
      ice_rows.push_back({{"id", rows.items[static_cast<size_t>(i)].stem}, {regression ? "value" : "probability", v}});
    }
    // A regression's partial dependence is in the output's own units ("value"), not a probability.
    if (regression)
      report["partial_dependence"][name] = {{"grid", grid}, {"value", pd_prob}, {"ice", ice_rows}};
    else
      report["partial_dependence"][name] = {{"grid", grid}, {"probability", pd_prob}, {"logit", pd_logit}, {"ice", ice_rows}};
    if (f.type != "categorical") {
      std::vector<double> gx;
      for (const auto& g : grid) gx.push_back(g.get<double>());
      const torch::Tensor q = torch::quantile(curves, torch::tensor({0.1, 0.9}, torch::kDouble), 0);
      auto vec = [](const torch::Tensor& t) { return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel()); };
      write_png((out / ("pdp_" + file_safe(name) + ".png")).string(),
                plot_lines((regression ? "partial dependence of the output" : "partial dependence of P(" + meta.label(c) + ")") + " on " + name, name,
                           {{"partial dependence", gx, pd_prob},
                            {"ICE 10th percentile", gx, vec(q[0].contiguous())},
                            {"ICE 90th percentile", gx, vec(q[1].contiguous())}}));
    } else {  // a categorical column: one bar per category
      nlohmann::json bars = nlohmann::json::array();
      for (size_t g = 0; g < grid.size(); ++g) bars.push_back({{"name", grid[g]}, {"attribution", pd_prob[g]}});
      write_png((out / ("pdp_" + file_safe(name) + ".png")).string(),
                feature_bar_chart(bars, (regression ? "partial dependence of the output" : "partial dependence of P(" + meta.label(c) + ")") +
                                            " on " + name + " (per category)"));
    }
  }

  // report.md: the tables a person reads first.
  std::ostringstream md;
  md << "# Global explanation of " << fs::path(model.path()).filename().string() << "\n\n" << n << " rows of `" << req.data << "`";
  if (labelled && regression) md << ", mean squared error " << report["mse"].get<double>() << ", mean absolute error " << report["mae"].get<double>();
  else if (labelled) md << ", accuracy " << report["accuracy"].get<double>();
  md << (regression ? "; a regression" : "; class explained: " + meta.label(c)) << ".\n\n## Permutation importance\n\n| column | "
     << (regression ? (labelled ? "rise of MSE" : "mean |change|") : "drop") << " | 95 % interval |\n|---|---|---|\n";
  for (const auto& p : perm)
    md << "| " << p["name"].get<std::string>() << " | " << p["importance"].get<double>() << " | [" << p["low"].get<double>() << ", "
       << p["high"].get<double>() << "] |\n";
  for (const auto& [name, per] : report["methods"].items()) {
    md << "\n## " << name << ": mean |attribution|\n\n| column | mean abs |\n|---|---|\n";
    for (const auto& p : per) md << "| " << p["name"].get<std::string>() << " | " << p["attribution"].get<double>() << " |\n";
  }
  for (const auto& [name, pd] : report["partial_dependence"].items()) {
    const std::string key = regression ? "value" : "probability";
    md << "\n## Partial dependence on " << name << "\n\n| " << name << " | " << (regression ? "mean output" : "mean P(" + meta.label(c) + ")")
       << " |\n|---|---|\n";
    for (size_t g = 0; g < pd["grid"].size(); ++g)
      md << "| " << (pd["grid"][g].is_string() ? pd["grid"][g].get<std::string>() : pd["grid"][g].dump()) << " | " << pd[key][g].get<double>() << " |\n";
  }
  write_file_atomic((out / "report.md").string(), md.str());
  write_file_atomic((out / "report.json").string(), report.dump(2) + "\n");
  return report;
}

}  // namespace salient
