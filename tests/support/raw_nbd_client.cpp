#include "tests/support/raw_nbd_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace keel::test {

namespace {

constexpr uint64_t kNbdMagic = 0x4e42444d41474943;  // "NBDMAGIC"
constexpr uint64_t kIHaveOpt = 0x49484156454f5054;  // "IHAVEOPT"
constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;
constexpr uint32_t kOptGo = 7, kOptStructuredReply = 8;
constexpr uint32_t kRepAck = 1, kRepInfo = 3;
constexpr uint16_t kInfoExport = 0, kInfoBlockSize = 3;

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

void put_be16(Buffer& out, uint16_t v) {
  for (int s = 8; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}
void put_be32(Buffer& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}
void put_be64(Buffer& out, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}
uint16_t get_be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t get_be32(const uint8_t* p) { return uint32_t{get_be16(p)} << 16 | get_be16(p + 2); }
uint64_t get_be64(const uint8_t* p) { return uint64_t{get_be32(p)} << 32 | get_be32(p + 4); }

Buffer option_bytes(uint32_t option, uint32_t length, const Buffer& payload) {
  Buffer out;
  put_be64(out, kIHaveOpt);
  put_be32(out, option);
  put_be32(out, length);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Buffer go_payload(const std::string& name) {
  Buffer out;
  put_be32(out, static_cast<uint32_t>(name.size()));
  out.insert(out.end(), name.begin(), name.end());
  put_be16(out, 1);
  put_be16(out, kInfoBlockSize);
  return out;
}

Buffer request_bytes(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length) {
  Buffer out;
  put_be32(out, kRequestMagic);
  put_be16(out, flags);
  put_be16(out, type);
  put_be64(out, cookie);
  put_be64(out, offset);
  put_be32(out, length);
  return out;
}

RawNbdClient::RawNbdClient(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket: " + std::string(strerror(errno)));
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return;
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (Clock::now() > deadline) throw std::runtime_error("cannot connect to " + path + ": " + strerror(err));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

RawNbdClient::~RawNbdClient() { close(); }

void RawNbdClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawNbdClient::send(const Buffer& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::optional<Buffer> RawNbdClient::receive(size_t n, std::chrono::milliseconds wait) {
  Buffer out(n);
  size_t done = 0;
  const auto deadline = Clock::now() + wait;
  while (done < n) {
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r == 0) throw std::runtime_error("no reply from the server in time");
    if (r < 0 && errno == EINTR) continue;
    const ssize_t got = ::recv(fd_, out.data() + done, n - done, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return std::nullopt;
    done += static_cast<size_t>(got);
  }
  return out;
}

bool RawNbdClient::closed_within(std::chrono::milliseconds wait) {
  const auto deadline = Clock::now() + wait;
  uint8_t scratch[4096];
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r == 0) return false;
    if (r < 0 && errno == EINTR) continue;
    const ssize_t got = ::recv(fd_, scratch, sizeof scratch, 0);
    if (got <= 0 && !(got < 0 && errno == EINTR)) return true;
  }
}

bool RawNbdClient::read_greeting() {
  const auto g = receive(18);
  return g && get_be64(g->data()) == kNbdMagic && get_be64(g->data() + 8) == kIHaveOpt && ((*g)[17] & 1);
}

std::optional<OptionReply> RawNbdClient::option_reply(std::chrono::milliseconds wait) {
  const auto header = receive(20, wait);
  if (!header) return std::nullopt;
  OptionReply r;
  r.option = get_be32(header->data() + 8);
  r.type = get_be32(header->data() + 12);
  const auto data = receive(get_be32(header->data() + 16), wait);
  if (!data) return std::nullopt;
  r.data = *data;
  return r;
}

GoResult RawNbdClient::handshake(const std::string& name, bool structured) {
  if (!read_greeting()) throw std::runtime_error("bad greeting");
  Buffer flags;
  put_be32(flags, 3);  // FIXED_NEWSTYLE | NO_ZEROES
  send(flags);
  if (structured) {
    send(option_bytes(kOptStructuredReply, 0));
    const auto r = option_reply();
    if (!r || r->type != kRepAck) throw std::runtime_error("STRUCTURED_REPLY refused");
  }
  const Buffer go = go_payload(name);
  send(option_bytes(kOptGo, static_cast<uint32_t>(go.size()), go));
  GoResult result;
  for (;;) {
    const auto r = option_reply();
    if (!r) throw std::runtime_error("closed during GO");
    if (r->type == kRepAck) return result;
    if (r->type != kRepInfo || r->data.size() < 2) throw std::runtime_error("GO failed");
    const uint16_t info = get_be16(r->data.data());
    if (info == kInfoExport && r->data.size() >= 12) {
      result.size = get_be64(r->data.data() + 2);
      result.transmission_flags = get_be16(r->data.data() + 10);
    } else if (info == kInfoBlockSize && r->data.size() >= 14) {
      result.min_block = get_be32(r->data.data() + 2);
      result.preferred_block = get_be32(r->data.data() + 6);
      result.max_block = get_be32(r->data.data() + 10);
    }
  }
}

bool RawNbdClient::request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length,
                           const Buffer& payload) {
  Buffer out = request_bytes(type, flags, cookie, offset, length);
  out.insert(out.end(), payload.begin(), payload.end());
  return send(out);
}

std::optional<SimpleReply> RawNbdClient::simple_reply(std::chrono::milliseconds wait) {
  const auto r = receive(16, wait);
  if (!r) return std::nullopt;
  if (get_be32(r->data()) != kSimpleReplyMagic) throw std::runtime_error("not a simple reply");
  return SimpleReply{get_be32(r->data() + 4), get_be64(r->data() + 8)};
}

std::optional<Buffer> RawNbdClient::read(uint64_t offset, uint32_t length) {
  const uint64_t cookie = next_cookie_++;
  if (!request(0, 0, cookie, offset, length)) return std::nullopt;
  const auto reply = simple_reply();
  if (!reply || reply->error != 0 || reply->cookie != cookie) return std::nullopt;
  return receive(length);
}

}  // namespace keel::test
