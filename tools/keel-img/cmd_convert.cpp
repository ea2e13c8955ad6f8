#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "base/units.h"
#include "block/format.h"
#include "block/image_name.h"
#include "block/jobs/convert.h"
#include "tools/common/atomic_output.h"
#include "tools/common/progress.h"
#include "tools/common/objects.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/command_line.h"
#include "tools/keel-img/commands.h"
#include "tools/keel-img/option_help.h"

namespace keel::img {

namespace {

constexpr uint64_t kMaxSparseSize = 16ull << 20;
constexpr unsigned kMaxParallel = 16;

// -m as qemu-img reads it: a whole number (decimal, 0x hex or 0 octal) from 1 to 16.
unsigned parse_parallel(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(text.c_str(), &end, 0);
  if (text.empty() || errno || *end || n < 1 || n > static_cast<long>(kMaxParallel))
    raise(EINVAL, "Invalid number of coroutines. Allowed number of coroutines is between 1 and {}", kMaxParallel);
  return static_cast<unsigned>(n);
}

uint64_t parse_sparse_size(const std::string& text) {
  const SizeScan size = scan_size(text);
  if (!size.value && !size.out_of_range) {
    tools::print_error("Invalid buffer size for sparse output specified. You may use k, M, G, T, P or E suffixes for");
    tools::print_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    throw tools::ExitStatus{1};
  }
  if (size.out_of_range || *size.value > static_cast<uint64_t>(INT64_MAX))
    raise(ERANGE, "Invalid buffer size for sparse output specified. Must be between 0 and {}.", INT64_MAX);
  if (*size.value % 512 != 0 || *size.value > kMaxSparseSize)
    raise(EINVAL, "Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to {}. Select 0 to disable sparse detection (fully allocates output).", kMaxSparseSize);
  return *size.value;
}

Task<void> run_convert(const std::vector<std::string>& source_names, const std::string& target_name,
                       const block::OpenOptions& source_options, bool image_opts, block::OpenOptions target_options,
                       const block::CreateRequest* create, bool target_is_zero, block::ConvertOptions convert_options) {
  std::vector<std::unique_ptr<block::BlockNode>> sources;
  std::vector<block::BlockNode*> source_nodes;
  for (const auto& name : source_names) {
    sources.push_back(co_await img_open(name, source_options, image_opts));
    source_nodes.push_back(sources.back().get());
  }
  const block::FormatDriver* target_driver = block::find_format(*target_options.format);
  // A new image is made under a temporary name and renamed into place once complete.
  std::optional<tools::AtomicOutput> output;
  if (create) {
    block::CreateRequest request = *create;
    for (auto* s : source_nodes) request.size += s->size();
    request.size = align_up(request.size, 512);  // whole sectors, as qemu-img creates them
    const std::string target_path = block::local_path(target_name);
    try {
      output.emplace(target_path);
      request.filename = output->path();
      co_await target_driver->create(request);
    } catch (const Error& e) {
      throw (output ? output->with_target_name(e) : e)
          .with_context(fmt::format("{}: error while converting {}", target_name, target_driver->name));
    }
  }
  try {
    auto target = co_await img_open(output ? output->path() : target_name, target_options);
    if (convert_options.compress && !target->supports_compressed_writes())
      raise(ENOTSUP, "Compression not supported for this file format");
    convert_options.target_is_zero = create ? target->limits().zero_init : target_is_zero;
    co_await block::convert(source_nodes, *target, convert_options);
    co_await target->close();
  } catch (const Error& e) {
    if (output) throw output->with_target_name(e);
    throw;
  }
  if (output) output->commit();
}

}  // namespace

int cmd_convert(int argc, char** argv) {
  std::string source_format, target_format = "raw", target_cache, source_cache = "writeback", option_list;
  bool compress = false, progress = false, quiet = false, no_create = false, out_of_order = false, force_share = false,
       target_is_zero = false, image_opts = false;
  uint64_t sparse = 4096;
  unsigned parallel = 8;
  auto scanner = command_scanner(
      argc, argv, "hf:O:B:Cco:l:S:pt:T:qnm:Wr:U",
      {{"help", false, 'h'}, {"object", true, kOptionObject}, {"image-opts", false, kOptionImageOpts},
       {"target-image-opts", false, kOptionTargetImageOpts}, {"salvage", false, kOptionSalvage},
       {"target-is-zero", false, kOptionTargetIsZero}, {"force-share", false, 'U'}, {"bitmaps", false, kOptionBitmaps},
       {"skip-broken-bitmaps", false, kOptionSkipBrokenBitmaps}});
  while (auto o = scanner.next()) {
    switch (o->id) {
      case 'h': print_usage(); return 0;
      case 'f': source_format = o->argument; break;
      case 'O': target_format = o->argument; break;
      case 'c': compress = true; break;
      case 'o': add_option_list(option_list, o->argument); break;
      case 'S': sparse = parse_sparse_size(o->argument); break;
      case 'p': progress = true; break;
      case 't': target_cache = o->argument; break;
      case 'T': source_cache = o->argument; break;
      case 'q': quiet = true; break;
      case 'n': no_create = true; break;
      case 'm': parallel = parse_parallel(o->argument); break;
      case 'W': out_of_order = true; break;
      case 'U': force_share = true; break;
      case kOptionImageOpts: image_opts = true; break;
      case kOptionTargetIsZero: target_is_zero = true; break;
      case 'B': not_supported("-B (a backing file for the output)"); break;
      case 'C': not_supported("-C (copy offloading)"); break;
      case 'l': not_supported("-l (converting a snapshot)"); break;
      case 'r': not_supported("-r (a rate limit)"); break;
      case kOptionObject: tools::define_client_object(o->argument); break;
      case kOptionTargetImageOpts: not_supported("--target-image-opts"); break;
      case kOptionSalvage: not_supported("--salvage"); break;
      case kOptionBitmaps: not_supported("--bitmaps"); break;
      case kOptionSkipBrokenBitmaps: not_supported("--skip-broken-bitmaps"); break;
      default: bad_option(*o);
    }
  }
  block::CreateRequest create;
  create.options.parse(option_list);
  if (create.options.help_requested()) {
    const block::FormatDriver* driver = block::find_format(target_format);
    if (!driver) raise(EINVAL, "Unknown file format '{}'", target_format);
    print_option_help(*driver, scanner.operands().size() >= 2);  // the output is the last of two or more
    return 0;
  }
  std::vector<std::string> files = scanner.operands();
  if (files.size() < 2) raise(EINVAL, "Must specify image file name");
  if (image_opts && !source_format.empty()) raise(EINVAL, "--image-opts and --format are mutually exclusive");
  const std::string target_name = files.back();
  files.pop_back();
  if (target_is_zero && !no_create) raise(EINVAL, "--target-is-zero requires use of -n flag");
  if (no_create && !option_list.empty()) raise(EINVAL, "-o has no effect when skipping image creation");
  const block::FormatDriver* driver = block::find_format(target_format);
  if (!driver) raise(EINVAL, "Unknown file format '{}'", target_format);

  create.filename = target_name;
  create.options.validate(driver->create_options());

  block::OpenOptions source_options;
  if (!source_format.empty()) source_options.format = source_format;
  source_options.force_share = force_share;
  source_options.cache = tools::parse_cache_mode(source_cache, "source cache");
  block::OpenOptions target_options;
  target_options.format = target_format;
  target_options.writable = true;
  // qemu-img writes through the page cache by default (unsafe). keel writes
  // around it: a multi-GiB copy then neither evicts the page cache nor leaves
  // gigabytes of dirty pages behind, and allocating page cache for data that
  // is never read again is most of the cost of a plain convert. Compressed
  // clusters are packed at byte offsets, so they stay in the page cache, which
  // merges them into whole pages. Flushes are skipped as with unsafe; -t picks
  // any mode explicitly.
  const block::CacheMode default_target_cache =
      compress ? block::CacheMode{.no_flush = true}
               : block::CacheMode{.direct = true, .no_flush = true, .buffered_fallback = true};
  target_options.cache = target_cache.empty() ? default_target_cache
                             : tools::parse_cache_mode(target_cache);

  tools::ProgressLine progress_line(progress && !quiet);
  block::ConvertOptions convert_options;
  convert_options.parallel = parallel;
  convert_options.out_of_order = out_of_order;
  convert_options.sparse_size = sparse;
  convert_options.compress = compress;
  convert_options.progress = [&](double percent) { progress_line.update(percent); };

  EventLoop loop;
  loop.run(run_convert(files, target_name, source_options, image_opts, target_options, no_create ? nullptr : &create, target_is_zero, convert_options));
  progress_line.finish();
  return 0;
}

}  // namespace keel::img
