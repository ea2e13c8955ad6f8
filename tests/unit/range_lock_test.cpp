#include "block/range_lock.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/async/event_loop.h"

using namespace keel;
using block::RangeLock;
using Mode = RangeLock::Mode;

namespace {

// Requests that take ranges and keep them until the test lets them go.
struct Requests {
  RangeLock lock;
  TaskGroup group;
  std::map<std::string, std::optional<RangeLock::Guard>> guards;
  std::vector<std::string> granted;  // in the order requests got their ranges

  void start(const std::string& name, uint64_t begin, uint64_t end, Mode mode) {
    group.spawn(take(name, begin, end, mode));
  }
  bool holds(const std::string& name) { return guards[name] && guards[name]->holds(); }
  void release(const std::string& name) { guards[name].reset(); }
  Task<void> finish() {
    guards.clear();
    co_await group.join();
  }

 private:
  Task<void> take(std::string name, uint64_t begin, uint64_t end, Mode mode) {
    RangeLock::Guard guard = co_await lock.lock(begin, end, mode);
    granted.push_back(name);
    guards[name] = std::move(guard);
  }
};

// Lets every scheduled coroutine run.
Task<void> settle() {
  for (int i = 0; i < 8; i++) co_await Yield{};
}

template <typename Body>
void run(Body body) {
  EventLoop loop(IoBackend::Threads);
  loop.run(body());
}

using Granted = std::vector<std::string>;

}  // namespace

TEST(RangeLockTest, OverlappingExclusiveRangesWait) {
  run([]() -> Task<void> {
    Requests r;
    r.start("a", 0, 10, Mode::Exclusive);
    r.start("b", 5, 15, Mode::Exclusive);
    co_await settle();
    EXPECT_TRUE(r.holds("a"));
    EXPECT_FALSE(r.holds("b"));
    r.release("a");
    co_await settle();
    EXPECT_TRUE(r.holds("b"));
    co_await r.finish();
  });
}

TEST(RangeLockTest, DisjointRangesRunConcurrently) {
  run([]() -> Task<void> {
    Requests r;
    r.start("a", 0, 10, Mode::Exclusive);
    r.start("b", 10, 20, Mode::Exclusive);  // ends are exclusive: [0,10) and [10,20) do not touch
    EXPECT_TRUE(r.holds("a"));
    EXPECT_TRUE(r.holds("b"));
    co_await r.finish();
  });
}

TEST(RangeLockTest, SharedRangesDoNotConflictButExclusiveOnesDo) {
  run([]() -> Task<void> {
    Requests r;
    r.start("read1", 0, 10, Mode::Shared);
    r.start("read2", 5, 15, Mode::Shared);
    r.start("write", 8, 9, Mode::Exclusive);
    co_await settle();
    EXPECT_TRUE(r.holds("read1"));
    EXPECT_TRUE(r.holds("read2"));
    EXPECT_FALSE(r.holds("write"));
    EXPECT_TRUE(r.lock.held(0, 1, Mode::Exclusive));
    EXPECT_FALSE(r.lock.held(0, 1, Mode::Shared));
    r.release("read1");
    co_await settle();
    EXPECT_FALSE(r.holds("write"));
    r.release("read2");
    co_await settle();
    EXPECT_TRUE(r.holds("write"));
    co_await r.finish();
  });
}

TEST(RangeLockTest, LaterRequestsDoNotOvertakeEarlierConflictingOnes) {
  run([]() -> Task<void> {
    Requests r;
    r.start("a", 0, 10, Mode::Exclusive);
    r.start("b", 0, 20, Mode::Exclusive);   // waits for a
    r.start("c", 15, 20, Mode::Exclusive);  // free of a, but b came first
    r.start("d", 30, 40, Mode::Exclusive);  // conflicts with nobody
    co_await settle();
    EXPECT_EQ(r.granted, (Granted{"a", "d"}));
    r.release("a");
    co_await settle();
    EXPECT_EQ(r.granted, (Granted{"a", "d", "b"}));
    r.release("b");
    co_await settle();
    EXPECT_EQ(r.granted, (Granted{"a", "d", "b", "c"}));
    co_await r.finish();
  });
}

TEST(RangeLockTest, WaitingReadersGoTogetherAheadOfALaterWriter) {
  run([]() -> Task<void> {
    Requests r;
    r.start("write1", 0, 10, Mode::Exclusive);
    r.start("read1", 0, 10, Mode::Shared);
    r.start("read2", 0, 10, Mode::Shared);
    r.start("write2", 0, 10, Mode::Exclusive);
    r.start("read3", 0, 10, Mode::Shared);  // shares with the readers, but write2 came first
    r.release("write1");
    co_await settle();
    EXPECT_EQ(r.granted, (Granted{"write1", "read1", "read2"}));
    r.release("read1");
    r.release("read2");
    co_await settle();
    EXPECT_EQ(r.granted, (Granted{"write1", "read1", "read2", "write2"}));
    r.release("write2");
    co_await settle();
    EXPECT_TRUE(r.holds("read3"));
    co_await r.finish();
  });
}

TEST(RangeLockTest, ReleaseWakesOnlyTheWaitersItBlocked) {
  run([]() -> Task<void> {
    Requests r;
    r.start("a", 0, 10, Mode::Exclusive);
    r.start("b", 20, 30, Mode::Exclusive);
    r.start("after_a", 5, 6, Mode::Exclusive);
    r.start("after_b", 25, 26, Mode::Exclusive);
    r.release("a");
    co_await settle();
    EXPECT_TRUE(r.holds("after_a"));
    EXPECT_FALSE(r.holds("after_b"));
    r.release("b");
    co_await settle();
    EXPECT_TRUE(r.holds("after_b"));
    co_await r.finish();
  });
}

TEST(RangeLockTest, AMovedGuardKeepsTheRange) {
  run([]() -> Task<void> {
    Requests r;
    RangeLock::Guard first = co_await r.lock.lock(0, 10, Mode::Exclusive);
    r.start("waiter", 0, 10, Mode::Exclusive);
    RangeLock::Guard second = std::move(first);
    EXPECT_FALSE(first.holds());
    EXPECT_TRUE(second.holds());
    first.release();  // holds nothing: a no-op
    co_await settle();
    EXPECT_FALSE(r.holds("waiter"));
    RangeLock::Guard other = co_await r.lock.lock(50, 60, Mode::Exclusive);
    second = std::move(other);  // assigning releases what `second` held
    co_await settle();
    EXPECT_TRUE(r.holds("waiter"));
    EXPECT_TRUE(r.lock.held(50, 60, Mode::Exclusive));
    second.release();
    EXPECT_FALSE(r.lock.held(50, 60, Mode::Exclusive));
    co_await r.finish();
  });
}

TEST(RangeLockTest, ShrinkingARangeLetsWaitersForTheRestGo) {
  run([]() -> Task<void> {
    Requests r;
    RangeLock::Guard guard = co_await r.lock.lock(0, 20, Mode::Exclusive);
    r.start("tail", 15, 20, Mode::Exclusive);
    r.start("head", 5, 6, Mode::Exclusive);
    guard.shrink_to(0, 10);
    co_await settle();
    EXPECT_TRUE(r.holds("tail"));
    EXPECT_FALSE(r.holds("head"));
    guard.shrink_to(0, 0);  // empty: releases
    EXPECT_FALSE(guard.holds());
    co_await settle();
    EXPECT_TRUE(r.holds("head"));
    co_await r.finish();
  });
}

// A holder that needs the mutex to finish must get it while a waiter that held it waits.
TEST(RangeLockTest, WaitingUnderAMutexDropsItUntilTheRangeIsGranted) {
  run([]() -> Task<void> {
    RangeLock lock;
    CoMutex mutex;
    TaskGroup group;
    RangeLock::Guard holder = co_await lock.lock(0, 10, Mode::Exclusive);
    bool waiter_done = false;
    // Named, so the closure the coroutine refers to outlives it.
    auto waiter = [&]() -> Task<void> {
      CoMutex::Guard mutex_guard = co_await mutex.lock();
      RangeLock::Guard range = co_await lock.lock(0, 10, Mode::Exclusive, mutex, mutex_guard);
      EXPECT_TRUE(mutex.locked());
      EXPECT_TRUE(range.holds());
      waiter_done = true;
    };
    group.spawn(waiter());
    co_await settle();
    EXPECT_FALSE(mutex.locked());
    {
      CoMutex::Guard mutex_guard = co_await mutex.lock();
      holder.release();
    }
    co_await group.join();
    EXPECT_TRUE(waiter_done);
  });
}

// What wait_unheld() callers rely on: nobody takes a range while they hold the mutex.
TEST(RangeLockTest, AWaiterUnderAMutexTakesTheRangeOnlyOnceItHasTheMutex) {
  run([]() -> Task<void> {
    RangeLock lock;
    CoMutex mutex;
    TaskGroup group;
    RangeLock::Guard holder = co_await lock.lock(0, 10, Mode::Exclusive);
    auto waiter = [&]() -> Task<void> {
      CoMutex::Guard mutex_guard = co_await mutex.lock();
      RangeLock::Guard range = co_await lock.lock(0, 10, Mode::Exclusive, mutex, mutex_guard);
      EXPECT_TRUE(range.holds());
    };
    group.spawn(waiter());
    CoMutex::Guard mutex_guard = co_await mutex.lock();
    holder.release();
    co_await settle();
    EXPECT_FALSE(lock.held(0, 10, Mode::Exclusive));
    mutex_guard.unlock();
    co_await group.join();
  });
}

TEST(RangeLockTest, WaitUnheldWaitsForHeldRangesOnlyAndTakesNone) {
  run([]() -> Task<void> {
    Requests r;
    CoMutex mutex;
    r.start("a", 0, 10, Mode::Exclusive);
    r.start("b", 0, 20, Mode::Exclusive);  // waiting, not held
    CoMutex::Guard mutex_guard = co_await mutex.lock();
    co_await r.lock.wait_unheld(15, 16, Mode::Exclusive, mutex, mutex_guard);  // b does not hold it yet
    EXPECT_TRUE(mutex.locked());
    bool passed = false;
    auto waiter = [&]() -> Task<void> {
      CoMutex::Guard g = co_await mutex.lock();
      co_await r.lock.wait_unheld(5, 6, Mode::Exclusive, mutex, g);
      passed = true;
    };
    r.group.spawn(waiter());
    mutex_guard.unlock();
    co_await settle();
    EXPECT_FALSE(passed);
    r.release("a");
    co_await settle();
    EXPECT_TRUE(r.holds("b"));
    r.release("b");
    co_await settle();
    EXPECT_TRUE(passed);
    EXPECT_FALSE(r.lock.held(0, 100, Mode::Exclusive));
    co_await r.finish();
  });
}
