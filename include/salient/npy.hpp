#pragma once
// NumPy .npy arrays (format 1.0/2.0/3.0, little-endian, C order): read floats, integers and
// booleans, write float32.
#include <string>
#include <vector>

#include <torch/script.h>

namespace salient {

constexpr size_t kMaxNpyHeader = 1 << 20;  // bytes; numpy writes a few hundred
// What an .npy header says: element type and size, shape, element count, where the data starts.
// `bytes` holds at least the header (the first 12 + kMaxNpyHeader bytes, or the whole file).
struct NpyHeader {
  torch::Dtype dtype = torch::kFloat;
  size_t item = 4, count = 0, data_offset = 0;
  std::vector<int64_t> shape;
};
NpyHeader parse_npy_header(const std::string& bytes, const std::string& path);  // throws salient::Error
torch::Tensor read_npy_any(const std::string& path);    // in the file's dtype; throws salient::Error
torch::Tensor read_npy(const std::string& path);        // as float32; throws salient::Error
torch::Tensor decode_npy(const std::string& bytes, const std::string& name);  // an .npy file's bytes, in its dtype
std::string encode_npy(const torch::Tensor& tensor);    // float32 bytes with header (int32/int64 kept)
void write_npy(const std::string& path, const torch::Tensor& tensor);  // atomic

}  // namespace salient
