// alloc, map, length, info: what the open image holds and how it is laid out.
#include <cinttypes>
#include <cstdio>

#include "base/error.h"
#include "block/image_info.h"
#include "tools/common/image_info_output.h"
#include "tools/common/tool_main.h"
#include "tools/keel-io/commands.h"
#include "tools/keel-io/report.h"

namespace keel::io {

namespace {

// How many bytes from `offset` (at most `length`) share one allocation
// status, and that status; 0 bytes at or past the end of the image.
struct Extent {
  int64_t bytes = 0;
  bool allocated = false;
};

Task<Extent> allocation_at(block::BlockBackend& image, int64_t offset, int64_t length) {
  const auto size = static_cast<int64_t>(image.size());
  if (offset >= size || length <= 0) co_return Extent{};
  const int64_t asked = std::min(length, size - offset);
  const block::BlockStatus st = co_await image.block_status(static_cast<uint64_t>(offset), static_cast<uint64_t>(asked));
  co_return Extent{std::min(static_cast<int64_t>(st.length), asked), st.allocated};
}

bool alloc_run(Session& session, const Words& words) {
  const auto start = number_argument(words[1]);
  if (!start) return false;
  int64_t count = 512;
  if (words.size() == 3) {
    const auto n = number_argument(words[2]);
    if (!n) return false;
    count = *n;
  }
  auto scan = [&]() -> Task<void> {
    int64_t offset = *start, remaining = count, allocated = 0;
    while (remaining > 0) {
      const Extent e = co_await allocation_at(*session.backend(), offset, remaining);
      if (e.bytes == 0) {  // the end of the image: report only what exists
        count -= remaining;
        break;
      }
      offset += e.bytes;
      remaining -= e.bytes;
      if (e.allocated) allocated += e.bytes;
    }
    std::printf("%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n", allocated, count, human_bytes(static_cast<double>(*start)).c_str());
  };
  try {
    session.loop().run(scan());
  } catch (const Error& e) {
    std::printf("is_allocated failed: %s\n", errno_text(e.code()).c_str());
    return false;
  }
  return true;
}

bool map_run(Session& session, const Words&) {
  // False when the image ended before its size said it would.
  auto scan = [&]() -> Task<bool> {
    block::BlockBackend& image = *session.backend();
    const auto size = static_cast<int64_t>(image.size());
    for (int64_t offset = 0; offset < size;) {
      Extent run = co_await allocation_at(image, offset, size - offset);
      if (run.bytes == 0) co_return false;
      // Adjacent extents of the same status make one line.
      while (offset + run.bytes < size) {
        const Extent next = co_await allocation_at(image, offset + run.bytes, size - offset - run.bytes);
        if (next.bytes == 0 || next.allocated != run.allocated) break;
        run.bytes += next.bytes;
      }
      std::printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", human_bytes(static_cast<double>(run.bytes)).c_str(),
                  static_cast<uint64_t>(run.bytes), run.allocated ? "    allocated" : "not allocated",
                  human_bytes(static_cast<double>(offset)).c_str(), static_cast<uint64_t>(offset));
      offset += run.bytes;
    }
    co_return true;
  };
  try {
    if (session.loop().run(scan())) return true;
    tools::print_error("Unexpected end of image");
  } catch (const Error& e) {
    tools::print_error(fmt::format("Failed to get allocation status: {}", errno_text(e.code())));
  }
  return false;
}

bool length_run(Session& session, const Words&) {
  std::printf("%s\n", human_bytes(static_cast<double>(session.backend()->size())).c_str());
  return true;
}

bool info_run(Session& session, const Words&) {
  const block::BlockNode& image = session.backend()->root();
  const auto info = block::image_info(image);
  std::printf("format name: %.*s\n", static_cast<int>(image.format_name().size()), image.format_name().data());
  std::printf("cluster size: %s\n", human_bytes(static_cast<double>(image.cluster_size())).c_str());
  std::printf("vm state offset: %s\n", human_bytes(static_cast<double>(image.vm_state_offset())).c_str());
  std::fputs(tools::format_specific_info_human(info).c_str(), stdout);
  return true;
}

}  // namespace

const Command kAlloc = {
    .name = "alloc",
    .altname = "a",
    .run = alloc_run,
    .argmin = 1,
    .argmax = 2,
    .args = "offset [count]",
    .oneline = "checks if offset is allocated in the file",
};

const Command kMap = {
    .name = "map",
    .run = map_run,
    .args = "",
    .oneline = "prints the allocated areas of a file",
};

const Command kLength = {
    .name = "length",
    .altname = "l",
    .run = length_run,
    .oneline = "gets the length of the current file",
};

const Command kInfo = {
    .name = "info",
    .altname = "i",
    .run = info_run,
    .oneline = "prints information about the current file",
};

}  // namespace keel::io
