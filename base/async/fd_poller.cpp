#include "base/async/fd_poller.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/async/event_loop.h"
#include "base/error.h"

namespace keel {

namespace {

uint32_t epoll_events(short events) {
  uint32_t e = EPOLLONESHOT;
  if (events & POLLIN) e |= EPOLLIN | EPOLLRDHUP;
  if (events & POLLOUT) e |= EPOLLOUT;
  return e;
}

short poll_events(uint32_t e) {
  short r = 0;
  if (e & EPOLLIN) r |= POLLIN;
  if (e & EPOLLOUT) r |= POLLOUT;
  if (e & (EPOLLHUP | EPOLLRDHUP)) r |= POLLHUP;
  if (e & EPOLLERR) r |= POLLERR;
  return r;
}

}  // namespace

FdPoller::FdPoller(EventLoop& loop) : loop_(loop) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) raise_errno(errno, "epoll_create1");
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) raise_errno(errno, "eventfd");
  epoll_event stop{.events = EPOLLIN, .data = {.ptr = nullptr}};
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd_, &stop) < 0) raise_errno(errno, "epoll_ctl");
  thread_ = std::thread([this] { run(); });
}

FdPoller::~FdPoller() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(stop_fd_, &one, sizeof one);
  thread_.join();
  close(stop_fd_);
  close(epoll_fd_);
}

void FdPoller::Wait::await_suspend(std::coroutine_handle<> h) {
  waiter = h;
  duplicate = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  epoll_event e{.events = epoll_events(events), .data = {.ptr = this}};
  if (duplicate < 0 || epoll_ctl(poller->epoll_fd_, EPOLL_CTL_ADD, duplicate, &e) < 0) {
    // Not pollable (or out of descriptors): report it as an error on the descriptor, on the next turn.
    if (duplicate >= 0) close(duplicate);
    duplicate = -1;
    revents = POLLERR;
    poller->loop_.schedule(h);
    return;
  }
  poller->loop_.add_external_work();
}

void FdPoller::run() {
  epoll_event events[64];
  for (;;) {
    int n = epoll_wait(epoll_fd_, events, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    for (int i = 0; i < n; i++) {
      auto* w = static_cast<Wait*>(events[i].data.ptr);
      if (!w) return;
      w->revents = poll_events(events[i].events);
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, w->duplicate, nullptr);
      close(w->duplicate);
      loop_.post(w->waiter);
    }
  }
}

}  // namespace keel
