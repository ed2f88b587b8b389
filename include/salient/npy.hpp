#pragma once
// NumPy .npy arrays (format 1.0/2.0, little-endian, C order): read float32/float64, write float32.
#include <string>

#include <torch/script.h>

namespace salient {

torch::Tensor read_npy(const std::string& path);        // as float32; throws salient::Error
std::string encode_npy(const torch::Tensor& tensor);    // float32 bytes with header
void write_npy(const std::string& path, const torch::Tensor& tensor);  // atomic

}  // namespace salient
