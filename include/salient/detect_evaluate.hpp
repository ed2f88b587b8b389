#pragma once
// `salient evaluate` on a detector: whether a box's map points at the object, on data with
// ground-truth boxes. For each true box the detector finds (a detection of its class at IoU >= 0.5),
// each method explains that detection; the map is scored by the pointing game (its maximum lies in
// the true box; Zhang et al. 2018), the energy-based pointing game (the share of its positive mass
// inside the box; Wang et al. 2020, Score-CAM) and deletion on the box's similarity (its most
// relevant pixels first, against a seeded random order).
#include <array>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "salient/model.hpp"

namespace salient {

struct BoxTruth {
  std::string image;             // the image's file name, as in the data folder
  std::array<double, 4> box{};   // x1, y1, x2, y2
  int64_t label = 0;
};

// A CSV with a header `image,x1,y1,x2,y2,label` (a label by name or class index), or a COCO-style
// JSON ({"images": [{id, file_name}], "annotations": [{image_id, bbox: [x, y, w, h], category_id}],
// "categories": [{id, name}]}, categories matched to the labels by name). Bad rows are errors naming
// the line.
std::vector<BoxTruth> read_box_truths(const std::string& path, const ModelMetadata& meta);

struct DetectionEvaluateRequest {
  std::string data;                  // a folder of images
  std::string boxes;                 // ground truth (read_box_truths)
  std::vector<std::string> methods;
  nlohmann::json method_options = nlohmann::json::object();
  int64_t limit = 20;                // images
  int steps = 20;                    // deletion curve points
  uint64_t seed = 0;
  double match_iou = 0.5;
  std::string out_dir;
};

// Writes report.json and report.md under out_dir (atomically) and returns the report: per method the
// means over explained boxes of pointing_game, energy_pointing_game, deletion_auc and
// deletion_auc_random; the detector's recall of the true boxes.
nlohmann::json evaluate_detections(Model& model, const DetectionEvaluateRequest& request,
                                   const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace salient
