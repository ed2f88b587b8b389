// salient serve: the explanation service (include/salient/serve.hpp; the HTTP API in the README).
#include <pthread.h>
#include <signal.h>

#include <filesystem>
#include <iostream>
#include <thread>

#include "commands.hpp"
#include "salient/error.hpp"
#include "salient/fsutil.hpp"
#include "salient/serve.hpp"

namespace salient::cli {

namespace {

// "10MB", "512KB", "1GB" or a number of bytes.
size_t parse_size(const std::string& text) {
  const size_t digits = text.find_first_not_of("0123456789.");
  const std::string unit = digits == std::string::npos ? "" : text.substr(digits);
  double v = 0;
  const bool number = parse_number(text.substr(0, digits), v);
  const double scale = unit.empty() || unit == "B" ? 1 : unit == "KB" ? 1024.0 : unit == "MB" ? 1048576.0 : unit == "GB" ? 1073741824.0 : -1;
  if (!number || scale < 0 || !(v > 0) || v * scale > 4e9)
    throw Error("--max-body '" + text + "' is not a size such as 10MB, 512KB or 1048576 (at most 4GB)");
  return static_cast<size_t>(v * scale);
}

}  // namespace

void add_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "serve explanations over HTTP (KServe v1, TorchServe and Salient's API; see the README)");
  struct Flags {
    std::vector<std::string> models;
    std::string device = "cpu", output, metadata, data, host = "127.0.0.1", max_body = "10MB", token_file, cors, resize = "none";
    int port = 8080, workers = 1, queue = 16, threads = 0, connections = 256, max_connections = 1024;
    double header_timeout = 10;
    int64_t max_pixels = 25000000;
    double timeout = 120;
    bool insecure = false, freeze = true;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("--model,-m", f->models, "a model, or NAME=PATH (repeatable; the first is the default)")->required();
  cmd->add_option("--data", f->data, "a data set to browse by id (folder, list, .npy, IDX)");
  add_resize_option(cmd, f->resize);  // --data images of another size than the model's input
  cmd->add_option("--host", f->host, "address to listen on (anything but loopback needs --token-file or --insecure)")->capture_default_str();
  cmd->add_option("--port", f->port, "port (0: any free one, printed)")->capture_default_str();
  cmd->add_option("--workers", f->workers, "explanations computed at once (each with its own model instances)")->capture_default_str();
  cmd->add_option("--queue", f->queue, "requests waiting for a worker before 503")->capture_default_str();
  cmd->add_option("--max-connections", f->max_connections,
                  "open client connections; at the cap the oldest one still waiting for a request's header is dropped")
      ->capture_default_str();
  cmd->add_option("--header-timeout", f->header_timeout, "seconds a request's header may take to arrive")->capture_default_str();
  cmd->add_option("--connections", f->connections, "requests served at once (HTTP threads; a request reaches one only once it has arrived whole)")
      ->capture_default_str();
  cmd->add_option("--max-body", f->max_body, "largest request body (413 above)")->capture_default_str();
  cmd->add_option("--max-pixels", f->max_pixels, "largest image, checked from its header before decoding (413 above)")->capture_default_str();
  cmd->add_option("--timeout", f->timeout, "seconds a request or job may run before it is cancelled (504)")->capture_default_str();
  cmd->add_option("--token-file", f->token_file, "file holding a token: requests then need 'Authorization: Bearer <token>'");
  cmd->add_flag("--insecure", f->insecure, "allow a non-loopback --host without a token");
  cmd->add_option("--cors", f->cors, "an origin allowed to call the API from a browser (off by default)");
  cmd->add_option("--device", f->device, "torch device: cpu, cuda, cuda:N")->capture_default_str();
  cmd->add_option("--threads", f->threads, "LibTorch threads (default: cores / workers)");
  cmd->add_option("--output", f->output, "which model output to explain when it returns a tuple/list/dict");
  cmd->add_option("--metadata", f->metadata, "sidecar metadata JSON of the first model (default: <model>.json)");
  cmd->add_flag("--freeze,!--no-freeze", f->freeze, "forward-only passes run a frozen copy (default on)");
  cmd->callback([f] {
    serve::ServeOptions o;
    for (const auto& m : f->models) {
      const auto eq = m.find('=');
      // NAME=PATH, unless the whole text is an existing file (a path with '=' in it).
      if (eq != std::string::npos && eq > 0 && !std::filesystem::exists(m))
        o.models.emplace_back(m.substr(0, eq), m.substr(eq + 1));
      else
        o.models.emplace_back(std::filesystem::path(m).stem().string(), m);
    }
    o.model.device = f->device;
    o.model.output = f->output;
    o.model.metadata_path = f->metadata;
    o.model.freeze = f->freeze;
    o.data = f->data;
    o.data_resize = parse_resize(f->resize);
    o.host = f->host;
    o.port = f->port;
    o.workers = f->workers;
    o.queue = f->queue;
    o.connections = f->connections;
    o.max_connections = f->max_connections;
    o.header_timeout = f->header_timeout;
    o.max_body = parse_size(f->max_body);
    o.max_pixels = f->max_pixels;
    o.timeout = f->timeout;
    o.insecure = f->insecure;
    o.cors = f->cors;
    o.threads = f->threads;
    if (f->threads < 0) throw Error("--threads must be >= 0");
    if (!f->token_file.empty()) {
      std::string token = read_file(f->token_file, 4096);
      while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
      if (token.size() < 16) throw Error("--token-file '" + f->token_file + "' must hold a token of at least 16 characters");
      o.token = token;
    }
    // SIGTERM and SIGINT are taken by one thread (sigwait), blocked in every other, so shutdown is
    // ordinary code: stop accepting, cancel the work, join, exit 0.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    serve::Server server(o);
    for (const auto& w : server.warnings()) std::cerr << "warning: " << w << "\n";
    const int port = server.bind();
    std::thread waiter([&server, signals] {
      int sig = 0;
      sigwait(&signals, &sig);
      server.stop();
    });
    std::cout << "salient serve: listening on http://" << o.host << ":" << port << " (" << o.models.size() << " model"
              << (o.models.size() == 1 ? "" : "s") << ", " << o.workers << " worker" << (o.workers == 1 ? "" : "s") << ")"
              << std::endl;
    server.run();
    server.stop();
    pthread_kill(waiter.native_handle(), SIGTERM);  // the waiter, if the server stopped for another reason
    waiter.join();
    std::cout << "salient serve: stopped" << std::endl;
  });
}

}  // namespace salient::cli
