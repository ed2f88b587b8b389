#pragma once
// A method's options as one table: each row names an option, the member of the method's typed
// options struct it sets, its range and its help. Parsing (with validation), params() and the
// OptionSpec list that `salient methods` and the web viewer show are all generated from it, so an
// option is written once and the three cannot drift apart.
//
//   static const auto table = OptionTable<SmoothGradOptions>()
//       .integer("samples", &SmoothGradOptions::samples, 1, "noisy copies per input")
//       .real("sigma", &SmoothGradOptions::sigma, 0.0, "noise standard deviation ...");
//   SmoothGradOptions o = table.parse(json, {"smoothgrad", meta});   // validated, one-line errors
//   nlohmann::json p = table.params(o);                               // what ran
//   info.options = table.specs();                                     // defaults from the struct
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "salient/baseline.hpp"
#include "salient/error.hpp"
#include "salient/metadata.hpp"
#include "salient/method.hpp"

namespace salient {

// What a parser may need beyond the option's value: the method's name (for messages; one table can
// serve several methods, as the CAMs) and the model's metadata (baselines, LRP's bounds).
struct OptionContext {
  std::string method;
  const ModelMetadata& meta;
};

template <class O>
class OptionTable {
 public:
  using Reader = std::function<void(const nlohmann::json& value, const OptionContext&, O&)>;
  using Writer = std::function<nlohmann::json(const O&)>;

  explicit OptionTable(O defaults = O{}) : defaults_(std::move(defaults)) {}

  // The general row: `read` runs when the option is given, `write` reports the value in effect.
  // `shown_default`, when not null, is what `salient methods` shows instead of write(defaults).
  OptionTable& field(std::string name, std::string type, std::string help, Reader read, Writer write,
                     nlohmann::json shown_default = nullptr, std::vector<std::string> choices = {}) {
    OptionSpec spec{name, std::move(type), shown_default.is_null() ? write(defaults_) : shown_default,
                    std::move(help), std::move(choices), nullptr, nullptr, false};
    rows_.push_back({std::move(spec), std::move(read), std::move(write)});
    return *this;
  }

  // A whole number >= min, and <= Salient's cap for the name (option_caps()).
  OptionTable& integer(const std::string& name, int64_t O::*m, int64_t min, std::string help) {
    field(name, "int", std::move(help),
          [name, m, min](const nlohmann::json& v, const OptionContext& c, O& o) {
            o.*m = OptionReader(wrap(name, v), c.method).get_int(name, o.*m, min);
          },
          [m](const O& o) { return nlohmann::json(o.*m); });
    return bounds(min, option_caps().count(name) ? nlohmann::json(option_caps().at(name)) : nlohmann::json());
  }
  // A seed: a whole number >= 0.
  OptionTable& seed(const std::string& name, uint64_t O::*m, std::string help) {
    field(name, "int", std::move(help),
          [name, m](const nlohmann::json& v, const OptionContext& c, O& o) {
            o.*m = static_cast<uint64_t>(OptionReader(wrap(name, v), c.method).get_int(name, 0, 0));
          },
          [m](const O& o) { return nlohmann::json(o.*m); });
    return bounds(0, nullptr);
  }
  // A finite number >= min; with `max`, also <= max (< max when max_open).
  OptionTable& real(const std::string& name, double O::*m, double min, std::string help,
                    double max = std::numeric_limits<double>::infinity(), bool min_open = false) {
    field(name, "double", std::move(help),
          [name, m, min, max, min_open](const nlohmann::json& v, const OptionContext& c, O& o) {
            const double x = OptionReader(wrap(name, v), c.method).get_double(name, o.*m, min);
            if (x > max || (min_open && x == min))
              throw Error(c.method + ": option '" + name + "' must be in " + (min_open ? "(" : "[") +
                          number_text(min) + ", " + number_text(max) + "], got " + v.dump());
            o.*m = x;
          },
          [m](const O& o) { return nlohmann::json(o.*m); });
    return bounds(min, std::isfinite(max) ? nlohmann::json(max) : nlohmann::json(), min_open);
  }
  // The last row's bounds, as `salient methods --json` and the viewer show them.
  OptionTable& bounds(nlohmann::json min, nlohmann::json max, bool min_open = false) {
    rows_.back().spec.min = std::move(min);
    rows_.back().spec.max = std::move(max);
    rows_.back().spec.min_open = min_open;
    return *this;
  }
  OptionTable& flag(const std::string& name, bool O::*m, std::string help) {
    return field(name, "bool", std::move(help),
                 [name, m](const nlohmann::json& v, const OptionContext& c, O& o) {
                   o.*m = OptionReader(wrap(name, v), c.method).get_bool(name, o.*m);
                 },
                 [m](const O& o) { return nlohmann::json(o.*m); });
  }
  // One of `names`, kept as text.
  OptionTable& choice(const std::string& name, std::string O::*m, std::vector<std::string> names, std::string help) {
    return field(name, "choice", std::move(help),
                 [name, m, names](const nlohmann::json& v, const OptionContext& c, O& o) {
                   o.*m = OptionReader(wrap(name, v), c.method).get_choice(name, o.*m, names);
                 },
                 [m](const O& o) { return nlohmann::json(o.*m); }, nullptr, names);
  }
  // One of `names`, kept as the enum whose value is the name's index.
  template <class E>
  OptionTable& choice(const std::string& name, E O::*m, std::vector<std::string> names, std::string help) {
    return field(name, "choice", std::move(help),
                 [name, m, names](const nlohmann::json& v, const OptionContext& c, O& o) {
                   const std::string s = OptionReader(wrap(name, v), c.method).get_choice(name, "", names);
                   o.*m = static_cast<E>(std::find(names.begin(), names.end(), s) - names.begin());
                 },
                 [m, names](const O& o) { return nlohmann::json(names.at(static_cast<size_t>(o.*m))); }, nullptr, names);
  }
  // Text turned into a T by `parse` (which throws salient::Error naming the problem); reported by `show`.
  template <class T>
  OptionTable& parsed(const std::string& name, T O::*m, std::string type, std::string help,
                      std::function<T(const std::string&, const OptionContext&)> parse,
                      std::function<nlohmann::json(const T&)> show, nlohmann::json shown_default = nullptr) {
    return field(name, std::move(type), std::move(help),
                 [name, m, parse](const nlohmann::json& v, const OptionContext& c, O& o) {
                   if (!v.is_string()) throw Error(c.method + ": option '" + name + "' must be text, got " + v.dump());
                   o.*m = parse(v.get<std::string>(), c);
                 },
                 [m, show](const O& o) { return show(o.*m); }, std::move(shown_default));
  }
  // A baseline, as Baseline::parse reads it (files are read here, once). Unless given, a tabular
  // model's is the mean row. `sets`: the method takes a background set (a baseline distribution);
  // otherwise a set is refused with the method's name.
  static constexpr const char* kBaselineHelp =
      "zeros (0 after normalisation), black (pixel 0 before it), a number V or constant:V, blur[:SIGMA], uniform, an image/.npy "
      "file, mean (tabular: the mean row, their default), or pad, unk, mask (text: every token replaced by it, cls/sep kept; pad "
      "is their default)";
  static constexpr const char* kBackgroundHelp =
      "as baseline, or a background set (tabular): rows.csv, sample:M:FILE or kmeans:K:FILE -- attributions then average over it";
  OptionTable& baseline(const std::string& name, Baseline O::*m, bool sets = false) {
    finals_.push_back([m](O& o, const OptionContext& c) { o.*m = Baseline::resolve_default(o.*m, c.meta); });
    return parsed<Baseline>(name, m, "string", sets ? kBackgroundHelp : kBaselineHelp,
                            [sets](const std::string& s, const OptionContext& c) {
                              Baseline b = Baseline::parse(s, c.meta);
                              if (b.is_set() && !sets)
                                throw Error(c.method + ": takes one baseline, not a background set ('" + s +
                                            "'); kernel-shap, shapley-sampling, feature-ablation, lime, integrated-gradients "
                                            "and gradient-shap take sets");
                              return b;
                            },
                            [](const Baseline& b) { return nlohmann::json(b.spec); });
  }
  // A check or a completion over the whole struct, once every given option is read (cross-option
  // rules: alpha - beta = 1; defaults that depend on the model).
  OptionTable& finally(std::function<void(O&, const OptionContext&)> f) {
    finals_.push_back(std::move(f));
    return *this;
  }

  // The defaults, with the options present in `options` (a JSON object; keys of other methods are
  // left alone) read over them.
  O parse(const nlohmann::json& options, const OptionContext& c) const {
    O o = defaults_;
    if (options.is_object())
      for (const auto& r : rows_)
        if (auto it = options.find(r.spec.name); it != options.end()) r.read(*it, c, o);
    for (const auto& f : finals_) f(o, c);
    return o;
  }
  nlohmann::json params(const O& o) const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& r : rows_) j[r.spec.name] = r.write(o);
    return j;
  }
  std::vector<OptionSpec> specs() const {
    std::vector<OptionSpec> s;
    for (const auto& r : rows_) s.push_back(r.spec);
    return s;
  }
  const O& defaults() const { return defaults_; }

 private:
  static std::string number_text(double x) {
    std::ostringstream s;
    s << x;
    return s.str();
  }
  // OptionReader reads from an object; one value becomes {name: value}.
  static nlohmann::json wrap(const std::string& name, const nlohmann::json& v) { return nlohmann::json{{name, v}}; }
  struct Row {
    OptionSpec spec;
    Reader read;
    Writer write;
  };
  O defaults_;
  std::vector<Row> rows_;
  std::vector<std::function<void(O&, const OptionContext&)>> finals_;
};

}  // namespace salient
