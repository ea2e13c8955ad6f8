// What qemu-io keeps between commands: the event loop, the open image and
// the options it was opened with, the asynchronous requests still running,
// and whether a `quit` was given.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/async/event_loop.h"
#include "base/async/sync.h"
#include "block/image_options.h"
#include "block/backend.h"
#include "block/node.h"
#include "block/range_lock.h"

namespace keel::io {

// How the image is opened, beyond what block::ImageOptions carries.
struct OpenSettings {
  block::ImageOptions image;
  std::string name;  // the path as given, for "can't open device NAME"; empty with --image-opts
  bool snapshot = false;  // -s
  bool discard = true;    // -d unmap (qemu-io's default) or ignore
};

class Session {
 public:
  explicit Session(bool misalign);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  EventLoop& loop() noexcept { return *loop_; }
  // The open image, or nullptr.
  block::BlockBackend* backend() const noexcept { return backend_.get(); }
  const OpenSettings& settings() const noexcept { return settings_; }
  bool misalign() const noexcept { return misalign_; }

  // Opens an image as qemu-io's openfile() does; on failure prints its message and returns false.
  bool open(const OpenSettings& settings);
  // Waits for the aio requests, writes back the image's metadata and closes it.
  void close();
  // Closes the image and opens it again with `settings`. On failure prints
  // the error, restores the previous settings and returns false.
  bool reopen(const OpenSettings& settings);

  // Runs `request` while later commands execute; it reports its own outcome
  // through report_completion().
  void start_aio(Task<void> request);
  // Lets every started aio request complete, then prints their reports.
  void drain();
  // Numbers aio requests in the order they start.
  uint64_t next_aio_number() noexcept { return ++aio_count_; }
  // Keeps a completed aio request's report for the next drain (aio_flush,
  // close, reopen, exit), which prints them newest first: the order in which
  // qemu-io, whose thread pool hands back completions newest first, prints
  // requests that completed while it was not looking.
  void report_completion(uint64_t number, std::function<void()> print);


  bool quit_requested = false;

 private:
  // Opens the image; returns the error message on failure.
  std::optional<std::string> open_image(const OpenSettings& settings);

  bool misalign_;
  std::unique_ptr<EventLoop> loop_;
  TaskGroup aio_;
  uint64_t aio_count_ = 0;
  std::vector<std::pair<uint64_t, std::function<void()>>> pending_reports_;
  std::unique_ptr<block::BlockBackend> backend_;
  OpenSettings settings_;
};

}  // namespace keel::io
