// Timer: a coroutine sleeps until a deadline on its event loop, or until
// another coroutine cancels the sleep (a request finished before its timeout).
// One sleep at a time per Timer; the Timer must outlive it.
#pragma once

#include <chrono>
#include <coroutine>

#include "base/async/event_loop.h"

namespace keel {

class Timer {
 public:
  using Clock = EventLoop::Clock;

  explicit Timer(EventLoop& loop = EventLoop::current()) : loop_(loop) {}
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer() { loop_.cancel_timer(&entry_, false); }

  struct Sleep {
    Timer* timer;
    Clock::time_point deadline;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      timer->entry_.waiter = h;
      timer->sleeping_ = true;
      timer->loop_.add_timer(&timer->entry_, deadline);
    }
    // True when the deadline passed, false when the sleep was cancelled.
    bool await_resume() const noexcept {
      timer->sleeping_ = false;
      return timer->entry_.fired;
    }
  };
  Sleep sleep_until(Clock::time_point deadline) { return Sleep{this, deadline}; }
  Sleep sleep_for(Clock::duration d) { return Sleep{this, Clock::now() + d}; }

  // Ends a sleep in progress early; does nothing otherwise.
  void cancel() { loop_.cancel_timer(&entry_, true); }
  bool sleeping() const noexcept { return sleeping_; }

 private:
  EventLoop& loop_;
  EventLoop::TimerWaiter entry_;
  bool sleeping_ = false;
};

}  // namespace keel
