#include "salient/error.hpp"

#include <c10/util/Exception.h>

namespace salient {

std::string one_line(const std::exception& e) {
  std::string msg;
  if (auto* c10e = dynamic_cast<const c10::Error*>(&e)) {
    msg = c10e->what_without_backtrace();
  } else {
    msg = e.what();
  }
  // TorchScript interpreter errors carry a Python-like traceback: the cause follows the last
  // "Error: " prefix (RuntimeError, ValueError, ...).
  for (const char* tag : {"RuntimeError: ", "ValueError: ", "IndexError: ", "TypeError: "}) {
    if (auto p = msg.rfind(tag); p != std::string::npos) {
      msg = msg.substr(p + std::string(tag).size());
      break;
    }
  }
  // LibTorch messages can span lines (stack traces, "Exception raised from ..."): keep the first
  // non-empty line.
  size_t start = msg.find_first_not_of(" \n\t");
  if (start == std::string::npos) return "unknown error";
  size_t end = msg.find('\n', start);
  std::string line = msg.substr(start, end == std::string::npos ? std::string::npos : end - start);
  const std::string marker = " Exception raised from";
  if (auto p = line.find(marker); p != std::string::npos) line = line.substr(0, p);
  return line;
}

}  // namespace salient
