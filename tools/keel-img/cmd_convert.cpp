#include <cstdio>
#include <optional>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "base/units.h"
#include "block/format.h"
#include "block/jobs/convert.h"
#include "tools/common/atomic_output.h"
#include "tools/common/progress.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/commands.h"

namespace keel::img {

namespace {

constexpr uint64_t kMaxSparseSize = 16ull << 20;
constexpr unsigned kMaxParallel = 16;

Task<void> run_convert(const std::vector<std::string>& source_names, const std::string& target_name,
                       const block::OpenOptions& source_options, block::OpenOptions target_options,
                       const block::CreateRequest* create, bool target_is_zero, block::ConvertOptions convert_options) {
  std::vector<std::unique_ptr<block::BlockNode>> sources;
  std::vector<block::BlockNode*> source_nodes;
  for (const auto& name : source_names) {
    sources.push_back(co_await img_open(name, source_options));
    source_nodes.push_back(sources.back().get());
  }
  const block::FormatDriver* target_driver = block::find_format(*target_options.format);
  // A new image is made under a temporary name and renamed into place once complete.
  std::optional<tools::AtomicOutput> output;
  if (create) {
    block::CreateRequest request = *create;
    for (auto* s : source_nodes) request.size += s->size();
    request.size = align_up(request.size, 512);  // whole sectors, as qemu-img creates them
    try {
      output.emplace(target_name);
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
    convert_options.target_is_zero = create ? target->has_zero_init() : target_is_zero;
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
  CLI::App app;
  app.name("convert");
  tools::configure_app(app, "Convert (copy) one or more images into the image OUTPUT_FILENAME.");
  std::string source_format, target_format = "raw", target_cache, source_cache = "writeback", sparse_text = "4k";
  std::vector<std::string> option_texts, files;
  bool compress = false, progress = false, quiet = false, no_create = false, out_of_order = false, force_share = false,
       target_is_zero = false;
  unsigned parallel = 8;
  app.add_option("-f,--source-format", source_format, "Source image format (probed if not given)");
  app.add_option("-O,--target-format", target_format, "Output image format (default: raw)");
  app.add_option("-o,--target-options", option_texts, "Output format options key=value[,...]")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("-c,--compress", compress, "Compress the output (qcow2)");
  app.add_flag("-p,--progress", progress, "Show progress");
  app.add_flag("-q,--quiet", quiet, "Quiet mode");
  app.add_flag("-n,--no-create", no_create, "Do not create the output; it must exist and be large enough");
  app.add_option("-t,--target-cache", target_cache,
                 "Output cache mode (default: unsafe, with direct I/O where supported unless -c)");
  app.add_option("-T,--source-cache", source_cache, "Source cache mode (default: writeback)");
  app.add_option("-S,--sparse-size", sparse_text, "Zero runs of at least this many bytes stay sparse (default 4k; 0 writes everything)");
  app.add_option("-m,--parallel", parallel, "Requests in flight (1 to 16, default 8)");
  app.add_flag("-W,--oob-writes", out_of_order, "Allow out-of-order writes to the output");
  app.add_flag("--target-is-zero", target_is_zero, "Assume the output reads as zeros (requires -n)");
  app.add_flag("-U,--force-share", force_share, "Open the sources even if another process uses them");
  app.add_option("files", files, "Source images, then the output image")->required();
  tools::parse_args(app, argc, argv);

  if (files.size() < 2) raise(EINVAL, "Must specify image file name");
  const std::string target_name = files.back();
  files.pop_back();
  if (parallel < 1 || parallel > kMaxParallel)
    raise(EINVAL, "Invalid number of coroutines. Allowed number of coroutines is between 1 and {}", kMaxParallel);
  auto sparse = parse_size(sparse_text);
  if (!sparse || *sparse % 512 != 0 || *sparse > kMaxSparseSize)
    raise(EINVAL, "Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to {}. Select 0 to disable sparse detection (fully allocates output).", kMaxSparseSize);
  if (target_is_zero && !no_create) raise(EINVAL, "--target-is-zero requires use of -n flag");
  if (no_create && !option_texts.empty()) raise(EINVAL, "-o has no effect when skipping image creation");
  const block::FormatDriver* driver = block::find_format(target_format);
  if (!driver) raise(EINVAL, "Unknown file format '{}'", target_format);

  block::CreateRequest create;
  create.filename = target_name;
  for (const auto& text : option_texts) create.options.parse(text);
  create.options.validate(driver->create_options());

  block::OpenOptions source_options;
  if (!source_format.empty()) source_options.format = source_format;
  source_options.force_share = force_share;
  source_options.cache = tools::parse_cache_mode(source_cache);
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
  convert_options.sparse_size = *sparse;
  convert_options.compress = compress;
  convert_options.progress = [&](double percent) { progress_line.update(percent); };

  EventLoop loop;
  loop.run(run_convert(files, target_name, source_options, target_options, no_create ? nullptr : &create, target_is_zero, convert_options));
  progress_line.finish();
  return 0;
}

}  // namespace keel::img
