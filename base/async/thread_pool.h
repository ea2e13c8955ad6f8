// ThreadPool: worker threads for blocking or CPU-heavy work (file I/O when
// io_uring is unavailable, compression). A coroutine awaits run(fn); fn runs on
// a worker and the coroutine resumes on its own loop with fn's result.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "base/async/event_loop.h"

namespace keel {

class ThreadPool {
 public:
  explicit ThreadPool(EventLoop& loop, unsigned threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()); }

  template <typename Fn>
  struct RunAwaiter {
    RunAwaiter(ThreadPool* p, Fn f) : pool(p), fn(std::move(f)) {}
    ThreadPool* pool;
    Fn fn;
    using Result = std::invoke_result_t<Fn&>;
    std::conditional_t<std::is_void_v<Result>, bool, std::optional<Result>> value{};
    std::exception_ptr error;

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      pool->loop_.add_external_work();
      pool->enqueue([this, h] {
        try {
          if constexpr (std::is_void_v<Result>) fn();
          else value.emplace(fn());
        } catch (...) {
          error = std::current_exception();
        }
        pool->loop_.post(h);
      });
    }
    Result await_resume() {
      if (error) std::rethrow_exception(error);
      if constexpr (!std::is_void_v<Result>) return std::move(*value);
    }
  };

  template <typename Fn>
  RunAwaiter<Fn> run(Fn fn) {
    return RunAwaiter<Fn>(this, std::move(fn));
  }

 private:
  void enqueue(std::function<void()> job);
  void worker();

  EventLoop& loop_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace keel
