// salient layers: the module tree with each module's type and output shape on a sample input.
#include <iomanip>
#include <iostream>

#include "commands.hpp"
#include "salient/error.hpp"
#include "salient/layers.hpp"

namespace salient::cli {

void add_layers(CLI::App& app) {
  auto* cmd = app.add_subcommand("layers", "list the model's layers (module paths for --layer) with output shapes");
  auto flags = std::make_shared<ModelFlags>();
  auto shape = std::make_shared<std::vector<int64_t>>();
  auto json = std::make_shared<bool>(false);
  flags->add_to(cmd);
  cmd->add_option("--input-shape", *shape, "shape of one input, e.g. 3,224,224 (default: from the metadata)")->delimiter(',');
  cmd->add_flag("--json", *json, "print JSON");
  cmd->callback([flags, shape, json] {
    Model model = flags->load();
    torch::Tensor sample = sample_input(model, *shape);
    auto layers = list_layers(model, sample);
    if (*json) {
      nlohmann::json all = nlohmann::json::array();
      for (const auto& l : layers) {
        nlohmann::json j{{"path", l.path}, {"type", l.type}, {"output_shape", l.shape}};
        if (!l.note.empty()) j["note"] = l.note;
        all.push_back(j);
      }
      std::cout << all.dump(2) << "\n";
      return;
    }
    size_t width = 4, type_width = 18;  // columns as wide as their longest entry (long type names stay aligned)
    for (const auto& l : layers) width = std::max(width, l.path.size());
    for (const auto& l : layers) type_width = std::max(type_width, l.type.size());
    for (const auto& l : layers) {
      std::cout << std::left << std::setw(static_cast<int>(width) + 2) << l.path << std::setw(static_cast<int>(type_width) + 2) << l.type;
      if (!l.shape.empty()) std::cout << nlohmann::json(l.shape).dump();
      else std::cout << "(" << l.note << ")";
      std::cout << "\n";
    }
  });
}

}  // namespace salient::cli
