#pragma once
// `salient evaluate`: every metric for every method over a data set, with a resumable log, a JSON
// and Markdown report, and plots.
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "salient/image.hpp"
#include "salient/model.hpp"

namespace salient {

struct EvaluateRequest {
  std::string data;                       // folder of images, IDX image file, or .npy stack
  std::vector<std::string> methods;
  std::vector<std::string> metrics;       // empty: all
  nlohmann::json method_options = nlohmann::json::object();
  int64_t limit = 20;                     // the first N inputs
  std::string out_dir;
  std::string canvas;                     // deletion/insertion canvas: black (pixel 0 before normalisation),
                                          // zeros (0 after it), blur, or mean (a table's mean row); "":
                                          // mean for a tabular model, else black
  std::string target;                     // what is explained and scored per input (Target::parse):
                                          // "" or "top": the predicted class; a class ("3", "Bag");
                                          // a function ("3+5", "region:C[:MASK.npy]", "layer:P:I"),
                                          // whose value is the score (a dense output needs one)
  int steps = 20;                         // points of the deletion/insertion curves
  uint64_t seed = 0;
  Resize resize = Resize::None;           // images of another size than the model's input
};

const std::vector<std::string>& metric_names();  // deletion, insertion, aopc, infidelity, ...

// Checks the request (methods, metrics, data, output folder) before any work. Throws salient::Error.
void validate(const EvaluateRequest& request, Model& model);
// Runs the evaluation; results per input are appended to out_dir/results.jsonl, and inputs already
// there are skipped (an interrupted run resumes). Writes report.json, report.md, deletion.png,
// insertion.png and randomisation.png (atomically) and returns the report.
nlohmann::json evaluate(Model& model, const EvaluateRequest& request,
                        const std::function<void(int64_t done, int64_t total, const std::string& what)>& progress = {});

}  // namespace salient
