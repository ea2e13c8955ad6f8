#include <cstdio>
#include <optional>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "block/format.h"
#include "block/check.h"
#include "tools/common/json_output.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/command_line.h"
#include "tools/keel-img/commands.h"

namespace keel::img {

namespace {

// qemu-img check's exit statuses.
constexpr int kCheckOk = 0;
constexpr int kCheckFailed = 1;
constexpr int kCheckCorrupt = 2;
constexpr int kCheckLeaks = 3;
constexpr int kCheckUnsupported = 63;

// qemu's ImageCheck, zero-valued optional members left out, in qemu 7.2's key order.
nlohmann::ordered_json check_json(const block::CheckResult& r, const std::string& filename, const std::string& format) {
  nlohmann::ordered_json j;
  if (r.image_end_offset) j["image-end-offset"] = r.image_end_offset;
  if (r.compressed_clusters) j["compressed-clusters"] = r.compressed_clusters;
  if (r.total_clusters) j["total-clusters"] = r.total_clusters;
  if (r.corruptions) j["corruptions"] = r.corruptions;
  if (r.corruptions_fixed) j["corruptions-fixed"] = r.corruptions_fixed;
  j["check-errors"] = r.check_errors;
  if (r.leaks) j["leaks"] = r.leaks;
  if (r.leaks_fixed) j["leaks-fixed"] = r.leaks_fixed;
  if (r.allocated_clusters) j["allocated-clusters"] = r.allocated_clusters;
  j["filename"] = filename;
  j["format"] = format;
  if (r.fragmented_clusters) j["fragmented-clusters"] = r.fragmented_clusters;
  return j;
}

void print_human(const block::CheckResult& r) {
  if (!r.corruptions && !r.leaks && !r.check_errors) {
    std::printf("No errors were found on the image.\n");
  } else {
    if (r.corruptions)
      std::printf(
          "\n%llu errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt "
          "it.\n",
          static_cast<unsigned long long>(r.corruptions));
    if (r.leaks)
      std::printf(
          "\n%llu leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n",
          static_cast<unsigned long long>(r.leaks));
    if (r.check_errors)
      std::printf("\n%llu internal errors have occurred during the check.\n",
                  static_cast<unsigned long long>(r.check_errors));
  }
  if (r.total_clusters && r.allocated_clusters) {
    const double allocated = static_cast<double>(r.allocated_clusters);
    std::printf("%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
                static_cast<unsigned long long>(r.allocated_clusters),
                static_cast<unsigned long long>(r.total_clusters),
                allocated * 100.0 / static_cast<double>(r.total_clusters),
                static_cast<double>(r.fragmented_clusters) * 100.0 / allocated,
                static_cast<double>(r.compressed_clusters) * 100.0 / allocated);
  }
  if (r.image_end_offset) std::printf("Image end offset: %llu\n", static_cast<unsigned long long>(r.image_end_offset));
}

void print_messages(const block::CheckResult& r) {
  for (const auto& m : r.messages) std::fprintf(stderr, "%s\n", m.c_str());
}

}  // namespace

int cmd_check(int argc, char** argv) {
  ImageCommandOptions common;
  std::string repair, cache = "writeback";
  bool quiet = false;
  auto scanner = command_scanner(argc, argv, "hf:r:T:qU",
                                 {{"help", false, 'h'},
                                  {"format", true, 'f'},
                                  {"repair", true, 'r'},
                                  {"output", true, kOptionOutput},
                                  {"object", true, kOptionObject},
                                  {"image-opts", false, kOptionImageOpts},
                                  {"force-share", false, 'U'}});
  while (auto o = scanner.next()) {
    if (common.take(*o)) continue;
    switch (o->id) {
      case 'r':
        repair = o->argument;
        if (repair != "leaks" && repair != "all")
          usage_error(fmt::format("Unknown option value for -r (expecting 'leaks' or 'all'): {}", repair));
        break;
      case 'T':
        cache = o->argument;
        break;
      case 'q':
        quiet = true;
        break;
      default:
        bad_option(*o);
    }
  }
  const std::string filename = common.one_image(scanner);
  const bool json = common.json();
  const bool force_share = common.force_share;
  if (!repair.empty() && force_share)
    raise(EINVAL, "Could not open '{}': force-share=on can only be used with read-only images", filename);

  block::OpenOptions options;
  if (!common.format.empty()) options.format = common.format;
  options.force_share = force_share;
  options.writable = !repair.empty();
  options.for_repair = !repair.empty();
  options.cache = tools::parse_cache_mode(cache, "source cache");
  const block::CheckFix fix = repair == "all"     ? block::CheckFix::All
                              : repair == "leaks" ? block::CheckFix::Leaks
                                                  : block::CheckFix::None;

  EventLoop loop;
  auto node = loop.run(img_open(filename, options, common.image_opts));
  const std::string format(node->format_name());
  if (!node->supports_check()) {
    tools::print_error("This image format does not support checks");
    return kCheckUnsupported;
  }
  auto check = [&](block::CheckFix how) {
    block::CheckResult r = loop.run(node->check(how));
    print_messages(r);
    return r;
  };
  block::CheckResult result;
  try {
    result = check(fix);
    if (result.failure) {
      tools::print_error(fmt::format("Check failed: {}", errno_text(result.failure)));
      return kCheckFailed;
    }
    loop.run(node->close());
    if (result.corruptions_fixed || result.leaks_fixed) {
      if (!json && !quiet)
        std::printf(
            "The following inconsistencies were found and repaired:\n\n    %llu leaked clusters\n    %llu "
            "corruptions\n\n"
            "Double checking the fixed image now...\n",
            static_cast<unsigned long long>(result.leaks_fixed),
            static_cast<unsigned long long>(result.corruptions_fixed));
      // The verdict on a repair comes from the image as it now is on disk,
      // opened afresh: nothing the repair left in memory can vouch for it.
      node.reset();
      block::OpenOptions reread = options;
      reread.writable = false;
      reread.for_repair = false;
      node = loop.run(img_open(filename, reread, common.image_opts));
      block::CheckResult again = check(block::CheckFix::None);
      again.leaks_fixed = result.leaks_fixed;
      again.corruptions_fixed = result.corruptions_fixed;
      result = again;
      loop.run(node->close());
    }
  } catch (const Error& e) {
    tools::print_error(fmt::format("Check failed: {}", e.message()));
    return kCheckFailed;
  }
  if (json && !quiet)
    std::printf("%s\n", tools::format_json_pretty(check_json(result, filename, format)).c_str());
  else if (!quiet)
    print_human(result);
  if (result.check_errors) {
    tools::print_error("Check failed");
    return kCheckFailed;
  }
  if (result.corruptions) return kCheckCorrupt;
  if (result.leaks) return kCheckLeaks;
  return kCheckOk;
}

}  // namespace keel::img
