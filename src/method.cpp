#include "salient/method.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "salient/error.hpp"
#include "salient/gradients.hpp"

namespace salient {

std::string to_string(Family f) {
  switch (f) {
    case Family::Gradient: return "gradient";
    case Family::Layer: return "layer/CAM";
    case Family::ModifiedBackprop: return "modified backprop";
    case Family::Perturbation: return "perturbation";
    case Family::Intrinsic: return "intrinsic";
  }
  return "?";
}
std::string to_string(Scope s) {
  switch (s) {
    case Scope::Local: return "local";
    case Scope::Global: return "global";
    case Scope::LocalAndGlobal: return "local+global";
  }
  return "?";
}
std::string to_string(Access a) { return a == Access::WhiteBox ? "white-box" : "black-box"; }
std::string to_string(Stage s) { return s == Stage::PostHoc ? "post-hoc" : "intrinsic"; }
std::string to_string(Specificity s) {
  return s == Specificity::ModelAgnostic ? "model-agnostic" : "model-specific";
}

nlohmann::json MethodInfo::to_json() const {
  nlohmann::json opts = nlohmann::json::array();
  for (const auto& o : options) {
    nlohmann::json j{{"name", o.name}, {"type", o.type}, {"default", o.default_value}, {"help", o.help}};
    if (!o.choices.empty()) j["choices"] = o.choices;
    if (!o.min.is_null()) j["min"] = o.min;
    if (!o.max.is_null()) j["max"] = o.max;
    if (o.min_open) j["min_open"] = true;
    opts.push_back(j);
  }
  return {{"name", name}, {"title", title}, {"family", to_string(family)}, {"scope", to_string(scope)},
          {"access", to_string(access)}, {"stage", to_string(stage)},
          {"specificity", to_string(specificity)}, {"needs_gradients", needs_gradients}, {"additive", additive}, {"background", background},
          {"paper", paper}, {"summary", summary}, {"options", opts}, {"options_of", options_of}};
}

Attribution Method::attribute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets) {
  if (inputs.dim() < 1 || inputs.size(0) < 1) throw Error(info().name + ": expected a non-empty batch [N, ...]");
  if (targets.dim() != 1 || targets.size(0) != inputs.size(0))
    throw Error(info().name + ": expected one target per input");
  if (model.backend() == Backend::Onnx && info().access != Access::BlackBox)
    throw Error(info().name + " needs a TorchScript model (gradients or layers); ONNX models run the black-box "
                "methods: occlusion, feature-ablation, rise, lime, kernel-shap, shapley-sampling");
  auto start = std::chrono::steady_clock::now();
  Attribution a;
  a.method = info().name;
  // (detach() only where there is a graph to cut: on a small model every op counts)
  auto detached = [](torch::Tensor t) { return t.requires_grad() ? t.detach() : t; };
  torch::Tensor x = detached(inputs.to(model.device(), model.dtype()));
  torch::Tensor t = targets.to(model.device(), torch::kLong);
  a.map = detached(compute(model, x, t, a)).to(torch::kCPU, torch::kFloat).contiguous();
  check_map(a);
  a.params = params();  // after compute: a method may settle defaults on its first call (a CAM's layer)
  for (auto& [key, t] : a.extra)  // float32 maps; integer labels (segments) stay integers
    t = detached(t).to(torch::kCPU, t.is_floating_point() ? torch::kFloat : t.scalar_type()).contiguous();
  if (a.scores.defined()) a.scores = detached(a.scores).to(torch::kCPU, torch::kDouble);
  auto tc = targets.to(torch::kCPU, torch::kLong).contiguous();
  a.targets.assign(tc.data_ptr<int64_t>(), tc.data_ptr<int64_t>() + tc.numel());
  a.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return a;
}

void Method::check_map(Attribution& a) const {
  const int64_t n = a.map.size(0);
  if (n == 0) return;
  // (The map is CPU float and contiguous: attribute() made it so.) A row's largest |value| answers
  // both questions: it is NaN or Inf when the row has a non-finite value (counted only then), and
  // 0 when the row is all zero. One pass over the values, no tensor operation.
  const int64_t per = a.map.numel() / n;
  const float* v = a.map.data_ptr<float>();
  std::vector<float> top(static_cast<size_t>(n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < per; ++k) {
      const float m = std::abs(v[i * per + k]);
      if (m > top[i] || std::isnan(m)) top[i] = m;  // a NaN, once in, stays: nothing compares above it
    }
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(top[i])) {
      const torch::Tensor flat = a.map.reshape({n, -1});
      const int64_t bad = (~torch::isfinite(flat)).sum().item<int64_t>();
      throw Error(info().name + ": the map has " + std::to_string(bad) + " non-finite values (NaN/Inf) of " +
                  std::to_string(flat.numel()) + "; the model's outputs or gradients overflow on this input");
    }
  for (int64_t i = 0; i < n; ++i) {
    if (top[i] != 0.0f) continue;
    std::string why;
    switch (info().family) {
      case Family::Layer:
        why = "the layer's output does not reach the target (e.g. patch tokens of a transformer's last block, which "
              "only the class token leaves), or no channel has positive evidence (try --no-relu or an earlier --layer)";
        break;
      case Family::Perturbation:
        why = "perturbing the input never changed the target output (a constant output, or a baseline equal to the input)";
        break;
      default:
        why = "the target output does not depend on the input here (dead or saturated units, a constant output, or "
              "a baseline equal to the input)";
    }
    add_warning(a.diagnostics, n, i, info().name + ": the map is all zero: " + why);
  }
}

void add_warning(nlohmann::json& diagnostics, int64_t n, int64_t i, const std::string& warning) {
  nlohmann::json& w = diagnostics["warning"];
  if (!w.is_array() || static_cast<int64_t>(w.size()) != n) {
    nlohmann::json per = nlohmann::json::array();
    for (int64_t k = 0; k < n; ++k) per.push_back(w.is_string() ? w : nlohmann::json());
    w = per;
  }
  w[i] = w[i].is_string() ? nlohmann::json(w[i].get<std::string>() + "; " + warning) : nlohmann::json(warning);
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

bool parse_number(const std::string& text, double& value) {
  try {
    size_t used = 0;
    value = std::stod(text, &used);
    return used == text.size();
  } catch (const std::exception&) {
    return false;
  }
}

std::vector<std::string> split_list(const std::string& text, const std::string& separators) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text + separators.substr(0, 1)) {
    if (separators.find(c) != std::string::npos) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  return out;
}

namespace {
std::string type_error(const std::string& method, const std::string& name, const std::string& want) {
  return method + ": option '" + name + "' must be " + want;
}
}  // namespace

const std::map<std::string, int64_t>& option_caps() {
  // Every count that sizes an allocation or a loop has a ceiling: a request beyond it is an error,
  // never a 31 GB allocation or an hour's run (README, "Limits").
  static const std::map<std::string, int64_t> caps = {
      {"samples", 100000}, {"steps", 4096}, {"max-steps", 4096}, {"batch-size", 4096},
      {"baseline-count", 10000}, {"grid", 1024}};
  return caps;
}

int64_t OptionReader::get_int(const std::string& name, int64_t fallback, int64_t min_value) const {
  if (!options_.is_object() || !options_.contains(name)) return fallback;
  const auto& v = options_.at(name);
  int64_t x;
  if (v.is_number_integer()) x = v.get<int64_t>();
  else if (v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>())))
    x = static_cast<int64_t>(v.get<double>());
  else throw Error(type_error(method_, name, "a whole number"));
  if (x < min_value) throw Error(method_ + ": option '" + name + "' must be >= " + std::to_string(min_value) + ", got " + std::to_string(x));
  if (auto cap = option_caps().find(name); cap != option_caps().end() && x > cap->second)
    throw Error(method_ + ": option '" + name + "' must be <= " + std::to_string(cap->second) + " (Salient's cap), got " +
                std::to_string(x));
  return x;
}

double OptionReader::get_double(const std::string& name, double fallback, double min_value) const {
  if (!options_.is_object() || !options_.contains(name)) return fallback;
  const auto& v = options_.at(name);
  if (!v.is_number()) throw Error(type_error(method_, name, "a number"));
  double x = v.get<double>();
  if (!(x >= min_value) || !std::isfinite(x))
    throw Error(method_ + ": option '" + name + "' must be a finite number >= " + nlohmann::json(min_value).dump() + ", got " + v.dump());
  return x;
}

bool OptionReader::get_bool(const std::string& name, bool fallback) const {
  if (!options_.is_object() || !options_.contains(name)) return fallback;
  const auto& v = options_.at(name);
  if (!v.is_boolean()) throw Error(type_error(method_, name, "true or false"));
  return v.get<bool>();
}

std::string OptionReader::get_choice(const std::string& name, const std::string& fallback,
                                     const std::vector<std::string>& choices) const {
  if (!options_.is_object() || !options_.contains(name)) return fallback;
  const auto& v = options_.at(name);
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  if (!v.is_string()) throw Error(type_error(method_, name, "one of " + list));
  std::string s = v.get<std::string>();
  for (const auto& c : choices)
    if (c == s) return s;
  throw Error(method_ + ": unknown " + name + " '" + s + "' (expected one of " + list + ")");
}

}  // namespace salient
