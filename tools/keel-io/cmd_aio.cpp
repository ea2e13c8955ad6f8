// aio_read, aio_write, aio_flush: requests that run while later commands
// execute. As in qemu-io, a request reports its outcome when it completes,
// from the event loop (so during a later command's I/O, an aio_flush, a
// close or the exit), and a failure then no longer changes the exit status.
#include <cstdio>
#include <memory>

#include "base/error.h"
#include "tools/keel-io/buffer.h"
#include "tools/keel-io/commands.h"
#include "tools/common/option_scanner.h"
#include "tools/keel-io/report.h"

namespace keel::io {

namespace {

using Clock = std::chrono::steady_clock;

struct Reporting {
  int64_t offset;
  int64_t count;
  bool machine;
  bool quiet;
  Clock::time_point start;
};

// The request's error, without letting it escape the detached task.
template <typename Request>
Task<int> outcome_of(Request request) {
  try {
    co_await request();
  } catch (const Error& e) {
    co_return e.code() ? e.code() : EIO;
  }
  co_return 0;
}

void print_report(const char* op, const Reporting& r) {
  if (r.quiet) return;
  std::fputs(transfer_report({op, r.offset, r.count, r.count, 1, Clock::now() - r.start}, r.machine).c_str(), stdout);
}

Task<void> read_and_report(Session& session, IoBuffer buffer, Reporting r, ReadReport report) {
  const uint64_t number = session.next_aio_number();
  block::BlockBackend& image = *session.backend();
  const int error = co_await outcome_of(
      [&]() -> Task<void> { co_await image.read(static_cast<uint64_t>(r.offset), buffer.span()); });
  auto data = std::make_shared<IoBuffer>(std::move(buffer));
  session.report_completion(number, [=] {
    if (error) std::printf("readv failed: %s\n", errno_text(error).c_str());
    else print_read(report, data->span(), r.offset, Clock::now() - r.start);
  });
}

Task<void> write_and_report(Session& session, std::optional<IoBuffer> buffer, Reporting r, block::WriteFlags flags,
                            block::ZeroFlags zero_flags) {
  const uint64_t number = session.next_aio_number();
  block::BlockBackend& image = *session.backend();
  const int error = co_await outcome_of([&]() -> Task<void> {
    const auto at = static_cast<uint64_t>(r.offset);
    if (buffer)
      co_await image.write(at, buffer->span(), flags);
    else
      co_await image.write_zeroes(at, static_cast<uint64_t>(r.count), zero_flags, flags);
  });
  session.report_completion(number, [=] {
    if (error) std::printf("aio_write failed: %s\n", errno_text(error).c_str());
    else print_report("wrote", r);
  });
}

bool aio_read_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "CP:iqv");
  ReadReport report;
  while (auto o = options.next()) {
    switch (o->id) {
      case 'C': report.machine = true; break;
      case 'P':
        if (!(report.pattern = pattern_argument(o->argument))) return false;
        break;
      case 'i':
        // qemu counts an invalid request in its statistics; keel keeps none.
        std::printf("injecting invalid read request\n");
        return true;
      case 'q': report.quiet = true; break;
      case 'v': report.dump = true; break;
      default: return print_usage(kAioRead);
    }
  }
  const auto& operands = options.operands();
  if (operands.size() < 2) return print_usage(kAioRead);
  const auto offset = number_argument(operands[0]);
  if (!offset) return false;
  const auto count = total_length({operands.begin() + 1, operands.end()});
  if (!count) return false;
  IoBuffer buffer(static_cast<size_t>(*count), kReadFill, session.misalign());
  report.verify_length = *count;
  session.start_aio(read_and_report(session, std::move(buffer), {*offset, *count, report.machine, report.quiet, Clock::now()}, report));
  return true;
}

bool aio_write_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "CfiqP:uz");
  bool machine = false, quiet = false, unmap = false, zeroes = false;
  block::WriteFlags flags;
  std::optional<std::byte> pattern;
  while (auto o = options.next()) {
    switch (o->id) {
      case 'C': machine = true; break;
      case 'f': flags.fua = true; break;
      case 'q': quiet = true; break;
      case 'u': unmap = true; break;
      case 'P':
        if (!(pattern = pattern_argument(o->argument))) return false;
        break;
      case 'i':
        std::printf("injecting invalid write request\n");
        return true;
      case 'z': zeroes = true; break;
      default: return print_usage(kAioWrite);
    }
  }
  const auto& operands = options.operands();
  if (operands.size() < 2) return print_usage(kAioWrite);
  if (zeroes && operands.size() != 2) {
    std::printf("-z supports only a single length parameter\n");
    return false;
  }
  if (unmap && !zeroes) {
    std::printf("-u requires -z to be specified\n");
    return false;
  }
  // qemu-io 7.2 accepts -P with -z here and writes zeroes.
  const auto offset = number_argument(operands[0]);
  if (!offset) return false;
  const auto count = zeroes ? number_argument(operands[1]) : total_length({operands.begin() + 1, operands.end()});
  if (!count) return false;
  std::optional<IoBuffer> buffer;
  if (!zeroes) buffer.emplace(static_cast<size_t>(*count), pattern.value_or(kDefaultWritePattern), session.misalign());
  const block::ZeroFlags zero_flags{.may_unmap = unmap && session.settings().discard};
  session.start_aio(write_and_report(session, std::move(buffer), {*offset, *count, machine, quiet, Clock::now()}, flags, zero_flags));
  return true;
}

bool aio_flush_run(Session& session, const Words&) {
  session.drain();
  return true;
}

}  // namespace

const Command kAioRead = {
    .name = "aio_read",
    .run = aio_read_run,
    .argmin = 2,
    .argmax = -1,
    .args = "[-Ciqv] [-P pattern] off len [len..]",
    .oneline = "asynchronously reads a number of bytes",
    .help = "\n"
            " Starts a read at offset OFF into one buffer per LEN given, and returns\n"
            " at once; the read reports when it completes. aio_flush waits for all.\n"
            " The command succeeds once the request is started, whatever its outcome.\n"
            "\n"
            " Example:\n"
            " 'aio_read -v 512 1k 1k' - reads 2 KiB at offset 512 and dumps it in hex\n"
            "\n"
            " -C, -- report statistics in one machine-parsable line\n"
            " -P, -- verify that the data read is the given pattern byte\n"
            " -i, -- only print that an invalid request is injected\n"
            " -v, -- dump the data read to standard output\n"
            " -q, -- quiet: do not report statistics\n"
            "\n",
};

const Command kAioWrite = {
    .name = "aio_write",
    .run = aio_write_run,
    .argmin = 2,
    .argmax = -1,
    .writes = true,
    .args = "[-Cfiquz] [-P pattern] off len [len..]",
    .oneline = "asynchronously writes a number of bytes",
    .help = "\n"
            " Starts a write at offset OFF from one buffer per LEN given (by default\n"
            " of the pattern 0xcd), and returns at once; the write reports when it\n"
            " completes. aio_flush waits for all. The command succeeds once the\n"
            " request is started, whatever its outcome.\n"
            "\n"
            " Example:\n"
            " 'aio_write 512 1k 1k' - writes 2 KiB at offset 512\n"
            "\n"
            " -P, -- write the given pattern byte\n"
            " -C, -- report statistics in one machine-parsable line\n"
            " -f, -- write with Force Unit Access: durable when the request completes\n"
            " -i, -- only print that an invalid request is injected\n"
            " -q, -- quiet: do not report statistics\n"
            " -u, -- with -z, allow the range to be deallocated\n"
            " -z, -- write zeroes efficiently\n"
            "\n",
};

const Command kAioFlush = {
    .name = "aio_flush",
    .run = aio_flush_run,
    .oneline = "completes all outstanding aio requests",
};

}  // namespace keel::io
