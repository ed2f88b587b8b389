#pragma once
// Atomic file output: write to a temporary file in the same folder, then rename over the target.
#include <string>

namespace salient {

// Writes `bytes` to `path` atomically (temp + fsync-less rename). Throws salient::Error on failure
// and leaves no temporary file behind.
void write_file_atomic(const std::string& path, const std::string& bytes);
// Creates `dir` (and parents) and checks that a file can be created in it; throws a one-line
// salient::Error otherwise. Leaves nothing behind but the folders.
void ensure_writable_dir(const std::string& dir);
std::string read_file(const std::string& path);  // throws salient::Error when unreadable

}  // namespace salient
