#pragma once
// How a detector's output is laid out: the metadata's "detection" object.
//   {"format": "torchvision" | "yolov5" | "yolov8", "box": "xyxy" | "cxcywh",
//    "score_threshold": 0.25, "iou_threshold": 0.45, "max_detections": 100}
// torchvision: forward(images: List[Tensor]) returns List[Dict[str, Tensor]] (boxes [D, 4] xyxy,
//   labels [D], scores [D]), or a scripted detector's (losses, detections) tuple; the model has
//   suppressed its own duplicates.
// yolov5: one tensor [N, A, 4 + 1 + C]: per anchor its box, objectness and class probabilities.
// yolov8: one tensor [N, 4 + C, A]: per anchor its box and class probabilities, no objectness.
// Boxes in input pixels, scores as probabilities (as the exporters give them); Salient decodes the
// raw heads and suppresses duplicates (NMS at iou_threshold) itself.
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace salient {

struct DetectionFormat {
  std::string format = "torchvision";
  std::string box = "xyxy";
  double score_threshold = 0.25;  // a detection is listed (and explained by default) at or above it
  double iou_threshold = 0.45;    // raw heads: NMS
  int64_t max_detections = 100;
  // Reads and checks the object; `where` names it in errors ("model metadata 'm.json'").
  static DetectionFormat from_json(const nlohmann::json& j, const std::string& where);
  // The metadata's JSON text ("" = torchvision's defaults).
  static DetectionFormat parse(const std::string& text);
  nlohmann::json to_json() const;
};

}  // namespace salient
