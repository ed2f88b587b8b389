#pragma once
// The ONNX back end: forward passes through OpenCV's DNN module (no gradients).
#include <memory>
#include <string>

#include <torch/script.h>

namespace salient {

struct OnnxNet;
// Reads an ONNX file; throws salient::Error when OpenCV cannot load it.
std::shared_ptr<OnnxNet> load_onnx(const std::string& path);
// One forward pass of a float32 CPU batch [N, ...]; returns the first output.
torch::Tensor onnx_forward(OnnxNet& net, const torch::Tensor& batch);

}  // namespace salient
