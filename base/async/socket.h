// Stream sockets (TCP and Unix) on the event loop. Operations try the socket
// first and wait for readiness only when it would block, so a busy connection
// costs one system call per transfer. shutdown() ends every wait on the socket:
// a connection that goes away, or a deadline, cancels what waits on it.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "base/async/task.h"

namespace keel {

class Socket {
 public:
  Socket() = default;
  // Takes ownership of `fd` and makes it non-blocking.
  explicit Socket(int fd);
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket();

  int fd() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

  // Up to buffer.size() bytes; 0 at the end of the stream (or after shutdown()).
  Task<size_t> read_some(std::span<std::byte> buffer);
  // The whole buffer; raises ECONNRESET ("connection closed") when the stream ends first.
  Task<void> read_exact(std::span<std::byte> buffer);
  // Every byte of every piece, in order (sendmsg: headers and payload without a copy).
  Task<void> write_all(std::span<const iovec> pieces);
  Task<void> write_all(std::span<const std::byte> data);

  // Ends the connection in both directions; pending and later operations see the end of the stream.
  void shutdown() noexcept;
  void close() noexcept;

 private:
  int fd_ = -1;
};

// A listening socket.
class Listener {
 public:
  // A Unix socket at `path` (an existing socket file is replaced, as qemu-nbd does).
  static Listener unix_socket(const std::string& path);
  // TCP on `host` (every address it resolves to is tried in turn; the first that binds is used) and `port`.
  static Listener tcp(const std::string& host, const std::string& port);
  // A socket handed over already listening (systemd's LISTEN_FDS).
  static Listener adopt(int fd);

  Listener() = default;
  Listener(Listener&&) noexcept = default;
  Listener& operator=(Listener&&) noexcept = default;

  // Waits for a connection; an invalid Socket after shutdown().
  Task<Socket> accept();
  // Linux fails accept() after shutdown() only for TCP; a Unix listener keeps answering EAGAIN while polling as
  // ready, so the flag is what ends accept() for both.
  void shutdown() noexcept {
    shut_down_ = true;
    socket_.shutdown();
  }
  int fd() const noexcept { return socket_.fd(); }
  // The TCP port bound (after port "0"); 0 for Unix sockets.
  uint16_t port() const;

 private:
  explicit Listener(Socket s) : socket_(std::move(s)) {}
  Socket socket_;
  bool shut_down_ = false;
};

// Blocking connects, for clients and tests; the result is non-blocking.
Socket connect_unix(const std::string& path);
Socket connect_tcp(const std::string& host, const std::string& port);

}  // namespace keel
