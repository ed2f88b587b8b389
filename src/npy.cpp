#include "salient/npy.hpp"

#include <cstring>
#include <cctype>
#include <map>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"

namespace salient {

namespace {

// The value of `key` in an .npy header dict ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
// as its raw text: up to the closing quote, the closing parenthesis, or the next comma. No regex:
// headers come from anyone, and std::regex recurses per character.
std::string header_field(const std::string& header, const std::string& key) {
  const std::string k = "'" + key + "'";
  size_t p = header.find(k);
  if (p == std::string::npos) return "";
  p = header.find(':', p + k.size());
  if (p == std::string::npos) return "";
  p = header.find_first_not_of(" \t", p + 1);
  if (p == std::string::npos) return "";
  const char open = header[p];
  if (open == '\'' || open == '"') {
    const size_t e = header.find(open, p + 1);
    return e == std::string::npos ? "" : header.substr(p + 1, e - p - 1);
  }
  if (open == '(') {
    const size_t e = header.find(')', p);
    return e == std::string::npos ? "" : header.substr(p, e - p + 1);
  }
  const size_t e = header.find_first_of(",}", p);
  return header.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

}  // namespace

NpyHeader parse_npy_header(const std::string& bytes, const std::string& path) {
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
  if (header_len > kMaxNpyHeader) throw Error(bad + " (a header of " + std::to_string(header_len) + " bytes)");
  if (offset + header_len > bytes.size()) throw Error(bad + " (truncated header)");
  const std::string header = bytes.substr(offset, header_len);
  const std::string descr = header_field(header, "descr");
  if (descr.empty()) throw Error(bad + " (no descr)");
  if (header_field(header, "fortran_order").rfind("True", 0) == 0)
    throw Error("'" + path + "' is in Fortran order; save it in C order (numpy.ascontiguousarray)");
  const std::string dims = header_field(header, "shape");
  if (dims.empty() || dims[0] != '(') throw Error(bad + " (no shape)");
  NpyHeader h;
  size_t count = 1;
  for (size_t i = 1; i < dims.size();) {
    if (!std::isdigit(static_cast<unsigned char>(dims[i]))) {
      ++i;
      continue;
    }
    uint64_t d = 0;
    for (; i < dims.size() && std::isdigit(static_cast<unsigned char>(dims[i])); ++i) {
      d = d * 10 + static_cast<uint64_t>(dims[i] - '0');
      if (d > (uint64_t{1} << 40)) throw Error(bad + " (a dimension is too large)");
    }
    if (d != 0 && count > (uint64_t{1} << 40) / d) throw Error(bad + " (the shape's size overflows)");
    count *= d;
    h.shape.push_back(static_cast<int64_t>(d));
  }
  // Little-endian (or byte-sized) floats, integers and booleans.
  static const std::map<std::string, std::pair<torch::Dtype, size_t>> types = {
      {"f4", {torch::kFloat, 4}}, {"f8", {torch::kDouble, 8}}, {"i1", {torch::kChar, 1}}, {"u1", {torch::kByte, 1}},
      {"i2", {torch::kShort, 2}}, {"i4", {torch::kInt, 4}},    {"i8", {torch::kLong, 8}}, {"b1", {torch::kBool, 1}}};
  std::string code = descr;
  if (!code.empty() && (code[0] == '<' || code[0] == '|' || code[0] == '=')) code = code.substr(1);
  auto type = types.find(code);
  if (type == types.end() || (descr[0] == '>' && type->second.second > 1))
    throw Error("'" + path + "' holds " + descr + " values; Salient reads little-endian float32/64, int8/16/32/64, "
                "uint8 and bool arrays");
  h.dtype = type->second.first;
  h.item = type->second.second;
  h.count = count;
  h.data_offset = offset + header_len;
  return h;
}

torch::Tensor read_npy_any(const std::string& path) { return decode_npy(read_file(path), path); }

torch::Tensor decode_npy(const std::string& bytes, const std::string& path) {
  const NpyHeader h = parse_npy_header(bytes, path);
  if (bytes.size() - h.data_offset < h.count * h.item)
    throw Error("'" + path + "' is not a valid .npy file (truncated data: expected " + std::to_string(h.count * h.item) +
                " bytes, got " + std::to_string(bytes.size() - h.data_offset) + ")");
  torch::Tensor t = torch::empty(h.shape, torch::TensorOptions().dtype(h.dtype));
  std::memcpy(t.data_ptr(), bytes.data() + h.data_offset, h.count * h.item);
  return t;
}

torch::Tensor read_npy(const std::string& path) { return read_npy_any(path).to(torch::kFloat); }

std::string encode_npy(const torch::Tensor& tensor) {
  // Labels (int32, int64) stay whole numbers; everything else is float32.
  const bool integer = tensor.scalar_type() == torch::kInt || tensor.scalar_type() == torch::kLong;
  torch::Tensor t = tensor.detach().to(torch::kCPU, integer ? tensor.scalar_type() : torch::kFloat).contiguous();
  std::string shape = "(";
  for (int64_t i = 0; i < t.dim(); ++i) shape += (i ? ", " : "") + std::to_string(t.size(i));
  shape += t.dim() == 1 ? ",)" : ")";
  const std::string descr = !integer ? "<f4" : t.scalar_type() == torch::kInt ? "<i4" : "<i8";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad so that the data starts on a 64-byte boundary, header ending in '\n'.
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += static_cast<char>(1);
  out += static_cast<char>(0);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

void write_npy(const std::string& path, const torch::Tensor& tensor) { write_file_atomic(path, encode_npy(tensor)); }

}  // namespace salient
