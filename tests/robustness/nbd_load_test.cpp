// keel-nbd under clients that try to exhaust it: handshakes that stall,
// thousands of connections opened and dropped, a client that sends reads and
// never reads the replies, and several clients writing one qcow2 image at
// once. The server must drop what it should, keep serving everyone else, and
// keep its memory and descriptors bounded (measured from /proc). These are
// the server's concurrency cases, so the TSan build runs them too
// (scripts/run-tests.sh).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/nbd_server_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_nbd_client.h"
#include "tests/support/temp_dir.h"

namespace keel::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr uint16_t kRead = 0, kWrite = 1, kDisc = 2, kFlush = 3;
constexpr uint32_t kOptGo = 7;
constexpr uint64_t kMiB = 1 << 20;

// Shadow memory (TSan) and the quarantine of freed blocks (ASan) make the server's RSS meaningless as a bound.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// Each case runs with both of keel-nbd's I/O back ends, io_uring and threads (a pool, and an epoll thread for the
// sockets), and with connections on the image's own loop or on two connection threads (--threads), which hop to
// the image's loop for every request: TSan has threads to watch in all but the first.
struct ServerShape {
  std::string aio;
  std::string threads;
  std::string name;
};
void PrintTo(const ServerShape& s, std::ostream* os) { *os << s.name; }

class NbdLoadTest : public ::testing::TestWithParam<ServerShape> {
 protected:
  void SetUp() override {
    raw_ = dir_.file("disk.raw");
    contents_ = random_bytes(kMiB, 3);
    write_file(raw_, contents_);
  }

  NbdServerProcess& serve(std::vector<std::string> options, const std::string& format = "raw",
                          const std::string& image = "") {
    options.insert(options.end(), {"--aio", GetParam().aio, "--threads", GetParam().threads, "-f", format,
                                   image.empty() ? raw_ : image});
    server_ = std::make_unique<NbdServerProcess>(NbdServerKind::Keel, dir_.file("s.sock"), options);
    return *server_;
  }

  void expect_served() {
    RawNbdClient good(server_->socket());
    good.handshake();
    const auto data = good.read(8192, 4096);
    ASSERT_TRUE(data) << "keel-nbd no longer serves";
    EXPECT_TRUE(std::equal(data->begin(), data->end(), contents_.begin() + 8192));
  }

  TempDir dir_;
  std::string raw_;
  std::vector<uint8_t> contents_;
  std::unique_ptr<NbdServerProcess> server_;
};

// --handshake-limit 1: a client silent after the greeting, and one stalled in the middle of an option, are both
// dropped after about a second while other clients are served; the limit does not apply once a client is past its
// handshake.
TEST_P(NbdLoadTest, StalledHandshakesAreDroppedAtTheDeadline) {
  serve({"-e", "0", "--handshake-limit", "1"});
  const auto start = Clock::now();
  RawNbdClient silent(server_->socket());
  ASSERT_TRUE(silent.read_greeting());
  RawNbdClient stalled(server_->socket());
  ASSERT_TRUE(stalled.read_greeting());
  Buffer partial{0, 0, 0, 3};
  const Buffer go = option_bytes(kOptGo, 10, {0, 0});
  partial.insert(partial.end(), go.begin(), go.end());
  stalled.send(partial);
  RawNbdClient patient(server_->socket());
  patient.handshake();
  expect_served();
  EXPECT_TRUE(silent.closed_within(10s));
  EXPECT_TRUE(stalled.closed_within(10s));
  EXPECT_GE(Clock::now() - start, 900ms) << "dropped before the deadline";
  std::this_thread::sleep_for(1200ms - (Clock::now() - start));
  const auto data = patient.read(0, 512);
  ASSERT_TRUE(data) << "a client in the transmission phase was dropped by the handshake deadline";
}

// -e 1: a second client waits (no greeting) while the first is connected, and is served once it leaves.
TEST_P(NbdLoadTest, ConnectionCapMakesClientsWait) {
  serve({"-e", "1"});
  auto first = std::make_unique<RawNbdClient>(server_->socket());
  first->handshake();
  RawNbdClient second(server_->socket());
  pollfd p{second.fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 300), 0) << "a client past the -e limit got a greeting";
  first.reset();
  second.handshake();
  EXPECT_TRUE(second.read(0, 512));
}

// 3000 connections opened and dropped at every stage: before the greeting is read, after it, in the middle of
// an option, after the handshake, and with a read request in flight. The server ends up with the descriptors it
// started with and still serves.
TEST_P(NbdLoadTest, ThousandsOfDroppedConnectionsLeaveNothingBehind) {
  serve({"-e", "0"});
  // One client per connection thread first (they take turns), so each loop has made its poller.
  for (int i = 0; i < 2; i++) expect_served();
  const size_t fds_before = server_->open_fds();
  const Buffer go = go_payload("");
  Buffer flags_and_half_option{0, 0, 0, 3};
  const Buffer go_option = option_bytes(kOptGo, static_cast<uint32_t>(go.size()), go);
  flags_and_half_option.insert(flags_and_half_option.end(), go_option.begin(), go_option.begin() + 20);
  constexpr int kBatches = 30, kPerBatch = 100;
  for (int batch = 0; batch < kBatches; batch++) {
    std::vector<std::unique_ptr<RawNbdClient>> open;
    for (int i = 0; i < kPerBatch; i++) {
      auto c = std::make_unique<RawNbdClient>(server_->socket());
      switch (i % 5) {
        case 0:  // dropped before reading anything
          break;
        case 1:
          c->read_greeting();
          break;
        case 2:
          c->read_greeting();
          c->send(flags_and_half_option);
          break;
        case 3:
          c->handshake();
          break;
        case 4:
          c->handshake();
          c->request(kRead, 0, 1, 0, 65536);
          break;
      }
      open.push_back(std::move(c));
    }
  }
  expect_served();
  // Connections end asynchronously: give the server a moment to see the last hang-ups.
  const auto deadline = Clock::now() + 10s;
  while (server_->open_fds() > fds_before && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  EXPECT_LE(server_->open_fds(), fds_before);
  EXPECT_FALSE(server_->exited());
}

// A client that sends 2 MiB reads without end and never reads a reply. The server may hold 64 MiB of read data per
// connection (ConnectionLimits::max_buffered_bytes, two maximum-size requests) and then stops reading that client,
// so its resident memory stays under what it had before plus that budget plus 32 MiB of slack (the client's
// share of allocator caches, buffers and stacks), while the client asks for many times more. Another client is
// served meanwhile.
TEST_P(NbdLoadTest, AClientThatNeverReadsCannotMakeTheServerBuffer) {
  const std::string big = dir_.file("big.raw");
  {
    contents_ = random_bytes(8 * kMiB, 4);
    write_file(big, contents_);
    ASSERT_EQ(truncate(big.c_str(), 64 * kMiB), 0);
  }
  serve({"-e", "0"}, "raw", big);
  RawNbdClient hostile(server_->socket());
  hostile.handshake();
  {
    RawNbdClient warm(server_->socket());
    warm.handshake();
    ASSERT_TRUE(warm.read(0, 2 * kMiB));
  }
  const size_t rss_before = server_->rss_bytes();
  ASSERT_EQ(fcntl(hostile.fd(), F_SETFL, O_NONBLOCK), 0);
  uint64_t sent = 0;
  auto last_progress = Clock::now();
  const auto give_up = Clock::now() + 20s;
  size_t rss_peak = rss_before;
  Buffer pending;
  // Send until the server has stopped reading for a second (its socket buffer full).
  while (Clock::now() - last_progress < 1s && Clock::now() < give_up) {
    // 32 requests a send: a Unix socket's buffer is counted in packets, so one header a send would fill it
    // after a few hundred requests whatever the server does.
    if (pending.empty())
      for (int i = 0; i < 32; i++) {
        const uint64_t n = sent + i;
        const Buffer one = request_bytes(kRead, 0, n + 1, (n % 32) * 2 * kMiB, 2 * kMiB);
        pending.insert(pending.end(), one.begin(), one.end());
      }
    const ssize_t n = ::send(hostile.fd(), pending.data(), pending.size(), MSG_NOSIGNAL);
    if (n > 0) {
      pending.erase(pending.begin(), pending.begin() + n);
      if (pending.empty()) sent += 32;
      last_progress = Clock::now();
    } else {
      std::this_thread::sleep_for(5ms);
      rss_peak = std::max(rss_peak, server_->rss_bytes());
    }
  }
  // Four times the server's budget at least, or the test shows nothing.
  EXPECT_GT(sent * 2 * kMiB, 256 * kMiB) << "the client asked for too little to tell";
  expect_served();
  rss_peak = std::max(rss_peak, server_->rss_bytes());
  std::printf("server RSS %zu MiB before, %zu MiB at most while the client sent %lu reads of 2 MiB\n",
              rss_before / kMiB, rss_peak / kMiB, static_cast<unsigned long>(sent));
  if (!kSanitized) {
    EXPECT_LT(rss_peak, rss_before + 64 * kMiB + 32 * kMiB);
  }
  hostile.close();
  expect_served();
}

// Four clients (-e 4) write interleaved 16 KiB stripes of one qcow2 image at once, so their writes share clusters
// and race for allocations; then qemu-img check finds the image clean and qemu-img compare finds every byte.
TEST_P(NbdLoadTest, ConcurrentWritersLeaveAConsistentQcow2) {
  const std::string image = dir_.file("disk.qcow2");
  ASSERT_EQ(run({"qemu-img", "create", "-q", "-f", "qcow2", image, "8M"}).status, 0);
  serve({"-e", "4"}, "qcow2", image);
  constexpr int kClients = 4;
  constexpr uint64_t kStripe = 16 * 1024, kSize = 8 * kMiB;
  const std::vector<uint8_t> expected = random_bytes(kSize, 5);
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> writers;
  for (int w = 0; w < kClients; w++) {
    writers.emplace_back([&, w] {
      try {
        RawNbdClient c(server_->socket());
        c.handshake();
        uint64_t requests = 0;
        for (uint64_t offset = w * kStripe; offset < kSize; offset += kClients * kStripe) {
          const Buffer data(expected.begin() + static_cast<ptrdiff_t>(offset),
                            expected.begin() + static_cast<ptrdiff_t>(offset + kStripe));
          if (!c.request(kWrite, 0, offset, offset, kStripe, data)) throw std::runtime_error("send failed");
          requests++;
        }
        c.request(kFlush, 0, 1, 0, 0);
        for (uint64_t i = 0; i <= requests; i++) {
          const auto reply = c.simple_reply();
          if (!reply || reply->error) throw std::runtime_error("a write failed");
        }
        c.request(kDisc, 0, 0, 0, 0);
      } catch (const std::exception& e) {
        failures[w] = e.what();
      }
    });
  }
  for (auto& t : writers) t.join();
  for (const auto& f : failures) EXPECT_EQ(f, "");
  server_->stop();
  const std::string reference = dir_.file("expected.raw");
  write_file(reference, expected);
  const RunResult check = run({"qemu-img", "check", image});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  const RunResult compare = run({"qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, reference});
  EXPECT_EQ(compare.status, 0) << compare.out << compare.err;
}

// SIGTERM ends the server while it has clients at every stage, one of them not reading its replies (it used to
// spin on its shut-down Unix listener instead).
TEST_P(NbdLoadTest, SigtermEndsTheServerWithClientsConnected) {
  serve({"-e", "0"});
  RawNbdClient greeted(server_->socket());
  ASSERT_TRUE(greeted.read_greeting());
  RawNbdClient idle(server_->socket());
  idle.handshake();
  RawNbdClient deaf(server_->socket());
  deaf.handshake();
  for (uint64_t i = 0; i < 64; i++) deaf.request(kRead, 0, i, 0, kMiB);
  expect_served();
  ASSERT_EQ(kill(server_->pid(), SIGTERM), 0);
  const auto deadline = Clock::now() + 10s;
  while (!server_->exited() && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(server_->exited()) << "keel-nbd still running 10 s after SIGTERM";
  EXPECT_TRUE(idle.closed_within(1s));
}

INSTANTIATE_TEST_SUITE_P(Aio, NbdLoadTest,
                         ::testing::Values(ServerShape{"io_uring", "0", "io_uring"},
                                           ServerShape{"io_uring", "2", "io_uring_loops"},
                                           ServerShape{"threads", "2", "threads_loops"}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace keel::test
