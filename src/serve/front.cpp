// The service's front door (see front.hpp): Boost.Beast sessions on one Asio thread.
#include "front.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <list>
#include <optional>

namespace salient::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

class Session;

// The front's state, touched on its one thread only.
struct State {
  FrontOptions o;
  tcp::endpoint upstream;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  size_t open = 0;         // client connections
  size_t body_bytes = 0;   // declared bodies being received
  size_t idle_upstream = 0;  // upstream connections kept open between a client's requests
  std::list<std::weak_ptr<Session>> waiting;  // connections waiting for a request's header, oldest first
};

std::string escape(const std::string& s) {  // a JSON string's characters
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(State& s, tcp::socket socket) : s_(s), client_(std::move(socket)), upstream_(s.io) { ++s_.open; }
  ~Session() {
    release();
    if (kept_upstream_) --s_.idle_upstream;
    --s_.open;
  }
  void start() { read_header(); }
  // Dropped for a newer connection (the cap): only while it waits for a header.
  bool drop_if_waiting() {
    if (!waiting_) return false;
    waiting_ = false;  // dropped once
    error_code ec;
    client_.socket().close(ec);
    return true;
  }

 private:
  void read_header() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(s_.o.max_header_bytes));
    parser_->body_limit(s_.o.max_body);
    waiting_ = true;
    at_ = s_.waiting.insert(s_.waiting.end(), weak_from_this());
    client_.expires_after(first_ ? s_.o.header_deadline : s_.o.idle_timeout);
    http::async_read_header(client_, buffer_, *parser_, [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(error_code ec) {
    waiting_ = false;
    s_.waiting.erase(at_);
    first_ = false;
    // Timed out (the stream is closed by then), closed, or reset: nothing to answer.
    if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor)
      return close();
    if (ec == http::error::header_limit)
      return fail(http::status::request_header_fields_too_large,
                  "the request's header is larger than " + std::to_string(s_.o.max_header_bytes >> 10) + " KiB");
    if (ec == http::error::body_limit)  // its Content-Length, seen with the header
      return fail(http::status::payload_too_large, "the request body is over --max-body (" + std::to_string(s_.o.max_body) + " bytes)");
    if (ec) return fail(http::status::bad_request, "malformed HTTP request: " + ec.message());
    auto& req = parser_->get();
    if (parser_->chunked())
      return fail(http::status::length_required, "chunked request bodies are not accepted: send a Content-Length");
    const uint64_t length = parser_->content_length().value_or(0);
    if (length > s_.o.max_body)
      return fail(http::status::payload_too_large, "the request body is " + std::to_string(length) + " bytes, over --max-body (" +
                                                       std::to_string(s_.o.max_body) + ")");
    if (length > 0) {
      if (s_.body_bytes + length > s_.o.body_budget)
        return fail(http::status::service_unavailable, "too many request bodies are arriving at once: retry shortly", true);
      reserved_ = static_cast<size_t>(length);
      s_.body_bytes += reserved_;
    }
    const auto deadline = s_.o.body_deadline + std::chrono::seconds(length / std::max<size_t>(s_.o.min_rate, 1));
    if (beast::iequals(req[http::field::expect], "100-continue")) {  // the client waits for this before its body
      req.erase(http::field::expect);
      client_.expires_after(deadline);
      static const std::string go = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(client_, asio::buffer(go), [self = shared_from_this(), deadline](error_code ec, size_t) {
        if (ec) return self->close();
        self->read_body(deadline);
      });
      return;
    }
    read_body(deadline);
  }

  void read_body(std::chrono::steady_clock::duration deadline) {
    // Reads as large as the buffer's free room: without room a body came in 512-byte reads, each
    // with its system calls and timer update (a 600 KB upload cost the front ~25 ms).
    buffer_.reserve(64u << 10);
    client_.expires_after(deadline);
    http::async_read(client_, buffer_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
      self->release();
      if (ec == http::error::body_limit)
        return self->fail(http::status::payload_too_large, "the request body is over --max-body (" + std::to_string(self->s_.o.max_body) + " bytes)");
      if (ec) return self->close();  // timed out, or the client went away
      self->forward();
    });
  }

  // The whole request arrived: forwarded on this client's upstream connection when it kept one
  // (recently: the service drops idle ones after 5 s), else on a new one; its answer relayed.
  // A client keeps its upstream connection between requests only while fewer than
  // `max_idle_upstream` are kept in all: each holds one of the service's threads while idle, and a
  // fresh connection lands on a cold thread (a served ResNet-18 saliency: ~30 ms more).
  void forward() {
    client_.expires_never();
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    head_ = req.method() == http::verb::head;
    // The length as received: a POST that came without one (and so without a body) would make the
    // service wait its read timeout (5 s) for a body.
    req.content_length(req.body().size());
    const bool reuse = kept_upstream_ && std::chrono::steady_clock::now() - upstream_idle_since_ < std::chrono::seconds(2);
    release_upstream(/*close=*/!reuse);
    req.keep_alive(keep_alive_);  // asked of the service too; relay() decides whether to keep it
    if (reuse) return send_upstream();
    upstream_.expires_after(std::chrono::seconds(30));
    upstream_.async_connect(s_.upstream, [self = shared_from_this()](error_code ec) {
      if (ec) return self->fail(http::status::bad_gateway, "the service is not answering (restarting?)");
      self->upstream_.expires_never();
      error_code ignored;
      self->upstream_.socket().set_option(tcp::no_delay(true), ignored);  // no delayed-ACK wait (40 ms)
      self->send_upstream();
    });
  }

  void send_upstream() {
    http::async_write(upstream_, parser_->get(), [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return self->fail(http::status::bad_gateway, "the service closed the request");
      self->answer_.emplace();
      self->upstream_buffer_.reserve(64u << 10);
      // Unlimited (the service's own answers). Not boost::none: Boost 1.74 compares a length with
      // an empty optional as greater and fails every answer with a body.
      self->answer_->body_limit(std::numeric_limits<std::uint64_t>::max());
      self->answer_->skip(self->head_);
      http::async_read(self->upstream_, self->upstream_buffer_, *self->answer_, [self](error_code ec, size_t) {
        if (ec) return self->fail(http::status::bad_gateway, "the service closed the connection without an answer");
        self->relay();
      });
    });
  }

  void relay() {
    reply_.emplace(answer_->release());
    answer_.reset();
    const bool upstream_open = reply_->keep_alive();  // the service's word on its connection
    reply_->keep_alive(keep_alive_);
    const bool again = reply_->keep_alive();
    if (again && upstream_open && s_.idle_upstream < s_.o.max_idle_upstream) {
      kept_upstream_ = true;
      ++s_.idle_upstream;
      upstream_idle_since_ = std::chrono::steady_clock::now();
    } else {
      error_code ignored;
      upstream_.socket().close(ignored);
      upstream_buffer_.clear();
    }
    client_.expires_after(std::chrono::seconds(60));  // a client that does not read its answer
    http::async_write(client_, *reply_, [self = shared_from_this(), again](error_code ec, size_t) {
      self->reply_.reset();
      if (ec || !again) return self->close();
      self->read_header();
    });
  }

  // No longer counted as a kept upstream connection (closed unless it is about to be used).
  void release_upstream(bool close) {
    if (kept_upstream_) --s_.idle_upstream;
    kept_upstream_ = false;
    if (close) {
      error_code ignored;
      upstream_.socket().close(ignored);
      upstream_buffer_.clear();
    }
  }

  void fail(http::status status, const std::string& why, bool retry = false) {
    release();
    own_.emplace(status, 11);
    own_->set(http::field::content_type, "application/json");
    own_->set("X-Content-Type-Options", "nosniff");
    if (retry) own_->set(http::field::retry_after, "1");
    own_->body() = "{\"error\":\"" + escape(why) + "\"}";
    own_->keep_alive(false);
    own_->prepare_payload();
    client_.expires_after(std::chrono::seconds(10));
    http::async_write(client_, *own_, [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return self->close();
      error_code ignored;
      self->client_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      self->linger(0);
    });
  }

  // After an early answer (413 while the client still sends its body): read and drop what still
  // comes, for at most 2 s and 16 MiB, before closing -- closing with unread bytes resets the
  // connection, and the client would lose the answer it was sent.
  void linger(size_t dropped) {
    if (dropped == 0) client_.expires_after(std::chrono::seconds(2));
    if (dropped > (size_t{16} << 20)) return close();
    buffer_.clear();
    client_.async_read_some(buffer_.prepare(64 << 10), [self = shared_from_this(), dropped](error_code ec, size_t n) {
      if (ec) return self->close();
      self->linger(dropped + n);
    });
  }

  void close() {
    error_code ec;
    client_.socket().shutdown(tcp::socket::shutdown_send, ec);
    client_.socket().close(ec);
    if (kept_upstream_) --s_.idle_upstream;
    kept_upstream_ = false;
    upstream_.socket().close(ec);
  }

  void release() {
    s_.body_bytes -= reserved_;
    reserved_ = 0;
  }

  State& s_;
  beast::tcp_stream client_, upstream_;
  beast::flat_buffer buffer_, upstream_buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response_parser<http::string_body>> answer_;
  std::optional<http::response<http::string_body>> reply_, own_;
  std::list<std::weak_ptr<Session>>::iterator at_;
  size_t reserved_ = 0;
  bool waiting_ = false, first_ = true, keep_alive_ = false, head_ = false;
  bool kept_upstream_ = false;  // upstream_ is open, idle, and counted in State::idle_upstream
  std::chrono::steady_clock::time_point upstream_idle_since_;
};

void accept(State& s) {
  s.acceptor.async_accept([&s](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !s.acceptor.is_open()) return;
    if (!ec) {
      // At the cap, the oldest connection still waiting for a request's header makes room.
      // (Its entry leaves the list when its read ends, aborted, on the next turn of the loop.)
      bool room = s.open < s.o.max_connections;
      for (auto it = s.waiting.begin(); !room && it != s.waiting.end(); ++it)
        if (auto oldest = it->lock()) room = oldest->drop_if_waiting();
      if (room) {
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<Session>(s, std::move(socket))->start();
      }
    }
    accept(s);
  });
}

}  // namespace

struct Front::Impl {
  State s;
};

Front::Front(FrontOptions options, int upstream_port) : impl_(std::make_shared<Impl>()) {
  impl_->s.o = options;
  impl_->s.upstream = tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(upstream_port));
}

Front::~Front() { stop(); }

int Front::bind(const std::string& host, int port) {
  State& s = impl_->s;
  error_code ec;
  tcp::resolver resolver(s.io);
  const auto found = resolver.resolve(host, std::to_string(port), tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || found.empty()) return -1;
  const tcp::endpoint at = found.begin()->endpoint();
  s.acceptor.open(at.protocol(), ec);
  if (ec) return -1;
  s.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  s.acceptor.bind(at, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    s.acceptor.close(ec);
    return -1;
  }
  return s.acceptor.local_endpoint().port();
}

void Front::run() {
  accept(impl_->s);
  impl_->s.io.run();
}

void Front::stop() {
  State& s = impl_->s;
  asio::post(s.io, [&s] {
    error_code ec;
    s.acceptor.close(ec);
  });
  s.io.stop();
}

}  // namespace salient::serve
