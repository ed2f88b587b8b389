#pragma once
// The explain core shared by `explain`, `batch` and the service: a chunk of inputs -> every method
// -> results in memory (Explainer); sinks write them (write_explanation_files here, the stacked
// arrays of batch.hpp, PNG bytes for a server).
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "salient/error.hpp"
#include "salient/image.hpp"
#include "salient/method.hpp"
#include "salient/model.hpp"
#include "salient/target.hpp"

namespace salient {

struct ExplainRequest {
  std::vector<std::string> methods;    // registry names
  // Option name -> value: "samples" applies to every method that has it, "smoothgrad.samples" to
  // smoothgrad only (and wins over "samples" there). "batch-size" is also the number of inputs per
  // method call (see Explainer).
  nlohmann::json method_options = nlohmann::json::object();
  Target target;
  std::string embedding_layer;         // text models: the layer attributions are read at (--layer;
                                       // empty: the model's nn.Embedding)
  std::string out_dir;
  RenderOptions render;
  int top_predictions = 5;
  // Called as methods advance: (method, fraction of that method's work on the chunk done).
  std::function<void(const std::string&, double)> progress;
};

using MethodList = std::vector<std::unique_ptr<Method>>;

// One method's result for one input and one explained class.
struct MethodMap {
  torch::Tensor map;                            // the input's shape, CPU float32
  std::map<std::string, torch::Tensor> extra;   // further maps ("raw" CAMs, occlusion "coverage")
};

// One input, explained: the maps per explained class (rank) and method, and the record that
// explanation.json and a manifest line hold (without file locations: sinks add those as
// record["explained"][rank]["methods"][method]["npy"/"png"]).
struct Explanation {
  InputItem input;
  std::vector<int64_t> predicted;                   // top classes
  std::vector<int64_t> targets;                     // explained classes, one per rank
  bool several = false;                             // the target may name several classes per input
                                                    // (top-k, above:P): files and keys name the class
  torch::Tensor probabilities;                      // [K] of every class
  std::vector<std::map<std::string, MethodMap>> maps;  // [rank][method]; failed methods absent
  std::vector<std::string> warnings;                // the methods' warnings for this input
  std::string error;                                // non-empty: the input could not be explained
  nlohmann::json record;
};

// Validates the request (methods exist, their options are valid and their option files load,
// colormap known, output folder writable when one is given) and creates the methods, before any
// computation, so that bad input leaves no file. Throws salient::Error.
MethodList prepare(const ExplainRequest& request, const ModelMetadata& meta = {});

// The white-box methods of `methods` (named `names`) that cannot run because the model has an op
// without a derivative (missing_derivative, probed on `example`): name -> why, the refusal to
// record. Empty when every gradient flows or no method needs one.
std::map<std::string, std::string> refused_for_gradients(Model& model, const torch::Tensor& example,
                                                         const std::vector<std::string>& names, const MethodList& methods);

// Compute apart from output: explains chunks of inputs with every method and returns the results in
// memory. Memory is bounded by the chunk. Methods are called on "batch-size" inputs at a time (10).
class Explainer {
 public:
  Explainer(Model& model, const ExplainRequest& request, MethodList methods);
  // Checks every method against the model on `example` [1, ...] (graph rules, layers, shapes);
  // run() does it on its first input when this was not called. Throws salient::Error.
  void check(const torch::Tensor& example);
  // Explains `chunk` (inputs of one shape). An input whose output is not finite gets `error` and no
  // maps; a method that fails on the chunk is absent from its maps, named in record["failed"], and
  // kept in failures() (the first error of each method).
  std::vector<Explanation> run(const std::vector<InputItem>& chunk);
  const std::map<std::string, Error>& failures() const { return failures_; }
  Model& model() { return model_; }
  const ExplainRequest& request() const { return request_; }
  Method& method(const std::string& name);

 private:
  Model& model_;
  ExplainRequest request_;
  MethodList methods_;
  int64_t chunk_ = 10;
  bool checked_ = false;
  std::map<std::string, Error> failures_;
  std::map<std::string, std::string> refused_;  // methods refused by check(): name -> why
};

// The `explain` file layout for one explanation, under `dir`: <method>.npy (<method>.<arg>.npy for a
// model of several inputs), <method>.png, <method>.<extra>.npy, grid.png, explanation.json (last,
// atomically; files an earlier explanation.json listed and this one does not are removed). Returns
// the record with the file names added. Without `pngs`, no heatmap and no grid.
nlohmann::json write_explanation_files(const Explanation& e, const std::string& dir, const Model& model,
                                       const RenderOptions& render, bool pngs = true);

// Files an earlier explanation.json in `dir` listed (a method's npy, png, html, extra arrays; the
// grid) that this run did not write again: a re-run into the same --out leaves no stale map beside
// a new explanation.json. Only listed files go, only inside `dir`. Call before writing the new one.
void remove_stale_files(const std::string& dir, const std::set<std::string>& written);

struct ExplainedInput {
  std::string stem;
  std::string dir;                       // where its files went
  std::vector<int64_t> predicted;        // top classes
  nlohmann::json json;                   // what explanation.json holds
  std::vector<std::string> warnings;     // methods' diagnostics["warning"] for this input
};

// `salient explain`: every input's output is checked (finite) and every method against the model
// before the first file is written; then the inputs stream through an Explainer a chunk at a time
// into the file layout above, under out_dir/<stem>/. With a top-k target the files are
// <method>_c<class>.*. A method that fails at run time does not discard the others: their files are
// written, explanation.json lists the failure under "failed", and the failure is appended to
// `failures` (or, when it is null, thrown after the files are written).
std::vector<ExplainedInput> explain(Model& model, const std::vector<InputItem>& inputs,
                                    const ExplainRequest& request, MethodList& methods,
                                    std::vector<Error>* failures = nullptr);

}  // namespace salient
