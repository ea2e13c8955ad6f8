#include "tools/keel-io/command.h"

#include <cstdio>

#include "base/error.h"
#include "tools/common/tool_main.h"
#include "tools/keel-io/buffer.h"
#include "tools/keel-io/hexdump.h"
#include "tools/keel-io/number.h"
#include "tools/keel-io/report.h"

namespace keel::io {

bool print_usage(const Command& command) {
  std::printf("%.*s %.*s -- %.*s\n", static_cast<int>(command.name.size()), command.name.data(),
              static_cast<int>(command.args.value_or("").size()), command.args.value_or("").data(),
              static_cast<int>(command.oneline.size()), command.oneline.data());
  return false;
}

Words arguments(const Words& words) { return Words(words.begin() + 1, words.end()); }

std::optional<int64_t> number_argument(std::string_view text) {
  const ParsedNumber n = parse_number(text);
  if (n.error) {
    std::printf("%s\n", number_error_message(n.error, text).c_str());
    return std::nullopt;
  }
  if (n.hex_with_suffix) tools::print_error(fmt::format("warning: Using a multiplier suffix on hex numbers is deprecated: {}", text));
  return n.value;
}

std::optional<std::byte> pattern_argument(std::string_view text) {
  auto pattern = parse_pattern(text);
  if (!pattern) std::printf("%s\n", invalid_pattern_message(text).c_str());
  return pattern;
}

Outcome run_timed(Session& session, Task<void> request) {
  const auto start = std::chrono::steady_clock::now();
  int error = 0;
  try {
    session.loop().run(std::move(request));
  } catch (const Error& e) {
    error = e.code() ? e.code() : EIO;
  }
  return {error, std::chrono::steady_clock::now() - start};
}

bool print_read(const ReadReport& r, std::span<const std::byte> data, int64_t offset, std::chrono::nanoseconds elapsed) {
  const auto verified = data.subspan(static_cast<size_t>(r.verify_start), static_cast<size_t>(r.verify_length));
  const bool ok = !r.pattern || all_bytes_are(verified, *r.pattern);
  if (!ok)
    std::printf("Pattern verification failed at offset %lld, %lld bytes\n", static_cast<long long>(offset + r.verify_start),
                static_cast<long long>(r.verify_length));
  if (r.quiet) return ok;
  if (r.dump) std::fputs(hex_dump(data, static_cast<uint64_t>(offset)).c_str(), stdout);
  const auto count = static_cast<int64_t>(data.size());
  std::fputs(transfer_report({"read", offset, count, count, 1, elapsed}, r.machine).c_str(), stdout);
  return ok;
}

std::optional<int64_t> total_length(const std::vector<std::string>& lengths) {
  int64_t total = 0;
  for (const std::string& text : lengths) {
    const auto length = number_argument(text);
    if (!length) return std::nullopt;
    if (*length > kMaxRequestBytes) {
      std::printf("Argument '%s' exceeds maximum size %lld\n", text.c_str(), static_cast<long long>(kMaxRequestBytes));
      return std::nullopt;
    }
    if (total > kMaxRequestBytes - *length) {
      std::printf("The total number of bytes exceed the maximum size %lld\n", static_cast<long long>(kMaxRequestBytes));
      return std::nullopt;
    }
    total += *length;
  }
  return total;
}

}  // namespace keel::io
