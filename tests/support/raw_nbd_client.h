// A deliberately naive NBD client for tests that play a hostile peer: it
// writes whatever bytes it is told to (valid or not) on a blocking Unix
// socket and reads replies with a deadline. Messages are built here from the
// spec (NetworkBlockDevice/nbd doc/proto.md), not with the server's own code,
// so a mistake in the server's wire layer cannot hide in both sides.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace keel::test {

using Buffer = std::vector<uint8_t>;

void put_be16(Buffer& out, uint16_t v);
void put_be32(Buffer& out, uint32_t v);
void put_be64(Buffer& out, uint64_t v);
uint16_t get_be16(const uint8_t* p);
uint32_t get_be32(const uint8_t* p);
uint64_t get_be64(const uint8_t* p);

// IHAVEOPT, option, length (as given: it may lie about the payload), payload.
Buffer option_bytes(uint32_t option, uint32_t length, const Buffer& payload = {});
// NBD_OPT_GO / NBD_OPT_INFO payload: name, and one info request (NBD_INFO_BLOCK_SIZE).
Buffer go_payload(const std::string& name);
// A compact (28-byte) request header.
Buffer request_bytes(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length);

struct OptionReply {
  uint32_t option = 0;
  uint32_t type = 0;
  Buffer data;
};

struct SimpleReply {
  uint32_t error = 0;
  uint64_t cookie = 0;
};

struct GoResult {
  uint64_t size = 0;
  uint16_t transmission_flags = 0;
  uint32_t min_block = 0, preferred_block = 0, max_block = 0;
};

class RawNbdClient {
 public:
  static constexpr std::chrono::milliseconds kDefaultWait{10000};

  // Connects to the Unix socket at `path`, retrying for a while (the server may still be starting).
  explicit RawNbdClient(const std::string& path);
  ~RawNbdClient();
  RawNbdClient(const RawNbdClient&) = delete;
  RawNbdClient& operator=(const RawNbdClient&) = delete;

  int fd() const { return fd_; }
  // False when the peer has closed (EPIPE/ECONNRESET).
  bool send(const Buffer& bytes);
  // Exactly n bytes; nullopt when the connection ends first. Throws when nothing ends it within `wait`.
  std::optional<Buffer> receive(size_t n, std::chrono::milliseconds wait = kDefaultWait);
  // True when the server closes the connection within `wait`, whatever it sends before.
  bool closed_within(std::chrono::milliseconds wait = kDefaultWait);
  void close();

  // The handshake pieces.
  bool read_greeting();  // NBDMAGIC, IHAVEOPT and the fixed-newstyle flag
  std::optional<OptionReply> option_reply(std::chrono::milliseconds wait = kDefaultWait);
  // Greeting, client flags (FIXED_NEWSTYLE | NO_ZEROES), optionally STRUCTURED_REPLY, then GO with `name`.
  GoResult handshake(const std::string& name = "", bool structured = false);

  // Transmission.
  bool request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length,
               const Buffer& payload = {});
  std::optional<SimpleReply> simple_reply(std::chrono::milliseconds wait = kDefaultWait);
  // READ of [offset, offset + length) with a simple reply: the data, or nullopt on an error reply or a close.
  std::optional<Buffer> read(uint64_t offset, uint32_t length);

 private:
  int fd_ = -1;
  uint64_t next_cookie_ = 1;
};

}  // namespace keel::test
