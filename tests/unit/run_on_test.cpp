// run_on() and LoopThread: a task handed to another thread's loop runs there,
// its value or exception comes back, the caller continues on its own thread,
// and many hops at once neither lose a wake-up nor race (the suite runs this
// binary under TSan too).
#include "base/async/run_on.h"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "base/async/loop_thread.h"
#include "base/async/sync.h"
#include "base/error.h"

using namespace keel;

namespace {

Task<std::thread::id> thread_of_task() { co_return std::this_thread::get_id(); }

Task<int> fail_with(int code) {
  co_await Yield{};
  raise(code, "failed on purpose");
}

struct Hops {
  std::thread::id before, inside, after;
};

Task<void> hop(EventLoop* target, Hops* out) {
  out->before = std::this_thread::get_id();
  out->inside = co_await run_on(*target, thread_of_task());
  out->after = std::this_thread::get_id();
}

// Bumps a counter that only `home`'s thread may touch, from a task on another loop.
Task<void> bump(int* counter) {
  co_await Yield{};
  ++*counter;
}

Task<void> bump_from(EventLoop* home, int* counter, int times) {
  for (int i = 0; i < times; i++) co_await run_on(*home, bump(counter));
}

Task<void> spread(EventLoop* home, std::vector<EventLoop*> loops, int* counter, int per_task) {
  TaskGroup group;
  for (EventLoop* l : loops)
    for (int i = 0; i < 8; i++) group.spawn(run_on(*l, bump_from(home, counter, per_task)));
  co_await group.join();
}

Task<int> error_code_of(EventLoop* target) {
  try {
    co_await run_on(*target, fail_with(ENOSPC));
  } catch (const Error& e) {
    co_return e.code();
  }
  co_return 0;
}

}  // namespace

TEST(RunOn, RunsTheTaskOnTheTargetLoopAndResumesTheCallerOnItsOwn) {
  EventLoop loop;
  LoopThread other;
  Hops hops;
  loop.run(hop(&other.loop(), &hops));
  EXPECT_EQ(hops.before, std::this_thread::get_id());
  EXPECT_NE(hops.inside, std::this_thread::get_id());
  EXPECT_EQ(hops.after, std::this_thread::get_id());
}

TEST(RunOn, OnTheCallersOwnLoopTheTaskRunsInPlace) {
  EventLoop loop;
  Hops hops;
  loop.run(hop(&loop, &hops));
  EXPECT_EQ(hops.inside, std::this_thread::get_id());
}

TEST(RunOn, CarriesTheTasksErrorBackToTheCaller) {
  EventLoop loop;
  LoopThread other;
  EXPECT_EQ(loop.run(error_code_of(&other.loop())), ENOSPC);
}

TEST(RunOn, ManyTasksFromSeveralLoopsSerialiseOnTheHomeLoop) {
  EventLoop home;
  std::vector<std::unique_ptr<LoopThread>> threads;
  std::vector<EventLoop*> loops;
  for (int i = 0; i < 3; i++) {
    threads.push_back(std::make_unique<LoopThread>());
    loops.push_back(&threads.back()->loop());
  }
  int counter = 0;
  home.run(spread(&home, loops, &counter, 200));
  EXPECT_EQ(counter, 3 * 8 * 200);
}

TEST(RunOn, WorksOnTheThreadBackendToo) {
  EventLoop home(IoBackend::Threads);
  LoopThread other(IoBackend::Threads);
  int counter = 0;
  home.run(spread(&home, {&other.loop()}, &counter, 50));
  EXPECT_EQ(counter, 8 * 50);
}
