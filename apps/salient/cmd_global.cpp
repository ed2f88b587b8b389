// salient global: a tabular model over its data — mean |attribution|, permutation importance,
// partial dependence and ICE.
#include <algorithm>
#include <iostream>

#include "commands.hpp"
#include "salient/target.hpp"
#include "salient/error.hpp"
#include "salient/global.hpp"
#include "salient/registry.hpp"

namespace salient::cli {

void add_global(CLI::App& app) {
  auto* cmd = app.add_subcommand("global", "explain a tabular model over a data set: mean |attribution|, permutation importance, partial dependence");
  auto flags = std::make_shared<ModelFlags>();
  auto req = std::make_shared<GlobalRequest>();
  auto methods = std::make_shared<std::string>("integrated-gradients");
  auto features = std::make_shared<std::string>();
  auto options = std::make_shared<std::vector<std::string>>();
  auto klass = std::make_shared<std::string>();
  struct Background {
    std::string file;
    int64_t max_rows = 100, k = 0;
  };
  auto background = std::make_shared<Background>();
  flags->add_to(cmd);
  cmd->add_option("--data,-d", req->data, "a CSV with a header (the metadata's features name its columns)")->required();
  cmd->add_option("--out,-o", req->out_dir, "output folder (report.json, report.md, PNGs)")->required();
  cmd->add_option("--methods", *methods, "comma-separated methods for the mean |attribution|")->capture_default_str();
  cmd->add_option("--features", *features, "columns for partial dependence (default: the 3 most important)");
  cmd->add_option("--class", *klass, "the class explained, an index or a label (default: 1 of a binary model, else 0)");
  cmd->add_option("--repeats", req->repeats, "shuffles per column for permutation importance")->capture_default_str();
  cmd->add_option("--grid", req->grid, "partial dependence points of a numeric column")->capture_default_str();
  cmd->add_option("--seed", req->seed, "random seed of the shuffles")->capture_default_str();
  cmd->add_option("--option", *options, "KEY=VALUE method option (repeatable)");
  add_background_options(cmd, background->file, background->max_rows, background->k);
  cmd->callback([=] {
    req->methods = split_list(*methods);
    req->features.clear();
    for (const auto& f : split_list(*features))  // each once, in the order given
      if (std::find(req->features.begin(), req->features.end(), f) == req->features.end()) req->features.push_back(f);
    req->method_options = parse_assignments(*options);
    apply_background(req->method_options, req->methods, background->file, background->max_rows, background->k);
    Model model = flags->load_not_text("global");
    if (!klass->empty()) {
      const Target t = Target::parse(*klass, model.metadata());
      if (t.kind() != Target::Kind::Index) throw Error("--class takes a class index or a label, got '" + *klass + "'");
      req->klass = std::stoll(t.to_string());  // an index target's text is its index
    }
    const auto report = global_report(model, *req);
    std::cout << "explained " << report["rows"] << " rows " << (report.contains("regression") ? std::string("of a regression") : "for class " + report["label"].get<std::string>()) << " -> " << req->out_dir
              << "/ (report.md, report.json, permutation.png, importance_*.png, beeswarm_*.png, attributions_*.csv, pdp_*.png)"
              << (report["resumed_chunks"].get<int64_t>() > 0 ? " (" + report["resumed_chunks"].dump() + " chunks of 64 rows resumed)" : std::string()) << "\n";
    std::cout << "  most important (permutation):";
    for (size_t k = 0; k < report["permutation"].size() && k < 5; ++k)
      std::cout << " " << report["permutation"][k]["name"].get<std::string>();
    std::cout << "\n";
  });
}

}  // namespace salient::cli
