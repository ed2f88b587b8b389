#include "salient/npy.hpp"

#include <cstring>
#include <regex>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"

namespace salient {

torch::Tensor read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  const std::string bad = "'" + path + "' is not a valid .npy file";
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw Error(bad + " (no NUMPY magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(bad + " (truncated header)");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    offset = 12;
  } else {
    throw Error(bad + " (unknown version " + std::to_string(major) + ")");
  }
  if (offset + header_len > bytes.size()) throw Error(bad + " (truncated header)");
  const std::string header = bytes.substr(offset, header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'"))) throw Error(bad + " (no descr)");
  const std::string descr = m[1];
  if (std::regex_search(header, std::regex("'fortran_order':\\s*True")))
    throw Error("'" + path + "' is in Fortran order; save it in C order (numpy.ascontiguousarray)");
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)"))) throw Error(bad + " (no shape)");
  std::vector<int64_t> shape;
  std::string dims = m[1];
  std::regex num("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
    shape.push_back(std::stoll(it->str()));
  torch::Dtype dtype;
  size_t item;
  if (descr == "<f4" || descr == "f4") { dtype = torch::kFloat; item = 4; }
  else if (descr == "<f8" || descr == "f8") { dtype = torch::kDouble; item = 8; }
  else throw Error("'" + path + "' holds " + descr + " values; Salient reads float32 (<f4) or float64 (<f8) arrays");
  size_t count = 1;
  for (auto d : shape) count *= static_cast<size_t>(d);
  const size_t data_off = offset + header_len;
  if (bytes.size() - data_off < count * item)
    throw Error(bad + " (truncated data: expected " + std::to_string(count * item) + " bytes, got " + std::to_string(bytes.size() - data_off) + ")");
  torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  std::memcpy(t.data_ptr(), bytes.data() + data_off, count * item);
  return t.to(torch::kFloat);
}

std::string encode_npy(const torch::Tensor& tensor) {
  torch::Tensor t = tensor.detach().to(torch::kCPU, torch::kFloat).contiguous();
  std::string shape = "(";
  for (int64_t i = 0; i < t.dim(); ++i) shape += (i ? ", " : "") + std::to_string(t.size(i));
  shape += t.dim() == 1 ? ",)" : ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so that the data starts on a 64-byte boundary, header ending in '\n'.
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += static_cast<char>(1);
  out += static_cast<char>(0);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), t.numel() * sizeof(float));
  return out;
}

void write_npy(const std::string& path, const torch::Tensor& tensor) { write_file_atomic(path, encode_npy(tensor)); }

}  // namespace salient
