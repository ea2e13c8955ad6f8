#include "formats/qcow2/snapshot_table.h"

#include "base/endian.h"
#include "base/error.h"
#include "base/units.h"
#include "base/warning.h"

namespace keel::qcow2 {

namespace {
constexpr uint64_t kMaxSnapshotTableBytes = 64ull << 20;  // qemu's QCOW_MAX_SNAPSHOTS_SIZE
}  // namespace

Task<SnapshotTable> read_snapshot_table(block::BlockNode& file, const Header& header) {
  SnapshotTable table;
  if (header.nb_snapshots == 0) co_return table;
  // Entries are variable length: read what the file holds, bounded; entries
  // past its end read as zeros (as in qemu), each of the fixed size only.
  const uint64_t in_file = file.size() > header.snapshots_offset ? file.size() - header.snapshots_offset : 0;
  const uint64_t available =
      std::min<uint64_t>(in_file + header.nb_snapshots * kSnapshotHeaderSize, kMaxSnapshotTableBytes);
  std::vector<std::byte> bytes(available);
  co_await file.read(header.snapshots_offset, bytes);
  BigEndianReader r(bytes, "snapshot table");
  uint64_t pos = 0;
  for (uint32_t i = 0; i < header.nb_snapshots; i++) {
    if (pos + kSnapshotHeaderSize > bytes.size()) raise(EFBIG, "Snapshot table exceeds the maximum size");
    Snapshot s;
    s.l1_table_offset = r.get<uint64_t>(pos);
    s.l1_size = r.get<uint32_t>(pos + 8);
    const uint16_t id_size = r.get<uint16_t>(pos + 12);
    const uint16_t name_size = r.get<uint16_t>(pos + 14);
    s.date_sec = r.get<uint32_t>(pos + 16);
    s.date_nsec = r.get<uint32_t>(pos + 20);
    s.vm_clock_nsec = r.get<uint64_t>(pos + 24);
    s.vm_state_size = r.get<uint32_t>(pos + 32);
    const uint32_t extra_size = r.get<uint32_t>(pos + 36);
    s.extra_size = extra_size;
    if (extra_size > 1024)
      raise(EFBIG, "Too much extra metadata in snapshot table entry {}\n"
            "You can force-remove this extra metadata with {} check -r all", i, program_name());
    if (extra_size >= 8) s.vm_state_size = r.get<uint64_t>(pos + 40);
    if (extra_size >= 24) {
      const uint64_t icount = r.get<uint64_t>(pos + 56);
      if (icount != UINT64_MAX) s.icount = icount;
    }
    pos += 40 + extra_size;
    s.id = r.get_string(pos, id_size);
    pos += id_size;
    s.name = r.get_string(pos, name_size);
    pos += name_size;
    pos = align_up(pos, 8);
    if (uint64_t{s.l1_size} * 8 > kMaxL1Bytes) raise(EFBIG, "Snapshot {} has an L1 table that is too large", i);
    table.snapshots.push_back(std::move(s));
  }
  table.table_bytes = pos;
  co_return table;
}

const Snapshot* find_snapshot(const SnapshotTable& table, const block::SnapshotRef& ref) {
  auto first = [&](auto matches) -> const Snapshot* {
    for (const Snapshot& s : table.snapshots)
      if (matches(s)) return &s;
    return nullptr;
  };
  if (ref.id_or_name) {
    if (!ref.id) return nullptr;
    if (const Snapshot* s = first([&](const Snapshot& s) { return s.id == *ref.id; })) return s;
    return first([&](const Snapshot& s) { return s.name == *ref.id; });
  }
  if (!ref.id && !ref.name) return nullptr;
  return first([&](const Snapshot& s) { return (!ref.id || s.id == *ref.id) && (!ref.name || s.name == *ref.name); });
}

Task<std::vector<BitmapInfo>> read_bitmap_directory(block::BlockNode& file, const Header& header) {
  std::vector<BitmapInfo> bitmaps;
  auto ext = header.bitmaps();
  if (!ext || !(header.autoclear_features & kAutoclearBitmaps)) co_return bitmaps;
  // The extension's counts and bounds were checked with the header.
  if (ext->directory_size == 0) raise(EINVAL, "Requested bitmap directory size is zero");
  std::vector<std::byte> bytes(ext->directory_size);
  co_await file.read(ext->directory_offset, bytes);
  BigEndianReader r(bytes, "bitmap directory");
  uint64_t pos = 0;
  for (uint32_t i = 0; i < ext->nb_bitmaps; i++) {
    BitmapInfo b;
    b.table_offset = r.get<uint64_t>(pos);
    b.table_size = r.get<uint32_t>(pos + 8);
    const uint32_t flags = r.get<uint32_t>(pos + 12);
    const uint8_t granularity_bits = r.get<uint8_t>(pos + 17);
    const uint16_t name_size = r.get<uint16_t>(pos + 18);
    const uint32_t extra_size = r.get<uint32_t>(pos + 20);
    if (granularity_bits < 9 || granularity_bits > 31) raise(EINVAL, "Bitmap {} has an invalid granularity", i);
    b.granularity = 1u << granularity_bits;
    b.in_use = flags & 1;
    b.auto_flag = flags & 2;
    b.type = r.get<uint8_t>(pos + 16);
    b.name = r.get_string(pos + 24 + extra_size, name_size);
    pos = align_up(pos + 24 + extra_size + name_size, 8);
    bitmaps.push_back(std::move(b));
  }
  co_return bitmaps;
}

}  // namespace keel::qcow2
