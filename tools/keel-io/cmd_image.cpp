// discard, flush, truncate: requests on the image as a whole or on ranges
// without data.
#include <cstdio>

#include "base/error.h"
#include "block/backend.h"
#include "tools/common/tool_main.h"
#include "tools/keel-io/commands.h"
#include "tools/common/option_scanner.h"
#include "tools/keel-io/report.h"

namespace keel::io {

namespace {

bool discard_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "Cq");
  bool machine = false, quiet = false;
  while (auto o = options.next()) {
    switch (o->id) {
      case 'C': machine = true; break;
      case 'q': quiet = true; break;
      default: return print_usage(kDiscard);
    }
  }
  const auto& operands = options.operands();
  if (operands.size() != 2) return print_usage(kDiscard);
  const auto offset = number_argument(operands[0]);
  if (!offset) return false;
  const auto bytes = number_argument(operands[1]);
  if (!bytes) return false;
  if (*bytes > kMaxRequestBytes) {
    std::printf("length cannot exceed %lld, given %s\n", static_cast<long long>(kMaxRequestBytes), operands[1].c_str());
    return false;
  }
  block::BlockBackend& image = *session.backend();
  // With -d ignore the backend lets discards succeed without effect, as in qemu.
  auto request = [&]() -> Task<void> {
    co_await image.discard(static_cast<uint64_t>(*offset), static_cast<uint64_t>(*bytes));
  };
  const Outcome outcome = run_timed(session, request());
  if (outcome.error) {
    std::printf("discard failed: %s\n", errno_text(outcome.error).c_str());
    return false;
  }
  if (!quiet) std::fputs(transfer_report({"discard", *offset, *bytes, *bytes, 1, outcome.elapsed}, machine).c_str(), stdout);
  return true;
}

bool flush_run(Session& session, const Words&) {
  // qemu-io reports nothing; a failed flush only changes the exit status.
  return run_timed(session, session.backend()->flush()).error == 0;
}

bool truncate_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "m:");
  block::Preallocation prealloc = block::Preallocation::Off;
  while (auto o = options.next()) {
    if (o->id != 'm') return print_usage(kTruncate);
    const auto mode = block::parse_preallocation(o->argument);
    if (!mode) {
      tools::print_error(fmt::format("Invalid preallocation mode '{}'", o->argument));
      return false;
    }
    prealloc = *mode;
  }
  const auto& operands = options.operands();
  if (operands.size() != 1) return print_usage(kTruncate);
  const auto size = number_argument(operands[0]);
  if (!size) return false;
  try {
    block::check_image_size(static_cast<uint64_t>(*size));
    session.loop().run(session.backend()->truncate(static_cast<uint64_t>(*size), prealloc));
  } catch (const Error& e) {
    tools::print_error(e.message());
    return false;
  }
  return true;
}

}  // namespace

const Command kDiscard = {
    .name = "discard",
    .altname = "d",
    .run = discard_run,
    .argmin = 2,
    .argmax = -1,
    .writes = true,
    .args = "[-Cq] off len",
    .oneline = "discards a number of bytes at a specified offset",
    .help = "\n"
            " Discards LEN bytes at offset OFF: the image may deallocate them, after\n"
            " which they read as zeroes or as the backing file.\n"
            "\n"
            " Example:\n"
            " 'discard 512 1k' - discards 1 KiB at offset 512\n"
            "\n"
            " -C, -- report statistics in one machine-parsable line\n"
            " -q, -- quiet: do not report statistics\n"
            "\n",
};

const Command kFlush = {
    .name = "flush",
    .altname = "f",
    .run = flush_run,
    .oneline = "flush all in-core file state to disk",
};

const Command kTruncate = {
    .name = "truncate",
    .altname = "t",
    .run = truncate_run,
    .argmin = 1,
    .argmax = 3,
    .writes = true,
    .args = "[-m prealloc_mode] off",
    .oneline = "truncates the current file at the given offset",
};

}  // namespace keel::io
