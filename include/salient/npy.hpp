#pragma once
// NumPy .npy arrays (format 1.0/2.0/3.0, little-endian, C order): read floats, integers and
// booleans, write float32.
#include <string>

#include <torch/script.h>

namespace salient {

constexpr size_t kMaxNpyHeader = 1 << 20;  // bytes; numpy writes a few hundred
torch::Tensor read_npy_any(const std::string& path);    // in the file's dtype; throws salient::Error
torch::Tensor read_npy(const std::string& path);        // as float32; throws salient::Error
std::string encode_npy(const torch::Tensor& tensor);    // float32 bytes with header
void write_npy(const std::string& path, const torch::Tensor& tensor);  // atomic

}  // namespace salient
