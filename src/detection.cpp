#include "salient/detection.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "salient/error.hpp"
#include "salient/json.hpp"
#include "salient/method.hpp"

namespace salient {

DetectionFormat DetectionFormat::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": \"detection\" must be an object");
  DetectionFormat f;
  static const std::set<std::string> known = {"format", "box", "score_threshold", "iou_threshold", "max_detections"};
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) throw Error(where + ": \"detection\" has an unknown key '" + k + "' (known: format, box, score_threshold, iou_threshold, max_detections)");
  try {
    f.format = j.value("format", f.format);
    f.box = j.value("box", f.format == "torchvision" ? std::string("xyxy") : std::string("cxcywh"));
    f.score_threshold = j.value("score_threshold", f.score_threshold);
    f.iou_threshold = j.value("iou_threshold", f.iou_threshold);
    f.max_detections = j.value("max_detections", f.max_detections);
  } catch (const nlohmann::json::exception&) {
    throw Error(where + ": \"detection\" has a field of the wrong type");
  }
  if (f.format != "torchvision" && f.format != "yolov5" && f.format != "yolov8")
    throw Error(where + ": detection format must be torchvision, yolov5 or yolov8, got '" + f.format + "'");
  if (f.box != "xyxy" && f.box != "cxcywh") throw Error(where + ": detection box must be xyxy or cxcywh, got '" + f.box + "'");
  if (f.format == "torchvision" && f.box != "xyxy") throw Error(where + ": a torchvision detector's boxes are xyxy");
  if (!(f.score_threshold >= 0 && f.score_threshold <= 1)) throw Error(where + ": detection score_threshold must lie in [0, 1]");
  if (!(f.iou_threshold > 0 && f.iou_threshold <= 1)) throw Error(where + ": detection iou_threshold must lie in (0, 1]");
  if (f.max_detections < 1 || f.max_detections > 10000) throw Error(where + ": detection max_detections must lie in [1, 10000]");
  return f;
}

DetectionFormat DetectionFormat::parse(const std::string& text) {
  return text.empty() ? DetectionFormat{} : from_json(nlohmann::json::parse(text), "detection format");
}

nlohmann::json DetectionFormat::to_json() const {
  return {{"format", format}, {"box", box}, {"score_threshold", score_threshold}, {"iou_threshold", iou_threshold},
          {"max_detections", max_detections}};
}

Detections Detections::index(const torch::Tensor& keep) const {
  Detections d;
  const torch::Tensor k = keep.to(boxes.device(), torch::kLong);
  d.boxes = boxes.index_select(0, k);
  d.objectness = objectness.index_select(0, k);
  if (classes.defined()) d.classes = classes.index_select(0, k);
  d.labels = labels.index_select(0, k);
  d.confidence = confidence.index_select(0, k);
  return d;
}

namespace {

std::string shape_of(const torch::Tensor& t) { return c10::str(t.sizes()); }

// torchvision's output: a List[Dict[str, Tensor]], alone or after the losses of a scripted detector.
std::vector<Detections> decode_torchvision(const c10::IValue& out) {
  c10::IValue list = out;
  if (out.isTuple()) {
    list = c10::IValue();
    for (const auto& e : out.toTupleRef().elements())
      if (e.isList()) list = e;
  }
  if (!list.isList())
    throw Error("a torchvision detector returns List[Dict[str, Tensor]] (or a scripted detector's (losses, detections)); this model returned " +
                std::string(out.tagKind()));
  std::vector<Detections> all;
  for (const auto& item : list.toListRef()) {
    if (!item.isGenericDict()) throw Error("a torchvision detector's detections are dicts of boxes, labels and scores");
    const auto d = item.toGenericDict();
    auto get = [&](const char* key) {
      for (const auto& kv : d)
        if (kv.key().isString() && kv.key().toStringRef() == key && kv.value().isTensor()) return kv.value().toTensor();
      throw Error(std::string("a torchvision detector's detections have no tensor '") + key + "' (boxes, labels and scores)");
    };
    Detections one;
    one.boxes = get("boxes");
    one.labels = get("labels").to(torch::kLong);
    one.confidence = get("scores");
    const int64_t n = one.boxes.dim() == 2 ? one.boxes.size(0) : -1;
    if (n < 0 || one.boxes.size(1) != 4 || one.labels.dim() != 1 || one.labels.size(0) != n || one.confidence.dim() != 1 ||
        one.confidence.size(0) != n)
      throw Error("a torchvision detector's boxes must be [D, 4] beside labels [D] and scores [D]; got " + shape_of(one.boxes) +
                  ", " + shape_of(one.labels) + ", " + shape_of(one.confidence));
    one.objectness = one.confidence;
    all.push_back(std::move(one));
  }
  return all;
}

torch::Tensor to_xyxy(const torch::Tensor& b, const std::string& layout) {
  if (layout == "xyxy") return b;
  const torch::Tensor c = b.narrow(1, 0, 2), half = b.narrow(1, 2, 2) / 2;
  return torch::cat({c - half, c + half}, 1);
}

std::vector<Detections> decode_head(const c10::IValue& out, const DetectionFormat& f) {
  torch::Tensor t;
  if (out.isTensor()) t = out.toTensor();
  else if ((out.isTuple() || out.isList()) && !(out.isTuple() ? out.toTupleRef().elements().empty() : out.toListRef().empty())) {
    const c10::IValue first = out.isTuple() ? out.toTupleRef().elements()[0] : out.toListRef()[0];
    if (first.isTensor()) t = first.toTensor();  // yolov5's (predictions, raw feature maps)
  }
  const bool v8 = f.format == "yolov8";
  const std::string want = v8 ? "[N, 4 + C, A]" : "[N, A, 4 + 1 + C]";
  if (!t.defined() || t.dim() != 3 || t.size(v8 ? 1 : 2) < (v8 ? 5 : 6))
    throw Error("a " + f.format + " head returns one tensor " + want + "; this model returned " +
                (t.defined() ? shape_of(t) : std::string(out.tagKind())));
  if (v8) t = t.transpose(1, 2);  // [N, A, 4 + C]
  std::vector<Detections> all;
  for (int64_t i = 0; i < t.size(0); ++i) {
    const torch::Tensor r = t[i];
    Detections d;
    d.boxes = to_xyxy(r.narrow(1, 0, 4), f.box);
    if (v8) {
      d.classes = r.narrow(1, 4, r.size(1) - 4);
      auto [best, label] = d.classes.max(1);
      d.objectness = best;
      d.confidence = best;
      d.labels = label;
    } else {
      d.objectness = r.select(1, 4);
      d.classes = r.narrow(1, 5, r.size(1) - 5);
      auto [best, label] = d.classes.max(1);
      d.confidence = d.objectness * best;
      d.labels = label;
    }
    all.push_back(std::move(d));
  }
  return all;
}

// Greedy NMS over boxes sorted by descending score, within one class (indices into `boxes`).
std::vector<int64_t> nms(const torch::Tensor& boxes, const torch::Tensor& order, double iou) {
  const torch::Tensor ious = box_iou(boxes, boxes).to(torch::kCPU, torch::kDouble).contiguous();
  const auto m = ious.accessor<double, 2>();
  std::vector<int64_t> kept;
  const torch::Tensor o = order.to(torch::kCPU).contiguous();
  for (int64_t k = 0; k < o.numel(); ++k) {
    const int64_t i = o.data_ptr<int64_t>()[k];
    bool keep = true;
    for (int64_t j : kept)
      if (m[i][j] > iou) {
        keep = false;
        break;
      }
    if (keep) kept.push_back(i);
  }
  return kept;
}

}  // namespace

std::vector<Detections> decode_detections(const c10::IValue& output, const DetectionFormat& format) {
  return format.format == "torchvision" ? decode_torchvision(output) : decode_head(output, format);
}

Detections report_detections(const Detections& candidates, const DetectionFormat& format) {
  torch::NoGradGuard no_grad;
  Detections c;
  c.boxes = candidates.boxes.detach().to(torch::kCPU, torch::kFloat);
  c.objectness = candidates.objectness.detach().to(torch::kCPU, torch::kFloat);
  if (candidates.classes.defined()) c.classes = candidates.classes.detach().to(torch::kCPU, torch::kFloat);
  c.labels = candidates.labels.detach().to(torch::kCPU);
  c.confidence = candidates.confidence.detach().to(torch::kCPU, torch::kFloat);
  const torch::Tensor above = (c.confidence >= format.score_threshold).nonzero().view({-1});
  c = c.index(above);
  std::vector<int64_t> kept;
  if (format.format == "torchvision") {  // the model suppressed its own duplicates
    for (int64_t i = 0; i < c.size(); ++i) kept.push_back(i);
  } else {
    const torch::Tensor order = c.confidence.argsort(0, /*descending=*/true);
    std::map<int64_t, std::vector<int64_t>> by_class;
    const torch::Tensor labels = c.labels.index_select(0, order);
    for (int64_t k = 0; k < order.size(0); ++k) by_class[labels[k].item<int64_t>()].push_back(order[k].item<int64_t>());
    for (const auto& [label, idx] : by_class) {
      const auto keep = nms(c.boxes, torch::tensor(idx, torch::kLong), format.iou_threshold);
      kept.insert(kept.end(), keep.begin(), keep.end());
    }
  }
  std::stable_sort(kept.begin(), kept.end(), [&](int64_t a, int64_t b) {
    return c.confidence[a].item<float>() > c.confidence[b].item<float>();
  });
  if (static_cast<int64_t>(kept.size()) > format.max_detections) kept.resize(static_cast<size_t>(format.max_detections));
  return c.index(torch::tensor(kept, torch::kLong));
}

torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor lt = torch::max(a.narrow(1, 0, 2).unsqueeze(1), b.narrow(1, 0, 2).unsqueeze(0));
  const torch::Tensor rb = torch::min(a.narrow(1, 2, 2).unsqueeze(1), b.narrow(1, 2, 2).unsqueeze(0));
  const torch::Tensor wh = (rb - lt).clamp_min(0);
  const torch::Tensor inter = wh.select(2, 0) * wh.select(2, 1);
  auto area = [](const torch::Tensor& x) {
    return (x.select(1, 2) - x.select(1, 0)).clamp_min(0) * (x.select(1, 3) - x.select(1, 1)).clamp_min(0);
  };
  const torch::Tensor uni = area(a).unsqueeze(1) + area(b).unsqueeze(0) - inter;
  return torch::where(uni > 0, inter / uni.clamp_min(1e-12), torch::zeros_like(inter));
}

nlohmann::json BoxReference::to_json(const ModelMetadata& meta) const {
  nlohmann::json j = {{"box", box}};
  if (index >= 0) j["detection"] = index;
  if (label >= 0) {
    j["label"] = meta.label(label);
    j["class"] = label;
  }
  if (index >= 0) j["score"] = score;
  return j;
}

torch::Tensor box_similarity(const Detections& dets, const BoxReference& ref) {
  const auto opts = dets.boxes.defined() ? dets.boxes.options() : torch::TensorOptions().dtype(torch::kFloat);
  if (dets.size() == 0) return torch::zeros({}, opts);
  const torch::Tensor r = torch::tensor({ref.box[0], ref.box[1], ref.box[2], ref.box[3]}, opts.dtype(torch::kDouble))
                              .to(dets.boxes.scalar_type()).view({1, 4});
  const torch::Tensor iou = box_iou(dets.boxes, r).squeeze(1);  // [D]
  torch::Tensor cosine;
  if (dets.classes.defined() && (ref.classes.defined() || ref.label >= 0)) {
    torch::Tensor rc = ref.classes.defined() ? ref.classes.to(dets.classes.device(), dets.classes.scalar_type())
                                             : torch::zeros({dets.classes.size(1)}, dets.classes.options());
    if (!ref.classes.defined()) {
      if (ref.label >= rc.size(0))
        throw Error("label " + std::to_string(ref.label) + " is outside the detector's " + std::to_string(rc.size(0)) + " classes");
      rc[ref.label] = 1;
    }
    cosine = torch::cosine_similarity(dets.classes, rc.unsqueeze(0), 1, 1e-12);
  } else if (ref.label >= 0) {  // one label per box: one-hot vectors, cosine 1 for the same class
    cosine = (dets.labels.to(dets.boxes.device()) == ref.label).to(iou.scalar_type());
  } else {
    cosine = torch::ones_like(iou);
  }
  return (iou * cosine * dets.objectness.to(iou.scalar_type())).max();
}

Model::OutputFunction box_function(std::vector<BoxReference> refs, DetectionFormat format) {
  if (refs.empty()) throw Error("a box target needs a box", ErrorKind::Internal);
  return [refs = std::move(refs), format = std::move(format)](const c10::IValue& out) {
    const std::vector<Detections> dets = decode_detections(out, format);
    if (refs.size() != 1 && refs.size() != dets.size())
      throw Error("a box target of " + std::to_string(refs.size()) + " rows got the detections of " + std::to_string(dets.size()) +
                  " images", ErrorKind::Internal);
    std::vector<torch::Tensor> rows;
    torch::Tensor anchor;  // keeps a row whose object vanished (a constant 0) on the input's graph
    for (size_t i = 0; i < dets.size(); ++i) {
      rows.push_back(box_similarity(dets[i], refs.size() == 1 ? refs[0] : refs[i]));
      for (const torch::Tensor& t : {dets[i].objectness, dets[i].boxes})
        if (!anchor.defined() && t.defined() && t.requires_grad()) anchor = t.sum() * 0;
    }
    torch::Tensor s = torch::stack(rows).to(torch::kFloat);
    if (anchor.defined() && !s.requires_grad()) s = s + anchor.to(s.scalar_type());
    return s.view({-1, 1});
  };
}

DetectionFormat detection_format(const Model& model) {
  const ModelMetadata& m = model.metadata();
  if (!m.detector()) throw Error("'" + model.path() + "' is not a detector: its metadata has no \"detection\" (or \"modality\": \"detection\")");
  return DetectionFormat::parse(m.detection);
}

namespace {

int64_t parse_label(const std::string& text, const ModelMetadata& meta, const std::string& target) {
  for (size_t i = 0; i < meta.labels.size(); ++i)
    if (meta.labels[i] == text) return static_cast<int64_t>(i);
  double v = 0;
  if (parse_number(text, v) && v >= 0 && v == std::floor(v) && v < 1e9) {
    if (!meta.labels.empty() && v >= static_cast<double>(meta.labels.size()))
      throw Error("--target '" + target + "': class " + text + " is outside the detector's " + std::to_string(meta.labels.size()) + " labels");
    return static_cast<int64_t>(v);
  }
  std::string known;
  for (size_t i = 0; i < meta.labels.size() && i < 20; ++i) known += (i ? ", " : "") + meta.labels[i];
  throw Error("--target '" + target + "': unknown label '" + text + "'" + (known.empty() ? "" : " (labels: " + known + ")"));
}

}  // namespace

DetectionTarget DetectionTarget::parse(const std::string& text, const ModelMetadata& meta, int64_t max_boxes) {
  DetectionTarget t;
  t.max_ = max_boxes;
  if (max_boxes < 1 || max_boxes > 1000) throw Error("--max-boxes must lie in [1, 1000]");
  if (text.empty() || text == "all" || text == "top") return t;
  t.text_ = text;
  const std::string bad = "--target '" + text + "' for a detector: expected box:I, box:X1,Y1,X2,Y2[:LABEL], class:LABEL or all";
  if (text.rfind("class:", 0) == 0) {
    t.kind_ = Kind::Class;
    t.label_ = parse_label(text.substr(6), meta, text);
    return t;
  }
  if (text.rfind("box:", 0) != 0) throw Error(bad);
  const std::string rest = text.substr(4);
  const auto colon = rest.find(':');
  const std::vector<std::string> parts = split_list(rest.substr(0, colon));
  if (parts.size() == 1 && colon == std::string::npos) {
    double v = 0;
    if (!parse_number(parts[0], v) || v < 0 || v != std::floor(v) || v > 1e6) throw Error(bad);
    t.kind_ = Kind::Index;
    t.index_ = static_cast<int64_t>(v);
    return t;
  }
  if (parts.size() != 4) throw Error(bad);
  for (size_t k = 0; k < 4; ++k)
    if (!parse_number(parts[k], t.box_[k]) || !std::isfinite(t.box_[k])) throw Error(bad);
  if (!(t.box_[2] > t.box_[0] && t.box_[3] > t.box_[1])) throw Error("--target '" + text + "': a box needs x2 > x1 and y2 > y1");
  t.kind_ = Kind::Box;
  if (colon != std::string::npos) t.label_ = parse_label(rest.substr(colon + 1), meta, text);
  return t;
}

std::vector<BoxReference> DetectionTarget::resolve(const Detections& reported, int64_t width, int64_t height) const {
  auto detection = [&](int64_t i) {
    BoxReference r;
    const torch::Tensor b = reported.boxes[i].to(torch::kDouble);
    for (int k = 0; k < 4; ++k) r.box[static_cast<size_t>(k)] = b[k].item<double>();
    r.label = reported.labels[i].item<int64_t>();
    if (reported.classes.defined()) r.classes = reported.classes[i].clone();
    r.score = reported.confidence[i].item<double>();
    r.index = i;
    return r;
  };
  std::vector<BoxReference> out;
  switch (kind_) {
    case Kind::All:
      for (int64_t i = 0; i < reported.size() && i < max_; ++i) out.push_back(detection(i));
      break;
    case Kind::Class:
      for (int64_t i = 0; i < reported.size() && static_cast<int64_t>(out.size()) < max_; ++i)
        if (reported.labels[i].item<int64_t>() == label_) out.push_back(detection(i));
      break;
    case Kind::Index:
      if (index_ >= reported.size())
        throw Error("--target " + text_ + ": the detector reports " + std::to_string(reported.size()) +
                    " detection(s) at or above its score threshold on this input (box:0.." + std::to_string(std::max<int64_t>(0, reported.size() - 1)) + ")");
      out.push_back(detection(index_));
      break;
    case Kind::Box: {
      if (box_[0] < 0 || box_[1] < 0 || box_[2] > static_cast<double>(width) || box_[3] > static_cast<double>(height))
        throw Error("--target " + text_ + ": the box lies outside the " + std::to_string(width) + "x" + std::to_string(height) + " image");
      BoxReference r;
      r.box = box_;
      r.label = label_;
      out.push_back(r);
      break;
    }
  }
  return out;
}

}  // namespace salient
