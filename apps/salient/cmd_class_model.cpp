// salient class-model: the input that maximises each class's score (a global explanation).
#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "commands.hpp"
#include "salient/class_model.hpp"
#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/npy.hpp"
#include "salient/target.hpp"

namespace salient::cli {

void add_class_model(CLI::App& app) {
  auto* cmd = app.add_subcommand("class-model", "the input that maximises each class's score (Simonyan et al. 2014, section 2)");
  struct Flags {
    ModelFlags model;
    std::string target = "all", out;
    ClassModelOptions o;
  };
  auto f = std::make_shared<Flags>();
  f->model.add_to(cmd);
  cmd->add_option("--target,-t", f->target, "all, or comma-separated class indices or labels")->capture_default_str();
  cmd->add_option("--out,-o", f->out, "output folder: class<k>.npy, class<k>.png, class-model.png, class-model.json")->required();
  cmd->add_option("--steps", f->o.steps, "gradient ascent steps")->capture_default_str();
  cmd->add_option("--step-size", f->o.step_size, "mean change per step, as a fraction of the input range")->capture_default_str();
  cmd->add_option("--decay", f->o.decay, "L2 decay per step")->capture_default_str();
  cmd->add_option("--jitter", f->o.jitter, "random shift in pixels before each step")->capture_default_str();
  cmd->add_option("--blur", f->o.blur, "Gaussian blur sigma in pixels (0: none)")->capture_default_str();
  cmd->add_option("--blur-every", f->o.blur_every, "blur every this many steps")->capture_default_str();
  cmd->add_option("--seed", f->o.seed, "random seed of the jitter")->capture_default_str();
  cmd->callback([=] {
    Model model = f->model.load_not_text("class-model");
    const ModelMetadata& meta = model.metadata();
    if (meta.input_shape.empty()) throw Error("class-model needs the model's input_shape (metadata)");
    std::vector<int64_t> shape = meta.input_shape;
    shape.insert(shape.begin(), 1);
    const int64_t classes = model.predict(torch::zeros(shape)).size(1);
    std::vector<int64_t> targets;
    if (f->target == "all") {
      for (int64_t k = 0; k < classes; ++k) targets.push_back(k);
    } else {
      for (const auto& t : split_list(f->target)) {
        const Target parsed = Target::parse(t, meta);
        if (parsed.kind() != Target::Kind::Index) throw Error("--target of class-model: all, class indices or labels, got '" + t + "'");
        const int64_t c = parsed.resolve(torch::zeros({1, classes}))[0][0];
        // A class named twice (by index and label, or 10,000 times) is one class model.
        if (std::find(targets.begin(), targets.end(), c) == targets.end()) targets.push_back(c);
      }
    }
    check_writable_dir(f->out);
    OutputLock lock(f->out);
    namespace fs = std::filesystem;
    nlohmann::json report = nlohmann::json::array();
    std::vector<cv::Mat> panels;
    std::vector<std::string> captions;
    const std::vector<ClassModel> models = class_models(model, targets, f->o);
    for (size_t i = 0; i < targets.size(); ++i) {
      const int64_t c = targets[i];
      const ClassModel& cm = models[i];
      const std::string base = "class" + std::to_string(c);
      write_npy((fs::path(f->out) / (base + ".npy")).string(), cm.input);
      nlohmann::json j{{"class", c}, {"label", meta.label(c)}, {"score", cm.score}, {"start_score", cm.start_score},
                       {"probability", cm.probability}, {"predicted", cm.top_class}, {"npy", base + ".npy"}};
      if (is_image_like(cm.input)) {
        const cv::Mat picture = upscale_for_display(tensor_to_display(cm.input, meta), 112);
        write_png((fs::path(f->out) / (base + ".png")).string(), picture);
        j["png"] = base + ".png";
        panels.push_back(picture);
        captions.push_back(meta.label(c));
      }
      report.push_back(j);
      std::cout << meta.label(c) << ": score " << std::fixed << std::setprecision(2) << cm.start_score << " -> " << cm.score
                << ", p " << std::setprecision(3) << cm.probability << (cm.top_class == c ? "" : " (predicted " + meta.label(cm.top_class) + ")")
                << "\n";
    }
    if (!panels.empty()) write_png((fs::path(f->out) / "class-model.png").string(), make_grid(panels, captions, "class models: " + model.path()));
    write_file_atomic((fs::path(f->out) / "class-model.json").string(),
                      nlohmann::json{{"model", model.path()}, {"options", {{"steps", f->o.steps}, {"step_size", f->o.step_size},
                                     {"decay", f->o.decay}, {"jitter", f->o.jitter}, {"blur", f->o.blur},
                                     {"blur_every", f->o.blur_every}, {"seed", f->o.seed}}}, {"classes", report}}.dump(2) + "\n");
  });
}

}  // namespace salient::cli
