// AsyncHandle: a connected libnbd handle driven from the event loop. Commands
// are issued with libnbd's asynchronous calls and awaited; whichever waiting
// coroutine finds nobody driving the socket becomes the driver (waits for the
// readiness libnbd asks for, then lets it read or write) until its own command
// completes, and hands the socket on. So any number of commands are in flight
// on one connection without blocking the loop or needing a background task.
#pragma once

#include <coroutine>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/async/event_loop.h"
#include "base/async/task.h"

struct nbd_handle;

namespace keel::nbd::client {

class AsyncHandle {
 public:
  // One command's completion, filled in by libnbd's callback (which neither throws nor resumes anything).
  struct Command {
    bool done = false;
    int error = 0;
    std::coroutine_handle<> parked;  // the awaiting coroutine, while another drives the socket
  };

  // Takes ownership of a connected handle, driven from `loop` (its node's).
  AsyncHandle(nbd_handle* handle, EventLoop& loop);
  ~AsyncHandle();
  AsyncHandle(const AsyncHandle&) = delete;
  AsyncHandle& operator=(const AsyncHandle&) = delete;

  nbd_handle* get() const noexcept { return handle_; }

  // The completion callback to pass libnbd for `command`: records the result and retires the command.
  static int on_complete(void* command, int* error) noexcept;

  // Issues a command (`issue` calls nbd_aio_* with on_complete for the Command it is given and
  // returns the cookie, or -1) and waits for its completion. Returns 0 or the command's errno;
  // a lost connection (the command refused, or aborted by libnbd) is EIO, as in qemu.
  Task<int> run(std::function<int64_t(Command&)> issue);

 private:
  Task<void> drive_until(Command& command);
  // Resumes parked coroutines whose commands completed.
  void wake_finished();
  // Resumes one parked coroutine to take over the socket.
  void hand_off();

  nbd_handle* handle_;
  EventLoop& loop_;
  int fd_;
  bool driving_ = false;
  std::vector<Command*> parked_;
};

}  // namespace keel::nbd::client
