#include "salient/idx.hpp"

#include <zlib.h>

#include <cstring>

#include "salient/error.hpp"
#include "salient/fsutil.hpp"

namespace salient {

namespace {
std::string gunzip(const std::string& in, const std::string& path) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) throw Error("cannot decompress '" + path + "'");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[1 << 16];
  int ret;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    ret = inflate(&zs, Z_NO_FLUSH);
    if (ret != Z_OK && ret != Z_STREAM_END) {
      inflateEnd(&zs);
      throw Error("'" + path + "' is a corrupt gzip file");
    }
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (out.size() > kMaxFileBytes) {  // a gzip bomb: refused before it fills memory
      inflateEnd(&zs);
      throw Error("'" + path + "' decompresses to more than " + std::to_string(kMaxFileBytes) + " bytes");
    }
  } while (ret != Z_STREAM_END);
  inflateEnd(&zs);
  return out;
}
}  // namespace

torch::Tensor read_idx(const std::string& path) {
  std::string bytes = read_file(path);
  if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f && static_cast<unsigned char>(bytes[1]) == 0x8b)
    bytes = gunzip(bytes, path);
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0 || static_cast<unsigned char>(bytes[2]) != 0x08)
    throw Error("'" + path + "' is not an unsigned-byte IDX file");
  const int ndim = static_cast<unsigned char>(bytes[3]);
  if (bytes.size() < 4 + 4 * static_cast<size_t>(ndim)) throw Error("'" + path + "' has a truncated IDX header");
  std::vector<int64_t> shape;
  size_t count = 1;
  for (int i = 0; i < ndim; ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + 4 + 4 * i);
    int64_t d = (int64_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    shape.push_back(d);
    count *= static_cast<size_t>(d);
  }
  const size_t off = 4 + 4 * static_cast<size_t>(ndim);
  if (bytes.size() - off < count) throw Error("'" + path + "' is truncated");
  torch::Tensor t = torch::empty(shape, torch::kUInt8);
  std::memcpy(t.data_ptr(), bytes.data() + off, count);
  return t;
}

}  // namespace salient
