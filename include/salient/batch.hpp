#pragma once
// `salient batch`: a data set streamed through the explain core into a resumable, shardable output
// folder (manifest.jsonl + maps as files or stacked arrays + class summaries), and `salient merge`.
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "salient/explain.hpp"

namespace salient {

struct BatchRequest {
  ExplainRequest explain;        // methods, options, target, render; explain.out_dir is DIR
  std::string data;              // folder, list file, .npy stack, IDX file (see Dataset::open)
  std::string labels;            // IDX label file (default: the images file's sibling)
  Resize resize = Resize::None;
  int64_t limit = -1;            // the first N items of the data set (before sharding)
  int64_t shard = 0, shards = 1; // this run is shard `shard` of `shards` (writes DIR/shard-K-of-N/)
  bool sharded = false;
  std::string format = "files";  // files: DIR/<stem>/ per input; stack: DIR/maps/<method>/part-NNNNN.npy
  bool png = true;               // heatmaps and grids (files format)
  bool summary = false;          // DIR/summary/: per-class means and atlas
  int64_t part_rows = 1024;      // rows of a stack part
  int64_t chunk = 64;            // inputs decoded and explained at a time (memory bound)
};

struct BatchProgress {
  int64_t done = 0, total = 0, resumed = 0, failed = 0;
  double seconds = 0;  // since this run started
};

struct BatchReport {
  std::string dir;                  // where this run wrote (DIR or DIR/shard-K-of-N)
  int64_t total = 0, resumed = 0, explained = 0, failed = 0;
  std::vector<std::string> errors;  // the first few inputs' errors ("id: message")
  std::vector<std::string> warnings;
  double seconds = 0;
};

// The shard (K, N) from the request or, when it names none, the scheduler's environment:
// SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (or `shards`), or JOB_COMPLETION_INDEX with
// `shards`. Returns false when neither says anything (one unsharded run). Throws salient::Error for
// an inconsistent pair.
bool resolve_shard(int64_t& k, int64_t& n, bool given, int64_t shards_flag);

// Checks the request (format, data, output folder, options) and runs it. A rerun skips the ids the
// manifest already lists: after a kill at any moment, every manifest line points at complete files.
BatchReport run_batch(Model& model, const BatchRequest& request, MethodList methods,
                      const std::function<void(const BatchProgress&)>& progress = {});

struct MergeReport {
  int64_t shards = 0, lines = 0, missing = 0, duplicated = 0;
  std::vector<std::string> first_missing, first_duplicated;
};
// Joins DIR/shard-*-of-N/manifest.jsonl into DIR/manifest.jsonl (map paths made relative to DIR) and
// their summaries into DIR/summary/, and counts the ids missing (listed in a shard's ids.txt but not
// in its manifest, or a whole shard absent) or duplicated. Throws salient::Error when DIR holds no shard.
MergeReport merge_shards(const std::string& dir, const RenderOptions& render = {});

}  // namespace salient
