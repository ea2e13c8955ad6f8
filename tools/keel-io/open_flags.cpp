#include "tools/keel-io/open_flags.h"

#include "base/error.h"
#include "tools/common/tool_main.h"

namespace keel::io {

OpenSettings default_open_settings() {
  OpenSettings s;
  s.image.open.writable = true;
  s.image.open.cache.writethrough = true;
  return s;
}

FlagResult apply_open_flag(OpenSettings& settings, int flag, const std::string& argument) {
  block::OpenOptions& open = settings.image.open;
  switch (flag) {
    case 'r': open.writable = false; break;
    case 's': settings.snapshot = true; break;
    // Copy-on-read copies from backing files, which keel does not read through yet: nothing to do.
    case 'C': break;
    case 'n': open.cache = {.direct = true}; break;
    case 'k': settings.image.aio = "native"; break;
    case 'U': open.force_share = true; break;
    case 't':
      try {
        open.cache = tools::parse_cache_mode(argument);
      } catch (const Error& e) {
        tools::print_error(e.message());
        return FlagResult::Invalid;
      }
      break;
    case 'd':
      if (argument == "on" || argument == "unmap") settings.discard = true;
      else if (argument == "off" || argument == "ignore") settings.discard = false;
      else {
        tools::print_error(fmt::format("Invalid discard option: {}", argument));
        return FlagResult::Invalid;
      }
      break;
    case 'i':
      if (argument != "threads" && argument != "native" && argument != "io_uring") {
        tools::print_error(fmt::format("Invalid aio option: {}", argument));
        return FlagResult::Invalid;
      }
      settings.image.aio = argument;
      break;
    case 'o':
      try {
        block::apply_image_options(argument, settings.image);
      } catch (const Error& e) {
        tools::print_error(e.message());
        return FlagResult::Invalid;
      }
      break;
    default: return FlagResult::NotAnOpenFlag;
  }
  return FlagResult::Applied;
}

}  // namespace keel::io
