// libFuzzer target: the transmission phase of an nbd::Connection, end to end
// on the async core. Each input is one client: the connection serves a 1 MiB
// raw temporary file over a socket pair in this process; the client side
// sends a fixed valid handshake, then the input's bytes as its requests
// (headers, payloads, garbage), then hangs up, while a reader drains and
// drops every reply. Besides sanitizer reports, it aborts when the connection
// does not end within a deadline after the client has hung up (a hang, or a
// client able to keep the server busy for ever).
//
// Input layout:
//   byte 0      handshake: bit 0 structured replies, bit 1 extended headers,
//               bit 2 SET_META_CONTEXT base:allocation, bit 3 read-only export
//   the rest    the client's bytes after the handshake
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "base/async/event_loop.h"
#include "base/async/socket.h"
#include "base/async/sync.h"
#include "base/async/timer.h"
#include "base/error.h"
#include "block/backend.h"
#include "block/image_options.h"
#include "nbd/connection.h"
#include "nbd/wire.h"

namespace {

using namespace keel;
using namespace std::chrono_literals;

keel::EventLoop& loop() {
  static keel::EventLoop* l = new keel::EventLoop();
  return *l;
}

// One temporary image for the whole run, opened once writable and once read-only behind two backends.
struct Image {
  std::unique_ptr<block::BlockBackend> writable, read_only;
};

Image& image() {
  static Image* image = [] {
    char dir[] = "/tmp/fuzz-nbd-XXXXXX";
    if (!mkdtemp(dir)) std::abort();
    const std::string path = std::string(dir) + "/disk.raw";
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f || ftruncate(fileno(f), 1 << 20) != 0) std::abort();
    std::fclose(f);
    auto* made = new Image;
    block::ImageOptions options;
    options.filename = path;
    options.open.format = "raw";
    options.open.writable = true;
    made->writable = std::make_unique<block::BlockBackend>(loop().run(block::open_image(options)));
    options.open.writable = false;
    options.open.force_share = true;
    made->read_only = std::make_unique<block::BlockBackend>(loop().run(block::open_image(options)),
                                                            block::BackendOptions{.read_only = true});
    unlink(path.c_str());
    rmdir(dir);
    return made;
  }();
  return *image;
}

void put_be32(nbd::Bytes& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::byte>(v >> s));
}

void option(nbd::Bytes& out, nbd::Option code, const nbd::Bytes& payload) {
  for (char c : std::string("IHAVEOPT")) out.push_back(static_cast<std::byte>(c));
  put_be32(out, static_cast<uint32_t>(code));
  put_be32(out, static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
}

// The client's side of a valid handshake for export "" with the options byte 0 chooses.
nbd::Bytes handshake(uint8_t config) {
  nbd::Bytes out;
  put_be32(out, nbd::client_flag::kFixedNewstyle | nbd::client_flag::kNoZeroes);
  if (config & 1) option(out, nbd::Option::StructuredReply, {});
  if (config & 2) option(out, nbd::Option::ExtendedHeaders, {});
  if (config & 4) {
    nbd::Bytes meta;
    put_be32(meta, 0);  // export name ""
    put_be32(meta, 1);
    put_be32(meta, static_cast<uint32_t>(nbd::kBaseAllocation.size()));
    for (char c : nbd::kBaseAllocation) meta.push_back(static_cast<std::byte>(c));
    option(out, nbd::Option::SetMetaContext, meta);
  }
  nbd::Bytes go;
  put_be32(go, 0);
  go.push_back(std::byte{0});
  go.push_back(std::byte{0});  // no info requests
  option(out, nbd::Option::Go, go);
  return out;
}

Task<void> send_and_hang_up(Socket* client, nbd::Bytes bytes) {
  try {
    co_await client->write_all(std::span<const std::byte>(bytes));
  } catch (const Error&) {
    // The server hung up first (it may, on a bad request): nothing more to send.
  }
  ::shutdown(client->fd(), SHUT_WR);
}

Task<void> drain(Socket* client) {
  std::vector<std::byte> buffer(1 << 16);
  try {
    while (co_await client->read_some(buffer) > 0) {
    }
  } catch (const Error&) {
  }
}

Task<void> serve(nbd::Connection* connection, Timer* deadline) {
  co_await connection->serve();
  deadline->cancel();
}

Task<void> watchdog(Timer* deadline) {
  if (co_await deadline->sleep_for(20s)) {
    std::fprintf(stderr, "fuzz_nbd_transmission: the connection did not end after the client hung up\n");
    std::abort();
  }
}

Task<void> run_one(const nbd::ServerConfig& config, std::span<const uint8_t> input) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) std::abort();
  nbd::Connection connection(Socket(pair[0]), config);
  Socket client(pair[1]);
  nbd::Bytes bytes = handshake(input[0]);
  for (uint8_t b : input.subspan(1)) bytes.push_back(static_cast<std::byte>(b));
  Timer deadline;
  TaskGroup group;
  group.spawn(watchdog(&deadline));
  group.spawn(serve(&connection, &deadline));
  group.spawn(send_and_hang_up(&client, std::move(bytes)));
  group.spawn(drain(&client));
  co_await group.join();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Image& img = image();
  nbd::Export exported(data[0] & 8 ? *img.read_only : *img.writable, {.name = ""});
  const nbd::ServerConfig config{.exports = {&exported}, .limits = {.handshake_limit = std::chrono::seconds(5)}};
  loop().run(run_one(config, std::span(data, size)));
  return 0;
}
