// LoopThread: a thread that runs an event loop of its own until destroyed, for
// work handed to it with run_on() (an NBD server's connections). The loop holds
// one unit of external work while it waits, so it sleeps instead of deciding
// it has nothing to do.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <mutex>
#include <thread>

#include "base/async/event_loop.h"

namespace keel {

class LoopThread {
 public:
  explicit LoopThread(IoBackend backend = IoBackend::IoUring);
  // Ends the loop; whatever was handed to it must have finished.
  ~LoopThread();
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  EventLoop& loop() const noexcept { return *loop_; }

 private:
  void body(IoBackend backend);
  Task<void> park();

  std::mutex mutex_;
  std::condition_variable started_;
  EventLoop* loop_ = nullptr;
  std::coroutine_handle<> parked_;
  std::thread thread_;
};

}  // namespace keel
