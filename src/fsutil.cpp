#include "salient/fsutil.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

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
      throw Error("cannot write '" + path + "' (disk full?)", ErrorKind::Io);
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error("cannot write '" + path + "': " + ec.message(), ErrorKind::Io);
  }
}

void check_writable_dir(const std::string& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  if (ec) throw Error("output folder '" + dir + "': " + ec.message());
  for (const auto& part : p)
    if (part.string().size() > 255) throw Error("output folder '" + dir + "': a path component is longer than 255 characters");
  for (fs::path q = p;; q = q.parent_path()) {
    if (fs::exists(q, ec)) {
      if (!fs::is_directory(q, ec))
        throw Error(q == p ? "output path '" + dir + "' exists and is not a folder"
                           : "cannot create output folder '" + dir + "': '" + q.string() + "' is a file");
      if (::access(q.c_str(), W_OK | X_OK) != 0) throw Error("output folder '" + dir + "' is not writable");
      return;
    }
    if (q == q.parent_path()) return;
  }
}

void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const size_t t = name.rfind(".tmp");
    if (name.empty() || name[0] != '.' || t == std::string::npos) continue;
    const size_t dash = name.find('-', t);
    if (dash == std::string::npos) continue;
    const std::string pid = name.substr(t + 4, dash - t - 4);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) continue;
    const pid_t owner = static_cast<pid_t>(std::stol(pid));
    if (owner == ::getpid() || (::kill(owner, 0) == 0 || errno == EPERM)) continue;  // still running
    fs::remove(e.path(), ec);
  }
}

OutputLock::OutputLock(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  created_ = !fs::exists(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create output folder '" + dir + "': " + ec.message());
  const std::string path = (fs::path(dir) / ".salient.lock").string();
  // O_NOFOLLOW: a .salient.lock that is a link (to a file of the user's) is never truncated through.
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
  if (fd_ < 0 && errno == ELOOP) throw Error("'" + path + "' is a symbolic link: refused (writes would land where it points)");
  if (fd_ < 0) throw Error("cannot lock output folder '" + dir + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw Error("'" + path + "' is a pipe or a socket: refused");
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    const ssize_t got = ::pread(fd_, buf, sizeof(buf) - 1, 0);
    ::close(fd_);
    fd_ = -1;
    throw Error("another salient run is writing to '" + dir + "'" +
                (got > 0 ? " (pid " + std::string(buf, static_cast<size_t>(got)) + ")" : std::string()) +
                ": wait for it, or choose another --out");
  }
  const std::string me = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, me.data(), me.size(), 0);
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  // A folder this run created and left empty (it failed before writing) goes again.
  std::error_code ec;
  const fs::path lock = fs::path(dir_) / ".salient.lock";
  bool empty = created_;
  if (empty)
    for (const auto& e : fs::directory_iterator(dir_, ec))
      if (e.path() != lock) empty = false;
  if (empty) {
    fs::remove(lock, ec);
    fs::remove(dir_, ec);
  }
  ::close(fd_);  // closing releases the flock
}

AppendLog::AppendLog(const std::string& path) : path_(path) {
  // Never through a link (a manifest.jsonl linked to a file of the user's), never a FIFO (the open
  // would block for ever): refused by name.
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
  if (fd_ < 0 && errno == ELOOP) throw Error("'" + path + "' is a symbolic link: refused (writes would land where it points)");
  if (fd_ < 0 && errno == ENXIO) throw Error("'" + path + "' is a pipe or a socket: refused");
  if (fd_ < 0) throw Error("cannot open '" + path + "' for appending: " + std::strerror(errno), ErrorKind::Io);
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw Error("'" + path + "' is a pipe or a socket: refused");
  }
}

AppendLog::~AppendLog() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendLog::append(const std::string& line) {
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    const std::string why = n < 0 ? std::strerror(errno) : "a short write (disk full?)";
    if (n > 0) (void)!::ftruncate(fd_, ::lseek(fd_, 0, SEEK_END) - n);  // no half line behind
    throw Error("cannot append to '" + path_ + "': " + why, ErrorKind::Io);
  }
}

std::vector<std::string> read_log_lines(const std::string& path, std::vector<std::string>& warnings) {
  std::error_code ec;
  if (fs::is_symlink(fs::symlink_status(path, ec)))  // its repair would cut the file it points to
    throw Error("'" + path + "' is a symbolic link: refused (writes would land where it points)");
  if (!fs::is_regular_file(path, ec)) return {};
  std::string text = read_file(path);
  // A kill between a line's bytes leaves an unterminated last line: it is dropped (and cut from
  // the file, so that the next line appended does not fuse with it).
  if (!text.empty() && text.back() != '\n') {
    const size_t keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    text.resize(keep);
    fs::resize_file(path, keep, ec);
    if (ec) throw Error("cannot repair '" + path + "': " + ec.message(), ErrorKind::Io);
    warnings.push_back("dropped an unterminated last line of " + fs::path(path).filename().string() + " (an interrupted write)");
  }
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string fingerprint(const std::string& path) {
  // FNV-1a over the bytes (files) or the sorted names and sizes (folders).
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const char* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint8_t>(p[i])) * 1099511628211ULL;
  };
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> entries;
    for (const auto& e : fs::recursive_directory_iterator(path, ec))
      if (e.is_regular_file(ec)) entries.push_back(fs::relative(e.path(), path, ec).string() + ":" + std::to_string(e.file_size(ec)));
    std::sort(entries.begin(), entries.end());
    for (const auto& e : entries) mix(e.data(), e.size() + 1);
  } else {
    std::ifstream in(path, std::ios::binary);
    char buf[1 << 16];
    while (in.read(buf, sizeof(buf)) || in.gcount() > 0) mix(buf, static_cast<size_t>(in.gcount()));
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(h));
  return out;
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

void ensure_inner_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::is_symlink(fs::symlink_status(dir, ec)))
    throw Error("'" + dir + "' is a symbolic link inside the output folder: refused (writes would land where it points)");
  ensure_writable_dir(dir);
}

void check_regular_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw Error(what + " '" + path + "' does not exist");
  if (fs::is_directory(st)) throw Error("'" + path + "' is a folder, not a file");
  // A FIFO, a device (/dev/zero) or a socket would hang or never end: only regular files are read.
  if (!fs::is_regular_file(st)) throw Error(what + " '" + path + "' is not a regular file (a pipe or a device?)");
}

namespace {
thread_local bool t_no_files = false;
}

NoFileAccess::NoFileAccess() : saved_(t_no_files) { t_no_files = true; }
NoFileAccess::~NoFileAccess() { t_no_files = saved_; }

void check_file_access(const std::string& path) {
  if (t_no_files)
    throw Error("'" + path + "' looks like a file path, and this server opens no file named in a request "
                "(send arrays or images in the request instead)");
}

std::string read_file(const std::string& path, uintmax_t max_bytes) {
  check_file_access(path);
  check_regular_file(path, "file");
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) throw Error("cannot read '" + path + "': " + ec.message());
  if (size > max_bytes)
    throw Error("'" + path + "' is " + std::to_string(size) + " bytes, more than the cap of " + std::to_string(max_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read '" + path + "'");
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  bytes.resize(static_cast<size_t>(in.gcount()));
  return bytes;
}

}  // namespace salient
