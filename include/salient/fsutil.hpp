#pragma once
// Atomic file output: write to a temporary file in the same folder, then rename over the target.
#include <cstdint>
#include <string>
#include <vector>

namespace salient {

// Writes `bytes` to `path` atomically (temp + fsync-less rename). Throws salient::Error on failure
// and leaves no temporary file behind.
void write_file_atomic(const std::string& path, const std::string& bytes);
// Creates `dir` (and parents) and checks that a file can be created in it; throws a one-line
// salient::Error otherwise. Leaves nothing behind but the folders.
void ensure_writable_dir(const std::string& dir);
// The same for a folder Salient makes inside an output folder (an item's, summary/, maps/): one that
// is a symbolic link is refused (salient::Error), since writes would land wherever it points.
void ensure_inner_dir(const std::string& dir);
// Checks, creating nothing, that `dir` is a folder or can be made one: its nearest existing ancestor
// is a writable folder and nothing on the way is a file. Throws salient::Error otherwise.
void check_writable_dir(const std::string& dir);
// Removes temporary files (`.NAME.tmpPID-N`) that write_file_atomic left in `dir` when a process
// was killed mid-write; only those of processes that are no longer running.
void remove_stale_temporaries(const std::string& dir);

// An exclusive lock on an output folder (flock on DIR/.salient.lock, created with the folder), held
// for the object's life. Throws salient::Error naming the holder's pid when another run holds it.
class OutputLock {
 public:
  explicit OutputLock(const std::string& dir);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string dir_;
  bool created_ = false;  // this run made the folder: removed again if it stays empty
  int fd_ = -1;
};

// An append-only log: each append() is one write(2) of a whole line (O_APPEND), so a kill never
// leaves half a line behind a complete one; a failed or short write is an ErrorKind::Io error at once.
class AppendLog {
 public:
  explicit AppendLog(const std::string& path);
  ~AppendLog();
  AppendLog(const AppendLog&) = delete;
  AppendLog& operator=(const AppendLog&) = delete;
  void append(const std::string& line);

 private:
  std::string path_;
  int fd_ = -1;
};

// The complete lines of an append-only log (none when it does not exist). An unterminated last line
// (a kill mid-write) is cut from the file and named in `warnings`.
std::vector<std::string> read_log_lines(const std::string& path, std::vector<std::string>& warnings);

// A fingerprint of a file's bytes (or of a folder's file names and sizes), for resume signatures.
std::string fingerprint(const std::string& path);
// Reads a regular file of at most `max_bytes` (default kMaxFileBytes, 1 GiB); throws salient::Error
// when it is missing, not a regular file (a FIFO or /dev/zero would hang or never end), too large or
// unreadable.
constexpr uintmax_t kMaxFileBytes = uintmax_t{1} << 30;
std::string read_file(const std::string& path, uintmax_t max_bytes = kMaxFileBytes);

// While a NoFileAccess lives on a thread (a server parsing a request), every read of a file by
// name on that thread (read_file, folders, data sets) throws salient::Error instead: no path that
// came in a request is ever opened, whichever option or target carried it.
class NoFileAccess {
 public:
  NoFileAccess();
  ~NoFileAccess();
  NoFileAccess(const NoFileAccess&) = delete;
  NoFileAccess& operator=(const NoFileAccess&) = delete;

 private:
  bool saved_;
};
void check_file_access(const std::string& path);  // throws under a NoFileAccess
// Throws salient::Error unless `path` is an existing regular file (`what` names it: "model file").
void check_regular_file(const std::string& path, const std::string& what);

}  // namespace salient
