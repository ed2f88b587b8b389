#pragma once
// The service's front door: an event-driven HTTP/1.1 reader (Boost.Beast on one Asio thread) in
// front of the cpp-httplib server, which listens on loopback only. cpp-httplib (Debian's 0.11.4)
// gives each connection a thread and bounds neither the number of header lines nor the time a
// request may take to arrive (its timeout is per read), so slow or idle clients held its threads
// and a million headers cost 120 MB a connection. Here a connection costs a socket and a buffer
// until a whole request has arrived within its bounds; only then is it passed on:
//   - the header block: at most `max_header_bytes` (431), within `header_deadline` of its first
//     byte's wait (408 once a byte came; an idle keep-alive connection is just closed);
//   - the body: at most `max_body` (413), within `body_deadline` plus a second per `min_rate`
//     bytes (408); a chunked body is refused (411) and so never unbounded;
//   - at most `max_connections` open: at the cap the oldest connection still waiting for its
//     request's header is dropped for the new one;
//   - bodies being received at once hold at most `body_budget` bytes in all (503 + Retry-After).
// Requests are forwarded as parsed and answers relayed back; a client connection keeps its
// upstream one between requests while fewer than `max_idle_upstream` are kept (each holds a
// service thread while idle); errors are the service's {"error": "..."} JSON.
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace salient::serve {

struct FrontOptions {
  size_t max_header_bytes = 16u << 10;
  size_t max_body = 10u << 20;
  std::chrono::milliseconds header_deadline{10000};
  std::chrono::milliseconds idle_timeout{5000};     // a kept-alive connection waiting for its next request
  std::chrono::milliseconds body_deadline{10000};
  size_t min_rate = 64u << 10;                      // bytes a second a body must at least arrive at
  size_t max_connections = 1024;
  size_t body_budget = 64u << 20;
  size_t max_idle_upstream = 32;                    // upstream connections kept between a client's requests
};

class Front {
 public:
  Front(FrontOptions options, int upstream_port);
  ~Front();
  Front(const Front&) = delete;
  Front& operator=(const Front&) = delete;
  // Binds host:port (0: any free port); returns the port, or -1 when it cannot.
  int bind(const std::string& host, int port);
  // Serves until stop().
  void run();
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace salient::serve
