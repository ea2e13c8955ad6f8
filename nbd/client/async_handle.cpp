#include "nbd/client/async_handle.h"

#include <libnbd.h>
#include <poll.h>

#include <algorithm>

#include "base/async/event_loop.h"
#include "base/error.h"

namespace keel::nbd::client {

namespace {

// Suspends a coroutine until its command completes or the socket is free to drive.
struct Park {
  std::vector<AsyncHandle::Command*>& parked;
  AsyncHandle::Command& command;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    command.parked = h;
    parked.push_back(&command);
  }
  void await_resume() const noexcept {}
};

// libnbd's errors for a connection that is gone; the block layer reports EIO for them.
int block_errno(int code) {
  return code == 0 || code == ENOTCONN || code == ECONNRESET || code == EPIPE || code == ESHUTDOWN ? EIO : code;
}

}  // namespace

AsyncHandle::AsyncHandle(nbd_handle* handle, EventLoop& loop)
    : handle_(handle), loop_(loop), fd_(nbd_aio_get_fd(handle)) {}

AsyncHandle::~AsyncHandle() {
  // A clean NBD_CMD_DISC when the connection is still up; nbd_close() then frees the handle.
  if (nbd_aio_is_ready(handle_)) nbd_shutdown(handle_, 0);
  nbd_close(handle_);
}

int AsyncHandle::on_complete(void* command, int* error) noexcept {
  auto* c = static_cast<Command*>(command);
  c->error = *error;
  c->done = true;
  return 1;  // retire the command: nobody asks libnbd about it by cookie
}

Task<int> AsyncHandle::run(std::function<int64_t(Command&)> issue) {
  Command command;
  if (issue(command) < 0) {
    // libnbd refuses commands on a dead connection (EINVAL, "invalid state"): for the block layer that is EIO.
    if (nbd_aio_is_dead(handle_) || nbd_aio_is_closed(handle_)) co_return EIO;
    co_return block_errno(nbd_get_errno());
  }
  while (!command.done) {
    if (driving_) {
      co_await Park{parked_, command};
      continue;
    }
    driving_ = true;
    try {
      co_await drive_until(command);
    } catch (...) {
      driving_ = false;
      hand_off();
      throw;
    }
    driving_ = false;
    hand_off();
  }
  co_return command.error ? block_errno(command.error) : 0;
}

Task<void> AsyncHandle::drive_until(Command& command) {
  while (!command.done) {
    const unsigned direction = nbd_aio_get_direction(handle_);
    const short events = static_cast<short>(((direction & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                            ((direction & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
    if (events == 0 || nbd_aio_is_dead(handle_) || nbd_aio_is_closed(handle_)) {
      // Nothing more will arrive for this command: the connection is gone.
      command.error = EIO;
      command.done = true;
      break;
    }
    const short ready = co_await loop_.wait_fd(fd_, events);
    // An error or hang-up is delivered to libnbd as readability: its read sees the end and fails the commands.
    if ((direction & LIBNBD_AIO_DIRECTION_READ) && (ready & (POLLIN | POLLHUP | POLLERR)))
      nbd_aio_notify_read(handle_);
    else if ((direction & LIBNBD_AIO_DIRECTION_WRITE) && (ready & (POLLOUT | POLLHUP | POLLERR)))
      nbd_aio_notify_write(handle_);
    wake_finished();
  }
}

void AsyncHandle::wake_finished() {
  std::erase_if(parked_, [&](Command* c) {
    if (!c->done) return false;
    loop_.schedule(c->parked);
    return true;
  });
}

void AsyncHandle::hand_off() {
  wake_finished();
  if (parked_.empty()) return;
  loop_.schedule(parked_.front()->parked);
  parked_.erase(parked_.begin());
}

}  // namespace keel::nbd::client
