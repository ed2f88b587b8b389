// salient batch: a data set through the explain core, sharded and resumable; salient merge.
#include <unistd.h>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "commands.hpp"
#include "salient/batch.hpp"
#include "salient/error.hpp"

namespace salient::cli {

namespace {

std::string duration(double s) {
  std::ostringstream o;
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) o << t / 3600 << "h" << std::setw(2) << std::setfill('0') << (t % 3600) / 60 << "m";
  else if (t >= 60) o << t / 60 << "m" << std::setw(2) << std::setfill('0') << t % 60 << "s";
  else o << t << "s";
  return o.str();
}

// A bar with rate and ETA on a terminal; a plain line every 30 s otherwise (a scheduler's log).
std::function<void(const BatchProgress&)> progress_printer() {
  const bool tty = ::isatty(2);
  auto last = std::make_shared<double>(-1e9);
  return [tty, last](const BatchProgress& p) {
    const int64_t new_done = p.done - p.resumed;
    const double rate = p.seconds > 0 ? static_cast<double>(new_done) / p.seconds : 0;
    const double eta = rate > 0 ? static_cast<double>(p.total - p.done) / rate : 0;
    std::ostringstream line;
    line << p.done << "/" << p.total << " inputs, " << std::fixed << std::setprecision(1) << rate << "/s, ETA "
         << duration(eta);
    if (p.failed) line << ", " << p.failed << " failed";
    if (tty) {
      const int width = 30, filled = p.total ? static_cast<int>(width * p.done / p.total) : width;
      progress_line() << "\r[" << std::string(filled, '#') << std::string(width - filled, ' ') << "] " << line.str() << "   "
                << (p.done == p.total ? "\n" : "") << std::flush;
    } else if (p.seconds - *last >= 30 || p.done == p.total) {
      *last = p.seconds;
      std::cerr << "progress: " << line.str() << "\n" << std::flush;
    }
  };
}

}  // namespace

void add_batch(CLI::App& app) {
  auto* cmd = app.add_subcommand("batch", "explain a data set into a resumable, shardable output folder (manifest.jsonl)");
  struct Flags {
    ModelFlags model;
    MethodFlags method;
    BatchRequest req;
    std::string shard;
    int64_t shards = 0;
    bool no_png = false;
  };
  auto f = std::make_shared<Flags>();
  f->model.add_to(cmd);
  cmd->add_option("--data,-d", f->req.data, "a folder of images (recursive), a list file (.txt), an .npy stack, an IDX image file (.gz), or a CSV (tabular)")->required();
  cmd->add_option("--labels", f->req.labels, "IDX label file (default: the images file's labels-idx1 sibling)");
  cmd->add_option("--out,-o", f->req.explain.out_dir, "output folder")->required();
  cmd->add_option("--shard", f->shard, "K/N: explain the K-th of N disjoint shards (0-based) into DIR/shard-K-of-N/");
  cmd->add_option("--shards", f->shards, "N, with K from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX")->check(CLI::PositiveNumber);
  cmd->add_option("--limit", f->req.limit, "the first N inputs of the data set (before sharding)");
  cmd->add_option("--format", f->req.format, "files (a folder per input) or stack (maps/<method>/part-NNNNN.npy)")->capture_default_str();
  cmd->add_flag("--no-png", f->no_png, "no heatmap or grid PNGs");
  cmd->add_flag("--summary", f->req.summary, "per-class mean maps and an atlas under DIR/summary/");
  cmd->add_option("--part-rows", f->req.part_rows, "rows of a stacked part (--format stack)")->capture_default_str();
  cmd->add_option("--chunk", f->req.chunk, "inputs decoded and explained at a time (bounds memory)")->capture_default_str();
  f->method.add_to(cmd);
  cmd->callback([=] {
    BatchRequest req = f->req;
    req.png = !f->no_png;
    if (req.chunk < 1 || req.chunk > 100000) throw Error("--chunk must be between 1 and 100000");
    if (!f->shard.empty()) {
      long long k = 0, n = 0;
      char rest = 0;
      if (std::sscanf(f->shard.c_str(), "%lld/%lld%c", &k, &n, &rest) != 2 || n < 1 || k < 0 || k >= n)
        throw Error("--shard must be K/N with 0 <= K < N, got '" + f->shard + "'");
      req.shard = k, req.shards = n;
    }
    if (!f->shard.empty() && f->shards) throw Error("give --shard K/N or --shards N, not both");
    req.sharded = resolve_shard(req.shard, req.shards, !f->shard.empty(), f->shards);
    Model model = f->model.load_not_text("batch");
    const std::string out = req.explain.out_dir;
    req.explain = f->method.request(model.metadata());
    req.explain.out_dir = out;
    req.resize = parse_resize(f->method.resize);
    MethodList methods = prepare(req.explain, model.metadata());
    BatchReport r = run_batch(model, req, std::move(methods), progress_printer());
    for (const auto& w : r.warnings) std::cerr << "warning: " << w << "\n";
    std::cout << "explained " << r.explained << " inputs (" << r.resumed << " done before, " << r.failed << " failed) of "
              << r.total << " -> " << r.dir << "/manifest.jsonl in " << std::fixed << std::setprecision(1) << r.seconds << " s\n";
    for (const auto& e : r.errors) std::cerr << "warning: input " << e << "\n";
  });

  auto* merge = app.add_subcommand("merge", "join the shards of a batch run (DIR/shard-K-of-N/) into DIR/");
  auto dir = std::make_shared<std::string>();
  merge->add_option("dir", *dir, "the --out of the sharded batch runs")->required();
  merge->callback([=] {
    MergeReport r = merge_shards(*dir);
    std::cout << "merged " << r.lines << " lines of " << r.shards << " shards -> " << *dir << "/manifest.jsonl\n";
    auto first = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
      return s;
    };
    if (r.missing || r.duplicated) {
      std::string msg;
      if (r.missing) msg += std::to_string(r.missing) + " ids missing (first: " + first(r.first_missing) + ")";
      if (r.duplicated) msg += std::string(msg.empty() ? "" : "; ") + std::to_string(r.duplicated) + " ids duplicated (first: " + first(r.first_duplicated) + ")";
      throw Error(msg);
    }
  });
}

}  // namespace salient::cli
