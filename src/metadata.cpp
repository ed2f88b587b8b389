#include "salient/metadata.hpp"
#include "salient/json.hpp"

#include <filesystem>
#include <cmath>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/detection_format.hpp"
#include "salient/text.hpp"

namespace salient {

namespace fs = std::filesystem;

ModelMetadata ModelMetadata::load(const std::string& path) {
  const std::string text = read_file(path, 64 << 20);
  const nlohmann::json j = parse_json(text);
  if (j.is_discarded())
    throw Error("model metadata '" + path + "' is not valid JSON (or is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels)");
  ModelMetadata m;
  m.present = true;
  try {
    m.name = j.value("name", fs::path(path).stem().string());
    if (j.contains("labels") && j.at("labels").is_object())  // per output of a dict/tuple model
      m.output_labels = j.at("labels").get<std::map<std::string, std::vector<std::string>>>();
    else if (j.contains("labels")) m.labels = j.at("labels").get<std::vector<std::string>>();
    if (j.contains("input_shape")) m.input_shape = j.at("input_shape").get<std::vector<int64_t>>();
    m.channel_order = j.value("channel_order", std::string("RGB"));
    if (j.contains("value_range")) {
      auto r = j.at("value_range").get<std::vector<double>>();
      if (r.size() != 2 || !(r[1] > r[0])) throw Error("model metadata '" + path + "': value_range must be [lo, hi] with hi > lo");
      m.range_lo = r[0];
      m.range_hi = r[1];
      m.range_stated = true;
    }
    if (j.contains("mean")) m.mean = j.at("mean").get<std::vector<double>>();
    if (j.contains("std")) m.std = j.at("std").get<std::vector<double>>();
    m.output_stated = j.contains("output");
    m.output = j.value("output", std::string("logits"));
    if (j.contains("explained_output"))
      m.explained_output = j.at("explained_output").is_number_unsigned() ? std::to_string(j.at("explained_output").get<uint64_t>())
                                                                          : j.at("explained_output").get<std::string>();
    m.multi_label = j.value("multi_label", false);
    m.modality = j.value("modality", std::string());
    m.id_column = j.value("id_column", std::string());
    m.label_column = j.value("label_column", std::string());
    if (j.contains("tokenizer")) {  // checked here, so a bad tokenizer is the metadata's error, at load
      const std::string dir = fs::absolute(fs::path(path)).parent_path().string();
      const TokenizerConfig t = TokenizerConfig::from_json(j.at("tokenizer"), dir, "model metadata '" + path + "'");
      nlohmann::json tok = j.at("tokenizer");
      tok["vocab"] = t.vocab;
      m.tokenizer = tok.dump();
    }
    if (j.contains("detection")) {  // checked here, so a bad layout is the metadata's error, at load
      DetectionFormat::from_json(j.at("detection"), "model metadata '" + path + "'");
      m.detection = j.at("detection").dump();
    }
    if (j.contains("features"))
      for (const auto& f : j.at("features")) {
        Feature feature;
        feature.name = f.at("name").get<std::string>();
        feature.type = f.value("type", std::string("numeric"));
        if (feature.type == "numeric") {
          feature.mean = f.value("mean", 0.0);
          feature.std = f.value("std", 1.0);
          if (!std::isfinite(feature.mean) || !(feature.std > 0) || !std::isfinite(feature.std))
            throw Error("model metadata '" + path + "': feature '" + feature.name + "' needs a finite mean and a std > 0");
        } else if (feature.type == "categorical") {
          feature.values = f.at("values").get<std::vector<std::string>>();
          if (feature.values.empty()) throw Error("model metadata '" + path + "': categorical feature '" + feature.name + "' has no values");
        } else {
          throw Error("model metadata '" + path + "': feature '" + feature.name + "' has type '" + feature.type +
                      "'; numeric or categorical");
        }
        m.features.push_back(std::move(feature));
      }
  } catch (const nlohmann::json::exception& e) {
    throw Error("model metadata '" + path + "' has a field of the wrong type");
  }
  if (m.channel_order != "RGB" && m.channel_order != "BGR" && m.channel_order != "L")
    throw Error("model metadata '" + path + "': channel_order must be RGB, BGR or L, got '" + m.channel_order + "'");
  if (m.output != "logits" && m.output != "probabilities" && m.output != "regression")
    throw Error("model metadata '" + path + "': output must be logits, probabilities or regression, got '" + m.output + "'");
  for (double s : m.std)
    if (!(s > 0) || !std::isfinite(s)) throw Error("model metadata '" + path + "': std values must be finite and > 0");
  for (double v : m.mean)
    if (!std::isfinite(v)) throw Error("model metadata '" + path + "': mean values must be finite");
  int64_t numel = 1;
  for (int64_t d : m.input_shape) {
    if (d <= 0 || d > (1 << 20)) throw Error("model metadata '" + path + "': input_shape values must be between 1 and 1048576");
    numel *= d;
    if (numel > (int64_t{1} << 31)) throw Error("model metadata '" + path + "': input_shape is too large");
  }
  if (!m.features.empty() && !m.input_shape.empty()) {
    int64_t width = 0;
    for (const auto& f : m.features) width += f.width();
    if (width != numel)
      throw Error("model metadata '" + path + "': its features encode to " + std::to_string(width) +
                  " values (one-hot groups counted), input_shape holds " + std::to_string(numel));
  }
  return m;
}

ModelMetadata ModelMetadata::for_model(const std::string& model_path) {
  fs::path p(model_path);
  fs::path side = p;
  side.replace_extension(".json");
  if (fs::exists(side)) return load(side.string());
  ModelMetadata m;
  m.name = p.stem().string();
  return m;
}

void ModelMetadata::select_output(const std::string& output) {
  if (output_labels.empty()) return;
  auto it = output_labels.find(output);
  if (it == output_labels.end() && output.empty() && output_labels.size() == 1) it = output_labels.begin();
  labels = it == output_labels.end() ? std::vector<std::string>{} : it->second;
}

std::string ModelMetadata::label(int64_t index) const {
  if (index >= 0 && index < static_cast<int64_t>(labels.size())) return labels[index];
  return std::to_string(index);
}

nlohmann::json ModelMetadata::to_json() const {
  nlohmann::json j;
  j["present"] = present;
  j["name"] = name;
  j["labels"] = labels;
  j["input_shape"] = input_shape;
  j["channel_order"] = channel_order;
  j["value_range"] = {range_lo, range_hi};
  j["mean"] = mean;
  j["std"] = std;
  j["output"] = output;
  if (!explained_output.empty()) j["explained_output"] = explained_output;
  j["multi_label"] = multi_label;
  if (!modality.empty()) j["modality"] = modality;
  if (!tokenizer.empty()) j["tokenizer"] = nlohmann::json::parse(tokenizer);
  if (!detection.empty()) j["detection"] = nlohmann::json::parse(detection);
  if (!features.empty()) {
    j["features"] = nlohmann::json::array();
    for (const auto& f : features) {
      nlohmann::json one = {{"name", f.name}, {"type", f.type}};
      if (f.type == "categorical") one["values"] = f.values;
      else one.update({{"mean", f.mean}, {"std", f.std}});
      j["features"].push_back(one);
    }
  }
  if (!id_column.empty()) j["id_column"] = id_column;
  if (!label_column.empty()) j["label_column"] = label_column;
  return j;
}

}  // namespace salient
