// FdPoller: descriptor readiness for an EventLoop that has no io_uring ring.
// One thread waits in epoll and posts each ready waiter back to its loop.
// Every wait registers its own duplicate of the descriptor, so a reader and a
// writer may wait on one socket at once.
#pragma once

#include <coroutine>
#include <thread>

namespace keel {

class EventLoop;

class FdPoller {
 public:
  explicit FdPoller(EventLoop& loop);
  ~FdPoller();
  FdPoller(const FdPoller&) = delete;
  FdPoller& operator=(const FdPoller&) = delete;

  struct Wait {
    FdPoller* poller;
    int fd;
    short events;
    short revents = 0;
    int duplicate = -1;
    std::coroutine_handle<> waiter;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h);
    short await_resume() const noexcept { return revents; }
  };
  Wait wait(int fd, short events) { return Wait{this, fd, events}; }

 private:
  void run();

  EventLoop& loop_;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;
  std::thread thread_;
};

}  // namespace keel
