// salient evaluate: which explanation to trust, in numbers and plots.
#include <unistd.h>

#include <iostream>

#include "commands.hpp"
#include "salient/detect_evaluate.hpp"
#include "salient/error.hpp"
#include "salient/evaluate.hpp"
#include "salient/method.hpp"
#include "salient/registry.hpp"

namespace salient::cli {

void add_evaluate(CLI::App& app) {
  auto* cmd = app.add_subcommand("evaluate", "compute faithfulness, stability, sanity and sparsity metrics over a data set");
  auto flags = std::make_shared<ModelFlags>();
  auto req = std::make_shared<EvaluateRequest>();
  auto methods = std::make_shared<std::string>("saliency,smoothgrad");
  auto metrics = std::make_shared<std::string>();
  auto options = std::make_shared<std::vector<std::string>>();
  auto samples = std::make_shared<int64_t>(0);
  auto resize = std::make_shared<std::string>("none");
  auto boxes = std::make_shared<std::string>();
  flags->add_to(cmd);
  cmd->add_option("--data,-d", req->data, "a folder of images, an IDX image file (.gz), or an .npy stack [N, ...]")->required();
  cmd->add_option("--methods", *methods, "comma-separated methods")->capture_default_str();
  cmd->add_option("--metrics", *metrics, "comma-separated: deletion, insertion, aopc, infidelity, sensitivity, "
                                         "randomisation, sparseness, complexity (default: all)");
  cmd->add_option("--limit", req->limit, "evaluate the first N inputs")->capture_default_str();
  cmd->add_option("--out,-o", req->out_dir, "output folder (report.json, report.md, plots, results.jsonl)")->required();
  cmd->add_option("--canvas", req->canvas,
                  "what deleted features become: black (pixel 0 before normalisation), zeros (0 after it), blur, or mean (a "
                  "table's mean row; default for a tabular model, black otherwise)");
  cmd->add_option("--target", req->target,
                  "what is explained and scored per input: the predicted class (default), a class (index or label), or a "
                  "function whose value is scored: A+B, region:C[:MASK.npy] (a dense output needs one), layer:PATH:I");
  cmd->add_option("--steps", req->steps, "points on the deletion/insertion curves and AOPC steps")->capture_default_str();
  auto* o_samples = cmd->add_option("--samples", *samples, "samples of sampling methods");
  cmd->add_option("--seed", req->seed, "random seed")->capture_default_str();
  cmd->add_option("--option", *options, "KEY=VALUE method option (repeatable)");
  add_resize_option(cmd, *resize);
  cmd->add_option("--boxes", *boxes, "detectors: ground-truth boxes, a CSV image,x1,y1,x2,y2,label or COCO-style JSON "
                                     "(pointing game, energy pointing game, deletion of each true box the detector finds)");
  cmd->callback([=] {
    req->methods = split_list(*methods);
    req->metrics = split_list(*metrics);
    if (o_samples->count()) req->method_options["samples"] = *samples;
    // --seed reaches the methods that take one (the metrics' own noise uses it too).
    for (const auto& m : req->methods)
      if (Registry::builtin().has(m))
        for (const auto& o : Registry::builtin().info(m).options)
          if (o.name == "seed") req->method_options["seed"] = req->seed;
    req->resize = parse_resize(*resize);
    req->method_options.update(parse_assignments(*options));
    Model model = flags->load_not_text("evaluate");
    if (model.metadata().detector()) {
      if (boxes->empty()) throw Error("evaluating a detector needs its ground truth: --boxes FILE (CSV image,x1,y1,x2,y2,label or COCO JSON)");
      DetectionEvaluateRequest d;
      d.data = req->data;
      d.boxes = *boxes;
      d.methods = req->methods;
      d.method_options = req->method_options;
      d.limit = req->limit;
      d.steps = req->steps;
      d.seed = req->seed;
      d.out_dir = req->out_dir;
      const nlohmann::json r = evaluate_detections(model, d);
      std::cout << "evaluated " << r["explained_boxes"] << " of " << r["true_boxes"] << " true boxes (found by the detector) in "
                << r["images"] << " images -> " << d.out_dir << "/ (report.md, report.json)\n";
      for (const auto& [name, m] : r["methods"].items())
        std::cout << "  " << name << ": pointing_game " << m["pointing_game"].get<double>() << " energy_pointing_game "
                  << m["energy_pointing_game"].dump() << " deletion_auc " << m["deletion_auc"].get<double>() << " (random order "
                  << m["deletion_auc_random"].get<double>() << ")\n";
      return;
    }
    if (!boxes->empty()) throw Error("--boxes is for detectors; '" + model.path() + "' is not one (metadata \"detection\")");
    validate(*req, model);
    const bool tty = ::isatty(2);
    auto report = evaluate(model, *req, [tty](int64_t done, int64_t total, const std::string& what) {
      if (!tty) return;
      const int width = 30, filled = total ? static_cast<int>(width * done / total) : width;
      progress_line() << "\r[" << std::string(filled, '#') << std::string(width - filled, ' ') << "] " << done << "/" << total
                << " " << what << "   " << (done == total ? "\n" : "") << std::flush;
    });
    if (report.contains("log_warnings"))
      for (const auto& w : report["log_warnings"]) std::cerr << "warning: " << w.get<std::string>() << "\n";
    if (report.contains("non_finite"))
      for (const auto& [k, v] : report["non_finite"].items())
        std::cerr << "warning: " << k << " was NaN or infinite for " << v << " input(s): skipped in the means\n";
    std::cout << "evaluated " << report["inputs"] << " inputs -> " << req->out_dir
              << "/ (report.md, report.json, deletion.png, insertion.png, randomisation.png)\n";
    for (auto it = report["methods"].begin(); it != report["methods"].end(); ++it) {
      std::cout << "  " << it.key() << ":";
      for (const char* k : {"deletion_auc", "insertion_auc", "max_sensitivity"})
        if (it.value().contains(k)) std::cout << " " << k << " " << it.value()[k]["mean"].get<double>();
      std::cout << "\n";
    }
  });
}

}  // namespace salient::cli
