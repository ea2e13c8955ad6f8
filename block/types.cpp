#include "block/types.h"

namespace keel::block {

std::optional<CacheMode> CacheMode::parse(std::string_view name) {
  if (name == "none" || name == "off") return CacheMode{.direct = true};
  if (name == "writeback") return CacheMode{};
  if (name == "writethrough") return CacheMode{.writethrough = true};
  if (name == "directsync") return CacheMode{.direct = true, .writethrough = true};
  if (name == "unsafe") return CacheMode{.no_flush = true};
  return std::nullopt;
}

std::optional<Preallocation> parse_preallocation(std::string_view name) {
  if (name == "off") return Preallocation::Off;
  if (name == "metadata") return Preallocation::Metadata;
  if (name == "falloc") return Preallocation::Falloc;
  if (name == "full") return Preallocation::Full;
  return std::nullopt;
}

std::string_view preallocation_name(Preallocation p) {
  switch (p) {
    case Preallocation::Off: return "off";
    case Preallocation::Metadata: return "metadata";
    case Preallocation::Falloc: return "falloc";
    case Preallocation::Full: return "full";
  }
  return "off";
}

}  // namespace keel::block
