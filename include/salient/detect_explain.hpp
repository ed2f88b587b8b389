#pragma once
// `salient explain` on a detector: its detections listed and drawn, each explained box's maps.
#include <vector>

#include "salient/detection.hpp"
#include "salient/explain.hpp"

namespace salient {

// One input's detection run in memory: what the detector reports, the boxes explained and, per
// box, each method's map (the input's shape) and record.
struct DetectionExplanation {
  InputItem input;
  Detections reported;
  std::vector<BoxReference> boxes;
  std::vector<std::map<std::string, MethodMap>> maps;  // [box][method]
  nlohmann::json record;
};

// Checks every method against the detector (refusing by name the rewrites of back-propagation,
// which build their own pass over a classifier's graph), then explains each input's boxes
// (`target`) with every method: for each box the model's explained function is that box's D-RISE
// similarity (box_function). A method that fails is named in record["failed"] and in `failures`.
std::vector<DetectionExplanation> explain_detections(Model& model, const std::vector<InputItem>& inputs,
                                                     const ExplainRequest& request, const DetectionTarget& target,
                                                     MethodList& methods, std::vector<Error>* failures);

// The file layout under `dir`: detections.png (every reported box), METHOD_bI.npy/.png (detection
// I; METHOD_ref.* for a reference box), extra arrays METHOD_bI.KEY.npy, explanation.json last.
nlohmann::json write_detection_files(const DetectionExplanation& e, const std::string& dir, const Model& model,
                                     const RenderOptions& render);

}  // namespace salient
