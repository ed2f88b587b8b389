#pragma once
// `salient serve`: the explanation service. Models load once at start; explanations run on a
// bounded pool of workers, each with its own instance of every model and new method instances per
// request; results stay in memory (a bounded cache) and leave as JSON, .npy and PNG bytes.
//
// HTTP API (README, "salient serve"): KServe v1 (`/v1/models/{m}:predict`, `:explain`), TorchServe
// (`/explanations/{m}`), Salient's own (`/api/explain`, `/api/results/...`, `/api/jobs`,
// `/api/data`), `/v1/methods`, `/healthz`, `/metrics`.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "salient/image.hpp"
#include "salient/model.hpp"

namespace salient::serve {

// Per-server ceilings of the options that size a request's work (a 400 naming the option above
// them): tighter than the library's own caps, since a server's requests come from anyone.
struct Caps {
  int64_t samples = 1000;        // smoothgrad, noise-tunnel, gradient-shap, lime, kernel-shap, rise, ...
  int64_t steps = 256;           // integrated-gradients steps and max-steps
  int64_t batch_size = 256;      // rows per pass
  int64_t baseline_count = 100;  // gradient-shap
  int64_t grid = 64;             // rise
  int64_t copies = 256;          // noise-tunnel
  int64_t top_k = 10;            // top-K targets
  int64_t instances = 64;        // inputs per request
  int64_t check_copies = 16;     // noisy copies of POST /api/checks
};

struct ServeOptions {
  // NAME=PATH pairs; the first is the default model of requests that name none.
  std::vector<std::pair<std::string, std::string>> models;
  ModelOptions model;         // device, --output, --metadata (first model), --freeze
  std::string data;           // --data: a data set to browse by id (Dataset::open's kinds)
  Resize data_resize = Resize::None;  // --resize: --data images of another size than the model's input
  std::string host = "127.0.0.1";
  int port = 8080;            // 0: any free port (see Server::port())
  int workers = 1;            // explanations at once
  int queue = 16;             // requests waiting beyond the workers (full: 503 + Retry-After)
  int connections = 256;      // requests served at once (HTTP threads); they reach them whole
  int max_connections = 1024; // open client connections: at the cap the oldest one still waiting for
                              // a request's header is dropped (idle and slow clients cost a socket)
  double header_timeout = 10; // seconds a request's header may take to arrive (408/closed after)
  size_t max_body = 10u << 20;
  int64_t max_pixels = 25000000;
  double timeout = 120;       // seconds a request or job may run before it is cancelled (504)
  std::string token;          // non-empty: requests need "Authorization: Bearer <token>"
  bool insecure = false;      // a non-loopback host without a token
  std::string cors;           // an allowed origin; empty: no CORS headers
  int threads = 0;            // LibTorch threads (0: cores / workers, at least 1)
  size_t cache_entries = 256; // /api/explain results kept ...
  size_t cache_bytes = 512u << 20;  // ... within this many bytes of maps and inputs
  size_t max_jobs = 256;      // jobs remembered (finished ones are forgotten oldest first)
  Caps caps;
};

class Server {
 public:
  // Loads every model (workers instances of each) and checks the options: salient::Error (exit 2)
  // for a bad model, a bad --data or an address that needs a token.
  explicit Server(ServeOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (port 0: a free one) and returns the port; salient::Error when it cannot.
  int bind();
  int port() const;
  // Serves until stop(); call after bind().
  void run();
  // Stops accepting, cancels running and queued work, joins the workers. Safe from any thread.
  void stop();
  // Warnings for the operator (an open address without a token), one line each.
  const std::vector<std::string>& warnings() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace salient::serve
