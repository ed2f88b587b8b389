// salient methods: every registered method with its place in the taxonomy and its options.
#include <iostream>

#include "commands.hpp"
#include "salient/registry.hpp"

namespace salient::cli {

void add_methods(CLI::App& app) {
  auto* cmd = app.add_subcommand("methods", "list the attribution methods, their family and options");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "print JSON");
  cmd->callback([json] {
    const Registry& reg = Registry::builtin();
    if (*json) {
      nlohmann::json all = nlohmann::json::array();
      for (const auto& n : reg.names()) all.push_back(reg.info(n).to_json());
      std::cout << all.dump(2) << "\n";
      return;
    }
    for (const auto& n : reg.names()) {
      const MethodInfo& m = reg.info(n);
      std::cout << m.name << "  (" << m.title << ")\n"
                << "  family: " << to_string(m.family) << "; " << to_string(m.scope) << ", " << to_string(m.access)
                << ", " << to_string(m.stage) << ", " << to_string(m.specificity)
                << (m.needs_gradients ? "; needs gradients" : "; forward passes only") << "\n"
                << "  " << m.summary << "\n"
                << "  paper: " << m.paper << "\n";
      if (!m.options.empty()) std::cout << "  options (`--option NAME=VALUE`; common ones also have a flag, see `explain --help`):\n";
      for (const auto& o : m.options) {
        std::cout << "    " << o.name << " (" << o.type << ", default " << o.default_value.dump() << ")";
        if (!o.choices.empty()) {
          std::cout << " {";
          for (size_t i = 0; i < o.choices.size(); ++i) std::cout << (i ? "," : "") << o.choices[i];
          std::cout << "}";
        }
        std::cout << ": " << o.help << "\n";
      }
      std::cout << "\n";
    }
  });
}

}  // namespace salient::cli
