#include <gtest/gtest.h>

#include "base/async/event_loop.h"
#include "base/async/sync.h"
#include "base/async/thread_pool.h"
#include "base/error.h"

using namespace keel;

namespace {

Task<int> immediate(int v) { co_return v; }

Task<uint64_t> long_synchronous_chain(uint64_t n) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; i++) sum += static_cast<uint64_t>(co_await immediate(1));
  co_return sum;
}

Task<void> fails() {
  co_await Yield{};
  raise(EIO, "boom");
}

Task<int> on_pool(EventLoop& loop, int v) {
  co_return co_await loop.pool().run([v] { return v * 2; });
}

Task<void> locked_increment(CoMutex& m, int& value, std::vector<int>& trace, int id) {
  auto guard = co_await m.lock();
  int seen = value;
  co_await Yield{};
  value = seen + 1;
  trace.push_back(id);
}

Task<void> run_group(TaskGroup& g) { co_await g.join(); }

}  // namespace

class AsyncTest : public ::testing::TestWithParam<IoBackend> {};

TEST_P(AsyncTest, SynchronousChainsDoNotGrowTheStack) {
  EventLoop loop(GetParam());
  // Millions of awaits that complete without suspending must not recurse.
  EXPECT_EQ(loop.run(long_synchronous_chain(3'000'000)), 3'000'000u);
}

TEST_P(AsyncTest, ExceptionsPropagateThroughAwait) {
  EventLoop loop(GetParam());
  EXPECT_THROW(loop.run(fails()), Error);
}

TEST_P(AsyncTest, ThreadPoolResultsComeBackToTheLoop) {
  EventLoop loop(GetParam());
  EXPECT_EQ(loop.run(on_pool(loop, 21)), 42);
}

TEST_P(AsyncTest, MutexSerialisesAcrossSuspension) {
  EventLoop loop(GetParam());
  CoMutex m;
  int value = 0;
  std::vector<int> trace;
  TaskGroup g;
  for (int i = 0; i < 50; i++) g.spawn(locked_increment(m, value, trace, i));
  loop.run(run_group(g));
  EXPECT_EQ(value, 50);  // without the lock, increments would be lost across the yield
  for (int i = 0; i < 50; i++) EXPECT_EQ(trace[static_cast<size_t>(i)], i);  // FIFO hand-over
}

TEST_P(AsyncTest, GroupJoinRethrowsFirstFailure) {
  EventLoop loop(GetParam());
  TaskGroup g;
  g.spawn(fails());
  EXPECT_THROW(loop.run(run_group(g)), Error);
}

INSTANTIATE_TEST_SUITE_P(Backends, AsyncTest, ::testing::Values(IoBackend::IoUring, IoBackend::Threads));
