// A qemu-io command: its names, argument counts, help texts and handler, and
// the helpers handlers share to read their arguments and run requests with
// qemu-io's messages.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/async/task.h"
#include "tools/keel-io/session.h"

namespace keel::io {

// The command's words; [0] is its name as typed.
using Words = std::vector<std::string>;

struct Command {
  std::string_view name;
  std::string_view altname;  // a one-letter alias, or empty
  // Returns false when the command failed (the exit status becomes 1).
  bool (*run)(Session& session, const Words& words);
  int argmin = 0;
  int argmax = 0;  // -1: no limit
  bool needs_image = true;  // else it runs without an open image
  bool global = false;      // help and quit: never refused
  bool writes = false;      // refused on a read-only image, as qemu's BLK_PERM_WRITE
  std::optional<std::string_view> args;  // the synopsis after the name; none for commands without
  std::string_view oneline;
  std::string_view help;  // the extended help after the one-line
};

// "name args -- oneline"; returns false, as a usage error is a failure.
bool print_usage(const Command& command);

// The words after the command name.
Words arguments(const Words& words);

// A size or offset argument; prints qemu-io's message and returns nullopt when malformed.
std::optional<int64_t> number_argument(std::string_view text);
// A -P pattern byte; prints qemu-io's message and returns nullopt when malformed.
std::optional<std::byte> pattern_argument(std::string_view text);

// qemu's limit for one request (INT_MAX rounded down to 512 bytes).
constexpr int64_t kMaxRequestBytes = 2147483136;

// Runs `request` on the session's loop and measures it; returns the errno of
// a failure (0 on success).
struct Outcome {
  int error = 0;
  std::chrono::nanoseconds elapsed{};
};
Outcome run_timed(Session& session, Task<void> request);

// How read, readv and aio_read report the data they read.
struct ReadReport {
  bool machine = false;  // -C
  bool quiet = false;    // -q
  bool dump = false;     // -v
  std::optional<std::byte> pattern;  // -P
  int64_t verify_start = 0;          // -s: where in the data verification starts
  int64_t verify_length = 0;         // -l, or the rest of the data
};
// Prints the pattern check, the dump and the report lines for `data`, read
// at `offset`; false when the data is not the pattern.
bool print_read(const ReadReport& report, std::span<const std::byte> data, int64_t offset, std::chrono::nanoseconds elapsed);

// The lengths of readv/writev/aio_*: prints qemu-io's message and returns
// nullopt when one is malformed or their sum is too large.
std::optional<int64_t> total_length(const std::vector<std::string>& lengths);

}  // namespace keel::io
