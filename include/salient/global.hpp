#pragma once
// Global explanations of a tabular model over its data (`salient global`): each method's mean
// |attribution| per column, permutation feature importance (Breiman 2001; Fisher, Rudin & Dominici
// 2019) and partial dependence with ICE curves (Friedman 2001; Goldstein et al. 2015).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "salient/model.hpp"

namespace salient {

struct GlobalRequest {
  std::string data;                                   // a CSV (the metadata's features name its columns)
  std::string out_dir;                                // report.json, report.md and the PNGs
  std::vector<std::string> methods{"integrated-gradients"};
  nlohmann::json method_options = nlohmann::json::object();
  std::vector<std::string> features;                  // partial dependence (default: the 3 most important)
  int64_t klass = -1;                                 // the class explained (-1: 1 of a binary model, else 0)
  int repeats = 5;                                    // shuffles per column
  int grid = 20;                                      // partial dependence points of a numeric column
  uint64_t seed = 0;
};

// Computes and writes the report (atomically, file by file); returns report.json's content.
nlohmann::json global_report(Model& model, const GlobalRequest& request);

}  // namespace salient
