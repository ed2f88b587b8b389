#pragma once
// Model: a TorchScript module loaded through LibTorch, in eval mode, on one device.
#include <string>

#include <torch/script.h>

#include "salient/metadata.hpp"

namespace salient {

struct ModelOptions {
  std::string device = "cpu";  // any torch device string: "cpu", "cuda", "cuda:1"
  std::string output;          // which output to explain when the model returns a tuple/list/dict:
                               // an index ("0") or a dict key; empty = the first tensor
  std::string metadata_path;   // empty = `<model>.json` beside the model, when it exists
};

class Model {
 public:
  // Loads a traced or scripted TorchScript file. Throws salient::Error (bad input) when the file
  // is missing or is not TorchScript.
  explicit Model(const std::string& path, ModelOptions options = {});
  // Wraps a module built in C++ (tests, embedding applications). The module is put in eval mode.
  explicit Model(torch::jit::Module module, ModelOptions options = {}, ModelMetadata meta = {});

  // Runs the model on a batch [N, ...] and returns the explained output [N, K] (or [N] -> [N,1]).
  // Gradients flow when the input requires them.
  torch::Tensor forward(const torch::Tensor& batch);
  // The same, without autograd (inference mode): for predictions and forward-only methods.
  torch::Tensor predict(const torch::Tensor& batch);

  // The explained [N, K] tensor of a raw forward result (tuple/list/dict resolved per --output).
  torch::Tensor explained_output(const c10::IValue& out) const { return select_output(out); }

  const torch::Device& device() const { return device_; }
  const ModelMetadata& metadata() const { return meta_; }
  const std::string& path() const { return path_; }
  torch::jit::Module& module() { return module_; }
  int64_t parameter_count() const;
  // Casts the parameters (e.g. to kDouble for finite-difference checks).
  void to(torch::Dtype dtype);
  torch::Dtype dtype() const { return dtype_; }

 private:
  void prepare();
  torch::Tensor select_output(const c10::IValue& out) const;

  std::string path_;
  torch::jit::Module module_;
  ModelOptions options_;
  ModelMetadata meta_;
  torch::Device device_{torch::kCPU};
  torch::Dtype dtype_ = torch::kFloat;
};

// Sets LibTorch's intra-op thread count; n <= 0 means every core (LibTorch's own default is half).
void set_threads(int n);

}  // namespace salient
