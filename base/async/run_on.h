// run_on: runs a task on another thread's event loop and resumes the caller on
// its own. This is how a front end on one loop (an NBD connection's) uses a node
// that belongs to another (its home loop): the node's state is only ever
// touched on its home thread, so drivers need no locks of their own. Both
// loops count the hop as external work, so neither believes it has nothing to
// wait for while the task is away.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "base/async/event_loop.h"
#include "base/async/task.h"

namespace keel {

namespace detail {

// Continues the awaiting coroutine on `target`'s thread (post() completes one unit of its external work).
struct ResumeOn {
  EventLoop& target;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) { target.post(h); }
  void await_resume() const noexcept {}
};

template <typename T>
Task<T> run_elsewhere(EventLoop& caller, EventLoop& target, Task<T> task) {
  caller.add_external_work();  // this coroutine comes back through caller.post()
  target.add_external_work();
  co_await ResumeOn{target};
  std::exception_ptr error;
  std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> result;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
    } else {
      result.emplace(co_await std::move(task));
    }
  } catch (...) {
    error = std::current_exception();
  }
  co_await ResumeOn{caller};
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<T>) co_return std::move(*result);
}

}  // namespace detail

// Awaiting the result runs `task` on `target` (directly when that is the calling thread's loop) and
// continues on the calling loop with its value or exception.
template <typename T>
Task<T> run_on(EventLoop& target, Task<T> task) {
  EventLoop& caller = EventLoop::current();
  if (&caller == &target) return task;
  return detail::run_elsewhere(caller, target, std::move(task));
}

}  // namespace keel
