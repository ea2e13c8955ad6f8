#include "base/async/event_loop.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/async/fd_poller.h"
#include "base/async/thread_pool.h"
#include "base/error.h"

namespace keel {

namespace {
thread_local EventLoop* current_loop = nullptr;
constexpr unsigned kRingEntries = 256;
// user_data tag for the loop's own wake-up read; operations use their awaiter's address.
constexpr uint64_t kWakeupTag = 1;
}  // namespace

EventLoop::EventLoop(IoBackend preferred) {
  const char* forced = std::getenv("KEEL_AIO");
  if (forced && std::strcmp(forced, "threads") == 0) preferred = IoBackend::Threads;
  if (preferred == IoBackend::IoUring) {
    auto ring = std::make_unique<io_uring>();
    if (io_uring_queue_init(kRingEntries, ring.get(), 0) == 0) {
      ring_ = std::move(ring);
      wakeup_fd_ = eventfd(0, EFD_CLOEXEC);
      if (wakeup_fd_ < 0) raise_errno(errno, "eventfd");
    }
  }
  previous_ = current_loop;
  current_loop = this;
}

EventLoop::~EventLoop() {
  poller_.reset();
  pool_.reset();
  if (ring_) {
    io_uring_queue_exit(ring_.get());
    close(wakeup_fd_);
  }
  current_loop = previous_;
}

EventLoop& EventLoop::current() {
  if (!current_loop) raise(EINVAL, "no event loop on this thread");
  return *current_loop;
}

ThreadPool& EventLoop::pool() {
  if (!pool_) pool_ = std::make_unique<ThreadPool>(*this);
  return *pool_;
}

Task<short> EventLoop::wait_fd(int fd, short events) {
  if (!ring_) {
    if (!poller_) poller_ = std::make_unique<FdPoller>(*this);
    co_return co_await poller_->wait(fd, events);
  }
  const int32_t r = co_await uring([&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, events); });
  co_return static_cast<short>(r < 0 ? POLLERR : r);
}

void EventLoop::add_timer(TimerWaiter* timer, Clock::time_point deadline) {
  timer->fired = false;
  timer->armed = true;
  timer->at = timers_.emplace(deadline, timer);
}

void EventLoop::cancel_timer(TimerWaiter* timer, bool resume) {
  if (!timer->armed) return;
  timers_.erase(timer->at);
  timer->armed = false;
  if (resume) schedule(timer->waiter);
}

std::optional<EventLoop::Clock::time_point> EventLoop::fire_timers() {
  const auto now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    TimerWaiter* t = timers_.begin()->second;
    timers_.erase(timers_.begin());
    t->armed = false;
    t->fired = true;
    ready_.push_back(t->waiter);
  }
  if (timers_.empty()) return std::nullopt;
  return timers_.begin()->first;
}

void EventLoop::post(std::coroutine_handle<> h) {
  // The wake-up happens under the lock too: once the loop has taken `h` it may finish and be destroyed.
  std::lock_guard lock(posted_mutex_);
  // A non-empty queue has had its wake-up already, and the loop empties it whole.
  const bool wake = posted_.empty();
  posted_.push_back(h);
  external_work_.fetch_sub(1, std::memory_order_relaxed);
  if (!wake) return;
  if (ring_) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wakeup_fd_, &one, sizeof one);
  } else {
    posted_cv_.notify_one();
  }
}

io_uring_sqe* EventLoop::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (!sqe) {
    io_uring_submit(ring_.get());
    sqe = io_uring_get_sqe(ring_.get());
    if (!sqe) raise(EAGAIN, "io_uring submission queue full");
  }
  return sqe;
}

void EventLoop::arm_wakeup_read() {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, wakeup_fd_, &wakeup_buffer_, sizeof wakeup_buffer_, 0);
  io_uring_sqe_set_data64(sqe, kWakeupTag);
  wakeup_armed_ = true;
}

void EventLoop::reap_completions() {
  io_uring_cqe* cqe;
  unsigned head;
  unsigned count = 0;
  io_uring_for_each_cqe(ring_.get(), head, cqe) {
    count++;
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    if (tag == kWakeupTag) {
      wakeup_armed_ = false;
      continue;
    }
    if (tag == LIBURING_UDATA_TIMEOUT) continue;  // liburing's own timeout on kernels without EXT_ARG
    auto* op = reinterpret_cast<UringCompletion*>(tag);
    op->result = cqe->res;
    uring_in_flight_--;
    ready_.push_back(op->waiter);
  }
  io_uring_cq_advance(ring_.get(), count);
}

void EventLoop::wait_and_dispatch() {
  const std::optional<Clock::time_point> deadline = fire_timers();
  if (!ready_.empty()) {
    std::deque<std::coroutine_handle<>> batch;
    batch.swap(ready_);
    for (auto h : batch) h.resume();
    return;
  }
  bool external;
  {
    // post() pushes and decrements under this lock, so the two are read consistently here.
    std::unique_lock lock(posted_mutex_);
    if (!posted_.empty()) {
      ready_.insert(ready_.end(), posted_.begin(), posted_.end());
      posted_.clear();
      return;
    }
    external = external_work_.load(std::memory_order_relaxed) != 0;
    if (!ring_) {
      if (!external && !deadline) raise(EDEADLK, "event loop has nothing to wait for (internal error)");
      auto posted = [this] { return !posted_.empty(); };
      if (deadline)
        posted_cv_.wait_until(lock, *deadline, posted);
      else
        posted_cv_.wait(lock, posted);
      return;
    }
  }
  if (uring_in_flight_ == 0 && !external && !deadline && io_uring_sq_ready(ring_.get()) == 0)
    raise(EDEADLK, "event loop has nothing to wait for (internal error)");
  // Always armed: another thread's run_on() counts its work here and posts in one go, possibly after this
  // loop went to sleep.
  if (!wakeup_armed_) arm_wakeup_read();
  int ret;
  if (deadline) {
    const auto wait = std::max(*deadline - Clock::now(), Clock::duration::zero());
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
    __kernel_timespec ts{.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    io_uring_cqe* cqe = nullptr;
    ret = io_uring_submit_and_wait_timeout(ring_.get(), &cqe, 1, &ts, nullptr);
    if (ret == -ETIME) ret = 0;
  } else {
    ret = io_uring_submit_and_wait(ring_.get(), 1);
  }
  if (ret < 0 && ret != -EINTR && ret != -EBUSY) raise_errno(-ret, "io_uring_submit_and_wait");
  reap_completions();
}

}  // namespace keel
