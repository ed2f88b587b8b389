#pragma once
// The one exception type of Salient: a one-line message and whether the user is at fault.
#include <stdexcept>
#include <string>

namespace salient {

enum class ErrorKind {
  BadInput,  // bad usage, a bad file, a bad option: the CLI exits 2
  Internal,  // something Salient or LibTorch did not expect: the CLI exits 1
  Io         // the machine failed a write (disk full, I/O error): the CLI exits 3
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorKind kind = ErrorKind::BadInput)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Thrown from a progress callback to stop a method between chunks (a cancelled or timed-out job):
// the explain core lets it through rather than record it as the method's failure.
class Cancelled : public std::runtime_error {
 public:
  explicit Cancelled(const std::string& why = "cancelled") : std::runtime_error(why) {}
};

// The first line of an exception's message, without LibTorch's C++ stack trace.
std::string one_line(const std::exception& e);

}  // namespace salient
