// salient: explain what a TorchScript model looked at.
#include <filesystem>
#include <iostream>
#include <thread>

#include <c10/util/Exception.h>

#include "commands.hpp"
#include "salient/error.hpp"
#include "salient/json.hpp"
#include "salient/text.hpp"
#include "salient/text_explain.hpp"

namespace salient::cli {

void ModelFlags::add_to(CLI::App* cmd) {
  cmd->add_option("--model,-m", model, "TorchScript model (traced or scripted), or .onnx (black-box methods only)")->required();
  cmd->add_option("--device", device, "torch device: cpu, cuda, cuda:N")->capture_default_str();
  cmd->add_option("--output", output, "which model output to explain when it returns a tuple/list/dict: index or key");
  cmd->add_option("--metadata", metadata, "sidecar metadata JSON (default: <model>.json when present)");
  cmd->add_option("--threads", threads, "LibTorch threads (default: all cores)");
  cmd->add_option("--id-column", id_column, "tabular: the CSV column naming each row (default: the metadata's id_column, else row-N)");
  cmd->add_flag("--freeze,!--no-freeze", freeze, "forward-only passes run a frozen, inference-optimised copy (default on)");
  cmd->add_option("--max-pixels", max_pixels, "refuse images whose header declares more pixels than this")->capture_default_str();
}

Model ModelFlags::load() const {
  if (threads < 0) throw Error("--threads must be >= 0, got " + std::to_string(threads));
  set_max_image_pixels(max_pixels);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads > cores) {  // more threads than cores only slows LibTorch down (1000 threads: 27x slower)
    std::cerr << "warning: --threads " << threads << " is more than the " << cores << " cores; using " << cores << "\n";
    set_threads(cores);
  } else {
    set_threads(threads);
  }
  ModelOptions o;
  o.device = device;
  o.output = output;
  o.metadata_path = metadata;
  o.id_column = id_column;
  o.freeze = freeze;
  return Model(model, o);
}

Model ModelFlags::load_not_text(const std::string& command) const {
  Model m = load();
  if (m.text())
    throw Error("salient " + command + " does not take text models yet: explain text with `salient explain --text ...` or "
                "`--input FILE.txt` (one example a line)");
  if (m.metadata().detector() && command != "evaluate")
    throw Error("salient " + command + " does not take detectors yet: explain boxes with `salient explain` and measure "
                "them with `salient evaluate --boxes`");
  return m;
}

void add_resize_option(CLI::App* cmd, std::string& resize) {
  cmd->add_option("--resize", resize,
                  "images of another size: --resize (stretch to the input size) or --resize crop (short side to "
                  "size/0.875, centre crop, as torchvision's eval transform)")
      ->expected(0, 1)
      ->default_str("stretch");
}

void add_background_options(CLI::App* cmd, std::string& file, int64_t& max_rows, int64_t& k) {
  cmd->add_option("--background", file,
                  "tabular: rows.csv whose rows are the baseline distribution of kernel-shap, shapley-sampling, "
                  "feature-ablation, lime, integrated-gradients (expected) and gradient-shap");
  cmd->add_option("--background-max", max_rows, "at most this many background rows (a seeded sample)")->capture_default_str();
  cmd->add_option("--background-k", k, "summarise the background by K k-means centroids, weighted by cluster size")
      ->check(CLI::PositiveNumber);
}

nlohmann::json parse_assignments(const std::vector<std::string>& assignments) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& kv : assignments) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("--option '" + kv + "' is not KEY=VALUE");
    const std::string value = kv.substr(eq + 1);
    auto parsed = parse_json(value);
    out[kv.substr(0, eq)] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
  }
  return out;
}

torch::Tensor sample_input(Model& model, const std::vector<int64_t>& shape) {
  if (model.text() && shape.empty()) return sample_text_ids(model.tokenizer());  // cls ... sep
  std::vector<int64_t> in = shape.empty() ? model.metadata().input_shape : shape;
  if (in.empty()) throw Error("the model has no metadata input_shape: pass --input-shape (e.g. 3,224,224)");
  for (auto d : in)
    if (d <= 0) throw Error("--input-shape values must be > 0");
  in.insert(in.begin(), 1);
  return torch::zeros(in);
}

}  // namespace salient::cli

namespace {

// LibTorch's own warnings (TORCH_WARN: deprecations, resized outputs) are not the user's business
// unless asked for with --verbose: Salient's one-line messages are.
struct QuietWarnings : c10::WarningHandler {
  bool verbose = false;
  void process(const c10::SourceLocation& where, const std::string& msg, bool verbatim) override {
    if (verbose) c10::WarningHandler::process(where, msg, verbatim);
  }
};

}  // namespace

namespace {

// Everything Salient prints passes through this: control characters (a label or feature name from a
// model's metadata holding ESC[2J, an OSC title, BEL, CR, BS, NUL; a C1 control in UTF-8) are
// written as \xNN, never to the terminal. Newlines and tabs pass: Salient's own lines end in them.
class EscapingBuf : public std::streambuf {
 public:
  explicit EscapingBuf(std::streambuf* to) : to_(to) {}

 protected:
  int_type overflow(int_type ch) override {
    if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
    const auto c = static_cast<unsigned char>(ch);
    if (pending_c2_) {  // U+0080..U+009F (C1 controls) are \xC2 then \x80..\x9F
      pending_c2_ = false;
      if (c >= 0x80 && c <= 0x9F) return put_escaped(0xC2) && put_escaped(c) ? ch : traits_type::eof();
      if (to_->sputc(static_cast<char>(0xC2)) == traits_type::eof()) return traits_type::eof();
    }
    if (c == 0xC2) {
      pending_c2_ = true;
      return ch;
    }
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) return put_escaped(c) ? ch : traits_type::eof();
    return to_->sputc(static_cast<char>(c)) == traits_type::eof() ? traits_type::eof() : ch;
  }
  int sync() override {
    if (pending_c2_ && to_->sputc(static_cast<char>(0xC2)) != traits_type::eof()) pending_c2_ = false;
    return to_->pubsync();
  }

 private:
  bool put_escaped(unsigned char c) {
    static const char* hex = "0123456789abcdef";
    const char out[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
    return to_->sputn(out, 4) == 4;
  }
  std::streambuf* to_;
  bool pending_c2_ = false;
};

std::streambuf* g_raw_stderr = nullptr;  // the terminal's, before the escaping filter

}  // namespace

namespace salient::cli {
std::ostream& progress_line() {
  static std::ostream* raw = new std::ostream(g_raw_stderr ? g_raw_stderr : std::cerr.rdbuf());
  return *raw;
}
}  // namespace salient::cli

int main(int argc, char** argv) {
  // stdout and stderr escape control characters (terminal injection through metadata).
  // (Never freed: the streams flush at exit, after static objects are gone.)
  g_raw_stderr = std::cerr.rdbuf();
  std::cout.rdbuf(new EscapingBuf(std::cout.rdbuf()));
  std::cerr.rdbuf(new EscapingBuf(std::cerr.rdbuf()));
  static QuietWarnings quiet;
  c10::Warning::set_warning_handler(&quiet);
  CLI::App app{"salient: saliency maps and attributions for TorchScript models"};
  app.require_subcommand(1);
  app.fallthrough();  // --verbose also after the subcommand
  app.add_flag("--verbose", quiet.verbose, "show LibTorch's own warnings on stderr");
  app.set_version_flag("--version", "salient 0.1.0");
  salient::cli::add_explain(app);
  salient::cli::add_batch(app);
  salient::cli::add_class_model(app);
  salient::cli::add_methods(app);
  salient::cli::add_info(app);
  salient::cli::add_layers(app);
  salient::cli::add_evaluate(app);
  salient::cli::add_serve(app);
  salient::cli::add_global(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << salient::one_line(e) << " (see salient --help)\n";
    return 2;
  } catch (const salient::Error& e) {
    std::cerr << "error: " << salient::one_line(e) << "\n";
    switch (e.kind()) {
      case salient::ErrorKind::BadInput: return 2;
      case salient::ErrorKind::Io: return 3;
      case salient::ErrorKind::Internal: return 1;
    }
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the user gave that the file system refuses (a name too long, a permission).
    std::cerr << "error: " << salient::one_line(e) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: internal: " << salient::one_line(e) << "\n";
    return 1;
  }
  return 0;
}
