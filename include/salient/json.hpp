#pragma once
// Untrusted JSON (requests, manifests, logs, run records, metadata, option values) read with a
// bound on its nesting. nlohmann::json parses iteratively, but dumping, copying and comparing a
// value recurse once per level: a 292 KB body nested 150,000 deep parsed fine and then crashed the
// server (SIGSEGV) on its first dump. Deeper than the bound is refused as invalid JSON is.
#include <string_view>

#include <nlohmann/json.hpp>

namespace salient {

// No file Salient reads or writes nests deeper than a few levels; 64 leaves room for any real one.
constexpr int kMaxJsonDepth = 64;

// The deepest nesting of arrays and objects in `text` (strings and their escapes skipped), counted
// without parsing; stops counting once past `stop_at`.
int json_depth(std::string_view text, int stop_at = kMaxJsonDepth + 1);

// nlohmann::json::parse(text, nullptr, false) for text nested at most `max_depth` deep: anything
// deeper, or invalid, is a discarded value (is_discarded()).
nlohmann::json parse_json(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace salient
