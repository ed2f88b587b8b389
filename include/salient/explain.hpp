#pragma once
// The explain pipeline shared by the CLI, batch runs and the viewer: inputs -> methods -> files.
#include <functional>
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
  nlohmann::json method_options = nlohmann::json::object();  // option name -> value, shared
  Target target;
  std::string out_dir;
  RenderOptions render;
  int top_predictions = 5;
  // Called as methods advance: (method, input stem or "", fraction of that method's work done).
  std::function<void(const std::string&, double)> progress;
};

struct ExplainedInput {
  std::string stem;
  std::string dir;                       // where its files went
  std::vector<int64_t> predicted;        // top classes
  nlohmann::json json;                   // what explanation.json holds
  std::vector<std::string> warnings;     // methods' diagnostics["warning"] for this input
};

using MethodList = std::vector<std::unique_ptr<Method>>;

// Validates the request (methods exist, their options are valid and their option files load,
// colormap known, output folder writable) and creates the methods, before any computation, so that
// bad input leaves no file. Throws salient::Error.
MethodList prepare(const ExplainRequest& request, const ModelMetadata& meta = {});
// Runs every method on every input and writes, under out_dir/<stem>/: <method>.npy, <method>.png,
// grid.png, explanation.json. With a top-k target the files are <method>_c<class>.*. A method that
// fails at run time does not discard the others: their files are written, explanation.json lists
// the failure under "failed", and the failure is appended to `failures` (or, when it is null,
// thrown after the files are written).
std::vector<ExplainedInput> explain(Model& model, const std::vector<InputItem>& inputs,
                                    const ExplainRequest& request, MethodList& methods,
                                    std::vector<Error>* failures = nullptr);

}  // namespace salient
