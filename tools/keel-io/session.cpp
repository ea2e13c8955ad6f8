#include "tools/keel-io/session.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "base/error.h"
#include "block/temporary_overlay.h"
#include "tools/common/tool_main.h"

namespace keel::io {

namespace {

// qemu's aio= names: keel has io_uring and a thread pool; "native" (Linux
// AIO in qemu) is the kernel's asynchronous I/O, which io_uring provides.
IoBackend backend_for(const std::optional<std::string>& aio) {
  return aio == "threads" ? IoBackend::Threads : IoBackend::IoUring;
}

void warn_probed_raw(const std::string& name) {
  std::fprintf(stderr,
               "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
               "         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n"
               "         Specify the 'raw' format explicitly to remove the restrictions.\n",
               name.c_str());
}

}  // namespace

Session::Session(bool misalign) : misalign_(misalign), loop_(std::make_unique<EventLoop>()) {}

Session::~Session() { close(); }

bool Session::open(const OpenSettings& settings) {
  if (backend_) {
    tools::print_error("file open already, try 'help close'");
    return false;
  }
  if (const auto error = open_image(settings)) {
    tools::print_error(settings.name.empty() ? fmt::format("can't open: {}", *error)
                                             : fmt::format("can't open device {}: {}", settings.name, *error));
    return false;
  }
  if (block::is_probed_raw(settings.image, backend_->root())) warn_probed_raw(settings.image.filename);
  return true;
}

bool Session::reopen(const OpenSettings& settings) {
  const OpenSettings previous = settings_;
  close();
  const auto error = open_image(settings);
  if (!error) return true;
  tools::print_error(*error);
  if (const auto again = open_image(previous)) tools::print_error(*again);
  return false;
}

std::optional<std::string> Session::open_image(const OpenSettings& settings) {
  // The loop decides the I/O backend, and no request is in flight while no image is open.
  loop_.reset();
  loop_ = std::make_unique<EventLoop>(backend_for(settings.image.aio));
  try {
    auto node = loop_->run(settings.snapshot ? block::open_with_temporary_overlay(settings.image)
                                             : block::open_image(settings.image));
    backend_ = std::make_unique<block::BlockBackend>(
        std::move(node), block::BackendOptions{.discard = settings.discard, .ordered = true});
  } catch (const Error& e) {
    return e.message();
  }
  settings_ = settings;
  return std::nullopt;
}

void Session::close() {
  drain();
  if (!backend_) return;
  try {
    loop_->run(backend_->close());
  } catch (const Error& e) {
    tools::print_error(e.message());
  }
  backend_.reset();
}

void Session::start_aio(Task<void> request) { aio_.spawn(std::move(request)); }

void Session::drain() {
  loop_->run(aio_.join());
  auto reports = std::exchange(pending_reports_, {});
  std::sort(reports.begin(), reports.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [number, print] : reports) print();
}

void Session::report_completion(uint64_t number, std::function<void()> print) { pending_reports_.emplace_back(number, std::move(print)); }

}  // namespace keel::io
