#include "salient/global.hpp"

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
  if (labelled) report["accuracy"] = predicted.eq(labels).to(torch::kDouble).mean().item<double>();
  ensure_writable_dir(req.out_dir);
  const fs::path out(req.out_dir);

  // 1. Each method's mean |attribution| per column (one-hot groups summed first), class c.
  report["methods"] = nlohmann::json::object();
  for (const auto& name : req.methods) {
    auto method = Registry::builtin().create(name, req.method_options);
    std::vector<torch::Tensor> maps;
    for (int64_t b = 0; b < n; b += 64) {
      const torch::Tensor part = x.slice(0, b, std::min(n, b + 64));
      maps.push_back(method->attribute(model, part, torch::full({part.size(0)}, c, torch::kLong)).map.to(torch::kCPU, torch::kDouble));
    }
    const torch::Tensor attr = torch::cat(maps).reshape({n, -1});
    nlohmann::json per = nlohmann::json::array();
    for (const auto& col : columns)
      per.push_back({{"name", col.feature->name}, {"attribution", attr.slice(1, col.offset, col.offset + col.width).sum(1).abs().mean().item<double>()}});
    std::stable_sort(per.begin(), per.end(), [](const nlohmann::json& a, const nlohmann::json& b) { return a["attribution"].get<double>() > b["attribution"].get<double>(); });
    report["methods"][name] = per;
    write_png((out / ("importance_" + file_safe(name) + ".png")).string(),
              feature_bar_chart(per, name + ": mean |attribution| for " + meta.label(c) + " over " + std::to_string(n) + " rows"));
  }

  // 2. Permutation importance: the mean drop of each row's score (its true class's probability, or
  // class c's without labels) when one column is shuffled across the rows; repeats give an interval.
  const torch::Tensor who = labelled ? labels : torch::full({n}, c, torch::kLong);
  const torch::Tensor base = probs.gather(1, who.unsqueeze(1)).squeeze(1);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(req.seed);
  nlohmann::json perm = nlohmann::json::array();
  for (const auto& col : columns) {
    std::vector<double> drops, accuracy_drops;
    for (int r = 0; r < req.repeats; ++r) {
      const torch::Tensor order = at::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
      torch::Tensor shuffled = x.clone();
      shuffled.slice(1, col.offset, col.offset + col.width).copy_(x.index_select(0, order).slice(1, col.offset, col.offset + col.width));
      const torch::Tensor p = output_probabilities(meta, logits_of(model, shuffled));
      drops.push_back((base - p.gather(1, who.unsqueeze(1)).squeeze(1)).mean().item<double>());
      if (labelled) accuracy_drops.push_back(report["accuracy"].get<double>() - p.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>());
    }
    const torch::Tensor d = torch::tensor(drops, torch::kDouble);
    const double mean = d.mean().item<double>(), sd = req.repeats > 1 ? d.std().item<double>() : 0.0;
    const double half = 1.96 * sd / std::sqrt(static_cast<double>(req.repeats));
    nlohmann::json one = {{"name", col.feature->name}, {"importance", mean}, {"std", sd}, {"low", mean - half}, {"high", mean + half}};
    if (labelled) one["accuracy_drop"] = torch::tensor(accuracy_drops, torch::kDouble).mean().item<double>();
    perm.push_back(one);
  }
  std::stable_sort(perm.begin(), perm.end(), [](const nlohmann::json& a, const nlohmann::json& b) { return a["importance"].get<double>() > b["importance"].get<double>(); });
  report["permutation"] = perm;
  nlohmann::json perm_bars = nlohmann::json::array();
  for (const auto& p : perm) perm_bars.push_back({{"name", p["name"]}, {"attribution", p["importance"]}});
  write_png((out / "permutation.png").string(),
            feature_bar_chart(perm_bars, std::string("permutation importance: drop of ") + (labelled ? "the true class's" : "the class's") +
                                             " probability (" + std::to_string(req.repeats) + " shuffles)"));

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
      ice_rows.push_back({{"id", rows.items[static_cast<size_t>(i)].stem}, {"probability", v}});
    }
    report["partial_dependence"][name] = {{"grid", grid}, {"probability", pd_prob}, {"logit", pd_logit}, {"ice", ice_rows}};
    if (f.type != "categorical") {
      std::vector<double> gx;
      for (const auto& g : grid) gx.push_back(g.get<double>());
      const torch::Tensor q = torch::quantile(curves, torch::tensor({0.1, 0.9}, torch::kDouble), 0);
      auto vec = [](const torch::Tensor& t) { return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel()); };
      write_png((out / ("pdp_" + file_safe(name) + ".png")).string(),
                plot_lines("partial dependence of P(" + meta.label(c) + ") on " + name, name,
                           {{"partial dependence", gx, pd_prob},
                            {"ICE 10th percentile", gx, vec(q[0].contiguous())},
                            {"ICE 90th percentile", gx, vec(q[1].contiguous())}}));
    }
  }

  // report.md: the tables a person reads first.
  std::ostringstream md;
  md << "# Global explanation of " << fs::path(model.path()).filename().string() << "\n\n" << n << " rows of `" << req.data << "`";
  if (labelled) md << ", accuracy " << report["accuracy"].get<double>();
  md << "; class explained: " << meta.label(c) << ".\n\n## Permutation importance\n\n| column | drop | 95 % interval |\n|---|---|---|\n";
  for (const auto& p : perm)
    md << "| " << p["name"].get<std::string>() << " | " << p["importance"].get<double>() << " | [" << p["low"].get<double>() << ", "
       << p["high"].get<double>() << "] |\n";
  for (const auto& [name, per] : report["methods"].items()) {
    md << "\n## " << name << ": mean |attribution|\n\n| column | mean abs |\n|---|---|\n";
    for (const auto& p : per) md << "| " << p["name"].get<std::string>() << " | " << p["attribution"].get<double>() << " |\n";
  }
  write_file_atomic((out / "report.md").string(), md.str());
  write_file_atomic((out / "report.json").string(), report.dump(2) + "\n");
  return report;
}

}  // namespace salient
