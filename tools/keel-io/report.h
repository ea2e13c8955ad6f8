// What qemu-io prints after a request: "read 4096/4096 bytes at offset 0",
// then "4 KiB, 1 ops; 00.00 sec (… MiB/sec and … ops/sec)", or with -C one
// machine-readable line. Sizes use qemu-io's own cvtstr() style, which is not
// qemu-img's: "4 KiB", "1.500 MiB", "512 bytes", "0.469471 bytes".
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace keel::io {

std::string human_bytes(double value);

// "00.02 sec" under a second, "0:00:01.23" from a second on; always the
// long form when `machine` (-C).
std::string elapsed_text(std::chrono::nanoseconds elapsed, bool machine);

struct Transfer {
  std::string_view op;  // "read", "wrote", "discard"
  int64_t offset = 0;
  int64_t count = 0;  // bytes asked for
  int64_t total = 0;  // bytes transferred
  int ops = 1;
  std::chrono::nanoseconds elapsed{};
};

std::string transfer_report(const Transfer& t, bool machine);

}  // namespace keel::io
