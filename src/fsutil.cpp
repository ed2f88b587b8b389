#include "salient/fsutil.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "salient/error.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {
std::string temp_name(const fs::path& target) {
  static std::mt19937_64 rng{std::random_device{}()};
  return (target.parent_path() / ("." + target.filename().string() + ".tmp" + std::to_string(::getpid()) + "-" +
                                  std::to_string(rng() % 1000000)))
      .string();
}
}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  fs::path target(path);
  std::string tmp = temp_name(target);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot write '" + path + "': " + std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error("cannot write '" + path + "' (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error("cannot write '" + path + "': " + ec.message());
  }
}

void ensure_writable_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw Error("output path '" + dir + "' exists and is not a folder");
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create output folder '" + dir + "': " + ec.message());
  std::string probe = temp_name(fs::path(dir) / "probe");
  {
    std::ofstream out(probe);
    if (!out) throw Error("output folder '" + dir + "' is not writable");
  }
  std::remove(probe.c_str());
}

std::string read_file(const std::string& path) {
  if (!fs::exists(path)) throw Error("file '" + path + "' does not exist");
  if (fs::is_directory(path)) throw Error("'" + path + "' is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace salient
