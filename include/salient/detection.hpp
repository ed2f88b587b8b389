#pragma once
// Object detectors: their outputs decoded into boxes, what a detection target is (D-RISE's
// similarity of a box's best match, Petsiuk et al. 2021), and the explained function of a box.
#include <array>
#include <string>
#include <vector>

#include <torch/script.h>

#include "salient/detection_format.hpp"
#include "salient/model.hpp"

namespace salient {

// One image's detections, or its candidate boxes before suppression.
struct Detections {
  torch::Tensor boxes;       // [D, 4] x1, y1, x2, y2 in input pixels
  torch::Tensor objectness;  // [D] D-RISE's objectness: yolov5's own; a torchvision detector's score;
                             // yolov8's best class probability (it has none of its own)
  torch::Tensor classes;     // [D, C] class probabilities; undefined for a torchvision detector (one
                             // label per box: its class vector is one-hot)
  torch::Tensor labels;      // [D] int64
  torch::Tensor confidence;  // [D] the score a detection is listed with: torchvision's score,
                             // yolov5's objectness x class probability, yolov8's class probability
  int64_t size() const { return boxes.defined() ? boxes.size(0) : 0; }
  Detections index(const torch::Tensor& keep) const;  // the rows `keep` (int64 indices)
};

// Every image's candidates in a raw model output (torchvision: its detections; a raw head: every
// anchor), differentiable where the model is. A malformed output is a salient::Error saying what
// was expected.
std::vector<Detections> decode_detections(const c10::IValue& output, const DetectionFormat& format);

// What the detector reports: candidates at or above the score threshold, duplicates suppressed per
// class (raw heads: NMS at the IoU threshold), by confidence, at most max_detections; detached.
Detections report_detections(const Detections& candidates, const DetectionFormat& format);

// Pairwise IoU of boxes [A, 4] and [B, 4] (continuous coordinates): [A, B]; 0 for empty boxes.
torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b);

// The box a detection target explains: a detection of the clean input, or a reference box.
struct BoxReference {
  std::array<double, 4> box{};  // x1, y1, x2, y2
  int64_t label = -1;           // -1: any class (a reference box given without a label)
  torch::Tensor classes;        // [C] its class vector (a raw head's detection); undefined: one-hot of label
  double score = 0;             // its confidence on the clean input (0 for a reference box)
  int64_t index = -1;           // its index among the clean input's detections, -1 for a reference box
  nlohmann::json to_json(const ModelMetadata& meta) const;
};

// D-RISE's similarity of `dets`' best match to `ref`: max over detections of IoU(box, ref box) x
// cosine(class vectors) x objectness; 0 when no detection is left (the object vanished).
torch::Tensor box_similarity(const Detections& dets, const BoxReference& ref);

// The explained function of one box per input row: a detector's raw output -> [N, 1], row i the
// similarity of its best match to refs[i] (or refs[0] for every row when there is one).
Model::OutputFunction box_function(std::vector<BoxReference> refs, DetectionFormat format);

// The detection format of a model: its metadata's, or torchvision's when the metadata says
// "modality": "detection". Throws salient::Error when the model is not a detector.
DetectionFormat detection_format(const Model& model);

// `--target` for a detector: "box:I" (detection I of the input), "box:X1,Y1,X2,Y2[:LABEL]" (a
// reference box, e.g. ground truth; no label: any class), "class:LABEL" (every detection of that
// class), "" or "all" (every detection at or above the threshold), each capped at `max_boxes`.
class DetectionTarget {
 public:
  static DetectionTarget parse(const std::string& text, const ModelMetadata& meta, int64_t max_boxes = 5);
  // The boxes to explain on an input of `width` x `height` pixels with these reported detections;
  // a reference box outside the image or a detection index out of range is a salient::Error.
  std::vector<BoxReference> resolve(const Detections& reported, int64_t width, int64_t height) const;
  std::string to_string() const { return text_; }

 private:
  enum class Kind { All, Index, Box, Class } kind_ = Kind::All;
  int64_t index_ = 0, label_ = -1, max_ = 5;
  std::array<double, 4> box_{};
  std::string text_ = "all";
};

// Installs a function of the whole raw output as what the model explains, for a scope.
class OutputFunctionScope {
 public:
  OutputFunctionScope(Model& model, Model::OutputFunction f) : model_(model), saved_(model.output_function()) {
    model_.set_output_function(std::move(f));
  }
  ~OutputFunctionScope() { model_.set_output_function(saved_); }
  OutputFunctionScope(const OutputFunctionScope&) = delete;
  OutputFunctionScope& operator=(const OutputFunctionScope&) = delete;

 private:
  Model& model_;
  Model::OutputFunction saved_;
};

}  // namespace salient
