#pragma once
// Sidecar metadata `<model>.json`: what preprocessing and rendering need to know about a model.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace salient {

// A tabular model's input column (metadata "features"): numeric ones are standardised as
// (value - mean) / std, categorical ones one-hot encoded over `values` (in that order).
struct Feature {
  std::string name;
  std::string type = "numeric";     // "numeric" or "categorical"
  double mean = 0.0, std = 1.0;     // numeric
  std::vector<std::string> values;  // categorical
  int64_t width() const { return type == "categorical" ? static_cast<int64_t>(values.size()) : 1; }
};

struct ModelMetadata {
  std::string name;
  std::vector<std::string> labels;        // class names, index = output column
  std::map<std::string, std::vector<std::string>> output_labels;  // "labels": {output: [...]} form
  std::vector<int64_t> input_shape;       // one input, without the batch dimension, e.g. [C,H,W]
  std::string channel_order = "RGB";      // "RGB", "BGR" or "L" (grayscale)
  double range_lo = 0.0, range_hi = 1.0;  // 8-bit pixels are scaled to [lo, hi] ...
  bool range_stated = false;              // value_range was in the file (else [0, 1] is a default)
  std::vector<double> mean, std;          // ... then normalised per channel: (v - mean) / std
  std::string output = "logits";          // "logits" (softmax for probabilities), "probabilities", or
                                          // "regression" (values in the target's units: no
                                          // probabilities, no classes)
  bool output_stated = false;             // "output" was in the file (a one-column model without it
                                          // is read as a binary logit, with a warning)
  std::string explained_output;           // which output of a tuple/list/dict model is explained
                                          // ("explained_output": an index or a key); "" = not said
  bool multi_label = false;               // independent labels: each column's probability is its
                                          // sigmoid (of a logit), not a softmax over the columns
  bool present = false;                   // false when no sidecar file was found
  std::string modality;                   // "image", "tabular", "text" or "" (not stated)
  std::vector<Feature> features;          // tabular: the model's input columns, in order
  std::string id_column, label_column;    // tabular: a CSV's row id and true class (not inputs)
  std::string tokenizer;                  // text: the "tokenizer" object as JSON text (see text.hpp),
                                          // checked at load, its vocab path made absolute; "" = none
  std::string detection;                  // detectors: the "detection" object as JSON text (see
                                          // detection.hpp), checked at load; "" = none (a model of
                                          // modality "detection" without it: torchvision's layout)

  // Reads `path`; throws salient::Error naming the file and the field on a malformed file.
  static ModelMetadata load(const std::string& path);
  // The sidecar of a model file: `model.pt` -> `model.json`, if it exists (else present=false).
  static ModelMetadata for_model(const std::string& model_path);
  // Takes the labels of model output `output` (--output) when they are given per output.
  void select_output(const std::string& output);
  std::string label(int64_t index) const;  // the label, or the index as text
  bool regression() const { return output == "regression"; }
  bool detector() const { return modality == "detection" || !detection.empty(); }
  nlohmann::json to_json() const;
};

}  // namespace salient
