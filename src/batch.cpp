#include "salient/batch.hpp"
#include "salient/json.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "salient/dataset.hpp"
#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/gradients.hpp"
#include "salient/npy.hpp"
#include "salient/summary.hpp"

namespace salient {

namespace fs = std::filesystem;

namespace {

std::string part_name(int64_t k) {
  char b[32];
  std::snprintf(b, sizeof b, "part-%05lld.npy", static_cast<long long>(k));
  return b;
}

// The part number of "maps/<key>/part-00012.npy", or -1.
int64_t part_number(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  if (name.size() != 14 || name.rfind("part-", 0) != 0 || name.substr(10) != ".npy") return -1;
  for (size_t i = 5; i < 10; ++i)
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  return std::stoll(name.substr(5, 5));
}

std::optional<int64_t> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (*end != '\0' || x < 0) throw Error(std::string("environment variable ") + name + "='" + v + "' is not a whole number >= 0");
  return x;
}

// A map key of the stacked layout: the method, or <method>.top<r> for rank r of a top-k target.
std::string stack_key(const std::string& method, size_t rank, bool several) {
  return several ? method + ".top" + std::to_string(rank + 1) : method;
}

// Stacked maps: rows collect per key and are written as DIR/maps/<key>/part-NNNNN.npy, all keys'
// parts at once, when `part_rows` inputs are pending; only then are those inputs' manifest lines
// appended (in one write), so every line points at a part that is on disk.
class StackSink {
 public:
  StackSink(fs::path root, int64_t next_part, int64_t part_rows) : root_(std::move(root)), next_(next_part), rows_per_(part_rows) {}
  void add(const Explanation& e, nlohmann::json line) {
    const size_t ranks = e.maps.size();
    for (size_t r = 0; r < ranks; ++r)
      for (const auto& [name, mm] : e.maps[r]) {
        const std::string key = stack_key(name, r, e.several);
        auto& rows = rows_[key];
        line["explained"][r]["methods"][name]["map"] = {{"part", "maps/" + key + "/" + part_name(next_)},
                                                        {"row", static_cast<int64_t>(rows.size())}};
        rows.push_back(mm.map);
      }
    lines_ += line.dump() + "\n";
    ++pending_;
  }
  bool full() const { return pending_ >= rows_per_; }
  void flush(AppendLog& manifest) {
    if (pending_ == 0) return;
    for (auto& [key, rows] : rows_) {
      if (rows.empty()) continue;
      const fs::path dir = root_ / "maps" / key;
      ensure_inner_dir(dir.string());
      write_npy((dir / part_name(next_)).string(), torch::stack(rows));
      rows.clear();
    }
    manifest.append(lines_);
    lines_.clear();
    pending_ = 0;
    ++next_;
  }

 private:
  fs::path root_;
  int64_t next_, rows_per_, pending_ = 0;
  std::map<std::string, std::vector<torch::Tensor>> rows_;
  std::string lines_;
};

// Every file a manifest line names (npy, png, extra arrays, grid, stack parts) with `prefix` before
// it: a files-format record's names made relative to DIR ("<stem>/"), a shard's relative to the
// merge folder ("shard-K-of-N/"). Throws nlohmann::json::exception on a line of another shape.
void prefix_files(nlohmann::json& line, const std::string& prefix) {
  if (line.contains("explained"))
    for (auto& t : line["explained"])
      for (auto& [name, m] : t.at("methods").items()) {
        if (m.contains("map")) m["map"]["part"] = prefix + m["map"].at("part").get<std::string>();
        for (const char* key : {"npy", "png", "extra_npy"}) {
          if (!m.contains(key)) continue;
          if (m[key].is_string()) m[key] = prefix + m[key].get<std::string>();
          else if (m[key].is_object())
            for (auto& [k, f] : m[key].items()) f = prefix + f.get<std::string>();
        }
      }
  if (line.contains("grid")) line["grid"] = prefix + line["grid"].get<std::string>();
}

// The manifest line of an explained input: the explanation's record, less what is the same for
// every line (model, forward mode), plus its id and label.
nlohmann::json manifest_line(const DataItem& item, const Explanation& e) {
  nlohmann::json line{{"id", item.id}, {"stem", item.input.stem}};
  if (item.label >= 0) {
    line["label"] = item.label;
    if (item.label < e.probabilities.size(0)) line["label_probability"] = e.probabilities[item.label].item<double>();
  }
  for (const char* k : {"input", "predictions", "target", "binary", "explained", "failed"})
    if (e.record.contains(k)) line[k] = e.record[k];
  return line;
}

// The map a manifest line points at, read back (for summaries of resumed runs).
class MapReader {
 public:
  explicit MapReader(fs::path root) : root_(std::move(root)) {}
  torch::Tensor read(const nlohmann::json& m) {
    if (m.contains("map")) {
      const std::string part = m["map"]["part"].get<std::string>();
      if (part != part_path_) {
        part_ = read_npy((root_ / part).string());
        part_path_ = part;
      }
      return part_[m["map"]["row"].get<int64_t>()];
    }
    if (m.contains("npy") && m["npy"].is_string()) return read_npy((root_ / m["npy"].get<std::string>()).string());
    return {};
  }

 private:
  fs::path root_;
  std::string part_path_;
  torch::Tensor part_;
};

void add_to_summary(ClassSummary& s, const nlohmann::json& line, const torch::Tensor& input,
                    const std::map<std::string, torch::Tensor>& maps) {
  if (maps.empty() || !line.contains("predictions") || line["predictions"].empty()) return;
  const auto& top = line["predictions"][0];
  const std::string id = line["id"].get<std::string>();
  s.add("predicted", top["class"].get<int64_t>(), top["probability"].is_number() ? top["probability"].get<double>() : top.value("value", 0.0),
        id, input, maps);
  if (line.contains("label") && line.contains("label_probability"))
    s.add("label", line["label"].get<int64_t>(), line["label_probability"].get<double>(), id, input, maps);
}

nlohmann::json signature_of(const Model& model, const BatchRequest& r) {
  return {{"methods", r.explain.methods},
          {"options", r.explain.method_options},
          {"target", r.explain.target.to_string()},
          {"format", r.format},
          {"png", r.png},
          {"model", fingerprint(model.path())},
          // The data by its content (a file's bytes; a folder's names and sizes), not its path: other
          // data at the same path is another run, the same file by another path the same one.
          {"data", fingerprint(r.data)},
          {"input_shape", model.metadata().input_shape},
          {"limit", r.limit},
          {"shard", r.sharded ? nlohmann::json{r.shard, r.shards} : nlohmann::json()}};
}

}  // namespace

bool resolve_shard(int64_t& k, int64_t& n, bool given, int64_t shards_flag) {
  if (given) return true;
  if (auto task = env_int("SLURM_ARRAY_TASK_ID")) {
    auto count = env_int("SLURM_ARRAY_TASK_COUNT");
    if (shards_flag > 0) count = shards_flag;
    if (!count) throw Error("SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor --shards N says how many shards");
    k = *task, n = *count;
  } else if (auto index = env_int("JOB_COMPLETION_INDEX")) {
    if (shards_flag <= 0) throw Error("JOB_COMPLETION_INDEX is set: pass --shards N (the Indexed Job's completions)");
    k = *index, n = shards_flag;
  } else {
    if (shards_flag > 0) throw Error("--shards N needs SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX (or use --shard K/N)");
    return false;
  }
  if (n < 1 || k >= n)
    throw Error("the scheduler says shard " + std::to_string(k) + " of " + std::to_string(n) + ": expected 0 <= K < N (a job array's ids must run 0..N-1)");
  return true;
}

BatchReport run_batch(Model& model, const BatchRequest& req, MethodList methods,
                      const std::function<void(const BatchProgress&)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  if (req.format != "files" && req.format != "stack") throw Error("--format must be files or stack, got '" + req.format + "'");
  if (req.part_rows < 1 || req.part_rows > 1'000'000) throw Error("--part-rows must be between 1 and 1000000");
  if (req.sharded && (req.shards < 1 || req.shard < 0 || req.shard >= req.shards))
    throw Error("--shard " + std::to_string(req.shard) + "/" + std::to_string(req.shards) + ": expected K/N with 0 <= K < N");
  if (model.input_count() > 1)
    throw Error("batch explains models of one input; this model's forward takes " + std::to_string(model.input_count()) +
                " (use explain with one .npy per argument)");
  Dataset data = Dataset::open(req.data, model.metadata(), req.resize, req.labels, req.limit).limit(req.limit);
  const int64_t total_all = data.size();
  const std::vector<std::string> data_warnings = data.warnings();
  if (req.sharded) data = data.shard(req.shard, req.shards);
  const fs::path root = req.sharded ? fs::path(req.explain.out_dir) / ("shard-" + std::to_string(req.shard) + "-of-" + std::to_string(req.shards))
                                    : fs::path(req.explain.out_dir);
  if (std::error_code ec; req.sharded && fs::is_symlink(fs::symlink_status(root, ec)))
    throw Error("'" + root.string() + "' is a symbolic link inside the output folder: refused (writes would land where it points)");
  check_writable_dir(root.string());
  Explainer explainer(model, req.explain, std::move(methods));
  if (data.size() > 0) {  // methods that cannot run on this model fail here, before a file is written
    DataItem first;
    try {
      first = data.get(0);
    } catch (const Error&) {
    }
    if (first.input.tensor.defined()) explainer.check(first.input.tensor.unsqueeze(0));
  }

  ensure_writable_dir(req.explain.out_dir);
  OutputLock lock(root.string());
  remove_stale_temporaries(root.string());
  BatchReport report;
  report.warnings = data_warnings;
  report.dir = root.string();
  report.total = data.size();
  // run.json: the settings this folder's manifest was made with; a rerun with others is refused
  // rather than mixed in.
  const nlohmann::json signature = signature_of(model, req);
  const fs::path run_file = root / "run.json";
  if (std::error_code ec; fs::exists(run_file, ec)) {
    auto old = parse_json(read_file(run_file.string()));
    if (!old.is_object() || old.value("signature", nlohmann::json()) != signature) {
      std::string diff = "unreadable run.json";
      if (old.is_object() && old.contains("signature") && old["signature"].is_object())
        for (const auto& [k, v] : signature.items())
          if (old["signature"].value(k, nlohmann::json()) != v) {
            diff = k + " was " + old["signature"].value(k, nlohmann::json()).dump() + ", now " + v.dump();
            break;
          }
      throw Error("'" + root.string() + "' holds a batch run with other settings (" + diff +
                  "): use another --out, or remove it to start again");
    }
  } else {
    write_file_atomic(run_file.string(), nlohmann::json{{"signature", signature}, {"total", total_all}, {"count", data.size()},
                                                        {"metadata", model.metadata().to_json()}}.dump(2) + "\n");
  }
  if (std::error_code ec; !fs::exists(root / "ids.txt", ec)) {  // (also after a kill between the two writes)
    std::string ids;
    for (int64_t i = 0; i < data.size(); ++i) ids += data.id(i) + "\n";
    write_file_atomic((root / "ids.txt").string(), ids);
  }

  // Resume: the ids the manifest lists are done.
  const std::string manifest_path = (root / "manifest.jsonl").string();
  std::vector<std::string> lines = read_log_lines(manifest_path, report.warnings);
  std::map<std::string, nlohmann::json> done;
  std::set<std::string> referenced;  // stack parts the manifest points at
  for (size_t i = 0; i < lines.size(); ++i) {
    auto j = parse_json(lines[i]);
    if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string()) {
      report.warnings.push_back("skipped line " + std::to_string(i + 1) + " of manifest.jsonl: not a manifest record");
      continue;
    }
    try {  // valid JSON of another shape (an edited file) is skipped, not a crash
      if (j.contains("explained"))
        for (const auto& t : j["explained"])
          for (const auto& [name, m] : t.at("methods").items())
            if (m.contains("map")) referenced.insert(m["map"].at("part").get<std::string>());
    } catch (const nlohmann::json::exception&) {
      report.warnings.push_back("skipped line " + std::to_string(i + 1) + " of manifest.jsonl: not a manifest record");
      continue;
    }
    done.emplace(j["id"].get<std::string>(), std::move(j));
  }
  // Parts no line points at were written by a run killed before it appended their lines: their
  // inputs are computed again, into new parts.
  int64_t next_part = 0;
  for (const auto& p : referenced) next_part = std::max(next_part, part_number(p) + 1);
  if (std::error_code ec; fs::is_directory(root / "maps", ec))
    for (const auto& key : fs::directory_iterator(root / "maps")) {
      if (!key.is_directory()) continue;
      remove_stale_temporaries(key.path().string());
      for (const auto& f : fs::directory_iterator(key.path()))
        if (part_number(f.path().string()) >= 0 && !referenced.count(fs::relative(f.path(), root).generic_string()))
          fs::remove(f.path(), ec);
    }

  ClassSummary summary;
  std::vector<int64_t> pending;
  {
    MapReader reader(root);
    for (int64_t i = 0; i < data.size(); ++i) {
      auto it = done.find(data.id(i));
      if (it == done.end()) {
        pending.push_back(i);
        continue;
      }
      ++report.resumed;
      if (it->second.contains("error")) ++report.failed;
      if (!req.summary || !it->second.contains("explained")) continue;
      // Work of an earlier run: its maps are read back, its input decoded again.
      std::map<std::string, torch::Tensor> maps;
      for (const auto& [name, m] : it->second["explained"][0]["methods"].items())
        if (torch::Tensor t = reader.read(m); t.defined()) maps[name] = t;
      add_to_summary(summary, it->second, data.get(i, false).input.tensor, maps);
    }
  }

  AppendLog manifest(manifest_path);
  StackSink stack(root, next_part, req.part_rows);
  BatchProgress state;
  state.total = data.size();
  state.resumed = state.done = report.resumed;
  state.failed = report.failed;
  auto fail = [&](const std::string& id, const std::string& message) {
    manifest.append(nlohmann::json{{"id", id}, {"error", message}}.dump() + "\n");
    ++report.failed, ++state.failed;
    if (report.errors.size() < 5) report.errors.push_back(id + ": " + message);
  };
  // Inputs are computed in fixed windows of the view ([0, chunk), [chunk, 2 chunk), ...; a lone
  // last item joins the window before): a window with any pending input is computed whole, and only
  // its pending inputs are written. Each input is then computed among the same others as in an
  // uninterrupted run, so a resumed run's maps equal it bit for bit.
  std::vector<char> is_pending(static_cast<size_t>(data.size()), 0);
  for (int64_t i : pending) is_pending[i] = 1;
  int64_t processed = 0;
  for_chunks(data.size(), req.chunk, [&](int64_t wb, int64_t we) {
    int64_t todo = 0;
    for (int64_t i = wb; i < we; ++i) todo += is_pending[i];
    if (todo == 0) return;
    std::vector<DataItem> items;
    std::vector<InputItem> inputs;
    for (int64_t i = wb; i < we; ++i) {
      try {
        items.push_back(data.get(i, req.png));
        inputs.push_back(items.back().input);
      } catch (const Error& e) {  // one undecodable file does not stop a million-input run
        if (is_pending[i]) fail(data.id(i), e.what());
      }
    }
    std::vector<Explanation> results;
    try {
      results = explainer.run(inputs);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::BadInput) throw;
      for (const auto& item : items)
        if (done.find(item.id) == done.end()) fail(item.id, e.what());  // e.g. inputs of another shape
      results.clear();
      items.clear();
    }
    for (size_t k = 0; k < results.size(); ++k) {
      const Explanation& e = results[k];
      const DataItem& item = items[k];
      if (done.count(item.id)) continue;  // written by an earlier run
      if (!e.error.empty()) {
        fail(item.id, e.error);
        continue;
      }
      nlohmann::json line = manifest_line(item, e);
      if (req.format == "files") {
        const nlohmann::json rec = write_explanation_files(e, (root / item.input.stem).string(), model, req.explain.render, req.png);
        line["explained"] = rec["explained"];
        if (rec.contains("grid")) line["grid"] = rec["grid"];
        prefix_files(line, item.input.stem + "/");
        manifest.append(line.dump() + "\n");
      } else {
        stack.add(e, line);
      }
      if (req.summary) {
        std::map<std::string, torch::Tensor> maps;
        for (const auto& [name, mm] : e.maps[0]) maps[name] = mm.map;
        add_to_summary(summary, line, item.input.tensor, maps);
      }
      ++report.explained;
      if (stack.full()) stack.flush(manifest);
    }
    processed += todo;
    state.done = report.resumed + processed;
    state.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (progress) progress(state);
  });
  stack.flush(manifest);
  if (req.summary && !summary.empty()) {
    summary.write(root.string(), model.metadata(), req.explain.render);
    write_file_atomic((root / "summary" / "metadata.json").string(), model.metadata().to_json().dump(2) + "\n");
  }
  for (const auto& [name, e] : explainer.failures()) report.warnings.push_back(std::string("method ") + e.what());
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

MergeReport merge_shards(const std::string& dir, const RenderOptions& render) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error("'" + dir + "' is not a folder");
  std::map<int64_t, fs::path> shards;
  int64_t n = -1;
  for (const auto& e : fs::directory_iterator(dir)) {
    long long k = 0, count = 0;
    char rest = 0;
    if (std::sscanf(e.path().filename().c_str(), "shard-%lld-of-%lld%c", &k, &count, &rest) != 2) continue;
    if (e.is_symlink())  // its files would be read from, and the merge would trust, wherever it points
      throw Error("shard folder '" + e.path().string() + "' is a symbolic link: refused (merge only the shards written here)");
    if (!e.is_directory()) continue;
    if (n >= 0 && count != n) throw Error("'" + dir + "' holds shards of " + std::to_string(n) + " and of " + std::to_string(count));
    n = count;
    shards[k] = e.path();
  }
  if (shards.empty()) throw Error("'" + dir + "' holds no shard folder (shard-K-of-N/)");
  // A finished unsharded run in the same folder is never rewritten by a merge of stray shards.
  if (fs::exists(fs::path(dir) / "run.json", ec)) {
    const auto own = parse_json(read_file((fs::path(dir) / "run.json").string()));
    if (own.is_object() && own.contains("signature") && own["signature"].is_object() && own["signature"].value("shard", nlohmann::json()).is_null())
      throw Error("'" + dir + "' holds an unsharded run (its run.json): merging shards into it would replace its manifest; merge the "
                  "shards in a folder of their own");
  }
  // Every shard must be a part of one run: the same model, data, settings and shape (their run.json
  // signatures equal but for the shard), else the merge would mix runs without a word.
  {
    nlohmann::json first;
    std::string first_name;
    for (const auto& [k, path] : shards) {
      auto run = parse_json(fs::exists(path / "run.json", ec) ? read_file((path / "run.json").string()) : std::string());
      if (!run.is_object() || !run.contains("signature") || !run["signature"].is_object())
        throw Error("shard '" + path.filename().string() + "' has no readable run.json: not a batch shard");
      nlohmann::json sig = run["signature"];
      sig.erase("shard");
      if (first.is_null()) {
        first = sig;
        first_name = path.filename().string();
        continue;
      }
      if (sig == first) continue;
      std::string keys;
      for (const auto& [key, v] : first.items())
        if (sig.value(key, nlohmann::json()) != v) keys += (keys.empty() ? "" : ", ") + key;
      for (const auto& [key, v] : sig.items())
        if (!first.contains(key)) keys += (keys.empty() ? "" : ", ") + key;
      throw Error("shards '" + first_name + "' and '" + path.filename().string() + "' are parts of different runs (their " + keys +
                  " differ): merge only the shards of one run");
    }
  }
  MergeReport report;
  report.shards = n;
  OutputLock lock(dir);
  // The shards' common size: from any shard's run.json.
  int64_t total = -1;
  for (const auto& [k, path] : shards) {
    auto run = parse_json(read_file((path / "run.json").string()));
    if (run.is_object() && run.contains("total")) total = run["total"].get<int64_t>();
  }
  std::string merged;
  std::set<std::string> seen;
  ClassSummary summary;
  std::string metadata_file;
  for (int64_t k = 0; k < n; ++k) {
    auto it = shards.find(k);
    if (it == shards.end()) {
      const int64_t missing = total < 0 ? 0 : (total - k + n - 1) / n;
      report.missing += missing;
      if (report.first_missing.size() < 5) report.first_missing.push_back("all of shard " + std::to_string(k) + " (" + std::to_string(missing) + " ids)");
      continue;
    }
    const fs::path& path = it->second;
    const std::string prefix = path.filename().string() + "/";
    std::vector<std::string> warnings;
    std::set<std::string> listed;
    for (const auto& l : read_log_lines((path / "manifest.jsonl").string(), warnings)) {
      auto j = parse_json(l);
      if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string()) continue;
      const std::string id = j["id"].get<std::string>();
      if (!seen.insert(id).second) {
        ++report.duplicated;
        if (report.first_duplicated.size() < 5) report.first_duplicated.push_back(id);
      }
      listed.insert(id);
      try {
        prefix_files(j, prefix);
      } catch (const nlohmann::json::exception&) {
        continue;  // not a manifest record (as the batch run itself skips it)
      }
      merged += j.dump() + "\n";
      ++report.lines;
    }
    const std::string ids = fs::exists(path / "ids.txt", ec) ? read_file((path / "ids.txt").string()) : std::string();
    for (size_t s = 0; s < ids.size();) {
      const size_t e = ids.find('\n', s);
      const std::string id = ids.substr(s, e - s);
      s = e == std::string::npos ? ids.size() : e + 1;
      if (!id.empty() && !listed.count(id)) {
        ++report.missing;
        if (report.first_missing.size() < 5) report.first_missing.push_back(id);
      }
    }
    if (fs::exists(path / "summary" / "state.json", ec)) {
      summary.merge(ClassSummary::load(path.string()));
      metadata_file = (path / "summary" / "metadata.json").string();
    }
  }
  write_file_atomic((fs::path(dir) / "manifest.jsonl").string(), merged);
  if (!summary.empty()) {
    const ModelMetadata meta = ModelMetadata::load(metadata_file);
    summary.write(dir, meta, render);
    write_file_atomic((fs::path(dir) / "summary" / "metadata.json").string(), read_file(metadata_file));
  }
  return report;
}

}  // namespace salient
