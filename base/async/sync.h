// Coroutine synchronisation on one event loop: a mutex whose waiters suspend
// instead of blocking the thread, a wait queue, and a group that joins
// concurrently running tasks. None of these are thread-safe; they coordinate
// coroutines on the same loop.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <utility>

#include "base/async/event_loop.h"
#include "base/async/task.h"

namespace keel {

class CoMutex {
 public:
  class Guard {
   public:
    explicit Guard(CoMutex* m) : mutex_(m) {}
    Guard(Guard&& o) noexcept : mutex_(std::exchange(o.mutex_, nullptr)) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        unlock();
        mutex_ = std::exchange(o.mutex_, nullptr);
      }
      return *this;
    }
    ~Guard() { unlock(); }
    void unlock() {
      if (mutex_) std::exchange(mutex_, nullptr)->unlock();
    }

   private:
    CoMutex* mutex_;
  };

  struct LockAwaiter {
    CoMutex* mutex;
    bool await_ready() const noexcept {
      if (!mutex->locked_) {
        mutex->locked_ = true;
        return true;
      }
      return false;
    }
    void await_suspend(std::coroutine_handle<> h) { mutex->waiters_.push_back(h); }
    Guard await_resume() const noexcept { return Guard(mutex); }
  };

  // co_await lock() acquires the mutex and returns a guard that releases it.
  LockAwaiter lock() noexcept { return LockAwaiter{this}; }
  bool locked() const noexcept { return locked_; }

 private:
  void unlock() {
    if (waiters_.empty()) {
      locked_ = false;
      return;
    }
    // Ownership passes straight to the next waiter.
    auto next = waiters_.front();
    waiters_.pop_front();
    EventLoop::current().schedule(next);
  }

  bool locked_ = false;
  std::deque<std::coroutine_handle<>> waiters_;
};

// Coroutines wait() until another calls notify_all().
class WaitQueue {
 public:
  struct Awaiter {
    WaitQueue* queue;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { queue->waiters_.push_back(h); }
    void await_resume() const noexcept {}
  };
  Awaiter wait() noexcept { return Awaiter{this}; }
  void notify_all() {
    auto& loop = EventLoop::current();
    for (auto h : waiters_) loop.schedule(h);
    waiters_.clear();
  }
  bool empty() const noexcept { return waiters_.empty(); }

 private:
  std::deque<std::coroutine_handle<>> waiters_;
};

// Runs tasks concurrently and joins them; join() rethrows the first failure.
// Destroying a group whose tasks still run would leave them pointing at it:
// that aborts with a message instead.
class TaskGroup {
 public:
  TaskGroup() = default;
  ~TaskGroup() {
    if (running_ == 0) return;
    std::fprintf(stderr, "keel: internal error: a TaskGroup was destroyed with %zu tasks running\n", running_);
    std::abort();
  }
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  void spawn(Task<void> task) {
    running_++;
    run_detached(std::move(task), this);
  }

  Task<void> join() {
    while (running_ > 0) co_await done_.wait();
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

  size_t running() const noexcept { return running_; }
  bool failed() const noexcept { return static_cast<bool>(error_); }

 private:
  struct Detached {
    struct promise_type {
      Detached get_return_object() noexcept { return {}; }
      std::suspend_never initial_suspend() noexcept { return {}; }
      std::suspend_never final_suspend() noexcept { return {}; }
      void return_void() noexcept {}
      void unhandled_exception() noexcept { std::terminate(); }
    };
  };

  static Detached run_detached(Task<void> task, TaskGroup* group) {
    try {
      co_await std::move(task);
    } catch (...) {
      if (!group->error_) group->error_ = std::current_exception();
    }
    group->running_--;
    group->done_.notify_all();
  }

  size_t running_ = 0;
  std::exception_ptr error_;
  WaitQueue done_;
};

}  // namespace keel
