#include "block/snapshot_ref.h"

#include "base/error.h"
#include "base/warning.h"

namespace keel::block {

SnapshotRef parse_snapshot_ref(std::string_view text) {
  SnapshotRef ref;
  if (!text.starts_with("snapshot.")) {
    ref.id = std::string(text);
    ref.id_or_name = true;
    return ref;
  }
  // Comma-separated key=value pairs; a later key overrides an earlier one, as with qemu's option lists.
  for (size_t start = 0; start <= text.size();) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view part = text.substr(start, comma - start);
    start = comma + 1;
    const size_t eq = part.find('=');
    std::string key(part.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "on" : std::string(part.substr(eq + 1));
    if (eq == std::string_view::npos)
      warn("short-form boolean option '{}' deprecated\nPlease use {}=on instead", key, key);
    if (key == "snapshot.id")
      ref.id = std::move(value);
    else if (key == "snapshot.name")
      ref.name = std::move(value);
    else
      raise(EINVAL, "Invalid parameter '{}'", key);
    if (comma == text.size()) break;
  }
  return ref;
}

}  // namespace keel::block
