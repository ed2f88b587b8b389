// `salient serve` over cpp-httplib: requests become tasks on the worker pool (pool.hpp); this file
// parses and bounds requests, runs the explain core, and answers in JSON, .npy and PNG.
#include "salient/serve.hpp"
#include "salient/json.hpp"
#include "salient/tabular.hpp"

#include <httplib.h>
#include <omp.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <list>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>

#include "front.hpp"
#include "pool.hpp"
#include "salient/checks.hpp"
#include "salient/dataset.hpp"
#include "salient/error.hpp"
#include "salient/explain.hpp"
#include "salient/fsutil.hpp"
#include "salient/image.hpp"
#include "salient/layers.hpp"
#include "salient/metrics/metrics.hpp"
#include "salient/npy.hpp"
#include "salient/registry.hpp"
#include "salient/text_explain.hpp"

namespace salient::serve {

namespace {

using nlohmann::json;

// An answer other than 200, with its status: handlers throw it; the wrapper writes {"error": ...}.
struct HttpError : std::runtime_error {
  int status;
  std::string retry_after;
  HttpError(int s, const std::string& m, std::string retry = "") : std::runtime_error(m), status(s), retry_after(std::move(retry)) {}
};

void send_json(httplib::Response& res, const json& j, int status = 200) {
  res.status = status;
  res.set_header("X-Content-Type-Options", "nosniff");
  // Bytes that are not UTF-8 (a request's echoed in an error) become U+FFFD, never a throw (a 500).
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, json{{"error", message}}, status);
}

}  // namespace

const std::map<std::string, std::string_view>& embedded_assets();  // generated from web/ at build time

namespace {

// A class target sent as a JSON number (every KServe client sends "target": 3) is read as its text.
void number_target_as_text(json& j) {
  if (j.is_object() && j.contains("target") && j["target"].is_number_integer() && j["target"].get<int64_t>() >= 0)
    j["target"] = std::to_string(j["target"].get<int64_t>());
}

std::string base64_encode(const std::string& bytes) {
  static const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint8_t(bytes[i + 2]);
    out += {chars[v >> 18], chars[(v >> 12) & 63], chars[(v >> 6) & 63], chars[v & 63]};
  }
  if (i < bytes.size()) {
    const uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (i + 1 < bytes.size() ? uint32_t(uint8_t(bytes[i + 1])) << 8 : 0);
    out += {chars[v >> 18], chars[(v >> 12) & 63], i + 1 < bytes.size() ? chars[(v >> 6) & 63] : '=', '='};
  }
  return out;
}

// A map inside a JSON answer: {"npy": base64 of its .npy bytes} (the page reads .npy either way).
json npy_json(const torch::Tensor& t) { return {{"npy", base64_encode(encode_npy(t))}}; }

// Strict base64 (RFC 4648, padding optional, whitespace skipped): 400 on anything else.
std::string base64_decode(const std::string& in, const std::string& what) {
  static const std::array<int8_t, 256> value = [] {
    std::array<int8_t, 256> v;
    v.fill(-1);
    const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < chars.size(); ++i) v[static_cast<uint8_t>(chars[i])] = static_cast<int8_t>(i);
    return v;
  }();
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : in) {
    if (c == '\n' || c == '\r' || c == ' ') continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    const int v = value[static_cast<uint8_t>(c)];
    if (v < 0 || pad > 0) throw HttpError(400, what + " is not valid base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (pad > 2) throw HttpError(400, what + " is not valid base64");
  return out;
}

// A nested list of numbers -> a float32 tensor: rectangular, finite, at most 8 dimensions and
// `max_values` numbers (400 otherwise).
torch::Tensor tensor_from_json(const json& j, int64_t max_values, const std::string& what) {
  std::vector<int64_t> shape;
  const json* p = &j;
  while (p->is_array()) {
    if (shape.size() >= 8) throw HttpError(400, what + " nests deeper than 8 dimensions");
    if (p->empty()) throw HttpError(400, what + " has an empty dimension");
    shape.push_back(static_cast<int64_t>(p->size()));
    p = &(*p)[0];
  }
  if (shape.empty()) throw HttpError(400, what + " must be a (nested) list of numbers");
  int64_t count = 1;
  for (int64_t d : shape) {
    count *= d;
    if (count > max_values) throw HttpError(413, what + " has more than " + std::to_string(max_values) + " values");
  }
  std::vector<float> values;
  values.reserve(static_cast<size_t>(count));
  std::function<void(const json&, size_t)> walk = [&](const json& v, size_t depth) {
    if (depth == shape.size()) {
      if (!v.is_number()) throw HttpError(400, what + " holds a value that is not a number");
      const double x = v.get<double>();
      if (!std::isfinite(x)) throw HttpError(400, what + " holds a value that is not finite");
      values.push_back(static_cast<float>(x));
      return;
    }
    if (!v.is_array() || static_cast<int64_t>(v.size()) != shape[depth])
      throw HttpError(400, what + " is not rectangular (its rows differ in length)");
    for (const auto& e : v) walk(e, depth + 1);
  };
  walk(j, 0);
  return torch::from_blob(values.data(), shape, torch::kFloat).clone();
}

json tensor_to_json(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const double* d = c.data_ptr<double>();
  std::function<json(int64_t, int64_t&)> build = [&](int64_t dim, int64_t& at) {
    json a = json::array();
    for (int64_t i = 0; i < c.size(dim); ++i) a.push_back(dim + 1 == c.dim() ? json(d[at++]) : build(dim + 1, at));
    return a;
  };
  if (c.dim() == 0) return d[0];
  int64_t at = 0;
  return build(0, at);
}

std::string random_id() {
  static std::mutex m;
  static std::mt19937_64 gen{std::random_device{}()};
  std::lock_guard<std::mutex> lock(m);
  std::ostringstream s;
  s << std::hex << gen() << gen();
  return s.str();
}

bool loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

// The labels of Prometheus' latency histogram (seconds).
const std::vector<double>& buckets() {
  static const std::vector<double> b{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  return b;
}

// The endpoint a path belongs to (metrics labels stay few whatever paths clients send).
std::string endpoint_of(const std::string& method, const std::string& path) {
  static const std::vector<std::pair<std::regex, std::string>> routes = {
      {std::regex(R"(/v1/models)"), "/v1/models"},
      {std::regex(R"(/v1/models/[^/]+:predict)"), "/v1/models/{m}:predict"},
      {std::regex(R"(/v1/models/[^/]+:explain)"), "/v1/models/{m}:explain"},
      {std::regex(R"(/v1/models/[^/]+)"), "/v1/models/{m}"},
      {std::regex(R"(/v1/methods)"), "/v1/methods"},
      {std::regex(R"(/explanations/[^/]+)"), "/explanations/{m}"},
      {std::regex(R"(/api/explain)"), "/api/explain"},
      {std::regex(R"(/api/results/.*)"), "/api/results"},
      {std::regex(R"(/api/jobs(/.*)?)"), "/api/jobs"},
      {std::regex(R"(/api/data(/.*)?)"), "/api/data"},
      {std::regex(R"(/healthz)"), "/healthz"},
      {std::regex(R"(/metrics)"), "/metrics"},
      {std::regex(R"(/api/checks)"), "/api/checks"},
      {std::regex(R"(/)"), "/"},
      {std::regex(R"(/assets/.*)"), "/assets"}};
  for (const auto& [re, name] : routes)
    if (std::regex_match(path, re)) return method + " " + name;
  return method + " other";
}

struct Metrics {
  std::mutex mutex;
  std::map<std::pair<std::string, int>, int64_t> requests;  // (endpoint, status) -> count
  std::vector<int64_t> latency = std::vector<int64_t>(buckets().size() + 1, 0);
  double latency_sum = 0;
  int64_t latency_count = 0;
  void observe(const std::string& endpoint, int status, double seconds) {
    std::lock_guard<std::mutex> lock(mutex);
    ++requests[{endpoint, status}];
    if (seconds < 0) return;
    size_t b = 0;
    while (b < buckets().size() && seconds > buckets()[b]) ++b;
    ++latency[b];
    latency_sum += seconds;
    ++latency_count;
  }
};

thread_local Clock::time_point t_request_start{};

// What a model is, read once at start (requests never touch a worker's Model to learn it).
struct ModelDescription {
  std::string name, file;
  ModelMetadata meta;
  json info;  // GET /v1/models/{m}
  bool onnx = false;
  bool text = false;              // a text model: POST /api/explain {"text"} only
  std::set<std::string> modules;  // module paths (an inner-neuron target's layer is checked against them)
};

// An explanation kept for GET /api/results/{id}/...: its maps and picture, and the response.
struct Stored {
  std::string model;
  Explanation explanation;                   // an image's or a row's
  std::map<std::string, std::string> files;  // a text's: <key>.html, .png, .npy, name -> bytes
  bool text = false;
  json response;
  RenderOptions render;
  size_t bytes = 0;
};

// What a kept result holds, as --cache-bytes counts it: every tensor's bytes (the input, its
// picture, the maps and their extras, the probabilities), the text result's files, and the JSON it
// answers and records as text. (Counting only the maps at 4 bytes an element let the cache settle
// at 1.1 GB against its 512 MB.)
size_t held_bytes(const Stored& s) {
  const Explanation& e = s.explanation;
  auto nbytes = [](const torch::Tensor& t) { return t.defined() ? static_cast<size_t>(t.nbytes()) : size_t{0}; };
  size_t n = 1024 + nbytes(e.input.tensor) + e.input.display.total() * e.input.display.elemSize() + nbytes(e.probabilities);
  for (const auto& rank : e.maps)
    for (const auto& [name, mm] : rank) {
      n += nbytes(mm.map);
      for (const auto& [key, t] : mm.extra) n += nbytes(t);
    }
  for (const auto& [name, bytes] : s.files) n += name.size() + bytes.size();
  n += s.response.dump().size() + (e.record.is_null() ? 0 : e.record.dump().size());
  return n;
}

// A job: its task, the request's result when done.
struct Job {
  std::string id, model;
  std::shared_ptr<Task> task;
  std::shared_ptr<std::vector<Explanation>> out;
  std::shared_ptr<json> response;  // built when done
  RenderOptions render;
  Clock::time_point created;
};

// One request's explain work, parsed and checked before it is queued.
struct ExplainWork {
  std::string model;
  ExplainRequest request;
  std::shared_ptr<MethodList> methods;
  std::vector<InputItem> inputs;
  std::vector<std::string> warnings;  // added to every explanation's (a default lowered to a cap)
};

}  // namespace

struct Server::Impl {
  ServeOptions o;
  std::vector<std::string> warnings;
  std::map<std::string, ModelDescription> models;
  std::string default_model;
  std::unique_ptr<Pool> pool;
  httplib::Server http;
  int bound_port = -1;
  std::unique_ptr<Front> front;  // the public listener; `http` listens on loopback behind it
  Metrics metrics;

  // --data: items by id; their predictions (for the filters) once computed.
  std::unique_ptr<Dataset> data;
  std::map<std::string, int64_t> data_index;
  std::mutex data_mutex;
  std::shared_ptr<std::vector<std::pair<int64_t, double>>> data_predictions;  // (class, probability)

  std::mutex results_mutex;
  std::list<std::pair<std::string, std::shared_ptr<Stored>>> results;  // most recent first
  size_t results_bytes = 0;
  std::mutex jobs_mutex;
  std::map<std::string, std::shared_ptr<Job>> jobs;
  std::list<std::string> job_order;

  explicit Impl(ServeOptions options);
  void routes();

  const ModelDescription& model(const std::string& name) const;
  InputItem image_input(const std::string& bytes, const std::string& name, const ModelMetadata& meta, Resize resize) const;
  InputItem array_input(const torch::Tensor& t, const std::string& name, const ModelMetadata& meta, bool stack = false) const;
  InputItem instance(const json& j, size_t i, const ModelMetadata& meta, Resize resize) const;
  ExplainWork explain_work(const std::string& model, const json& methods, const json& options, const std::string& target,
                           std::vector<InputItem> inputs, bool text = false) const;
  std::shared_ptr<Task> submit(const std::string& model, Task::Work work);
  void wait(const std::shared_ptr<Task>& task);
  std::shared_ptr<Task> submit_explain(ExplainWork w, std::shared_ptr<std::vector<Explanation>> out);
  std::vector<Explanation> run_explain(ExplainWork w);
  json api_response(const std::string& id, const std::string& model, const Explanation& e);
  std::string store(const std::string& model, Explanation e, const RenderOptions& render, json& response);
  std::shared_ptr<Stored> stored(const std::string& id);
  void keep(const std::string& id, std::shared_ptr<Stored> s);  // a result, within the cache's bounds
  std::shared_ptr<std::vector<std::pair<int64_t, double>>> predictions_of_data();
  std::shared_ptr<Job> job_of(const std::string& id);
  void handle_api_explain(const httplib::Request& req, httplib::Response& res, bool job);
  void handle_api_explain_text(const json& body, httplib::Response& res);
  json text_response(const std::string& id, const std::string& model, const TextExplained& x);
  // A text model is explained by POST /api/explain {"text"} only: elsewhere a 400 that says so.
  void not_text(const ModelDescription& d, const std::string& endpoint) const {
    if (d.text)
      throw HttpError(400, "model '" + d.name + "' is a text model, not served by " + endpoint +
                           ": explain a text with POST /api/explain {\"text\": \"...\"}");
  }
  ExplainWork api_work(const httplib::Request& req, json* body_out = nullptr, const std::string& default_methods = "saliency") const;
  void handle_api_checks(const httplib::Request& req, httplib::Response& res);
  // This server's caps on the options that size the work, by option name (also under METHOD.KEY).
  std::map<std::string, int64_t> option_caps() const {
    return {{"samples", o.caps.samples}, {"steps", o.caps.steps}, {"max-steps", o.caps.steps}, {"batch-size", o.caps.batch_size},
            {"baseline-count", o.caps.baseline_count}, {"grid", o.caps.grid}, {"copies", o.caps.copies}};
  }
};

Server::Impl::Impl(ServeOptions options) : o(std::move(options)) {
  if (o.models.empty()) throw Error("no model given (--model)");
  if (o.port < 0 || o.port > 65535) throw Error("--port must be in 0..65535, got " + std::to_string(o.port));
  if (o.queue < 0 || o.queue > 100000) throw Error("--queue must be in 0..100000, got " + std::to_string(o.queue));
  if (o.connections < 1 || o.connections > 4096) throw Error("--connections must be in 1..4096, got " + std::to_string(o.connections));
  if (o.max_connections < 1 || o.max_connections > 100000)
    throw Error("--max-connections must be in 1..100000, got " + std::to_string(o.max_connections));
  if (!(o.header_timeout >= 0.1 && o.header_timeout <= 3600))
    throw Error("--header-timeout must be in [0.1, 3600] seconds, got " + std::to_string(o.header_timeout));
  if (!(o.timeout > 0)) throw Error("--timeout must be > 0 seconds");
  if (o.max_pixels < 1) throw Error("--max-pixels must be >= 1");
  if (o.max_body < 1024) throw Error("--max-body must be at least 1KB");
  if (!loopback(o.host) && o.token.empty()) {
    if (!o.insecure)
      throw Error("--host " + o.host + " is reachable from other machines: give --token-file (requests then need "
                  "'Authorization: Bearer <token>') or --insecure");
    warnings.push_back("serving on " + o.host + " without a token (--insecure): anyone who reaches it can use it");
  }
  std::set<std::string> names;
  for (const auto& [name, path] : o.models) {
    if (name.empty() || name.find_first_of("/:?#% ") != std::string::npos)
      throw Error("model name '" + name + "' must be non-empty without / : ? # % or spaces (--model NAME=PATH)");
    if (!names.insert(name).second) throw Error("model name '" + name + "' is given twice");
  }
  default_model = o.models.front().first;
  set_max_image_pixels(o.max_pixels);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = o.threads > 0 ? std::min(o.threads, cores) : std::max(1, cores / std::max(1, o.workers));
  // Loading and describing run on this thread with one intra-op thread, so that it never starts an
  // OpenMP team of its own: libgomp counts every team's threads, and once they outnumber the cores
  // it stops spinning between parallel regions and sleeps in the kernel instead (its "throttled"
  // spin), which made a worker's ResNet-18 saliency 1.2-1.4x slower than the same work on a process
  // whose only team is the one computing. The workers take `threads` when they start.
  set_threads(1);
  pool = std::make_unique<Pool>(o.workers, static_cast<size_t>(o.queue), o.models, o.model);
  // Describe each model on worker 0's instance, before the threads start.
  for (const auto& [name, path] : o.models) {
    Model& m = pool->instance(0, name);
    if (m.metadata().detector())
      throw Error("model '" + name + "' is a detector: the service does not explain boxes yet (use `salient explain` and "
                  "`salient evaluate --boxes`)");
    ModelDescription d;
    d.name = name;
    d.file = std::filesystem::path(path).filename().string();
    d.meta = m.metadata();
    d.onnx = m.backend() == Backend::Onnx;
    d.text = m.text();
    if (!d.onnx)
      for (const auto& p : module_paths(m)) d.modules.insert(p);
    json layers = json::array();
    std::vector<int64_t> output_shape;
    if (!d.onnx && (d.text || !d.meta.input_shape.empty())) {
      std::vector<int64_t> shape = d.meta.input_shape;
      shape.insert(shape.begin(), 1);
      const torch::Tensor sample = d.text ? sample_text_ids(m.tokenizer()) : torch::zeros(shape);
      try {
        for (const auto& l : list_layers(m, sample))
          layers.push_back({{"path", l.path}, {"type", l.type}, {"shape", l.shape}, {"note", l.note}});
      } catch (const std::exception& e) {
        warnings.push_back("model '" + name + "': its layers cannot be listed: " + one_line(e));
      }
      try {  // a dense output [1, C, H, W] (a segmentation) is explained by regions: the viewer offers them
        output_shape = model_output_shape(m, sample);
      } catch (const std::exception&) {
      }
    }
    d.info = {{"name", name},           {"file", d.file},         {"backend", d.onnx ? "onnx" : "torchscript"},
              {"labels", d.meta.labels}, {"input_shape", d.meta.input_shape}, {"metadata", d.meta.to_json()},
              {"layers", layers},       {"parameters", m.parameter_count()}, {"ready", true}};
    if (!output_shape.empty()) d.info["output_shape"] = output_shape;
    d.info["dense"] = output_shape.size() > 2;  // explained by regions (--target region:C), not classes
    if (d.text) d.info["methods"] = text_methods();  // the methods that explain it
    // The defaults a method settles on for this model where they differ from /v1/methods' (a text
    // model's pad baseline and token features, a table's mean baseline): what the viewer shows.
    // Named settings only (numbers and lists a method derives, such as LRP's bounds, stay out).
    json own = json::object();
    for (const auto& name : Registry::builtin().names()) {
      try {
        const json params = Registry::builtin().create(name, json::object(), d.meta)->params();
        for (const auto& spec : Registry::builtin().info(name).options)
          if (params.contains(spec.name) && params[spec.name].is_string() && params[spec.name] != spec.default_value)
            own[name][spec.name] = params[spec.name];
      } catch (const std::exception&) {  // a method this model cannot take: no defaults to show
      }
    }
    d.info["option_defaults"] = own;
    models.emplace(name, std::move(d));
  }
  if (!o.data.empty()) {
    if (models.at(default_model).text)
      throw Error("--data: model '" + default_model + "' is a text model; --data serves images and table rows (texts go to "
                  "POST /api/explain {\"text\": ...})");
    data = std::make_unique<Dataset>(Dataset::open(o.data, models.at(default_model).meta, o.data_resize));
    for (int64_t i = 0; i < data->size(); ++i) data_index.emplace(data->id(i), i);
  }
  set_threads(threads);
  pool->start();
  routes();
}

const ModelDescription& Server::Impl::model(const std::string& name) const {
  auto it = models.find(name.empty() ? default_model : name);
  if (it == models.end()) throw HttpError(404, "unknown model '" + name + "' (GET /v1/models lists them)");
  return it->second;
}

InputItem Server::Impl::image_input(const std::string& bytes, const std::string& name, const ModelMetadata& meta,
                                    Resize resize) const {
  const ImageHeader h = image_header(bytes);
  if (h.format.empty()) throw HttpError(400, name + " is not an image Salient reads (PNG, JPEG, BMP, TIFF, WebP, PGM/PPM)");
  if (h.width > 0 && h.height > 0 && h.width * h.height > o.max_pixels)
    throw HttpError(413, name + " declares " + std::to_string(h.width) + "x" + std::to_string(h.height) +
                             " pixels, more than this server's cap of " + std::to_string(o.max_pixels) + " (--max-pixels)");
  // Another size than the model's input is resized only when the request says how (as the CLI's
  // --resize): a stretched photo gives a map of a picture the user did not send.
  if (resize == Resize::None && meta.input_shape.size() == 3 && h.width > 0 && h.height > 0 &&
      (h.width != meta.input_shape[2] || h.height != meta.input_shape[1]))
    throw HttpError(400, name + " is " + std::to_string(h.width) + "x" + std::to_string(h.height) + " (WxH), the model takes " +
                             std::to_string(meta.input_shape[2]) + "x" + std::to_string(meta.input_shape[1]) +
                             ": send resize=stretch or resize=crop (short side to size/0.875, centre crop)");
  return decode_image(bytes, name, meta, resize);
}

// One input. A KServe instance has no batch dimension; `stack` (an .npy or array of /api/explain)
// is read as the CLI reads an .npy, a stack [N, ...], which must hold one input here — unless its
// shape is the metadata's input shape itself.
InputItem Server::Impl::array_input(const torch::Tensor& t, const std::string& name, const ModelMetadata& meta, bool stack) const {
  torch::Tensor x = t;
  const bool bare = !meta.input_shape.empty() && x.sizes().vec() == meta.input_shape;
  if (stack && !bare) {
    if (x.dim() < 2 || x.size(0) != 1)
      throw HttpError(400, name + " has shape " + c10::str(x.sizes()) + ": it is read as a stack [N, ...] holding one input, [1, ...]" +
                               (meta.input_shape.empty() ? "" : " (or the model's input shape " + c10::str(c10::IntArrayRef(meta.input_shape)) + ")"));
    x = x[0];
  }
  if (!stack && !meta.input_shape.empty() && x.dim() == static_cast<int64_t>(meta.input_shape.size()) + 1 && x.size(0) == 1) x = x[0];
  if (!meta.input_shape.empty() && x.sizes().vec() != meta.input_shape)
    throw HttpError(400, name + " has shape " + c10::str(x.sizes()) + ", the model expects " + c10::str(c10::IntArrayRef(meta.input_shape)));
  check_finite(x, name);
  InputItem item;
  item.stem = name;
  item.source = name;
  item.tensor = x.to(torch::kFloat).contiguous();
  if (is_image_like(item.tensor)) item.display = tensor_to_display(item.tensor, meta);
  return item;
}

// A request's "resize": absent or "none" (another size is a 400), "stretch" or "crop".
static Resize request_resize(const json& v) {
  if (v.is_null()) return Resize::None;
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "none") return Resize::None;
    if (s == "stretch") return Resize::Stretch;
    if (s == "crop") return Resize::Crop;
  }
  throw HttpError(400, "resize must be \"none\", \"stretch\" or \"crop\", got " + v.dump());
}

// A KServe instance: {"b64": "<image bytes>"} or a nested list of numbers.
InputItem Server::Impl::instance(const json& j, size_t i, const ModelMetadata& meta, Resize resize) const {
  const std::string name = "instance " + std::to_string(i);
  if (j.is_object() && j.contains("b64")) {
    if (!j["b64"].is_string()) throw HttpError(400, name + ": b64 must be text");
    return image_input(base64_decode(j["b64"].get<std::string>(), name), name, meta, resize);
  }
  if (j.is_array()) return array_input(tensor_from_json(j, o.max_pixels * 4, name), name, meta);
  throw HttpError(400, name + " must be {\"b64\": \"<image bytes>\"} or a nested list of numbers");
}

ExplainWork Server::Impl::explain_work(const std::string& model_name, const json& methods, const json& options,
                                       const std::string& target, std::vector<InputItem> inputs, bool text) const {
  const ModelDescription& d = model(model_name);
  if (!text) not_text(d, "this endpoint");
  ExplainWork w;
  w.model = d.name;
  if (methods.is_string()) {
    w.request.methods = split_list(methods.get<std::string>());
  } else if (methods.is_array()) {
    for (const auto& m : methods) {
      if (!m.is_string()) throw HttpError(400, "methods must be names (GET /v1/methods lists them)");
      w.request.methods.push_back(m.get<std::string>());
    }
  } else if (!methods.is_null()) {
    throw HttpError(400, "methods must be a name, a comma-separated list or a list of names");
  }
  if (w.request.methods.empty()) w.request.methods = {"saliency"};
  if (w.request.methods.size() > 16) throw HttpError(400, "at most 16 methods per request");
  for (const auto& m : w.request.methods)
    if (!Registry::builtin().has(m)) throw HttpError(404, "unknown method '" + m + "' (GET /v1/methods lists them)");
  if (!options.is_null() && !options.is_object()) throw HttpError(400, "options must be an object {\"name\": value}");
  w.request.method_options = options.is_object() ? options : json::object();
  const std::map<std::string, int64_t> caps = option_caps();
  // A default above a cap (RISE's 4000 masks, IG's 4096 max-steps) becomes the cap, and says so.
  for (const auto& m : w.request.methods)
    for (const auto& spec : Registry::builtin().info(m).options) {
      auto cap = caps.find(spec.name);
      if (cap == caps.end() || !spec.default_value.is_number() || spec.default_value.get<double>() <= static_cast<double>(cap->second) ||
          w.request.method_options.contains(spec.name) || w.request.method_options.contains(m + "." + spec.name))
        continue;
      w.request.method_options[m + "." + spec.name] = cap->second;
      w.warnings.push_back(m + ": option '" + spec.name + "' defaults to " + spec.default_value.dump() + "; this server caps it at " +
                           std::to_string(cap->second));
    }
  for (auto it = w.request.method_options.begin(); it != w.request.method_options.end(); ++it) {
    const std::string key = it.key().substr(it.key().find('.') == std::string::npos ? 0 : it.key().find('.') + 1);
    auto cap = caps.find(key);
    if (cap != caps.end() && it.value().is_number() && it.value().get<double>() > static_cast<double>(cap->second))
      throw HttpError(400, "option '" + it.key() + "' = " + it.value().dump() + " is above this server's cap of " +
                               std::to_string(cap->second));
  }
  if (inputs.empty() && !text) throw HttpError(400, "no input given");
  if (static_cast<int64_t>(inputs.size()) > o.caps.instances)
    throw HttpError(413, std::to_string(inputs.size()) + " inputs in one request, more than this server's cap of " +
                             std::to_string(o.caps.instances));
  for (const auto& in : inputs)
    if (!in.tensor.sizes().equals(inputs[0].tensor.sizes()))
      throw HttpError(400, "inputs of one request must have one shape: " + c10::str(in.tensor.sizes()) + " and " +
                               c10::str(inputs[0].tensor.sizes()));
  {
    NoFileAccess no_files;  // no option nor target may name a file on this machine
    w.request.target = Target::parse(target, d.meta);
    if (const std::string& layer = w.request.target.layer(); !layer.empty() && !d.modules.count(layer))
      throw HttpError(400, "target '" + target + "': the model has no module '" + layer + "' (GET /v1/models/" + d.name + " lists its layers)");
    if (w.request.target.kind() == Target::Kind::TopK && w.request.target.count() > o.caps.top_k)
      throw HttpError(400, "target '" + target + "' asks for more than this server's cap of " + std::to_string(o.caps.top_k) + " classes");
    w.methods = std::make_shared<MethodList>(prepare(w.request, d.meta));
  }
  if (d.onnx)
    for (const auto& m : *w.methods)
      if (m->info().access != Access::BlackBox)
        throw HttpError(400, m->info().name + " needs a TorchScript model; '" + d.name + "' is ONNX (black-box methods only)");
  w.inputs = std::move(inputs);
  return w;
}

std::shared_ptr<Task> Server::Impl::submit(const std::string& model, Task::Work work) {
  auto task = std::make_shared<Task>(model, std::move(work),
                                     std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout)));
  if (!pool->submit(task))
    throw HttpError(503, "the server is busy (" + std::to_string(pool->depth()) + " requests queued): retry later", "1");
  return task;
}

// Waits for a task up to its deadline: 504 (and the task cancelled) past it; its failure as 400/500.
void Server::Impl::wait(const std::shared_ptr<Task>& task) {
  if (!task->wait_until(task->deadline() + std::chrono::milliseconds(50))) {
    task->cancel("timed out");
    throw HttpError(504, "the request took longer than this server's --timeout of " + json(o.timeout).dump() + " s and was cancelled");
  }
  switch (task->state()) {
    case Task::State::Done: return;
    case Task::State::Cancelled:
      if (task->timed_out())
        throw HttpError(504, "the request took longer than this server's --timeout of " + json(o.timeout).dump() + " s and was cancelled");
      throw HttpError(503, "cancelled: " + task->error(), "1");
    case Task::State::Failed: throw HttpError(task->bad_input() ? 400 : 500, task->error());
    default: throw HttpError(500, "the task ended in an unknown state");
  }
}

// The explain core on a worker, into `out`: methods stop between chunks when the task is cancelled.
std::shared_ptr<Task> Server::Impl::submit_explain(ExplainWork w, std::shared_ptr<std::vector<Explanation>> out) {
  auto shared = std::make_shared<ExplainWork>(std::move(w));
  const std::string model = shared->model;
  return submit(model, [shared, out](Model& model, Task& task) {
    ExplainRequest req = shared->request;
    req.progress = [&task](const std::string& method, double f) {
      task.set_progress(method, f);
      task.checkpoint();
    };
    Explainer ex(model, req, std::move(*shared->methods));
    *out = ex.run(shared->inputs);
    for (auto& e : *out) e.warnings.insert(e.warnings.end(), shared->warnings.begin(), shared->warnings.end());
    for (const auto& e : *out)
      if (!e.error.empty()) throw Error(e.error);
    if (!ex.failures().empty() && ex.failures().size() == req.methods.size()) throw ex.failures().begin()->second;
  });
}

std::vector<Explanation> Server::Impl::run_explain(ExplainWork w) {
  auto out = std::make_shared<std::vector<Explanation>>();
  wait(submit_explain(std::move(w), out));
  return std::move(*out);
}

json Server::Impl::api_response(const std::string& id, const std::string& model_name, const Explanation& e) {
  const ModelDescription& d = model(model_name);
  json results = json::object();
  json explained = json::array();
  for (size_t r = 0; r < e.maps.size(); ++r) {
    const json& rec = e.record["explained"][r];
    json ex = {{"class", rec["class"]}, {"label", rec["label"]}, {"probability", rec["probability"]}, {"results", json::object()}};
    for (const auto& [method, mm] : e.maps[r]) {
      const std::string key = e.several ? method + "_c" + std::to_string(e.targets[r]) : method;
      const json& mj = rec["methods"][method];
      json one = {{"map", "/api/results/" + id + "/" + key + ".npy"},
                  {"min", mm.map.min().item<double>()},
                  {"max", mm.map.max().item<double>()},
                  {"shape", mm.map.sizes().vec()},
                  {"diagnostics", mj["diagnostics"]},
                  {"params", mj["params"]},
                  {"seconds", mj["seconds"]},
                  {"score", mj["score"]}};
      if (is_image_like(mm.map)) one["overlay"] = "/api/results/" + id + "/" + key + ".png";
      for (const char* k : {"features", "f(x)", "base_value", "base_value_of", "additive"})  // a tabular row's columns
        if (mj.contains(k)) one[k] = mj[k];
      ex["results"][method] = one;
      results[key] = one;
    }
    explained.push_back(ex);
  }
  json j = {{"id", id},
            {"model", d.name},
            {"input", {{"shape", e.input.tensor.sizes().vec()}, {"id", e.input.stem}}},
            {"predictions", e.record["predictions"]},
            {"target", e.record["target"]},
            {"explained", explained},
            {"results", results},
            {"warnings", e.warnings},
            {"explanation", "/api/results/" + id + "/explanation.json"}};
  if (e.record.contains("failed")) j["failed"] = e.record["failed"];
  return j;
}

std::string Server::Impl::store(const std::string& model_name, Explanation e, const RenderOptions& render, json& response) {
  const std::string id = random_id();
  auto s = std::make_shared<Stored>();
  s->model = model_name;
  s->render = render;
  response = api_response(id, model_name, e);
  s->response = response;
  s->explanation = std::move(e);
  s->bytes = held_bytes(*s);
  keep(id, std::move(s));
  return id;
}

void Server::Impl::keep(const std::string& id, std::shared_ptr<Stored> s) {
  std::lock_guard<std::mutex> lock(results_mutex);
  results_bytes += s->bytes;
  results.emplace_front(id, std::move(s));
  // Bounded by count and by bytes; the newest result is always kept.
  while (results.size() > 1 && (results.size() > o.cache_entries || results_bytes > o.cache_bytes)) {
    results_bytes -= results.back().second->bytes;
    results.pop_back();
  }
}

std::shared_ptr<Stored> Server::Impl::stored(const std::string& id) {
  std::lock_guard<std::mutex> lock(results_mutex);
  for (auto it = results.begin(); it != results.end(); ++it)
    if (it->first == id) {
      results.splice(results.begin(), results, it);  // most recently used first
      return it->second;
    }
  throw HttpError(404, "no result '" + id + "' (the last " + std::to_string(o.cache_entries) + " results are kept, within " +
                          std::to_string(o.cache_bytes >> 20) + " MB)");
}

// /api/explain's input: JSON {"image": b64 | "array": [...] | "npy": b64 | "id": data id, ...} or
// multipart (a file part "image" or "npy", text parts model, methods, target, options as JSON).
ExplainWork Server::Impl::api_work(const httplib::Request& req, json* body_out, const std::string& default_methods) const {
  json body = json::object();
  std::string image_bytes, npy_bytes, data_id;
  json array;
  if (req.is_multipart_form_data()) {
    auto text = [&](const std::string& key) -> std::string { return req.has_file(key) ? req.get_file_value(key).content : ""; };
    for (const char* key : {"model", "methods", "method", "target", "resize"})
      if (req.has_file(key)) body[key] = text(key);
    if (req.has_file("options")) {
      body["options"] = parse_json(text("options"));
      if (body["options"].is_discarded()) throw HttpError(400, "the options part is not valid JSON (or nests deeper than 64 levels)");
    }
    if (req.has_file("image")) image_bytes = text("image");
    if (req.has_file("npy")) npy_bytes = text("npy");
    if (req.has_file("id")) data_id = text("id");
  } else {
    body = parse_json(req.body);
    if (body.is_discarded() || !body.is_object()) throw HttpError(400, "the body must be a JSON object, nested at most 64 levels (or multipart/form-data)");
    auto str = [&](const char* key) {
      if (!body.contains(key)) return std::string();
      if (!body[key].is_string()) throw HttpError(400, std::string(key) + " must be text");
      return body[key].get<std::string>();
    };
    if (body.contains("image")) image_bytes = base64_decode(str("image"), "image");
    if (body.contains("npy")) npy_bytes = base64_decode(str("npy"), "npy");
    if (body.contains("array")) array = body["array"];
    data_id = str("id");
  }
  number_target_as_text(body);
  for (const char* key : {"model", "target"})
    if (body.contains(key) && !body[key].is_string()) throw HttpError(400, std::string(key) + " must be text");
  const std::string model_name = body.value("model", std::string());
  const ModelDescription& d = model(model_name);
  if (body.contains("text")) throw HttpError(400, "a text is explained by POST /api/explain (not by jobs or checks)");
  not_text(d, "/api/jobs, /api/checks or an image, npy, array or id input");
  std::vector<InputItem> inputs;
  const int given = !image_bytes.empty() + !npy_bytes.empty() + !array.is_null() + !data_id.empty();
  if (given != 1) throw HttpError(400, "give exactly one input: image, npy, array or id");
  if (!image_bytes.empty()) inputs.push_back(image_input(image_bytes, "image", d.meta, request_resize(body.value("resize", json()))));
  if (!npy_bytes.empty()) {
    torch::Tensor t;
    try {
      t = decode_npy(npy_bytes, "npy");
    } catch (const Error& e) {
      throw HttpError(400, e.what());
    }
    if (t.numel() > o.max_pixels * 4) throw HttpError(413, "npy has more values than this server takes");
    inputs.push_back(array_input(t.to(torch::kFloat), "npy", d.meta, /*stack=*/true));
  }
  if (!array.is_null()) inputs.push_back(array_input(tensor_from_json(array, o.max_pixels * 4, "array"), "array", d.meta, /*stack=*/true));
  if (!data_id.empty()) {
    if (!data) throw HttpError(404, "this server has no --data");
    auto it = data_index.find(data_id);
    if (it == data_index.end()) throw HttpError(404, "no data item '" + data_id + "'");
    DataItem item = data->get(it->second);
    item.input.stem = data_id;
    inputs.push_back(std::move(item.input));
  }
  const json methods = body.contains("methods") ? body["methods"] : body.contains("method") ? body["method"] : json(default_methods);
  ExplainWork w = explain_work(d.name, methods, body.value("options", json()), body.value("target", std::string("top")), std::move(inputs));
  if (body_out) *body_out = std::move(body);
  return w;
}

// POST /api/checks: the viewer's panels on one input, one class. "check": "noise" (k noisy copies'
// maps and each method's max-sensitivity over them), "faithfulness" (deletion and insertion curves
// of the first method's map against a random order) or "randomisation" (its maps as the layers are
// randomised from the output side, with each step's rank correlation). Maps come back inline as
// {"npy": base64}. Runs on a worker like an explanation (queue, timeout, cancel at shutdown).
void Server::Impl::handle_api_checks(const httplib::Request& req, httplib::Response& res) {
  json body;
  const std::string check = [&] {
    const json peek = req.is_multipart_form_data() ? json() : parse_json(req.body);
    if (!peek.is_object() || !peek.contains("check") || !peek["check"].is_string())
      throw HttpError(400, "/api/checks takes a JSON body with \"check\": \"noise\", \"faithfulness\" or \"randomisation\"");
    return peek["check"].get<std::string>();
  }();
  if (check != "noise" && check != "faithfulness" && check != "randomisation")
    throw HttpError(400, "check must be \"noise\", \"faithfulness\" or \"randomisation\", got \"" + check + "\"");
  auto w = std::make_shared<ExplainWork>(api_work(req, &body, check == "noise" ? "saliency,smoothgrad" : "saliency"));
  if (w->request.target.several())
    throw HttpError(400, "a check explains one target: give top, a class index or label, or a function target (A+B, region:C)");
  auto number = [&](const char* key, double fallback, double lo, double hi) {
    if (!body.contains(key)) return fallback;
    if (!body[key].is_number()) throw HttpError(400, std::string(key) + " must be a number");
    const double v = body[key].get<double>();
    auto text = [](double d) {
      std::ostringstream os;
      os << d;
      return os.str();
    };
    if (!(v >= lo && v <= hi)) throw HttpError(400, std::string(key) + " must be in [" + text(lo) + ", " + text(hi) + "], got " + text(v));
    return v;
  };
  const int copies = static_cast<int>(number("copies", 4, 1, static_cast<double>(o.caps.check_copies)));
  const double sigma = number("sigma", 0.015, 1e-6, 0.2);
  const int steps = static_cast<int>(number("steps", 20, 2, static_cast<double>(o.caps.steps)));
  const uint64_t seed = static_cast<uint64_t>(number("seed", 0, 0, 9007199254740992.0));
  auto out = std::make_shared<json>();
  wait(submit(w->model, [w, out, check, copies, sigma, steps, seed](Model& model, Task& task) {
    const torch::Tensor x = w->inputs.at(0).tensor;
    // A function target (a region of a dense output, a sum of classes) is checked on its value.
    ReductionScope scope(model, w->request.target);
    const bool function = w->request.target.kind() == Target::Kind::Function;
    const torch::Tensor logits = model.predict(x.unsqueeze(0));
    const int64_t target = w->request.target.resolve(logits).at(0).at(0);
    json j = {{"check", check},
              {"target", function ? json() : json(target)},
              {"label", function ? w->request.target.to_string() : model.metadata().label(target)},
              {"score", function || model.metadata().regression() ? "value" : "probability"}};
    auto progress = [&task, &check](double f) {
      task.set_progress(check, f);
      task.checkpoint();
    };
    std::vector<Method*> methods;
    for (auto& m : *w->methods) {
      m->set_progress([&task](double) { task.checkpoint(); });
      methods.push_back(m.get());
    }
    if (check == "noise") {
      const checks::NoisyCopies n = checks::noisy_copies(model, methods, x, target, copies, sigma, seed, progress);
      j["sigma"] = n.sigma;
      j["sigma_fraction"] = sigma;
      j["predicted"] = n.predicted;
      j["methods"] = json::object();
      for (size_t k = 0; k < methods.size(); ++k) {
        json maps = json::array();
        for (const auto& m : n.maps[k]) maps.push_back(npy_json(m));
        j["methods"][w->request.methods[k]] = {{"maps", maps}, {"max_sensitivity", n.max_sensitivity[k]}};
      }
    } else {
      Method& method = *methods.at(0);
      j["method"] = w->request.methods.at(0);
      if (check == "faithfulness") {
        const torch::Tensor map = method.attribute(model, x.unsqueeze(0), torch::full({1}, target, torch::kLong)).map[0];
        progress(0.2);
        const checks::Faithfulness f = checks::faithfulness(model, x, target, map, steps, seed);
        auto curve = [](const metrics::Curve& c) { return json{{"auc", c.auc}, {"score", c.score}, {"fraction", c.fraction}}; };
        j["deletion"] = curve(f.deletion);
        j["insertion"] = curve(f.insertion);
        j["random"] = {{"deletion", curve(f.random_deletion)}, {"insertion", curve(f.random_insertion)}};
      } else {
        std::vector<torch::Tensor> maps;
        const auto st = metrics::randomisation(model, method, x, target, /*cascading=*/true, seed, &maps, progress);
        j["original"] = npy_json(maps.at(0));
        j["steps"] = json::array();
        for (size_t i = 0; i < st.size(); ++i)
          j["steps"].push_back({{"layer", st[i].layer}, {"spearman", st[i].spearman}, {"ssim", st[i].ssim}, {"map", npy_json(maps.at(i + 1))}});
      }
    }
    *out = std::move(j);
  }));
  send_json(res, *out);
}

// POST /api/explain {"text": "...", "model", "methods" (default integrated-gradients), "target",
// "options", "layer"} on a text model: token attributions at its embeddings, on a worker; the
// response and its files (<key>.html, .png, .npy) are kept as an image's are.
void Server::Impl::handle_api_explain_text(const json& body, httplib::Response& res) {
  for (const char* key : {"text", "model", "target", "layer"})
    if (body.contains(key) && !body[key].is_string()) throw HttpError(400, std::string(key) + " must be text");
  const ModelDescription& d = model(body.value("model", std::string()));
  if (!d.text)
    throw HttpError(400, "model '" + d.name + "' is not a text model (its metadata has no \"tokenizer\"): send it an image, npy, array or id");
  TextInput in;
  in.stem = in.source = "text";
  in.text = body["text"].get<std::string>();
  const json methods = body.contains("methods") ? body["methods"] : body.contains("method") ? body["method"] : json("integrated-gradients");
  auto w = std::make_shared<ExplainWork>(explain_work(d.name, methods, body.value("options", json()),
                                                      body.value("target", std::string("top")), {}, /*text=*/true));
  check_text_methods(w->request.methods);  // a salient::Error: 400, before the work is queued
  w->request.embedding_layer = body.value("layer", std::string());
  if (!w->request.embedding_layer.empty() && !d.modules.count(w->request.embedding_layer))
    throw HttpError(400, "layer '" + w->request.embedding_layer + "': the model has no such module (GET /v1/models/" + d.name + " lists them)");
  auto out = std::make_shared<TextExplained>();
  wait(submit(d.name, [w, in, out](Model& model, Task& task) {
    ExplainRequest req = w->request;
    req.progress = [&task](const std::string& method, double f) {
      task.set_progress(method, f);
      task.checkpoint();
    };
    const std::string layer = check_text_request(model, req);
    const Tokenized tokens = tokenize_text_input(model.tokenizer(), in);
    std::map<std::string, Error> failed;
    *out = explain_text_input(model, in, tokens, req, *w->methods, layer, failed);
    out->e.warnings.insert(out->e.warnings.end(), w->warnings.begin(), w->warnings.end());
    if (!failed.empty() && failed.size() == req.methods.size()) throw failed.begin()->second;
  }));
  const std::string id = random_id();
  auto s = std::make_shared<Stored>();
  s->model = d.name;
  s->text = true;
  const json response = text_response(id, d.name, *out);
  s->response = response;
  s->files = std::move(out->files);
  s->bytes = held_bytes(*s);
  keep(id, std::move(s));
  send_json(res, response);
}

json Server::Impl::text_response(const std::string& id, const std::string& model_name, const TextExplained& x) {
  const json& rec = x.e.json;
  const std::string base = "/api/results/" + id + "/";
  json results = json::object(), explained = json::array();
  for (const auto& r : rec["explained"]) {
    json ex = {{"class", r["class"]}, {"label", r["label"]}, {"probability", r["probability"]}, {"results", json::object()}};
    for (const auto& [method, mj] : r["methods"].items()) {
      json one = mj;
      for (const char* k : {"html", "png", "npy"}) one[k] = base + mj[k].get<std::string>();
      ex["results"][method] = one;
      const std::string file = mj["npy"].get<std::string>();
      results[file.substr(0, file.size() - 4)] = one;  // METHOD, or METHOD_cCLASS with several targets
    }
    explained.push_back(ex);
  }
  json input = {{"text", rec.value("text", std::string())}, {"tokens", rec["tokens"]}, {"ids", rec["ids"]},
                {"words", rec["words"]}, {"token_word", rec["token_word"]}, {"embedding_layer", rec["embedding_layer"]}};
  json j = {{"id", id},
            {"model", model_name},
            {"input", input},
            {"predictions", rec["predictions"]},
            {"target", rec["target"]},
            {"explained", explained},
            {"results", results},
            {"warnings", x.e.warnings},
            {"explanation", base + "explanation.json"}};
  if (rec.contains("failed")) j["failed"] = rec["failed"];
  return j;
}

void Server::Impl::handle_api_explain(const httplib::Request& req, httplib::Response& res, bool as_job) {
  if (!as_job) {  // a text: JSON {"text", ...} or a multipart part "text"
    json body;
    if (req.is_multipart_form_data()) {
      if (req.has_file("text")) {
        for (const char* key : {"text", "model", "methods", "method", "target", "layer"})
          if (req.has_file(key)) body[key] = req.get_file_value(key).content;
        if (req.has_file("options")) {
          body["options"] = parse_json(req.get_file_value("options").content);
          if (body["options"].is_discarded()) throw HttpError(400, "the options part is not valid JSON (or nests deeper than 64 levels)");
        }
      }
    } else {
      body = parse_json(req.body);
      if (!body.is_object() || !body.contains("text")) body = json();
    }
    number_target_as_text(body);
    if (!body.is_null()) return handle_api_explain_text(body, res);
  }
  ExplainWork w = api_work(req);
  const std::string model_name = w.model;
  const RenderOptions render = w.request.render;
  if (!as_job) {
    std::vector<Explanation> out = run_explain(std::move(w));
    json response;
    store(model_name, std::move(out.at(0)), render, response);
    send_json(res, response);
    return;
  }
  auto job = std::make_shared<Job>();
  job->id = random_id();
  job->model = model_name;
  job->render = render;
  job->created = Clock::now();
  job->out = std::make_shared<std::vector<Explanation>>();
  job->task = submit_explain(std::move(w), job->out);
  {
    std::lock_guard<std::mutex> lock(jobs_mutex);
    jobs[job->id] = job;
    job_order.push_back(job->id);
    // Forget the oldest finished jobs beyond the limit.
    for (auto it = job_order.begin(); jobs.size() > o.max_jobs && it != job_order.end();) {
      const auto st = jobs[*it]->task->state();
      if (st != Task::State::Queued && st != Task::State::Running) {
        jobs.erase(*it);
        it = job_order.erase(it);
      } else {
        ++it;
      }
    }
  }
  send_json(res, {{"id", job->id}, {"status", "queued"}, {"url", "/api/jobs/" + job->id}}, 202);
}

std::shared_ptr<Job> Server::Impl::job_of(const std::string& id) {
  std::lock_guard<std::mutex> lock(jobs_mutex);
  auto it = jobs.find(id);
  if (it == jobs.end()) throw HttpError(404, "no job '" + id + "'");
  return it->second;
}

std::shared_ptr<std::vector<std::pair<int64_t, double>>> Server::Impl::predictions_of_data() {
  {
    std::lock_guard<std::mutex> lock(data_mutex);
    if (data_predictions) return data_predictions;
  }
  auto preds = std::make_shared<std::vector<std::pair<int64_t, double>>>();
  Dataset* set = data.get();
  auto task = submit(default_model, [set, preds](Model& model, Task& task) {
    for (int64_t b = 0; b < set->size(); b += 64) {
      task.checkpoint();
      std::vector<torch::Tensor> xs;
      for (int64_t i = b; i < std::min(set->size(), b + 64); ++i) xs.push_back(set->get(i, false).input.tensor);
      torch::Tensor out = class_scores(model, torch::stack(xs)).to(torch::kCPU, torch::kDouble);
      torch::Tensor p = output_probabilities(model.metadata(), out);
      auto [v, c] = p.max(1);
      for (int64_t k = 0; k < p.size(0); ++k) preds->emplace_back(c[k].item<int64_t>(), v[k].item<double>());
      task.set_progress("predictions", static_cast<double>(preds->size()) / static_cast<double>(set->size()));
    }
  });
  wait(task);
  std::lock_guard<std::mutex> lock(data_mutex);
  data_predictions = preds;
  return preds;
}

namespace {

// cpp-httplib's connection threads, each without an OpenMP team. They parse requests (a little
// tensor work) and wait for the workers; at libgomp's default each one that ran a parallel op kept
// a team of its own, and the front door hands each request to whichever thread is free, so teams
// accumulated (one a thread) until their threads outnumbered the cores and libgomp stopped spinning
// between a worker's parallel regions: a served ResNet-18 saliency went from ~100 to ~135 ms.
class SerialTaskQueue : public httplib::TaskQueue {
 public:
  explicit SerialTaskQueue(size_t n) : pool_(n) {}
  void enqueue(std::function<void()> fn) override {
    pool_.enqueue([fn = std::move(fn)] {
      thread_local const bool serial = [] {
        // ATen sets a thread's team size at its first parallel op (lazy_init_num_threads): first
        // that, then one -- this thread's own setting; the workers keep theirs.
        at::internal::lazy_init_num_threads();
        omp_set_num_threads(1);
        return true;
      }();
      (void)serial;
      fn();
    });
  }
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
};

}  // namespace

void Server::Impl::routes() {
  http.set_payload_max_length(o.max_body);
  // A connection that sends nothing for 5 s is dropped (a steady slow upload is not: the timeout
  // is per read), so half-open requests cannot hold the connection threads for long.
  http.set_read_timeout(5, 0);
  http.set_write_timeout(30, 0);
  http.set_keep_alive_max_count(100);
  http.set_tcp_nodelay(true);  // small JSON answers go out at once, not after a delayed ACK (40 ms)
  // cpp-httplib serves a connection per thread, 8 by default: 8 clients sending a header line every
  // 2 s (under the read timeout) held them all and /healthz waited 10-30 s. Threads are cheap; a
  // pool of --connections (256) keeps 200 slow or idle connections from starving the others.
  http.new_task_queue = [n = static_cast<size_t>(o.connections)] { return new SerialTaskQueue(n); };
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_request_start = Clock::now();
    // --max-body bounds what is read, not what a compressed body inflates to (995 KB of gzip made
    // 1 GB), nor a chunked body's total: neither is accepted, so every body is bounded by its length.
    if (req.has_header("Content-Encoding") && req.get_header_value("Content-Encoding") != "identity") {
      send_error(res, 415, "compressed request bodies (Content-Encoding: " + req.get_header_value("Content-Encoding") +
                               ") are not accepted: send the body as it is");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.has_header("Transfer-Encoding") && req.get_header_value("Transfer-Encoding") != "identity") {
      send_error(res, 411, "chunked request bodies are not accepted: send a Content-Length");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!o.cors.empty()) {
      res.set_header("Access-Control-Allow-Origin", o.cors);
      res.set_header("Vary", "Origin");
    }
    if (req.method == "OPTIONS" && !o.cors.empty()) {
      res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    // The page and its files are public (they hold no data; a browser cannot send a header when
    // it opens a page): the page asks for the token and sends it with every API call.
    if (!o.token.empty() && req.path != "/healthz" && req.path != "/" && req.path.rfind("/assets/", 0) != 0) {
      const std::string want = "Bearer " + o.token, got = req.get_header_value("Authorization");
      // Compared in time independent of where they differ.
      unsigned diff = static_cast<unsigned>(want.size() ^ got.size());
      for (size_t i = 0; i < want.size(); ++i) diff |= static_cast<unsigned>(want[i] ^ (i < got.size() ? got[i] : 0));
      if (diff != 0) {
        res.set_header("WWW-Authenticate", "Bearer");
        send_error(res, 401, "this server needs 'Authorization: Bearer <token>'");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string m = res.status == 404   ? "no such endpoint (see the README's HTTP API)"
                          : res.status == 413 ? "the request body is larger than this server's --max-body"
                          : res.status == 405 ? "method not allowed"
                                              : "bad request (HTTP " + std::to_string(res.status) + ")";
    send_error(res, res.status, m);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_error(res, 500, "internal error");
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    const double s = t_request_start == Clock::time_point{} ? -1.0 : std::chrono::duration<double>(Clock::now() - t_request_start).count();
    t_request_start = Clock::time_point{};
    metrics.observe(endpoint_of(req.method, req.path), res.status, s);
  });

  // Every handler: HttpError -> its status; salient::Error -> 400 (500 for an internal one).
  auto guard = [](auto fn) {
    return [fn](const httplib::Request& req, httplib::Response& res) {
      try {
        fn(req, res);
      } catch (const HttpError& e) {
        if (!e.retry_after.empty()) res.set_header("Retry-After", e.retry_after);
        send_error(res, e.status, one_line(e));
      } catch (const Error& e) {
        send_error(res, e.kind() == ErrorKind::BadInput ? 400 : 500, one_line(e));
      } catch (const json::type_error& e) {
        // 316: a string of the request's that is not valid UTF-8 reached a JSON record.
        if (e.id == 316) send_error(res, 400, "the request holds text that is not valid UTF-8");
        else send_error(res, 500, one_line(e));
      } catch (const std::exception& e) {
        send_error(res, 500, one_line(e));
      }
    };
  };

  // The viewer: files only from the set embedded at build time (cmake/embed_assets.cmake), by name.
  auto asset = [](const std::string& name, httplib::Response& res) {
    const auto& files = embedded_assets();
    auto it = files.find(name);
    if (it == files.end()) throw HttpError(404, "the viewer has no file '" + name + "'");
    static const std::map<std::string, std::string> types = {{"html", "text/html; charset=utf-8"},
                                                             {"js", "text/javascript; charset=utf-8"},
                                                             {"css", "text/css; charset=utf-8"},
                                                             {"svg", "image/svg+xml"}};
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Content-Type-Options", "nosniff");
    // Defence in depth behind the page's own rule (every string inserted as text): no inline
    // script, nothing from another origin.
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                   "object-src 'none'; base-uri 'none'; frame-ancestors 'none'");
    res.set_content(std::string(it->second), types.at(name.substr(name.rfind('.') + 1)));
  };
  http.Get("/", guard([asset](const httplib::Request&, httplib::Response& res) { asset("index.html", res); }));
  http.Get(R"(/assets/([A-Za-z0-9_-]+\.(html|js|css|svg)))",
           guard([asset](const httplib::Request& req, httplib::Response& res) { asset(req.matches[1], res); }));

  http.Get("/healthz", guard([this](const httplib::Request&, httplib::Response& res) {
    size_t kept = 0, kept_bytes = 0;
    {
      std::lock_guard<std::mutex> lock(results_mutex);
      kept = results.size();
      kept_bytes = results_bytes;
    }
    send_json(res, {{"status", "ok"}, {"workers", pool->workers()}, {"busy", pool->busy()}, {"queue", pool->depth()},
                    {"results", {{"kept", kept}, {"bytes", kept_bytes}, {"max_bytes", o.cache_bytes}}}});
  }));
  http.Get("/metrics", guard([this](const httplib::Request&, httplib::Response& res) {
    std::ostringstream m;
    m << "# HELP salient_requests_total HTTP requests by endpoint and status.\n# TYPE salient_requests_total counter\n";
    std::lock_guard<std::mutex> lock(metrics.mutex);
    for (const auto& [key, n] : metrics.requests)
      m << "salient_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second << "\"} " << n << "\n";
    m << "# HELP salient_request_seconds Request latency.\n# TYPE salient_request_seconds histogram\n";
    int64_t cumulative = 0;
    for (size_t b = 0; b < buckets().size(); ++b) {
      cumulative += metrics.latency[b];
      m << "salient_request_seconds_bucket{le=\"" << buckets()[b] << "\"} " << cumulative << "\n";
    }
    cumulative += metrics.latency.back();
    m << "salient_request_seconds_bucket{le=\"+Inf\"} " << cumulative << "\n";
    m << "salient_request_seconds_sum " << metrics.latency_sum << "\nsalient_request_seconds_count " << metrics.latency_count << "\n";
    m << "# HELP salient_queue_depth Requests waiting for a worker.\n# TYPE salient_queue_depth gauge\nsalient_queue_depth "
      << pool->depth() << "\n";
    m << "# HELP salient_workers_busy Workers explaining now.\n# TYPE salient_workers_busy gauge\nsalient_workers_busy "
      << pool->busy() << "\n";
    int64_t in_flight = 0;
    {
      std::lock_guard<std::mutex> jobs_lock(jobs_mutex);
      for (const auto& [id, job] : jobs) {
        const auto st = job->task->state();
        in_flight += st == Task::State::Queued || st == Task::State::Running;
      }
    }
    m << "# HELP salient_jobs_in_flight Jobs queued or running.\n# TYPE salient_jobs_in_flight gauge\nsalient_jobs_in_flight "
      << in_flight << "\n";
    res.set_content(m.str(), "text/plain; version=0.0.4");
  }));
  http.Get("/v1/models", guard([this](const httplib::Request&, httplib::Response& res) {
    json list = json::array();
    for (const auto& [name, d] : models) list.push_back({{"name", name}, {"backend", d.info["backend"]}, {"ready", true}});
    send_json(res, {{"models", list}, {"default", default_model}});
  }));
  http.Get(R"(/v1/models/([^/:]+))", guard([this](const httplib::Request& req, httplib::Response& res) {
    send_json(res, model(req.matches[1]).info);
  }));
  http.Get("/v1/methods", guard([this](const httplib::Request&, httplib::Response& res) {
    json all = json::array();
    const auto& reg = Registry::builtin();
    const auto caps = option_caps();
    for (const auto& n : reg.names()) {
      json m = reg.info(n).to_json();
      for (auto& opt : m["options"])  // the max this server takes, and the default it uses
        if (auto cap = caps.find(opt["name"].get<std::string>()); cap != caps.end()) {
          opt["max"] = opt.contains("max") ? std::min(opt["max"].get<int64_t>(), cap->second) : cap->second;
          if (opt["default"].is_number() && opt["default"].get<double>() > static_cast<double>(cap->second)) opt["default"] = cap->second;
        }
      all.push_back(std::move(m));
    }
    send_json(res, all);
  }));

  // KServe v1: {"instances": [...], "parameters": {...}}.
  auto instances_of = [this](const httplib::Request& req, const ModelDescription& d, json& parameters) {
    json body = parse_json(req.body);
    if (body.is_discarded() || !body.is_object()) throw HttpError(400, "the body must be a JSON object {\"instances\": [...]}, nested at most 64 levels");
    if (!body.contains("instances") || !body["instances"].is_array() || body["instances"].empty())
      throw HttpError(400, "instances must be a non-empty list");
    if (static_cast<int64_t>(body["instances"].size()) > o.caps.instances)
      throw HttpError(413, std::to_string(body["instances"].size()) + " instances, more than this server's cap of " +
                               std::to_string(o.caps.instances));
    not_text(d, "KServe's v1 protocol");
    parameters = body.value("parameters", json::object());
    if (!parameters.is_object()) throw HttpError(400, "parameters must be an object");
    std::vector<InputItem> inputs;
    const Resize resize = request_resize(parameters.value("resize", json()));
    for (size_t i = 0; i < body["instances"].size(); ++i) inputs.push_back(instance(body["instances"][i], i, d.meta, resize));
    return inputs;
  };
  http.Post(R"(/v1/models/([^/:]+):predict)", guard([this, instances_of](const httplib::Request& req, httplib::Response& res) {
    const ModelDescription& d = model(req.matches[1]);
    json parameters;
    auto inputs = std::make_shared<std::vector<InputItem>>(instances_of(req, d, parameters));
    for (const auto& in : *inputs)
      if (!in.tensor.sizes().equals((*inputs)[0].tensor.sizes())) throw HttpError(400, "instances of one request must have one shape");
    auto out = std::make_shared<torch::Tensor>();
    wait(submit(d.name, [inputs, out](Model& model, Task&) {
      std::vector<torch::Tensor> xs;
      for (const auto& in : *inputs) xs.push_back(in.tensor);
      *out = class_scores(model, torch::stack(xs)).to(torch::kCPU, torch::kDouble);  // a dense output: per-class means
    }));
    const ModelMetadata& meta = d.meta;
    const torch::Tensor lg = *out;
    const torch::Tensor p = output_probabilities(meta, lg);
    json preds = json::array();
    for (int64_t i = 0; i < p.size(0); ++i) {
      const int64_t c = p[i].argmax().item<int64_t>();
      preds.push_back({{"class", c}, {"label", meta.label(c)}, {"probabilities", tensor_to_json(p[i])}, {"logits", tensor_to_json(lg[i])}});
    }
    send_json(res, {{"predictions", preds}});
  }));
  http.Post(R"(/v1/models/([^/:]+):explain)", guard([this, instances_of](const httplib::Request& req, httplib::Response& res) {
    const ModelDescription& d = model(req.matches[1]);
    json parameters;
    std::vector<InputItem> inputs = instances_of(req, d, parameters);
    number_target_as_text(parameters);
    for (const char* key : {"target", "method"})
      if (parameters.contains(key) && !parameters[key].is_string()) throw HttpError(400, std::string("parameters.") + key + " must be text");
    const json methods = parameters.contains("methods") ? parameters["methods"] : parameters.contains("method") ? parameters["method"] : json();
    std::vector<Explanation> out = run_explain(explain_work(d.name, methods, parameters.value("options", json()),
                                                            parameters.value("target", std::string("top")), std::move(inputs)));
    json explanations = json::array();
    for (const auto& e : out) {
      json explained = json::array();
      for (size_t r = 0; r < e.maps.size(); ++r) {
        const json& rec = e.record["explained"][r];
        json maps = json::object();
        for (const auto& [method, mm] : e.maps[r]) maps[method] = tensor_to_json(mm.map);
        explained.push_back({{"class", rec["class"]}, {"label", rec["label"]}, {"probability", rec["probability"]}, {"maps", maps}});
      }
      explanations.push_back({{"predictions", e.record["predictions"]}, {"target", e.record["target"]}, {"explained", explained},
                              {"warnings", e.warnings}});
    }
    send_json(res, {{"explanations", explanations}});
  }));
  // TorchServe: the raw image as the body; ?target=&method= (Captum's Integrated Gradients by default).
  http.Post(R"(/explanations/([^/]+))", guard([this](const httplib::Request& req, httplib::Response& res) {
    const ModelDescription& d = model(req.matches[1]);
    not_text(d, "/explanations (TorchServe)");
    std::vector<InputItem> inputs;
    const std::string type = req.get_header_value("Content-Type");
    if (type.rfind("application/json", 0) == 0) {
      json body = parse_json(req.body);
      if (body.is_discarded()) throw HttpError(400, "the body is not valid JSON (or nests deeper than 64 levels)");
      inputs.push_back(array_input(tensor_from_json(body.is_object() && body.contains("data") ? body["data"] : body, o.max_pixels * 4, "body"), "body", d.meta));
    } else {
      inputs.push_back(image_input(req.body, "body", d.meta, request_resize(req.has_param("resize") ? json(req.get_param_value("resize")) : json())));
    }
    const std::string method = req.has_param("method") ? req.get_param_value("method") : "integrated-gradients";
    const std::string target = req.has_param("target") ? req.get_param_value("target") : "top";
    std::vector<Explanation> out = run_explain(explain_work(d.name, json(method), json::object(), target, std::move(inputs)));
    const auto& maps = out.at(0).maps.at(0);
    if (maps.empty()) throw HttpError(500, out.at(0).record.value("failed", json::object()).dump());
    send_json(res, tensor_to_json(maps.begin()->second.map));
  }));

  http.Post("/api/explain", guard([this](const httplib::Request& req, httplib::Response& res) { handle_api_explain(req, res, false); }));
  http.Post("/api/checks", guard([this](const httplib::Request& req, httplib::Response& res) { handle_api_checks(req, res); }));
  http.Post("/api/jobs", guard([this](const httplib::Request& req, httplib::Response& res) { handle_api_explain(req, res, true); }));
  http.Get(R"(/api/jobs/([0-9a-f]+))", guard([this](const httplib::Request& req, httplib::Response& res) {
    const std::shared_ptr<Job> job = job_of(req.matches[1]);
    const auto st = job->task->state();
    static const char* names[] = {"queued", "running", "done", "failed", "cancelled"};
    json j = {{"id", job->id}, {"status", names[static_cast<int>(st)]}, {"progress", job->task->progress()},
              {"seconds", job->task->seconds()}};
    if (st == Task::State::Done) {
      std::lock_guard<std::mutex> lock(jobs_mutex);  // one thread builds and stores the result
      if (!job->response) {
        job->response = std::make_shared<json>();
        store(job->model, std::move(job->out->at(0)), job->render, *job->response);
      }
      j["result"] = *job->response;
    } else if (st == Task::State::Failed || st == Task::State::Cancelled) {
      j["error"] = job->task->error();
      if (job->task->timed_out()) {
        j["status"] = "timed-out";
        send_json(res, j, 504);
        return;
      }
    }
    send_json(res, j);
  }));
  http.Delete(R"(/api/jobs/([0-9a-f]+))", guard([this](const httplib::Request& req, httplib::Response& res) {
    const std::shared_ptr<Job> job = job_of(req.matches[1]);
    job->task->cancel("cancelled by a DELETE");
    send_json(res, {{"id", job->id}, {"status", "cancelling"}});
  }));
  http.Get(R"(/api/results/([0-9a-f]+)/([A-Za-z0-9+_.-]+)\.(npy|png|json|html))", guard([this](const httplib::Request& req, httplib::Response& res) {
    auto s = stored(req.matches[1]);
    const std::string key = req.matches[2], ext = req.matches[3];
    if (key == "explanation" && ext == "json") {
      send_json(res, s->response);
      return;
    }
    if (s->text) {  // a text's token pages, pictures and scores, as made
      auto f = s->files.find(key + "." + ext);
      if (f == s->files.end()) throw HttpError(404, "result '" + std::string(req.matches[1]) + "' has no '" + key + "." + ext + "'");
      if (ext == "html") {  // every token is escaped text; nothing may load or run
        res.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
        res.set_content(f->second, "text/html; charset=utf-8");
      } else {
        res.set_content(f->second, ext == "png" ? "image/png" : "application/octet-stream");
      }
      return;
    }
    if (ext == "html") throw HttpError(404, "result '" + std::string(req.matches[1]) + "' has no '" + key + ".html'");
    const Explanation& e = s->explanation;
    if (key == "input" && ext == "png") {  // the input as the model saw it (resized, cropped)
      if (!is_image_like(e.input.tensor)) throw HttpError(404, "result '" + std::string(req.matches[1]) + "' has no picture of its input");
      const cv::Mat picture = e.input.display.empty() ? tensor_to_display(e.input.tensor, model(s->model).meta) : e.input.display;
      res.set_content(encode_png(picture), "image/png");
      return;
    }
    for (size_t r = 0; r < e.maps.size(); ++r)
      for (const auto& [method, mm] : e.maps[r]) {
        if ((e.several ? method + "_c" + std::to_string(e.targets[r]) : method) != key) continue;
        if (ext == "npy") {
          res.set_content(encode_npy(mm.map), "application/octet-stream");
        } else if (ext == "png" && is_image_like(mm.map)) {
          res.set_content(encode_png(render_heatmap(mm.map, e.input.display, s->render)), "image/png");
        } else {
          throw HttpError(404, "no ." + ext + " for '" + key + "'");
        }
        return;
      }
    throw HttpError(404, "result '" + std::string(req.matches[1]) + "' has no '" + key + "'");
  }));
  http.Get("/api/data", guard([this](const httplib::Request& req, httplib::Response& res) {
    if (!data) throw HttpError(404, "this server has no --data");
    auto number = [&](const char* key, int64_t fallback, int64_t lo, int64_t hi) {
      if (!req.has_param(key)) return fallback;
      const std::string v = req.get_param_value(key);
      try {
        size_t used = 0;
        const long long x = std::stoll(v, &used);
        if (used == v.size() && x >= lo && x <= hi) return static_cast<int64_t>(x);
      } catch (const std::exception&) {
      }
      throw HttpError(400, std::string(key) + " must be a whole number in " + std::to_string(lo) + ".." + std::to_string(hi));
    };
    const int64_t offset = number("offset", 0, 0, data->size()), limit = number("limit", 50, 1, 1000);
    const int64_t cls = number("class", -1, 0, 1 << 30), predicted = number("predicted", -1, 0, 1 << 30);
    const bool need = req.has_param("correct") || req.has_param("predicted") || req.has_param("min_confidence");
    int correct = -1;
    if (req.has_param("correct")) {
      const std::string v = req.get_param_value("correct");
      if (v != "true" && v != "false") throw HttpError(400, "correct must be true or false");
      correct = v == "true";
      if (!data->has_labels()) throw HttpError(400, "the data set has no labels: correct cannot be told");
    }
    double min_conf = 0;
    if (req.has_param("min_confidence")) {
      if (!parse_number(req.get_param_value("min_confidence"), min_conf)) throw HttpError(400, "min_confidence must be a number");
    }
    auto preds = need ? predictions_of_data() : nullptr;
    const ModelMetadata& meta = models.at(default_model).meta;
    json items = json::array();
    int64_t matched = 0;
    for (int64_t i = 0; i < data->size(); ++i) {
      const int64_t label = data->label(i);
      if (cls >= 0 && label != cls) continue;
      if (preds) {
        const auto& [c, p] = (*preds)[static_cast<size_t>(i)];
        if (predicted >= 0 && c != predicted) continue;
        if (correct >= 0 && (c == label) != (correct == 1)) continue;
        if (p < min_conf) continue;
      }
      if (matched++ < offset || static_cast<int64_t>(items.size()) >= limit) continue;
      const std::string id = data->id(i);
      json item = {{"id", id}, {"url", "/api/data/" + httplib::detail::encode_query_param(id)}};
      if (label >= 0) item["label"] = {{"class", label}, {"name", meta.label(label)}};
      if (preds) {
        const auto& [c, p] = (*preds)[static_cast<size_t>(i)];
        item["predicted"] = {{"class", c}, {"name", meta.label(c)}, {"probability", p}};
      }
      items.push_back(item);
    }
    send_json(res, {{"total", matched}, {"offset", offset}, {"items", items}});
  }));
  http.Get(R"(/api/data/(.+))", guard([this](const httplib::Request& req, httplib::Response& res) {
    if (!data) throw HttpError(404, "this server has no --data");
    auto it = data_index.find(req.matches[1]);  // an id of the data set, never a path
    if (it == data_index.end()) throw HttpError(404, "no data item '" + std::string(req.matches[1]) + "'");
    DataItem item = data->get(it->second);
    const ModelMetadata& meta = models.at(default_model).meta;
    if (!is_image_like(item.input.tensor)) {  // a tabular row: its columns as the CSV has them
      json row = {{"id", item.id}, {"shape", item.input.tensor.sizes().vec()}, {"features", feature_values(meta, item.input.tensor)}};
      if (item.label >= 0) row["label"] = {{"class", item.label}, {"name", meta.label(item.label)}};
      send_json(res, row);
      return;
    }
    cv::Mat picture = item.input.display.empty() ? tensor_to_display(item.input.tensor, meta) : item.input.display;
    res.set_content(encode_png(picture), "image/png");
  }));
}

Server::Server(ServeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() { stop(); }

int Server::bind() {
  const ServeOptions& o = impl_->o;
  // cpp-httplib on a free loopback port, reached only through the front door (front.hpp), which
  // takes the public address and passes on requests that arrived whole and within bounds.
  const int upstream = impl_->http.bind_to_any_port("127.0.0.1");
  if (upstream < 0) throw Error("cannot listen on a loopback port for the service");
  FrontOptions f;
  f.max_body = o.max_body;
  f.max_connections = static_cast<size_t>(o.max_connections);
  f.header_deadline = std::chrono::milliseconds(static_cast<int64_t>(o.header_timeout * 1000));
  f.idle_timeout = std::min(f.idle_timeout, f.header_deadline);
  f.body_budget = std::max<size_t>(size_t{64} << 20, 4 * o.max_body);
  impl_->front = std::make_unique<Front>(f, upstream);
  const int port = impl_->front->bind(o.host, o.port);
  if (port < 0) throw Error("cannot listen on " + o.host + ":" + std::to_string(o.port) + " (in use, or not an address of this machine)");
  impl_->bound_port = port;
  return port;
}

int Server::port() const { return impl_->bound_port; }

void Server::run() {
  std::thread service([this] { impl_->http.listen_after_bind(); });
  impl_->front->run();
  impl_->http.stop();
  service.join();
}

void Server::stop() {
  if (!impl_) return;
  if (impl_->front) impl_->front->stop();
  impl_->http.stop();
  impl_->pool->stop();
}

const std::vector<std::string>& Server::warnings() const { return impl_->warnings; }

}  // namespace salient::serve
