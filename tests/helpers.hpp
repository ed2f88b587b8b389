#pragma once
// Shared test fixtures: paths, small TorchScript models built in C++, running the CLI.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <torch/script.h>

#include "salient/model.hpp"

namespace salient::test {

inline std::string source_dir() { return SALIENT_SOURCE_DIR; }
inline std::string demo_model() { return source_dir() + "/models/fashion_cnn.pt"; }
inline std::string sample(const std::string& name) { return source_dir() + "/models/samples/" + name; }
inline std::string first_sample() { return sample("7-sneaker.png"); }

// A fresh empty folder under the system temp folder, removed by the destructor.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("salient-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// f(x) = x.flatten(1) @ W^T + b as a TorchScript module built in C++ (no Python).
inline torch::jit::Module linear_module(const torch::Tensor& weight, const torch::Tensor& bias) {
  torch::jit::Module m("LinearModel");
  m.register_parameter("weight", weight.clone(), false);
  m.register_parameter("bias", bias.clone(), false);
  m.define(R"(
    def forward(self, x):
        return torch.matmul(x.flatten(1), self.weight.t()) + self.bias
  )");
  return m;
}

struct RunResult {
  int code = -1;
  std::string out, err;
};

// Runs the salient CLI with `args` (shell-quoted by the caller), capturing both streams.
inline RunResult run_cli(const std::string& args) {
  TempDir io;
  std::string cmd = std::string(SALIENT_CLI) + " " + args + " >" + (io / "out") + " 2>" + (io / "err") + " </dev/null";
  RunResult r;
  int status = std::system(cmd.c_str());
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  r.out = slurp(io / "out");
  r.err = slurp(io / "err");
  return r;
}

inline std::string quoted(const std::string& s) { return "'" + s + "'"; }

// Regular files under `dir` (0 when it does not exist).
inline int count_files(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return 0;
  int n = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

}  // namespace salient::test
