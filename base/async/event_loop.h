// EventLoop: one thread's scheduler for coroutines. It owns an io_uring ring
// (when the kernel allows one) through which drivers submit I/O; submissions
// are batched and sent when the loop next waits. Work finished on other
// threads (the thread pool) comes back through post(). When io_uring is
// unavailable the loop runs on posted completions alone, file I/O goes
// through the thread pool and descriptor readiness through an epoll thread.
// Timers are the loop's own: the wait for completions ends at the earliest
// deadline.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <liburing.h>

#include "base/async/task.h"

namespace keel {

class ThreadPool;
class FdPoller;

enum class IoBackend { IoUring, Threads };

class EventLoop {
 public:
  // Tries io_uring for IoBackend::IoUring and falls back to threads; the
  // environment variable KEEL_AIO=threads forces the thread backend.
  explicit EventLoop(IoBackend preferred = IoBackend::IoUring);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // The loop running on this thread (the most recently constructed one).
  static EventLoop& current();

  IoBackend backend() const noexcept { return ring_ ? IoBackend::IoUring : IoBackend::Threads; }
  ThreadPool& pool();

  // Drives the loop until `task` completes, then returns its result.
  template <typename T>
  T run(Task<T> task) {
    task.start();
    while (!task.done()) wait_and_dispatch();
    return task.result();
  }

  // Resumes `h` on this loop's next turn (loop thread only).
  void schedule(std::coroutine_handle<> h) { ready_.push_back(h); }
  // Thread-safe variant of schedule() for other threads.
  void post(std::coroutine_handle<> h);

  // The part of an io_uring operation the completion path needs; its address is the SQE's user_data.
  struct UringCompletion {
    std::coroutine_handle<> waiter;
    int32_t result = 0;
  };

  // Awaitable io_uring operation: `prep` fills the SQE; co_await yields the CQE result.
  template <typename Prep>
  struct UringOp : UringCompletion {
    EventLoop* loop;
    Prep prep;
    UringOp(EventLoop* l, Prep p) : loop(l), prep(std::move(p)) {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      waiter = h;
      io_uring_sqe* sqe = loop->get_sqe();
      prep(sqe);
      io_uring_sqe_set_data(sqe, static_cast<UringCompletion*>(this));
      loop->uring_in_flight_++;
    }
    int32_t await_resume() const noexcept { return result; }
  };
  template <typename Prep>
  UringOp<Prep> uring(Prep prep) {
    return UringOp<Prep>(this, std::move(prep));
  }

  // Counts work outstanding off-loop so the loop knows it may block.
  void add_external_work() noexcept { external_work_.fetch_add(1, std::memory_order_relaxed); }

  // Waits until `fd` is ready for `events` (POLLIN, POLLOUT) and returns poll's revents (POLLHUP and
  // POLLERR included). A shutdown() of a socket ends every wait on it: that is how connections are cancelled.
  Task<short> wait_fd(int fd, short events);

  using Clock = std::chrono::steady_clock;
  // A coroutine suspended until a deadline (base/async/timer.h).
  struct TimerWaiter {
    std::coroutine_handle<> waiter;
    bool armed = false;  // in the loop's timer queue
    bool fired = false;
    std::multimap<Clock::time_point, TimerWaiter*>::iterator at;
  };
  void add_timer(TimerWaiter* timer, Clock::time_point deadline);
  // Takes an armed timer out of the queue; with `resume`, its coroutine continues on the next turn (fired false).
  void cancel_timer(TimerWaiter* timer, bool resume);

 private:
  io_uring_sqe* get_sqe();
  void wait_and_dispatch();
  void arm_wakeup_read();
  void reap_completions();

  std::unique_ptr<io_uring> ring_;
  int wakeup_fd_ = -1;
  uint64_t wakeup_buffer_ = 0;
  bool wakeup_armed_ = false;
  uint64_t uring_in_flight_ = 0;

  std::deque<std::coroutine_handle<>> ready_;
  std::mutex posted_mutex_;
  std::condition_variable posted_cv_;
  std::vector<std::coroutine_handle<>> posted_;
  std::atomic<uint64_t> external_work_{0};

  // Moves expired timers to ready_; returns the earliest deadline left, if any.
  std::optional<Clock::time_point> fire_timers();

  std::multimap<Clock::time_point, TimerWaiter*> timers_;
  std::unique_ptr<FdPoller> poller_;
  std::unique_ptr<ThreadPool> pool_;
  EventLoop* previous_ = nullptr;
};

// Yields to other ready coroutines on the current loop.
struct Yield {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) { EventLoop::current().schedule(h); }
  void await_resume() const noexcept {}
};

}  // namespace keel
