// read, readv, write, writev: synchronous requests, reported as qemu-io does.
#include <cstdio>

#include "base/error.h"
#include "tools/keel-io/buffer.h"
#include "tools/keel-io/commands.h"
#include "tools/common/option_scanner.h"
#include "tools/keel-io/report.h"

namespace keel::io {

namespace {

bool sector_aligned(int64_t value, const char* what) {
  if (value % 512 == 0) return true;
  std::printf("%lld is not a sector-aligned value for '%s'\n", static_cast<long long>(value), what);
  return false;
}

bool print_failure(const char* op, int error) {
  std::printf("%s failed: %s\n", op, errno_text(error).c_str());
  return false;
}

Task<void> read_request(Session& session, int64_t offset, std::span<std::byte> buffer) {
  co_await session.backend()->read(static_cast<uint64_t>(offset), buffer);
}

Task<void> vm_state_request() {
  raise(ENOTSUP, "keel does not store VM state in images");
  co_return;
}

bool read_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "bCl:pP:qs:v");
  ReadReport report;
  bool vm_state = false;
  std::optional<int64_t> verify_start, verify_length;
  while (auto o = options.next()) {
    switch (o->id) {
      case 'b': vm_state = true; break;
      case 'C': report.machine = true; break;
      case 'l':
        if (!(verify_length = number_argument(o->argument))) return false;
        break;
      case 'p': break;  // ignored, as in qemu-io
      case 'P':
        if (!(report.pattern = pattern_argument(o->argument))) return false;
        break;
      case 'q': report.quiet = true; break;
      case 's':
        if (!(verify_start = number_argument(o->argument))) return false;
        break;
      case 'v': report.dump = true; break;
      default: return print_usage(kRead);
    }
  }
  const auto& operands = options.operands();
  if (operands.size() != 2) return print_usage(kRead);
  const auto offset = number_argument(operands[0]);
  if (!offset) return false;
  const auto count = number_argument(operands[1]);
  if (!count) return false;
  if (*count > kMaxRequestBytes) {
    std::printf("length cannot exceed %lld, given %s\n", static_cast<long long>(kMaxRequestBytes), operands[1].c_str());
    return false;
  }
  if (!report.pattern && (verify_start || verify_length)) return print_usage(kRead);
  report.verify_start = verify_start.value_or(0);
  report.verify_length = verify_length.value_or(*count - report.verify_start);
  if (report.verify_length < 0 || report.verify_start > *count - report.verify_length) {
    std::printf("pattern verification range exceeds end of read data\n");
    return false;
  }
  if (vm_state && (!sector_aligned(*offset, "offset") || !sector_aligned(*count, "count"))) return false;

  IoBuffer buffer(static_cast<size_t>(*count), kReadFill, session.misalign());
  const Outcome outcome =
      run_timed(session, vm_state ? vm_state_request() : read_request(session, *offset, buffer.span()));
  if (outcome.error) return print_failure("read", outcome.error);
  return print_read(report, buffer.span(), *offset, outcome.elapsed);
}

bool readv_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "CP:qv");
  ReadReport report;
  while (auto o = options.next()) {
    switch (o->id) {
      case 'C': report.machine = true; break;
      case 'P':
        if (!(report.pattern = pattern_argument(o->argument))) return false;
        break;
      case 'q': report.quiet = true; break;
      case 'v': report.dump = true; break;
      default: return print_usage(kReadv);
    }
  }
  const auto& operands = options.operands();
  if (operands.size() < 2) return print_usage(kReadv);
  const auto offset = number_argument(operands[0]);
  if (!offset) return false;
  const auto count = total_length({operands.begin() + 1, operands.end()});
  if (!count) return false;

  IoBuffer buffer(static_cast<size_t>(*count), kReadFill, session.misalign());
  const Outcome outcome = run_timed(session, read_request(session, *offset, buffer.span()));
  if (outcome.error) return print_failure("readv", outcome.error);
  report.verify_length = *count;
  return print_read(report, buffer.span(), *offset, outcome.elapsed);
}

bool write_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "bcCfnpP:qs:uz");
  bool vm_state = false, compressed = false, machine = false, fua = false, no_fallback = false, quiet = false, unmap = false,
       zeroes = false;
  std::optional<std::byte> pattern;
  std::optional<std::string> source;
  while (auto o = options.next()) {
    switch (o->id) {
      case 'b': vm_state = true; break;
      case 'c': compressed = true; break;
      case 'C': machine = true; break;
      case 'f': fua = true; break;
      case 'n': no_fallback = true; break;
      case 'p': break;  // ignored, as in qemu-io
      case 'P':
        if (!(pattern = pattern_argument(o->argument))) return false;
        break;
      case 'q': quiet = true; break;
      case 's': source = o->argument; break;
      case 'u': unmap = true; break;
      case 'z': zeroes = true; break;
      default: return print_usage(kWrite);
    }
  }
  const auto& operands = options.operands();
  if (operands.size() != 2) return print_usage(kWrite);
  auto refuse = [](const char* message) {
    std::printf("%s\n", message);
    return false;
  };
  if (vm_state && zeroes) return refuse("-b and -z cannot be specified at the same time");
  if (fua && (vm_state || compressed)) return refuse("-f and -b or -c cannot be specified at the same time");
  if (no_fallback && !zeroes) return refuse("-n requires -z to be specified");
  if (unmap && !zeroes) return refuse("-u requires -z to be specified");
  if (int(zeroes) + int(pattern.has_value()) + int(source.has_value()) > 1)
    return refuse("Only one of -z, -P, and -s can be specified at the same time");
  const auto offset = number_argument(operands[0]);
  if (!offset) return false;
  const auto count = number_argument(operands[1]);
  if (!count) return false;
  // Zeroes need no buffer, so -z -n may cover more than one request's worth.
  if (*count > kMaxRequestBytes && !no_fallback) {
    std::printf("length cannot exceed %lld without -n, given %s\n", static_cast<long long>(kMaxRequestBytes), operands[1].c_str());
    return false;
  }
  if ((vm_state || compressed) && (!sector_aligned(*offset, "offset") || !sector_aligned(*count, "count"))) return false;

  std::optional<IoBuffer> buffer;
  if (!zeroes) {
    buffer.emplace(static_cast<size_t>(*count), pattern.value_or(kDefaultWritePattern), session.misalign());
    if (source) {
      if (auto error = fill_from_file(buffer->span(), *source)) {
        std::fprintf(stderr, "%s\n", error->c_str());
        return false;
      }
    }
  }
  block::BlockBackend& image = *session.backend();
  auto request = [&]() -> Task<void> {
    if (vm_state) co_await vm_state_request();
    const auto at = static_cast<uint64_t>(*offset);
    if (zeroes) {
      const block::ZeroFlags flags{.may_unmap = unmap && session.settings().discard, .no_fallback = no_fallback};
      co_await image.write_zeroes(at, static_cast<uint64_t>(*count), flags, {.fua = fua});
    } else if (compressed) {
      co_await image.write_compressed(at, buffer->span());
    } else {
      co_await image.write(at, buffer->span(), {.fua = fua});
    }
  };
  const Outcome outcome = run_timed(session, request());
  if (outcome.error) return print_failure("write", outcome.error);
  if (!quiet) std::fputs(transfer_report({"wrote", *offset, *count, *count, 1, outcome.elapsed}, machine).c_str(), stdout);
  return true;
}

bool writev_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "CfqP:");
  bool machine = false, fua = false, quiet = false;
  std::optional<std::byte> pattern;
  while (auto o = options.next()) {
    switch (o->id) {
      case 'C': machine = true; break;
      case 'f': fua = true; break;
      case 'q': quiet = true; break;
      case 'P':
        if (!(pattern = pattern_argument(o->argument))) return false;
        break;
      default: return print_usage(kWritev);
    }
  }
  const auto& operands = options.operands();
  if (operands.size() < 2) return print_usage(kWritev);
  const auto offset = number_argument(operands[0]);
  if (!offset) return false;
  const auto count = total_length({operands.begin() + 1, operands.end()});
  if (!count) return false;

  IoBuffer buffer(static_cast<size_t>(*count), pattern.value_or(kDefaultWritePattern), session.misalign());
  block::BlockBackend& image = *session.backend();
  auto request = [&]() -> Task<void> {
    co_await image.write(static_cast<uint64_t>(*offset), buffer.span(), {.fua = fua});
  };
  const Outcome outcome = run_timed(session, request());
  if (outcome.error) return print_failure("writev", outcome.error);
  if (!quiet) std::fputs(transfer_report({"wrote", *offset, *count, *count, 1, outcome.elapsed}, machine).c_str(), stdout);
  return true;
}

}  // namespace

const Command kRead = {
    .name = "read",
    .altname = "r",
    .run = read_run,
    .argmin = 2,
    .argmax = -1,
    .args = "[-abCqv] [-P pattern [-s off] [-l len]] off len",
    .oneline = "reads a number of bytes at a specified offset",
    .help = "\n"
            " Reads LEN bytes at offset OFF of the open image.\n"
            "\n"
            " Example:\n"
            " 'read -v 512 1k' - reads 1 KiB at offset 512 and dumps it in hex\n"
            "\n"
            " -b, -- read from the VM state instead of the disk (not supported by keel)\n"
            " -C, -- report statistics in one machine-parsable line\n"
            " -l, -- with -P, how many bytes to verify\n"
            " -p, -- ignored, for compatibility\n"
            " -P, -- verify that the data read is the given pattern byte\n"
            " -q, -- quiet: do not report statistics\n"
            " -s, -- with -P, where in the data verification starts\n"
            " -v, -- dump the data read to standard output\n"
            "\n",
};

const Command kReadv = {
    .name = "readv",
    .run = readv_run,
    .argmin = 2,
    .argmax = -1,
    .args = "[-Cqv] [-P pattern] off len [len..]",
    .oneline = "reads a number of bytes at a specified offset",
    .help = "\n"
            " Reads at offset OFF into one buffer per LEN given.\n"
            "\n"
            " Example:\n"
            " 'readv -v 512 1k 1k' - reads 2 KiB at offset 512 and dumps it in hex\n"
            "\n"
            " -C, -- report statistics in one machine-parsable line\n"
            " -P, -- verify that the data read is the given pattern byte\n"
            " -v, -- dump the data read to standard output\n"
            " -q, -- quiet: do not report statistics\n"
            "\n",
};

const Command kWrite = {
    .name = "write",
    .altname = "w",
    .run = write_run,
    .argmin = 2,
    .argmax = -1,
    .writes = true,
    .args = "[-bcCfnquz] [-P pattern | -s source_file] off len",
    .oneline = "writes a number of bytes at a specified offset",
    .help = "\n"
            " Writes LEN bytes at offset OFF of the open image, by default of the\n"
            " pattern 0xcd.\n"
            "\n"
            " Example:\n"
            " 'write 512 1k' - writes 1 KiB at offset 512\n"
            "\n"
            " -b, -- write to the VM state instead of the disk (not supported by keel)\n"
            " -c, -- write compressed clusters\n"
            " -f, -- write with Force Unit Access: durable when the request completes\n"
            " -n, -- with -z, fail rather than write zero buffers\n"
            " -p, -- ignored, for compatibility\n"
            " -P, -- write the given pattern byte\n"
            " -s, -- write the contents of the given file, repeated as needed\n"
            " -C, -- report statistics in one machine-parsable line\n"
            " -q, -- quiet: do not report statistics\n"
            " -u, -- with -z, allow the range to be deallocated\n"
            " -z, -- write zeroes efficiently\n"
            "\n",
};

const Command kWritev = {
    .name = "writev",
    .run = writev_run,
    .argmin = 2,
    .argmax = -1,
    .writes = true,
    .args = "[-Cfq] [-P pattern] off len [len..]",
    .oneline = "writes a number of bytes at a specified offset",
    .help = "\n"
            " Writes at offset OFF from one buffer per LEN given, by default of the\n"
            " pattern 0xcd.\n"
            "\n"
            " Example:\n"
            " 'writev 512 1k 1k' - writes 2 KiB at offset 512\n"
            "\n"
            " -P, -- write the given pattern byte\n"
            " -C, -- report statistics in one machine-parsable line\n"
            " -f, -- write with Force Unit Access: durable when the request completes\n"
            " -q, -- quiet: do not report statistics\n"
            "\n",
};

}  // namespace keel::io
