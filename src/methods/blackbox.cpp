#include "salient/methods/blackbox.hpp"

#include "salient/error.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace {

std::vector<int64_t> int_list(const nlohmann::json& v, const std::string& method, const std::string& name) {
  std::vector<int64_t> out;
  auto take = [&](const nlohmann::json& e) {
    if (!e.is_number_integer() || e.get<int64_t>() < 1) throw Error(method + ": option '" + name + "' must be whole numbers >= 1");
    out.push_back(e.get<int64_t>());
  };
  if (v.is_array()) for (const auto& e : v) take(e);
  else if (v.is_string()) {
    for (const auto& item : split_list(v.get<std::string>(), ",x")) take(nlohmann::json::parse(item, nullptr, false));
  } else take(v);
  return out;
}

BlackBoxOptions parse(const nlohmann::json& o, const MethodInfo& info, BlackBoxOptions d, const ModelMetadata& meta) {
  OptionReader r(o, info.name);
  auto has = [&](const std::string& n) {
    for (const auto& spec : info.options)
      if (spec.name == n) return o.contains(n);
    return false;
  };
  d.samples = r.get_int("samples", d.samples, 1);
  d.batch = r.get_int("batch-size", d.batch, 1);
  d.seed = static_cast<uint64_t>(r.get_int("seed", static_cast<int64_t>(d.seed), 0));
  d.grid = r.get_int("grid", d.grid, 1);
  d.keep = r.get_double("keep", d.keep, 0.0);
  if (!(d.keep > 0 && d.keep <= 1)) throw Error(info.name + ": option 'keep' must be in (0, 1]");
  d.kernel_width = r.get_double("kernel-width", d.kernel_width, 1e-9);
  d.ridge = r.get_double("ridge", d.ridge, 0.0);
  if (o.contains("baseline")) {
    if (!o["baseline"].is_string()) throw Error(info.name + ": option 'baseline' must be text");
    d.baseline = Baseline::parse(o["baseline"].get<std::string>(), meta);
  }
  if (has("features")) {
    if (!o["features"].is_string()) throw Error(info.name + ": option 'features' must be text");
    d.features = GroupSpec::parse(o["features"].get<std::string>());
  }
  if (has("window")) d.window = int_list(o["window"], info.name, "window");
  if (has("stride")) d.stride = int_list(o["stride"], info.name, "stride");
  return d;
}

}  // namespace

nlohmann::json BlackBox::params() const {
  nlohmann::json j{{"baseline", options_.baseline.spec}, {"batch-size", options_.batch}, {"seed", options_.seed}};
  for (const auto& o : info_.options) {
    if (o.name == "samples") j["samples"] = options_.samples;
    if (o.name == "features") j["features"] = options_.features.spec;
    if (o.name == "window") j["window"] = options_.window;
    if (o.name == "stride") j["stride"] = options_.stride;
    if (o.name == "grid") j["grid"] = options_.grid;
    if (o.name == "keep") j["keep"] = options_.keep;
    if (o.name == "kernel-width") j["kernel-width"] = options_.kernel_width;
    if (o.name == "ridge") j["ridge"] = options_.ridge;
  }
  return j;
}

torch::Tensor BlackBox::compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets, Attribution& out) {
  std::vector<torch::Tensor> maps;
  nlohmann::json per_input = nlohmann::json::array();
  std::map<std::string, std::vector<torch::Tensor>> extras;
  for (int64_t i = 0; i < inputs.size(0); ++i) {
    torch::Tensor x = inputs[i];
    torch::Tensor b = options_.baseline.make(x, options_.seed);
    nlohmann::json diag = nlohmann::json::object();
    std::map<std::string, torch::Tensor> extra;
    const int64_t t = targets[i].item<int64_t>();
    const double n = static_cast<double>(inputs.size(0));
    auto progress = [this, i, n](double f) { report_progress((static_cast<double>(i) + f) / n); };
    maps.push_back(rule_(BlackBoxCall{model, x, b, t, options_, diag, extra, progress}).to(x.options()));
    per_input.push_back(diag);
    for (auto& [key, m] : extra) extras[key].push_back(m);
  }
  for (auto& [key, ms] : extras) out.extra[key] = torch::stack(ms);
  // Per-input diagnostics become per-key arrays, as every method reports them.
  for (const auto& d : per_input)
    for (auto it = d.begin(); it != d.end(); ++it) out.diagnostics[it.key()].push_back(it.value());
  return torch::stack(maps);
}

void add_blackbox(Registry& reg, MethodInfo info, BlackBoxOptions defaults, BlackBoxRule rule) {
  info.access = Access::BlackBox;
  info.needs_gradients = false;
  info.family = Family::Perturbation;
  info.options.push_back({"baseline", "string", defaults.baseline.spec, "what removed features become: zeros (0 after normalisation), black (pixel 0 before it), a number V, blur[:SIGMA], uniform, or a file", {}});
  info.options.push_back({"batch-size", "int", defaults.batch, "perturbed inputs per forward pass", {}});
  info.options.push_back({"seed", "int", defaults.seed, "random seed", {}});
  reg.add(info, [info, defaults, rule](const nlohmann::json& o, const ModelMetadata& meta) {
    return std::make_unique<BlackBox>(info, rule, parse(o, info, defaults, meta));
  });
}

}  // namespace salient
