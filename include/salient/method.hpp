#pragma once
// The one interface every attribution method implements, and what it returns.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "salient/model.hpp"

namespace salient {

// The taxonomy is part of the API: every method says where it sits on each of the four axes.
enum class Family { Gradient, Layer, ModifiedBackprop, Perturbation, Intrinsic };
enum class Scope { Local, Global, LocalAndGlobal };
enum class Access { WhiteBox, BlackBox };
enum class Stage { PostHoc, Intrinsic };
enum class Specificity { ModelAgnostic, ModelSpecific };

std::string to_string(Family);
std::string to_string(Scope);
std::string to_string(Access);
std::string to_string(Stage);
std::string to_string(Specificity);

// One option of a method, as the CLI and the web viewer show it. `default_value` is the default of
// the method's typed options struct (built from it, so the two cannot drift apart).
struct OptionSpec {
  std::string name;       // as on the command line, without dashes: "samples"
  std::string type;       // "int", "double", "bool", "choice", "string"
  nlohmann::json default_value;
  std::string help;
  std::vector<std::string> choices;  // for "choice"
  nlohmann::json min, max;           // numbers' bounds (null: none); the viewer validates with them
  bool min_open = false;             // min itself is excluded
};

struct MethodInfo {
  std::string name;     // registry key and CLI name: "smoothgrad"
  std::string title;    // "SmoothGrad"
  Family family;
  Scope scope = Scope::Local;
  Access access = Access::WhiteBox;
  Stage stage = Stage::PostHoc;
  Specificity specificity = Specificity::ModelAgnostic;
  bool needs_gradients = true;
  // Its attributions sum to f(x) - f(baseline) (completeness / efficiency): outputs of a tabular
  // row draw it as a waterfall from the base value to f(x).
  bool additive = false;
  // Its baseline option takes a background set (a baseline distribution; `--background`).
  bool background = false;
  std::string paper;    // "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise"
  std::string summary;  // one line
  std::vector<OptionSpec> options;
  // Non-empty: the option naming another method whose options this one also takes (noise-tunnel's
  // "base").
  std::string options_of;
  nlohmann::json to_json() const;
};

// What a method returns for a batch of N inputs.
struct Attribution {
  std::string method;
  torch::Tensor map;             // [N, ...]: the shape of the inputs, on the CPU, float32
  std::vector<int64_t> targets;  // the explained class of each input
  torch::Tensor scores;          // [N]: f(x)[target] of each input, when the method's own passes
                                 // computed it (else undefined: see target_scores())
  nlohmann::json params;         // the options in effect
  nlohmann::json diagnostics = nlohmann::json::object();  // method-specific, per-input arrays
  std::map<std::string, torch::Tensor> extra;  // further maps [N, ...], e.g. "raw" layer-resolution CAMs
  double seconds = 0.0;          // wall time of attribute()
};

class Method {
 public:
  virtual ~Method() = default;
  virtual const MethodInfo& info() const = 0;
  virtual nlohmann::json params() const = 0;

  // Explains `targets` [N] (int64 class indices) of `inputs` [N, ...] (any shape after the batch
  // dimension). Inputs are moved to the model's device. Deterministic for a given seed.
  Attribution attribute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets);

  // Checks, before anything is computed, that the method can run on this model: graph rules for
  // every op, the layers it reads and their shapes. `example` is one input [1, ...] on the model's
  // device. Throws salient::Error naming the problem. The default checks nothing.
  virtual void check(Model& model, const torch::Tensor& example) {}

  // Long methods report how far they are (0..1) through this callback; the CLI draws a progress
  // bar on a terminal. A method never prints.
  using Progress = std::function<void(double fraction)>;
  void set_progress(Progress progress) { progress_ = std::move(progress); }
  void report_progress(double fraction) const {
    if (progress_) progress_(fraction);
  }

 protected:
  // The method itself: returns the map [N, ...]. It may add entries to `out.diagnostics`, and
  // sets `out.scores` when its passes computed f(x)[target] anyway (no pass is run for them).
  virtual torch::Tensor compute(Model& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                Attribution& out) = 0;

 private:
  // A map with a non-finite value is an error naming the method; an all-zero map gets a warning
  // saying why it may be.
  void check_map(Attribution& a) const;
  Progress progress_;
};

// Adds `warning` for input i of n to diagnostics["warning"] (a per-input array of text or null),
// joined with "; " to any warning already there.
void add_warning(nlohmann::json& diagnostics, int64_t n, int64_t i, const std::string& warning);

// Levenshtein distance: how "did you mean" suggestions (option keys, layer paths) pick the closest.
size_t edit_distance(const std::string& a, const std::string& b);

// The whole of `text` as a number ("0.5", "1e3"); false when it is empty, not a number or has
// anything after it.
bool parse_number(const std::string& text, double& value);

// Splits "a, b,c" (or "4x4" with separators ",x") into its non-empty, space-trimmed items.
std::vector<std::string> split_list(const std::string& text, const std::string& separators = ",");

// The ceiling of each integer option that sizes memory or time (samples 100000, steps 4096,
// max-steps 4096, batch-size 4096, baseline-count 10000, grid 1024): OptionReader enforces them.
const std::map<std::string, int64_t>& option_caps();

// Reads a method's options from JSON (keys = option names; unknown keys are left for other
// methods), checking types and ranges with one-line salient::Error messages.
class OptionReader {
 public:
  OptionReader(const nlohmann::json& options, const std::string& method)
      : options_(options), method_(method) {}
  int64_t get_int(const std::string& name, int64_t fallback, int64_t min_value) const;
  double get_double(const std::string& name, double fallback, double min_value) const;
  bool get_bool(const std::string& name, bool fallback) const;
  std::string get_choice(const std::string& name, const std::string& fallback,
                         const std::vector<std::string>& choices) const;

 private:
  const nlohmann::json& options_;
  std::string method_;
};

}  // namespace salient
