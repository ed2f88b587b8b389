#include "salient/detect_explain.hpp"

#include <filesystem>
#include <set>

#include <opencv2/imgproc.hpp>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

// Modified back-propagation and intrinsic methods read a classifier's graph or weights; a box's
// explained function is a function of the detector's whole output.
void refuse_graph_methods(const ExplainRequest& request, const MethodList& methods) {
  for (size_t m = 0; m < methods.size(); ++m) {
    const MethodInfo& info = methods[m]->info();
    std::string name = request.methods[m];
    Family family = info.family;
    if (!info.options_of.empty()) {  // noise-tunnel: its base method decides
      const nlohmann::json p = methods[m]->params();
      if (p.contains(info.options_of) && p[info.options_of].is_string()) {
        name = p[info.options_of].get<std::string>();
        family = Registry::builtin().info(name).family;
      }
    }
    if (family == Family::ModifiedBackprop || family == Family::Intrinsic || name == "guided-grad-cam")
      throw Error(name + " rewrites a classifier's backward pass or reads its weights and cannot explain a detector's box; use "
                  "d-rise, rise, occlusion, saliency, smoothgrad, input-x-gradient, integrated-gradients, gradient-shap, "
                  "grad-cam or eigencam");
  }
}

cv::Scalar box_colour(int64_t label) {
  static const cv::Scalar palette[] = {{255, 128, 0}, {0, 200, 0}, {0, 0, 255}, {255, 0, 255}, {0, 255, 255}, {255, 255, 0}};
  return palette[static_cast<size_t>(label < 0 ? 0 : label) % 6];
}

// Boxes (input pixels) drawn on a picture of scale `scale` of the input, each with its caption.
void draw_boxes(cv::Mat& picture, double scale, const std::vector<std::pair<std::array<double, 4>, std::string>>& boxes,
                const std::vector<int64_t>& labels) {
  for (size_t k = 0; k < boxes.size(); ++k) {
    const auto& [b, caption] = boxes[k];
    const cv::Point p1(static_cast<int>(b[0] * scale), static_cast<int>(b[1] * scale));
    const cv::Point p2(static_cast<int>(b[2] * scale), static_cast<int>(b[3] * scale));
    const cv::Scalar c = box_colour(labels[k]);
    cv::rectangle(picture, p1, p2, c, 2);
    if (!caption.empty())
      cv::putText(picture, caption, cv::Point(p1.x + 2, std::max(12, p1.y - 4)), cv::FONT_HERSHEY_SIMPLEX, 0.45, c, 1, cv::LINE_AA);
  }
}

std::string box_file_base(const std::string& method, const BoxReference& b) {
  return method + (b.index >= 0 ? "_b" + std::to_string(b.index) : std::string("_ref"));
}

}  // namespace

std::vector<DetectionExplanation> explain_detections(Model& model, const std::vector<InputItem>& inputs,
                                                     const ExplainRequest& request, const DetectionTarget& target,
                                                     MethodList& methods, std::vector<Error>* failures) {
  if (inputs.empty()) throw Error("no input given");
  const DetectionFormat format = detection_format(model);
  const ModelMetadata& meta = model.metadata();
  refuse_graph_methods(request, methods);
  // Everything that can be refused is refused before the first file: each input's detections and
  // boxes (an index out of range, a box outside the image), every method against the first box.
  std::vector<DetectionExplanation> out(inputs.size());
  bool checked = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    DetectionExplanation& e = out[i];
    e.input = inputs[i];
    const torch::Tensor& x = e.input.tensor;
    if (x.dim() != 3) throw Error("a detector explains images [C, H, W]; input '" + e.input.stem + "' has " + c10::str(x.sizes()));
    const std::vector<Detections> all = decode_detections(model.run_raw(x.unsqueeze(0)), format);
    if (all.size() != 1) throw Error("the detector returned detections of " + std::to_string(all.size()) + " images for one");
    e.reported = report_detections(all[0], format);
    e.boxes = target.resolve(e.reported, x.size(2), x.size(1));
    if (!checked && !e.boxes.empty()) {
      OutputFunctionScope scope(model, box_function({e.boxes[0]}, format));
      for (auto& m : methods) m->check(model, x.unsqueeze(0).to(model.device()));
      checked = true;
    }
    check_writable_dir((fs::path(request.out_dir) / e.input.stem).string());
  }
  std::map<std::string, Error> failed_methods;
  for (auto& e : out) {
    nlohmann::json j;
    j["input"] = e.input.source;
    j["model"] = model.path();
    j["detection"] = format.to_json();
    j["target"] = target.to_string();
    j["detections"] = nlohmann::json::array();
    for (int64_t d = 0; d < e.reported.size(); ++d) {
      BoxReference r;
      for (int k = 0; k < 4; ++k) r.box[static_cast<size_t>(k)] = e.reported.boxes[d][k].item<double>();
      r.label = e.reported.labels[d].item<int64_t>();
      r.score = e.reported.confidence[d].item<double>();
      r.index = d;
      j["detections"].push_back(r.to_json(meta));
    }
    j["explained"] = nlohmann::json::array();
    nlohmann::json failed = nlohmann::json::object();
    std::vector<std::string> warnings;
    if (e.boxes.empty())
      warnings.push_back("the detector reports no detection at or above its score threshold " + std::to_string(format.score_threshold) +
                         (target.to_string() == "all" ? "" : " matching " + target.to_string()) +
                         ": nothing explained (explain a region with --target box:X1,Y1,X2,Y2[:LABEL])");
    const torch::Tensor x = e.input.tensor.unsqueeze(0);
    for (const BoxReference& b : e.boxes) {
      OutputFunctionScope scope(model, box_function({b}, format));
      nlohmann::json bj = b.to_json(meta);
      bj["similarity"] = model.predict(x)[0][0].item<double>();  // of its best match on the clean input
      bj["methods"] = nlohmann::json::object();
      std::map<std::string, MethodMap> maps;
      for (size_t m = 0; m < methods.size(); ++m) {
        const std::string& name = request.methods[m];
        if (failed.contains(name)) continue;
        try {
          if (request.progress) methods[m]->set_progress([&](double f) { request.progress(name, f); });
          Attribution a = methods[m]->attribute(model, x, torch::zeros({1}, torch::kLong));
          methods[m]->set_progress({});
          MethodMap mm{a.map[0], {}};
          for (const auto& [key, t] : a.extra) mm.extra[key] = t[0];
          nlohmann::json diag = nlohmann::json::object();
          for (const auto& [k, v] : a.diagnostics.items()) diag[k] = v.is_array() && v.size() == 1 ? v[0] : v;
          if (diag.contains("warning") && diag["warning"].is_string()) warnings.push_back(name + ": " + diag["warning"].get<std::string>());
          bj["methods"][name] = {{"params", a.params}, {"seconds", a.seconds}, {"diagnostics", diag}};
          maps.emplace(name, std::move(mm));
        } catch (const Error& err) {
          methods[m]->set_progress({});
          failed[name] = err.what();
          failed_methods.emplace(name, err);
        }
      }
      e.maps.push_back(std::move(maps));
      j["explained"].push_back(bj);
    }
    if (!failed.empty()) j["failed"] = failed;
    if (!warnings.empty()) j["warnings"] = warnings;
    e.record = std::move(j);
  }
  if (!failed_methods.empty()) {
    if (!failures) throw failed_methods.begin()->second;
    for (const auto& [name, err] : failed_methods) failures->push_back(err);
  }
  return out;
}

nlohmann::json write_detection_files(const DetectionExplanation& e, const std::string& dir, const Model& model,
                                     const RenderOptions& render) {
  const ModelMetadata& meta = model.metadata();
  nlohmann::json j = e.record;
  std::set<std::string> written;
  ensure_inner_dir(dir);
  remove_stale_temporaries(dir);
  const cv::Mat picture = e.input.display.empty() ? cv::Mat() : upscale_for_display(e.input.display, render.min_size);
  const double scale = picture.empty() ? 1.0 : static_cast<double>(picture.cols) / static_cast<double>(e.input.tensor.size(2));
  if (!picture.empty()) {
    cv::Mat drawn = picture.clone();
    std::vector<std::pair<std::array<double, 4>, std::string>> boxes;
    std::vector<int64_t> labels;
    for (const auto& d : j["detections"]) {
      const int64_t label = d.value("class", int64_t{-1});
      char score[16];
      std::snprintf(score, sizeof score, " %.0f%%", 100.0 * d.value("score", 0.0));
      boxes.emplace_back(d["box"].get<std::array<double, 4>>(), std::to_string(d["detection"].get<int64_t>()) + ": " + meta.label(label) + score);
      labels.push_back(label);
    }
    draw_boxes(drawn, scale, boxes, labels);
    write_png((fs::path(dir) / "detections.png").string(), drawn);
    written.insert("detections.png");
    j["detections_png"] = "detections.png";
  }
  for (size_t k = 0; k < e.boxes.size(); ++k) {
    const BoxReference& b = e.boxes[k];
    for (const auto& [name, mm] : e.maps[k]) {
      nlohmann::json& mj = j["explained"][k]["methods"][name];
      const std::string base = box_file_base(name, b);
      write_npy((fs::path(dir) / (base + ".npy")).string(), mm.map);
      written.insert(base + ".npy");
      mj["npy"] = base + ".npy";
      nlohmann::json extra = nlohmann::json::object();
      for (const auto& [key, t] : mm.extra) {
        const std::string file = base + "." + key + ".npy";
        write_npy((fs::path(dir) / file).string(), t);
        written.insert(file);
        extra[key] = file;
      }
      if (!extra.empty()) mj["extra_npy"] = extra;
      if (is_image_like(mm.map)) {
        cv::Mat heat = render_heatmap(mm.map, e.input.display, render);
        const double s = static_cast<double>(heat.cols) / static_cast<double>(e.input.tensor.size(2));
        draw_boxes(heat, s, {{b.box, (b.index >= 0 ? std::to_string(b.index) + ": " : std::string()) + (b.label >= 0 ? meta.label(b.label) : "reference")}}, {b.label});
        write_png((fs::path(dir) / (base + ".png")).string(), heat);
        written.insert(base + ".png");
        mj["png"] = base + ".png";
      }
    }
  }
  remove_stale_files(dir, written);
  write_file_atomic((fs::path(dir) / "explanation.json").string(), j.dump(2) + "\n");
  return j;
}

}  // namespace salient
