#include "base/async/socket.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/async/event_loop.h"
#include "base/async/timer.h"
#include "base/error.h"

namespace keel {

namespace {

void set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) raise_errno(errno, "fcntl(O_NONBLOCK)");
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) raise(ENAMETOOLONG, "UNIX socket path '{}' is too long", path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

addrinfo* resolve(const std::string& host, const std::string& port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* list = nullptr;
  const int r = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &list);
  if (r != 0) raise(EINVAL, "address resolution failed for {}:{}: {}", host, port, gai_strerror(r));
  return list;
}

void no_delay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

Socket::Socket(int fd) : fd_(fd) { set_nonblocking(fd); }

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

Socket::~Socket() { close(); }

void Socket::close() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

void Socket::shutdown() noexcept {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

Task<size_t> Socket::read_some(std::span<std::byte> buffer) {
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n >= 0) co_return static_cast<size_t>(n);
    if (errno == ECONNRESET || errno == EPIPE) co_return 0;
    if (errno != EAGAIN && errno != EINTR) raise_errno(errno, "recv");
    const short ready = co_await EventLoop::current().wait_fd(fd_, POLLIN);
    if (ready & POLLNVAL) raise(EBADF, "recv: socket closed");
  }
}

Task<void> Socket::read_exact(std::span<std::byte> buffer) {
  while (!buffer.empty()) {
    const size_t n = co_await read_some(buffer);
    if (n == 0) raise(ECONNRESET, "connection closed");
    buffer = buffer.subspan(n);
  }
}

Task<void> Socket::write_all(std::span<const iovec> pieces) {
  std::vector<iovec> rest(pieces.begin(), pieces.end());
  size_t first = 0;
  while (first < rest.size()) {
    msghdr msg{};
    msg.msg_iov = rest.data() + first;
    msg.msg_iovlen = std::min<size_t>(rest.size() - first, IOV_MAX);
    const ssize_t n = ::sendmsg(fd_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EPIPE || errno == ECONNRESET) raise(ECONNRESET, "connection closed");
      if (errno != EAGAIN && errno != EINTR) raise_errno(errno, "sendmsg");
      const short ready = co_await EventLoop::current().wait_fd(fd_, POLLOUT);
      if (ready & (POLLHUP | POLLERR | POLLNVAL) && !(ready & POLLOUT)) raise(ECONNRESET, "connection closed");
      continue;
    }
    for (size_t sent = static_cast<size_t>(n); sent > 0 && first < rest.size();) {
      const size_t take = std::min(sent, rest[first].iov_len);
      rest[first].iov_base = static_cast<std::byte*>(rest[first].iov_base) + take;
      rest[first].iov_len -= take;
      sent -= take;
      if (rest[first].iov_len == 0) first++;
    }
    while (first < rest.size() && rest[first].iov_len == 0) first++;
  }
}

Task<void> Socket::write_all(std::span<const std::byte> data) {
  const iovec piece{const_cast<std::byte*>(data.data()), data.size()};
  co_await write_all(std::span<const iovec>(&piece, 1));
}

Listener Listener::unix_socket(const std::string& path) {
  const sockaddr_un addr = unix_address(path);
  Socket s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) raise_errno(errno, "socket");
  ::unlink(path.c_str());
  if (::bind(s.fd(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
    raise(errno, "Failed to bind socket to {}: {}", path, errno_text(errno));
  if (::listen(s.fd(), SOMAXCONN) < 0) raise_errno(errno, "listen");
  return Listener(std::move(s));
}

Listener Listener::tcp(const std::string& host, const std::string& port) {
  addrinfo* list = resolve(host, port, true);
  int err = EADDRNOTAVAIL;
  for (addrinfo* a = list; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    Socket s(fd);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) {
      freeaddrinfo(list);
      return Listener(std::move(s));
    }
    err = errno;
  }
  freeaddrinfo(list);
  raise(err, "Failed to bind socket to {}:{}: {}", host, port, errno_text(err));
}

Listener Listener::adopt(int fd) { return Listener(Socket(fd)); }

Task<Socket> Listener::accept() {
  for (;;) {
    if (shut_down_) co_return Socket();
    const int fd = ::accept4(socket_.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      no_delay(fd);
      co_return Socket(fd);
    }
    // After shutdown() Linux fails accept with EINVAL.
    if (errno == EINVAL || errno == EBADF) co_return Socket();
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      // Out of descriptors: give connections a moment to end rather than spin on the pending one.
      Timer pause;
      co_await pause.sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) raise_errno(errno, "accept");
    co_await EventLoop::current().wait_fd(socket_.fd(), POLLIN);
  }
}

uint16_t Listener::port() const {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(socket_.fd(), reinterpret_cast<sockaddr*>(&addr), &len) < 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

Socket connect_unix(const std::string& path) {
  const sockaddr_un addr = unix_address(path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) raise_errno(errno, "socket");
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) {
    const int err = errno;
    ::close(fd);
    raise(err, "Failed to connect to '{}': {}", path, errno_text(err));
  }
  return Socket(fd);
}

Socket connect_tcp(const std::string& host, const std::string& port) {
  addrinfo* list = resolve(host, port, false);
  int err = ECONNREFUSED;
  for (addrinfo* a = list; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      freeaddrinfo(list);
      no_delay(fd);
      return Socket(fd);
    }
    err = errno;
    ::close(fd);
  }
  freeaddrinfo(list);
  raise(err, "Failed to connect to '{}:{}': {}", host, port, errno_text(err));
}

}  // namespace keel
