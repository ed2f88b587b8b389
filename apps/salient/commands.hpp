#pragma once
#include <ostream>
// The CLI's subcommands: each file adds one to the app and runs it through the library.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "salient/explain.hpp"
#include "salient/image.hpp"
#include "salient/model.hpp"

namespace salient::cli {

// Flags every model-loading subcommand shares.
struct ModelFlags {
  std::string model;
  std::string device = "cpu";
  std::string output;
  std::string metadata;
  std::string id_column;
  int threads = 0;
  bool freeze = true;
  int64_t max_pixels = kDefaultMaxPixels;
  void add_to(CLI::App* cmd);
  Model load() const;  // also sets the thread count
  // The same, refusing a text model for `command`, which does not explain text yet.
  Model load_not_text(const std::string& command) const;
};

// The method, target and rendering flags of `explain` (and of `batch`, which takes every one).
struct MethodFlags {
  std::string methods = "saliency,smoothgrad";
  std::string target = "top";
  std::string colormap = "inferno";
  std::string reduce = "abs-sum";
  std::string resize = "none";
  std::vector<std::string> options;  // KEY=VALUE or METHOD.KEY=VALUE
  std::string background;            // tabular: a background set (rows.csv)
  int64_t background_max = 100, background_k = 0;
  void add_to(CLI::App* cmd);
  // The request the flags make (methods, options, target, rendering); out_dir is the caller's.
  ExplainRequest request(const ModelMetadata& meta) const;
  struct Values;
  std::shared_ptr<Values> v;
};

// The terminal's stderr itself, for progress bars only (their "\r" redraws the line; everything
// else printed goes through the filter that escapes control characters). Only Salient's own text
// (counts, method names) is written here.
std::ostream& progress_line();

void add_explain(CLI::App& app);
void add_batch(CLI::App& app);  // batch and merge
void add_class_model(CLI::App& app);
void add_methods(CLI::App& app);
void add_info(CLI::App& app);
void add_layers(CLI::App& app);
void add_evaluate(CLI::App& app);
void add_serve(CLI::App& app);
void add_global(CLI::App& app);

// --background FILE, --background-max M, --background-k K (tabular models).
void add_background_options(CLI::App* cmd, std::string& file, int64_t& max_rows, int64_t& k);

// KEY=VALUE assignments (--option) as JSON: each value read as JSON when it parses, else as text.
nlohmann::json parse_assignments(const std::vector<std::string>& assignments);

// --resize [stretch|crop]: alone it means stretch; absent, images of another size are refused.
void add_resize_option(CLI::App* cmd, std::string& resize);

// A zero input [1, shape...] with `shape` or the metadata's input_shape (salient::Error if neither).
torch::Tensor sample_input(Model& model, const std::vector<int64_t>& shape);

}  // namespace salient::cli
