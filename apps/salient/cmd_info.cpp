// salient info: what a model is: metadata, parameter count, output shape on a sample input.
#include <iostream>

#include "commands.hpp"
#include "salient/detection.hpp"
#include "salient/error.hpp"
#include "salient/target.hpp"
#include "salient/text.hpp"

namespace salient::cli {

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "describe a model: metadata, parameters, output shape");
  auto flags = std::make_shared<ModelFlags>();
  auto shape = std::make_shared<std::vector<int64_t>>();
  auto json = std::make_shared<bool>(false);
  flags->add_to(cmd);
  cmd->add_option("--input-shape", *shape, "shape of one input, e.g. 3 224 224 (default: from the metadata)")
      ->delimiter(',');
  cmd->add_flag("--json", *json, "print JSON");
  cmd->callback([flags, shape, json] {
    Model model = flags->load();
    const ModelMetadata& meta = model.metadata();
    // Without an input shape (no metadata, no --input-shape) everything but the output is said.
    const bool runnable = (!shape->empty() || !meta.input_shape.empty() || model.text()) && !model.dict_input();
    nlohmann::json batch_shape, out_shape;
    std::vector<std::string> outputs;  // every output of a tuple/list/dict model
    std::string out_error;             // why the explained output has no shape (several outputs, none chosen)
    nlohmann::json detector;           // a detector's layout and its detections on the sample
    if (runnable) {
      torch::Tensor sample = sample_input(model, *shape);
      batch_shape = sample.sizes().vec();
      outputs = model.describe_outputs(sample);
      if (meta.detector()) {  // boxes, not an [N, K] output: what the detector reports on the sample
        const DetectionFormat f = detection_format(model);
        const Detections d = report_detections(decode_detections(model.run_raw(sample), f).at(0), f);
        detector = f.to_json();
        detector["detections_on_sample"] = d.size();
      } else try {  // the explained output as the model gives it: [N, K], or a dense [N, C, H, W]
        out_shape = model_output_shape(model, sample);
      } catch (const Error& e) {
        if (outputs.size() < 2) throw;
        out_error = e.what();
      }
    }
    nlohmann::json j{{"model", model.path()},
                     {"device", model.device().str()},
                     {"backend", model.backend() == Backend::Onnx ? "onnx" : "torchscript"},
                     {"parameters", model.parameter_count()},
                     {"inputs", model.input_count()},
                     {"input_names", model.input_names()},
                     {"dict_input", model.dict_input()},
                     {"input_shape", batch_shape},
                     {"output_shape", out_shape},
                     {"outputs", outputs},
                     {"output_error", out_error.empty() ? nlohmann::json() : nlohmann::json(out_error)},
                     {"metadata", meta.to_json()}};
    if (!detector.is_null()) j["detector"] = detector;
    if (*json) {
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::cout << "model:        " << model.path() << "\n"
              << "device:       " << model.device().str() << "\n"
              << "parameters:   "
              << (model.backend() == Backend::Onnx ? std::string("n/a (ONNX, run by OpenCV DNN)") : std::to_string(model.parameter_count()))
              << "\n"
              << "inputs:       " << model.input_count();
    if (model.dict_input())
      std::cout << " (" << model.input_names()[0] << ": Dict[str, Tensor]: give one --input KEY=FILE.npy per entry)";
    else if (model.input_count() > 1)
      std::cout << " (" << nlohmann::json(model.input_names()).dump() << ": one --input .npy per input, or NAME=FILE.npy)";
    std::cout << "\n"
              << "input shape:  "
              << (runnable ? batch_shape.dump()
                  : model.dict_input() ? "set by the entries given"
                                       : "unknown (no metadata input_shape; pass --input-shape)")
              << "\n"
              << "output shape: " << (runnable ? (meta.detector() ? std::string("boxes (a detector)") : out_shape.dump()) : "unknown")
              << (outputs.size() > 1 && out_shape.is_null() ? " (none chosen: give --output NAME)" : "")
              << (out_shape.is_array() && out_shape.size() > 2
                      ? " (dense: predictions are each class's mean over the pixels; explain a region with --target region:CLASS)"
                      : "")
              << "\n";
    if (outputs.size() > 1)
      for (const auto& o : outputs) std::cout << "  output " << o << "\n";
    if (meta.detector())
      std::cout << "detector:     " << (detector.is_null() ? detection_format(model).to_json() : detector).dump()
                << " (explain boxes: --target box:I, box:X1,Y1,X2,Y2[:LABEL], class:LABEL)\n";
    if (meta.present) {
      std::cout << "metadata:     " << meta.name << ", " << meta.labels.size() << " labels";
      if (model.text())
        std::cout << ", text (tokenizer, " << model.tokenizer().size() << " tokens)";
      else if (!meta.features.empty())
        std::cout << ", table (" << meta.features.size() << " columns)";
      else
        std::cout << ", channels " << meta.channel_order << ", range [" << meta.range_lo << ", " << meta.range_hi << "], mean "
                  << nlohmann::json(meta.mean).dump() << ", std " << nlohmann::json(meta.std).dump();
      std::cout << ", output " << meta.output << "\n";
      if (!meta.labels.empty()) {
        std::cout << "labels:      ";
        for (size_t i = 0; i < meta.labels.size(); ++i) std::cout << " " << i << "=" << meta.labels[i];
        std::cout << "\n";
      }
    } else {
      std::cout << "metadata:     none (no sidecar <model>.json)\n";
    }
  });
}

}  // namespace salient::cli
