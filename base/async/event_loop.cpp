#include "base/async/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

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

void EventLoop::post(std::coroutine_handle<> h) {
  {
    std::lock_guard lock(posted_mutex_);
    posted_.push_back(h);
    external_work_.fetch_sub(1, std::memory_order_relaxed);
  }
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
    auto* op = reinterpret_cast<UringCompletion*>(tag);
    op->result = cqe->res;
    uring_in_flight_--;
    ready_.push_back(op->waiter);
  }
  io_uring_cq_advance(ring_.get(), count);
}

void EventLoop::wait_and_dispatch() {
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
      if (!external) raise(EDEADLK, "event loop has nothing to wait for (internal error)");
      posted_cv_.wait(lock, [this] { return !posted_.empty(); });
      return;
    }
  }
  if (uring_in_flight_ == 0 && !external && io_uring_sq_ready(ring_.get()) == 0)
    raise(EDEADLK, "event loop has nothing to wait for (internal error)");
  if (external && !wakeup_armed_) arm_wakeup_read();
  int ret = io_uring_submit_and_wait(ring_.get(), 1);
  if (ret < 0 && ret != -EINTR && ret != -EBUSY) raise_errno(-ret, "io_uring_submit_and_wait");
  reap_completions();
}

}  // namespace keel
