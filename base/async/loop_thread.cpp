#include "base/async/loop_thread.h"

namespace keel {

LoopThread::LoopThread(IoBackend backend) : thread_([this, backend] { body(backend); }) {
  std::unique_lock lock(mutex_);
  started_.wait(lock, [this] { return static_cast<bool>(parked_); });
}

LoopThread::~LoopThread() {
  loop_->post(parked_);  // completes the external work park() holds
  thread_.join();
}

void LoopThread::body(IoBackend backend) {
  EventLoop loop(backend);
  loop.run(park());
}

Task<void> LoopThread::park() {
  struct Park {
    LoopThread* self;
    EventLoop& loop;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      loop.add_external_work();
      std::lock_guard lock(self->mutex_);
      self->loop_ = &loop;
      self->parked_ = h;
      self->started_.notify_one();
    }
    void await_resume() const noexcept {}
  };
  co_await Park{this, EventLoop::current()};
}

}  // namespace keel
