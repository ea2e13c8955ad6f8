// SnapshotRef: which internal snapshot a command names, in qemu's two
// spellings: "snapshot.id=ID,snapshot.name=NAME" (either or both) or a bare
// ID_OR_NAME, matched first as an id, then as a name. qemu-nbd -l and
// qemu-img convert -l share the syntax.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace keel::block {

struct SnapshotRef {
  std::optional<std::string> id;
  std::optional<std::string> name;
  bool id_or_name = false;  // `id` holds a bare ID_OR_NAME
};

// Raises EINVAL ("Invalid parameter 'KEY'", as qemu) for a key other than snapshot.id and snapshot.name.
SnapshotRef parse_snapshot_ref(std::string_view text);

}  // namespace keel::block
