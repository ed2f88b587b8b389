#include "salient/detect_evaluate.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "salient/detection.hpp"
#include "salient/error.hpp"
#include "salient/explain.hpp"
#include "salient/fsutil.hpp"
#include "salient/image.hpp"
#include "salient/json.hpp"
#include "salient/metrics/metrics.hpp"
#include "salient/registry.hpp"
#include "salient/tabular.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

int64_t label_index(const std::string& text, const ModelMetadata& meta, const std::string& where) {
  for (size_t i = 0; i < meta.labels.size(); ++i)
    if (meta.labels[i] == text) return static_cast<int64_t>(i);
  double v = 0;
  if (parse_number(text, v) && v >= 0 && v == std::floor(v) && (meta.labels.empty() || v < static_cast<double>(meta.labels.size())))
    return static_cast<int64_t>(v);
  throw Error(where + ": unknown label '" + text + "'");
}

std::vector<BoxTruth> read_coco(const nlohmann::json& j, const ModelMetadata& meta, const std::string& path) {
  std::map<int64_t, std::string> files, categories;
  try {
    for (const auto& im : j.at("images")) files[im.at("id").get<int64_t>()] = im.at("file_name").get<std::string>();
    if (j.contains("categories"))
      for (const auto& c : j.at("categories")) categories[c.at("id").get<int64_t>()] = c.at("name").get<std::string>();
    std::vector<BoxTruth> out;
    for (const auto& a : j.at("annotations")) {
      const auto b = a.at("bbox").get<std::vector<double>>();
      if (b.size() != 4 || !(b[2] > 0) || !(b[3] > 0)) throw Error("'" + path + "': a bbox is [x, y, width, height] with width, height > 0");
      BoxTruth t;
      const int64_t id = a.at("image_id").get<int64_t>();
      if (!files.count(id)) throw Error("'" + path + "': annotation of unknown image_id " + std::to_string(id));
      t.image = files[id];
      t.box = {b[0], b[1], b[0] + b[2], b[1] + b[3]};
      const int64_t cat = a.at("category_id").get<int64_t>();
      t.label = label_index(categories.count(cat) ? categories[cat] : std::to_string(cat), meta, "'" + path + "'");
      out.push_back(t);
    }
    return out;
  } catch (const nlohmann::json::exception&) {
    throw Error("'" + path + "' is not COCO-style JSON (images, annotations with image_id, bbox, category_id)");
  }
}

double plane_sum(const torch::Tensor& plane, const std::array<double, 4>& b, bool positive) {
  const int64_t h = plane.size(0), w = plane.size(1);
  const int64_t x1 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(b[0])), 0, w), x2 = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(b[2])), 0, w);
  const int64_t y1 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(b[1])), 0, h), y2 = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(b[3])), 0, h);
  const torch::Tensor p = positive ? plane.clamp_min(0) : plane;
  return p.slice(0, y1, y2).slice(1, x1, x2).sum().item<double>();
}

std::string fixed(double v, int digits = 3) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

}  // namespace

std::vector<BoxTruth> read_box_truths(const std::string& path, const ModelMetadata& meta) {
  check_regular_file(path, "ground-truth boxes");
  const std::string text = read_file(path);
  if (fs::path(path).extension() == ".json") {
    const nlohmann::json j = parse_json(text);
    if (j.is_discarded()) throw Error("'" + path + "' is not valid JSON");
    return read_coco(j, meta, path);
  }
  const auto rows = parse_csv(text, path);
  const std::vector<std::string> header = {"image", "x1", "y1", "x2", "y2", "label"};
  if (rows.empty() || rows[0] != header) throw Error("'" + path + "' must start with the header image,x1,y1,x2,y2,label");
  std::vector<BoxTruth> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::string where = "'" + path + "' line " + std::to_string(r + 1);
    if (rows[r].size() != 6) throw Error(where + ": expected 6 fields");
    BoxTruth t;
    t.image = rows[r][0];
    for (size_t k = 0; k < 4; ++k)
      if (!parse_number(rows[r][k + 1], t.box[k]) || !std::isfinite(t.box[k])) throw Error(where + ": '" + rows[r][k + 1] + "' is not a number");
    if (!(t.box[2] > t.box[0] && t.box[3] > t.box[1])) throw Error(where + ": a box needs x2 > x1 and y2 > y1");
    t.label = label_index(rows[r][5], meta, where);
    out.push_back(t);
  }
  return out;
}

nlohmann::json evaluate_detections(Model& model, const DetectionEvaluateRequest& request,
                                   const std::function<void(int64_t, int64_t)>& progress) {
  const DetectionFormat format = detection_format(model);
  const ModelMetadata& meta = model.metadata();
  if (request.methods.empty()) throw Error("no method given (see `salient methods`)");
  if (request.steps < 2 || request.steps > 1000) throw Error("--steps must lie in [2, 1000]");
  const std::vector<BoxTruth> truths = read_box_truths(request.boxes, meta);
  std::vector<std::string> files = image_files_in(request.data);
  std::set<std::string> annotated;
  for (const auto& t : truths) annotated.insert(t.image);
  files.erase(std::remove_if(files.begin(), files.end(), [&](const std::string& f) { return !annotated.count(fs::path(f).filename().string()); }),
              files.end());
  if (files.empty()) throw Error("no image of '" + request.data + "' has a box in '" + request.boxes + "'");
  if (static_cast<int64_t>(files.size()) > request.limit) files.resize(static_cast<size_t>(request.limit));
  ExplainRequest er;
  er.methods = request.methods;
  er.method_options = request.method_options;
  MethodList methods = prepare(er, meta);
  check_writable_dir(request.out_dir);

  struct Sums {
    double pg = 0, epg = 0, del = 0, del_random = 0;
    int64_t n = 0, epg_n = 0;
  };
  std::map<std::string, Sums> sums;
  int64_t boxes = 0, found = 0;
  bool checked = false;
  for (size_t i = 0; i < files.size(); ++i) {
    const InputItem item = load_image(files[i], meta);
    const torch::Tensor x = item.tensor;
    const std::string name = fs::path(files[i]).filename().string();
    const Detections d = report_detections(decode_detections(model.run_raw(x.unsqueeze(0)), format).at(0), format);
    std::vector<bool> used(static_cast<size_t>(d.size()), false);
    for (const auto& t : truths) {
      if (t.image != name) continue;
      ++boxes;
      // The true detection: the most confident one of its class at IoU >= match_iou, not yet taken.
      const torch::Tensor tb = torch::tensor({t.box[0], t.box[1], t.box[2], t.box[3]}, torch::kFloat).view({1, 4});
      const torch::Tensor iou = d.size() ? box_iou(d.boxes, tb).squeeze(1) : torch::zeros({0});
      int64_t best = -1;
      for (int64_t k = 0; k < d.size() && best < 0; ++k)
        if (!used[static_cast<size_t>(k)] && d.labels[k].item<int64_t>() == t.label && iou[k].item<double>() >= request.match_iou) best = k;
      if (best < 0) continue;
      used[static_cast<size_t>(best)] = true;
      ++found;
      const BoxReference ref = DetectionTarget::parse("box:" + std::to_string(best), meta).resolve(d, x.size(2), x.size(1))[0];
      OutputFunctionScope scope(model, box_function({ref}, format));
      if (!checked) {
        for (auto& m : methods) m->check(model, x.unsqueeze(0));
        checked = true;
      }
      const torch::Tensor order = metrics::random_order(x, request.seed + static_cast<uint64_t>(i));
      for (size_t m = 0; m < methods.size(); ++m) {
        const torch::Tensor map = methods[m]->attribute(model, x.unsqueeze(0), torch::zeros({1}, torch::kLong)).map[0];
        const torch::Tensor plane = (map.dim() == 3 ? map.sum(0) : map).to(torch::kDouble);
        Sums& s = sums[request.methods[m]];
        const int64_t at = plane.argmax().item<int64_t>();
        const double px = static_cast<double>(at % plane.size(1)) + 0.5, py = static_cast<double>(at / plane.size(1)) + 0.5;
        s.pg += px >= t.box[0] && px <= t.box[2] && py >= t.box[1] && py <= t.box[3];
        const double total = plane.clamp_min(0).sum().item<double>();
        if (total > 0) {
          s.epg += plane_sum(plane, t.box, true) / total;
          ++s.epg_n;
        }
        s.del += metrics::deletion(model, x, 0, map, metrics::Canvas::Black, request.steps).auc;
        s.del_random += metrics::deletion(model, x, 0, map, metrics::Canvas::Black, request.steps, order).auc;
        ++s.n;
      }
    }
    if (progress) progress(static_cast<int64_t>(i) + 1, static_cast<int64_t>(files.size()));
  }
  nlohmann::json report = {{"model", model.path()}, {"data", request.data}, {"boxes_file", request.boxes},
                           {"images", files.size()}, {"true_boxes", boxes}, {"explained_boxes", found},
                           {"recall", boxes ? static_cast<double>(found) / static_cast<double>(boxes) : 0.0},
                           {"match_iou", request.match_iou}, {"detection", format.to_json()}, {"steps", request.steps},
                           {"seed", request.seed}, {"methods", nlohmann::json::object()}};
  std::ostringstream md;
  md << "# Detection evaluation\n\n" << files.size() << " images, " << boxes << " true boxes, " << found
     << " found by the detector (a detection of the class at IoU >= " << request.match_iou << ") and explained.\n\n"
     << "| method | pointing game | energy pointing game | deletion AUC | deletion AUC, random order |\n|---|---|---|---|---|\n";
  for (const auto& name : request.methods) {
    const Sums& s = sums[name];
    const double n = static_cast<double>(std::max<int64_t>(1, s.n));
    nlohmann::json mj = {{"boxes", s.n},
                         {"pointing_game", s.pg / n},
                         {"energy_pointing_game", s.epg_n ? nlohmann::json(s.epg / static_cast<double>(s.epg_n)) : nlohmann::json()},
                         {"deletion_auc", s.del / n},
                         {"deletion_auc_random", s.del_random / n}};
    report["methods"][name] = mj;
    md << "| " << name << " | " << fixed(s.pg / n) << " | " << (s.epg_n ? fixed(s.epg / static_cast<double>(s.epg_n)) : "-") << " | "
       << fixed(s.del / n, 4) << " | " << fixed(s.del_random / n, 4) << " |\n";
  }
  md << "\nPointing game and energy pointing game: higher is better; deletion AUC (the box's similarity as its most "
        "relevant pixels turn black): lower is better, and should beat the random order.\n";
  ensure_writable_dir(request.out_dir);
  write_file_atomic((fs::path(request.out_dir) / "report.md").string(), md.str());
  write_file_atomic((fs::path(request.out_dir) / "report.json").string(), report.dump(2) + "\n");
  return report;
}

}  // namespace salient
