// Timers, descriptor readiness and sockets on both event-loop backends
// (io_uring, and the epoll thread used without it), and TaskGroup's guard.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/async/event_loop.h"
#include "base/async/socket.h"
#include "base/async/sync.h"
#include "base/async/timer.h"
#include "base/error.h"
#include "tests/support/temp_dir.h"

using namespace keel;
using namespace std::chrono_literals;

namespace {

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

Task<void> sleep_and_record(std::chrono::milliseconds d, int id, std::vector<int>& order) {
  Timer t;
  EXPECT_TRUE(co_await t.sleep_for(d));
  order.push_back(id);
}

Task<void> all(std::vector<Task<void>> tasks) {
  TaskGroup g;
  for (auto& t : tasks) g.spawn(std::move(t));
  co_await g.join();
}

Task<void> cancel_after_yield(Timer& t) {
  co_await Yield{};
  t.cancel();
}

Task<bool> sleep_long(Timer& t) { co_return co_await t.sleep_for(60s); }

Task<std::string> echo_once(Listener& l) {
  Socket s = co_await l.accept();
  std::string got(5, '\0');
  co_await s.read_exact(std::as_writable_bytes(std::span(got.data(), got.size())));
  co_await s.write_all(bytes(got + "!"));
  co_return got;
}

Task<std::string> client(Socket s) {
  co_await s.write_all(bytes("hello"));
  std::string got(6, '\0');
  co_await s.read_exact(std::as_writable_bytes(std::span(got.data(), got.size())));
  co_return got;
}

// Coroutines here take what they use as parameters, never through lambda captures: a lambda coroutine's
// frame refers to the closure, which is gone once spawn() returns.
Task<void> store(Task<std::string> task, std::string* out) { *out = co_await std::move(task); }
Task<void> store_fired(Timer* t, bool* out) { *out = co_await sleep_long(*t); }
Task<void> store_read(Socket* s, size_t* out) {
  std::byte buf[8];
  *out = co_await s->read_some(buf);
}
Task<void> accept_ends(Listener* l, bool* ended) { *ended = !(co_await l->accept()); }
template <typename T>
Task<void> shutdown_later(T* what) {
  Timer t;
  co_await t.sleep_for(10ms);
  what->shutdown();
}
Task<void> sleep_forever(Timer* t) { co_await t->sleep_for(1h); }

Task<void> serve_and_talk(Listener& l, Socket c, std::string& server_got, std::string& client_got) {
  TaskGroup g;
  g.spawn(store(echo_once(l), &server_got));
  g.spawn(store(client(std::move(c)), &client_got));
  co_await g.join();
}

Task<void> both(Task<void> a, Task<void> b) {
  TaskGroup g;
  g.spawn(std::move(a));
  g.spawn(std::move(b));
  co_await g.join();
}

}  // namespace

class LoopTest : public ::testing::TestWithParam<IoBackend> {};

TEST_P(LoopTest, TimersFireInDeadlineOrder) {
  EventLoop loop(GetParam());
  std::vector<int> order;
  std::vector<Task<void>> tasks;
  tasks.push_back(sleep_and_record(30ms, 3, order));
  tasks.push_back(sleep_and_record(10ms, 1, order));
  tasks.push_back(sleep_and_record(20ms, 2, order));
  const auto start = EventLoop::Clock::now();
  loop.run(all(std::move(tasks)));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(EventLoop::Clock::now() - start, 30ms);
}

TEST_P(LoopTest, CancelledSleepReturnsFalseAtOnce) {
  EventLoop loop(GetParam());
  Timer t;
  bool fired = true;
  const auto start = EventLoop::Clock::now();
  loop.run(both(store_fired(&t, &fired), cancel_after_yield(t)));
  EXPECT_FALSE(fired);
  EXPECT_LT(EventLoop::Clock::now() - start, 30s);
}

TEST_P(LoopTest, UnixSocketRoundTrip) {
  EventLoop loop(GetParam());
  test::TempDir dir;
  const std::string path = dir.file("s.sock");
  Listener l = Listener::unix_socket(path);
  std::string server_got, client_got;
  loop.run(serve_and_talk(l, connect_unix(path), server_got, client_got));
  EXPECT_EQ(server_got, "hello");
  EXPECT_EQ(client_got, "hello!");
}

TEST_P(LoopTest, TcpSocketRoundTripOnAnEphemeralPort) {
  EventLoop loop(GetParam());
  Listener l = Listener::tcp("127.0.0.1", "0");
  ASSERT_NE(l.port(), 0);
  std::string server_got, client_got;
  loop.run(serve_and_talk(l, connect_tcp("127.0.0.1", std::to_string(l.port())), server_got, client_got));
  EXPECT_EQ(client_got, "hello!");
}

TEST_P(LoopTest, ShutdownEndsAPendingRead) {
  EventLoop loop(GetParam());
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  Socket a(pair[0]), b(pair[1]);
  size_t got = 99;
  loop.run(both(store_read(&a, &got), shutdown_later(&a)));
  EXPECT_EQ(got, 0u);
}

TEST_P(LoopTest, ReadExactFailsWhenThePeerCloses) {
  EventLoop loop(GetParam());
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  Socket a(pair[0]);
  {
    Socket b(pair[1]);
    loop.run(b.write_all(bytes("ab")));
  }
  std::byte buf[4];
  try {
    loop.run(a.read_exact(buf));
    FAIL() << "read past the end of the stream";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ECONNRESET);
  }
}

TEST_P(LoopTest, ShutdownEndsAnAccept) {
  EventLoop loop(GetParam());
  Listener l = Listener::tcp("127.0.0.1", "0");
  bool ended = false;
  loop.run(both(accept_ends(&l, &ended), shutdown_later(&l)));
  EXPECT_TRUE(ended);
}

// A shut-down Unix listener polls as ready but accept() keeps failing with EAGAIN: accept must still end.
TEST_P(LoopTest, ShutdownEndsAnAcceptOnAUnixSocket) {
  EventLoop loop(GetParam());
  test::TempDir dir;
  Listener l = Listener::unix_socket(dir.file("s.sock"));
  bool ended = false;
  loop.run(both(accept_ends(&l, &ended), shutdown_later(&l)));
  EXPECT_TRUE(ended);
}

TEST_P(LoopTest, LargeWritesCompleteAgainstASlowReader) {
  EventLoop loop(GetParam());
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  Socket a(pair[0]), b(pair[1]);
  std::vector<std::byte> data(8 << 20);
  for (size_t i = 0; i < data.size(); i++) data[i] = std::byte(i * 7);
  std::vector<std::byte> got(data.size());
  loop.run(both(a.write_all(std::span<const std::byte>(data)), b.read_exact(got)));
  EXPECT_EQ(got, data);
}

INSTANTIATE_TEST_SUITE_P(Backends, LoopTest, ::testing::Values(IoBackend::IoUring, IoBackend::Threads));

TEST(TaskGroupDeathTest, DestroyedWithTasksRunningAborts) {
  EXPECT_DEATH(
      {
        EventLoop loop;
        Timer t;
        auto* g = new TaskGroup;
        g->spawn(sleep_forever(&t));
        delete g;
      },
      "TaskGroup was destroyed with 1 tasks running");
}
