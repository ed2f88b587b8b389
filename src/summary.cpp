#include "salient/summary.hpp"
#include "salient/json.hpp"

#include <filesystem>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/npy.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

torch::Tensor add_to(const torch::Tensor& sum, const torch::Tensor& x) {
  torch::Tensor d = x.detach().to(torch::kCPU, torch::kDouble);
  // Never broadcast: a [1, H, W] shard's sum would spread over a [3, H, W] summary without a word.
  if (sum.defined() && sum.sizes() != d.sizes())
    throw Error("a summary sum of shape " + c10::str(d.sizes()) + " cannot be added to one of shape " + c10::str(sum.sizes()) +
                " (a shard's summary/sums of another run, or edited?)");
  return sum.defined() ? sum + d : d.clone();
}

std::string key(const std::string& by, int64_t cls, const std::string& what) {
  return by + "_" + std::to_string(cls) + "_" + what + ".npy";
}

// Method names are registry names ([a-z0-9-]); anything else would not be a safe file name.
void check_name(const std::string& name) {
  if (name.empty() || name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.") != std::string::npos ||
      name.find("..") != std::string::npos)
    throw Error("summary: '" + name + "' is not a method name");
}

}  // namespace

void ClassSummary::add(const std::string& by, int64_t cls, double confidence, const std::string& id,
                       const torch::Tensor& input, const std::map<std::string, torch::Tensor>& maps) {
  Group& g = groups_[by][cls];
  ++g.n;
  g.input_sum = add_to(g.input_sum, input);
  for (const auto& [name, map] : maps) {
    auto& [s, a] = g.sums[name];
    s = add_to(s, map);
    a = add_to(a, map.abs());
  }
  // Ties keep the smaller id: the same whatever the order inputs arrive in (shards, resumes).
  if (confidence > g.most_p || (confidence == g.most_p && id < g.most_id)) {
    g.most_p = confidence, g.most_id = id, g.most_input = input.detach().to(torch::kCPU, torch::kFloat).clone();
  }
  if (confidence < g.least_p || (confidence == g.least_p && id < g.least_id)) {
    g.least_p = confidence, g.least_id = id, g.least_input = input.detach().to(torch::kCPU, torch::kFloat).clone();
  }
}

void ClassSummary::merge(const ClassSummary& other) {
  // Every class's input sum has one shape, and every class's sums of one method: a shard whose
  // sums have another (of another run, or edited) is refused, whichever classes it holds.
  auto shape_of = [this](const std::string& method) -> std::vector<int64_t> {
    for (const auto& [by, classes] : groups_)
      for (const auto& [cls, g] : classes) {
        if (method.empty() && g.input_sum.defined()) return g.input_sum.sizes().vec();
        if (!method.empty() && g.sums.count(method) && g.sums.at(method).first.defined()) return g.sums.at(method).first.sizes().vec();
      }
    return {};
  };
  auto check = [&](const std::string& method, const torch::Tensor& t) {
    const std::vector<int64_t> want = shape_of(method);
    if (t.defined() && !want.empty() && t.sizes().vec() != want)
      throw Error("a summary sum of shape " + c10::str(t.sizes()) + " cannot be added to one of shape " + c10::str(want) +
                  (method.empty() ? " (inputs" : " (" + method) + "; a shard's summary/sums of another run, or edited?)");
  };
  for (const auto& [by, classes] : other.groups_)
    for (const auto& [cls, o] : classes) {
      check("", o.input_sum);
      for (const auto& [name, sa] : o.sums) {
        check(name, sa.first);
        check(name, sa.second);
      }
    }
  for (const auto& [by, classes] : other.groups_)
    for (const auto& [cls, o] : classes) {
      Group& g = groups_[by][cls];
      g.n += o.n;
      g.input_sum = add_to(g.input_sum, o.input_sum);
      for (const auto& [name, sa] : o.sums) {
        auto& [s, a] = g.sums[name];
        s = add_to(s, sa.first);
        a = add_to(a, sa.second);
      }
      if (o.most_p > g.most_p || (o.most_p == g.most_p && o.most_id < g.most_id))
        g.most_p = o.most_p, g.most_id = o.most_id, g.most_input = o.most_input;
      if (o.least_p < g.least_p || (o.least_p == g.least_p && o.least_id < g.least_id))
        g.least_p = o.least_p, g.least_id = o.least_id, g.least_input = o.least_input;
    }
}

void ClassSummary::write(const std::string& dir, const ModelMetadata& meta, const RenderOptions& render) const {
  const fs::path root = fs::path(dir) / "summary", sums = root / "sums";
  ensure_inner_dir(sums.string());
  remove_stale_temporaries(root.string());
  remove_stale_temporaries(sums.string());
  nlohmann::json state = nlohmann::json::object();
  for (const auto& [by, classes] : groups_) {
    std::vector<cv::Mat> rows;
    for (const auto& [cls, g] : classes) {
      const std::string k = std::to_string(cls);
      nlohmann::json gj{{"n", g.n}, {"label", meta.label(cls)}, {"methods", nlohmann::json::array()},
                        {"most", {{"id", g.most_id}, {"confidence", g.most_p}}},
                        {"least", {{"id", g.least_id}, {"confidence", g.least_p}}}};
      write_npy((sums / key(by, cls, "input")).string(), g.input_sum);
      write_npy((sums / key(by, cls, "most")).string(), g.most_input);
      write_npy((sums / key(by, cls, "least")).string(), g.least_input);
      const std::string suffix = by == "label" ? "_label" : "_class";
      const torch::Tensor mean_input = g.input_sum / static_cast<double>(g.n);
      write_npy((root / ("input" + suffix + k + ".npy")).string(), mean_input);
      std::vector<cv::Mat> panels;
      std::vector<std::string> captions;
      const bool image = is_image_like(mean_input);
      if (image) {
        panels.push_back(upscale_for_display(tensor_to_display(mean_input.to(torch::kFloat), meta), render.min_size));
        captions.push_back("mean input");
      }
      for (const auto& [name, sa] : g.sums) {
        check_name(name);
        gj["methods"].push_back(name);
        write_npy((sums / key(by, cls, name + ".sum")).string(), sa.first);
        write_npy((sums / key(by, cls, name + ".abs")).string(), sa.second);
        write_npy((root / (name + suffix + k + ".npy")).string(), sa.first / static_cast<double>(g.n));
        const torch::Tensor mean_abs = sa.second / static_cast<double>(g.n);
        write_npy((root / (name + suffix + k + ".abs.npy")).string(), mean_abs);
        if (image && is_image_like(mean_abs)) {
          panels.push_back(render_heatmap(mean_abs.to(torch::kFloat), cv::Mat(), render));
          captions.push_back(name + " mean |map|");
        }
      }
      if (image) {
        const cv::Mat most = tensor_to_display(g.most_input, meta), least = tensor_to_display(g.least_input, meta);
        panels.push_back(upscale_for_display(most, render.min_size));
        captions.push_back("most confident " + g.most_id);
        panels.push_back(upscale_for_display(least, render.min_size));
        captions.push_back("least confident " + g.least_id);
        for (auto& p : panels)  // one panel size for every row
          if (p.rows != panels[0].rows || p.cols != panels[0].cols) cv::resize(p, p, panels[0].size(), 0, 0, cv::INTER_NEAREST);
        rows.push_back(make_grid(panels, captions,
                                 (by == "label" ? "label " : "predicted ") + k + ": " + meta.label(cls) + " (n=" + std::to_string(g.n) + ")"));
      }
      state[by][k] = gj;
    }
    if (!rows.empty()) {
      bool same = true;
      for (const auto& r : rows) same = same && r.cols == rows[0].cols;
      if (same) {
        cv::Mat atlas;
        cv::vconcat(rows, atlas);
        write_png((root / ("atlas_" + by + ".png")).string(), atlas);
      }
    }
  }
  write_file_atomic((root / "state.json").string(), state.dump(2) + "\n");
}

ClassSummary ClassSummary::load(const std::string& dir) {
  const fs::path root = fs::path(dir) / "summary", sums = root / "sums";
  nlohmann::json state = parse_json(read_file((root / "state.json").string()));
  if (!state.is_object()) throw Error("'" + (root / "state.json").string() + "' is not a summary state");
  ClassSummary s;
  try {
    for (const auto& [by, classes] : state.items()) {
      if (by != "predicted" && by != "label") throw Error("unknown grouping '" + by + "'");
      for (const auto& [k, gj] : classes.items()) {
        const int64_t cls = std::stoll(k);
        Group& g = s.groups_[by][cls];
        g.n = gj.at("n").get<int64_t>();
        g.input_sum = read_npy((sums / key(by, cls, "input")).string()).to(torch::kDouble);
        g.most_input = read_npy((sums / key(by, cls, "most")).string());
        g.least_input = read_npy((sums / key(by, cls, "least")).string());
        g.most_id = gj.at("most").at("id").get<std::string>();
        g.most_p = gj.at("most").at("confidence").get<double>();
        g.least_id = gj.at("least").at("id").get<std::string>();
        g.least_p = gj.at("least").at("confidence").get<double>();
        for (const auto& m : gj.at("methods")) {
          const std::string name = m.get<std::string>();
          check_name(name);
          g.sums[name] = {read_npy((sums / key(by, cls, name + ".sum")).string()).to(torch::kDouble),
                          read_npy((sums / key(by, cls, name + ".abs")).string()).to(torch::kDouble)};
        }
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + (root / "state.json").string() + "' is not a summary state: " + one_line(e));
  } catch (const std::invalid_argument&) {
    throw Error("'" + (root / "state.json").string() + "' has a class that is not a number");
  }
  return s;
}

}  // namespace salient
