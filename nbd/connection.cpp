#include "nbd/connection.h"

#include "base/async/timer.h"
#include "base/error.h"
#include "nbd/tls_transport.h"

namespace keel::nbd {

namespace {

// Ends the connection when the handshake is not over by its deadline; the timer is cancelled when it is.
Task<void> watch_handshake(Timer* timer, std::chrono::milliseconds limit, Transport* transport, std::string* reason) {
  const bool expired = co_await timer->sleep_for(limit);
  if (expired) {
    *reason = "handshake timed out";
    transport->shutdown();
  }
}

}  // namespace

Connection::Connection(Socket socket, const ServerConfig& config)
    : socket_(std::move(socket)),
      config_(config),
      transport_(std::make_unique<SocketTransport>(socket_)),
      reader_(*transport_) {}

Connection::~Connection() = default;

void Connection::shutdown() noexcept { socket_.shutdown(); }

Task<void> Connection::serve() {
  bool negotiated = false;
  {
    Timer timer;
    TaskGroup watchdog;
    if (config_.limits.handshake_limit.count() > 0)
      watchdog.spawn(watch_handshake(&timer, config_.limits.handshake_limit, transport_.get(), &end_reason_));
    try {
      negotiated = co_await negotiate();
    } catch (const Error& e) {
      if (end_reason_.empty()) end_reason_ = e.message();
    }
    timer.cancel();
    co_await watchdog.join();
  }
  if (negotiated && end_reason_.empty()) co_await transmission();
  transport_->shutdown();
}

Task<bool> Connection::negotiate() {
  std::vector<ExportDescription> offered;
  for (const Export* e : config_.exports) offered.push_back(e->description());
  Negotiation negotiation(std::move(offered), config_.negotiation);
  co_await send_bytes(negotiation.greeting());
  std::vector<std::byte> input(4096);
  for (;;) {
    switch (negotiation.state()) {
      case Negotiation::State::NeedClientFlags:
      case Negotiation::State::NeedOption: {
        const size_t n = co_await transport_->read_some(input);
        if (n == 0) {
          if (end_reason_.empty()) end_reason_ = "client disconnected during the handshake";
          co_return false;
        }
        const Bytes reply = negotiation.feed(std::span(input).first(n));
        if (!reply.empty()) co_await send_bytes(reply);
        break;
      }
      case Negotiation::State::StartTls:
        // Reached only with TLS configured: the negotiation refuses STARTTLS otherwise.
        if (!config_.tls) {
          end_reason_ = "STARTTLS without TLS credentials";
          co_return false;
        }
        co_await start_tls(negotiation);
        break;
      case Negotiation::State::Closed:
        end_reason_ = negotiation.close_reason();
        co_return false;
      case Negotiation::State::Done: {
        negotiated_ = negotiation.result();
        for (Export* e : config_.exports)
          if (e->settings().name == negotiated_.export_->name) export_ = e;
        negotiated_.export_ = nullptr;  // it points into the negotiation, which ends here
        const std::vector<std::byte> leftover = negotiation.take_leftover();
        reader_.prepend(leftover);
        co_return export_ != nullptr;
      }
    }
  }
}

// The TLS transport takes the socket over at once, so shutdown() (server stop, handshake deadline) ends the
// TLS handshake as it would a read; the handshake's failure ends the connection through the caller's catch.
Task<void> Connection::start_tls(Negotiation& negotiation) {
  const std::vector<std::byte> received = negotiation.take_leftover();
  SSL* session = config_.tls->new_session();
  transport_ = std::make_unique<TlsTransport>(std::move(transport_), session);
  reader_.set_transport(*transport_);
  co_await static_cast<TlsTransport&>(*transport_).handshake(received);
  negotiation.tls_started();
}

Task<void> Connection::transmission() {
  structured_ = negotiated_.structured_replies;
  mode_ = negotiated_.header_mode();
  for (const auto& [id, name] : negotiated_.meta_contexts) {
    if (name == kBaseAllocation) allocation_id_ = id;
    if (name == kAllocationDepth) depth_id_ = id;
  }
  try {
    for (;;) {
      Incoming incoming;
      if (!co_await receive_request(incoming)) break;
      requests_.spawn(handle(std::move(incoming)));
    }
  } catch (const Error& e) {
    if (end_reason_.empty()) end_reason_ = e.message();
  }
  // handle() reports its own failures, so the join cannot throw.
  co_await requests_.join();
}

Task<void> Connection::wait_for_credit(uint64_t bytes) {
  const ConnectionLimits& limits = config_.limits;
  // One request bigger than the byte budget still runs, alone.
  while (in_flight_ >= limits.max_requests_in_flight ||
         (buffered_ > 0 && buffered_ + bytes > limits.max_buffered_bytes))
    co_await credit_.wait();
  in_flight_++;
  buffered_ += bytes;
}

void Connection::return_credit(uint64_t bytes) {
  in_flight_--;
  buffered_ -= bytes;
  credit_.notify_all();
}

Task<bool> Connection::receive_request(Incoming& incoming) {
  Request& request = incoming.request;
  std::byte header[kExtendedRequestSize];
  const auto bytes = std::span(header).first(request_header_size(mode_));
  if (broken_ || !co_await reader_.read_exact(bytes)) co_return false;
  auto parsed = parse_request(bytes, mode_);
  if (auto* bad = std::get_if<RequestError>(&parsed)) {
    end_reason_ = bad->message;
    co_return false;
  }
  request = std::get<Request>(parsed);
  if (request.type == static_cast<uint16_t>(Command::Disc)) co_return false;
  const bool write = request.type == static_cast<uint16_t>(Command::Write);
  const bool read = request.type == static_cast<uint16_t>(Command::Read);
  const uint32_t error = incoming.error = validate(request);
  if (write && request.length > kMaxRequestBytes) {
    // As qemu: the EINVAL reply goes out, then the connection ends rather than read a payload of up to 2^64 bytes.
    end_reason_ = "write longer than the maximum request size";
    broken_ = true;
    co_await wait_for_credit(0);
    co_return true;
  }
  if (write && error) {
    // The payload follows even a refused write; it is read past, not kept.
    co_await reader_.skip(request.length);
    co_await wait_for_credit(0);
    co_return true;
  }
  incoming.credit = !error && (read || write) ? request.length : 0;
  co_await wait_for_credit(incoming.credit);
  if (write && !error) {
    incoming.payload = buffers_.take(request.length);
    if (!co_await reader_.read_exact(incoming.payload.span()))
      raise(ECONNRESET, "connection closed in a write's payload");
  }
  co_return true;
}

uint32_t Connection::validate(const Request& r) const {
  namespace cf = command_flag;
  const uint64_t size = export_->backend().size();
  const bool writable = export_->backend().writable();
  const bool in_range = r.offset <= size && r.length <= size - r.offset;
  // FUA is advertised, and the spec then has the server accept it on every command.
  uint16_t allowed = cf::kFua;
  bool writes = false;
  switch (static_cast<Command>(r.type)) {
    case Command::Read:
      if (structured_) allowed |= cf::kDf;
      if (r.length > kMaxRequestBytes) return error::kInval;
      break;
    case Command::Write:
      writes = true;
      if (r.length > kMaxRequestBytes) return error::kInval;
      break;
    case Command::WriteZeroes:
      allowed |= cf::kNoHole | cf::kFastZero;
      writes = true;
      break;
    case Command::Trim:
      writes = true;
      break;
    case Command::Flush:
      return r.flags & ~allowed ? error::kInval : 0;
    case Command::Cache:
      break;
    case Command::BlockStatus:
      allowed |= cf::kReqOne;
      if (negotiated_.meta_contexts.empty()) return error::kInval;
      break;
    default:
      return error::kInval;
  }
  if (r.flags & ~allowed) return error::kInval;
  if (writes && !writable) return error::kPerm;
  // As qemu: a write past the end is "no space", anything else past it invalid.
  if (!in_range) return writes && r.type != static_cast<uint16_t>(Command::Trim) ? error::kNoSpc : error::kInval;
  return 0;
}

Task<void> Connection::handle(Incoming incoming) {
  try {
    if (incoming.error)
      co_await reply_error(incoming.request, incoming.error, "invalid request");
    else
      co_await execute(incoming.request, incoming.payload.span());
  } catch (const Error& e) {
    // A reply that cannot be sent ends the connection; others are already sent by execute().
    if (end_reason_.empty()) end_reason_ = e.message();
    broken_ = true;
    transport_->shutdown();
  }
  return_credit(incoming.credit);
}

}  // namespace keel::nbd
