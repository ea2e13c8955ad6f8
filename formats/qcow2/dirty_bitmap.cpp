#include "formats/qcow2/dirty_bitmap.h"

#include <algorithm>
#include <cstring>

#include "base/endian.h"
#include "base/error.h"
#include "base/units.h"
#include "formats/qcow2/layout.h"

namespace keel::qcow2 {

namespace {

// Bitmap data keel holds in memory at most (a 2^40-byte disk at 512-byte granularity needs 256 MiB).
constexpr uint64_t kMaxBitmapBytes = 1ull << 30;
constexpr uint64_t kTableEntryAllSet = 1;
constexpr uint64_t kTableEntryReserved = ~(kOffsetMask | kTableEntryAllSet);

}  // namespace

BitmapBits::BitmapBits(uint64_t disk_size, uint64_t granularity)
    : disk_size_(disk_size), granularity_(granularity), bytes_(div_round_up(div_round_up(disk_size, granularity), 8)) {}

block::DirtyBitmap::Run BitmapBits::run_at(uint64_t offset, uint64_t length) const {
  if (offset >= disk_size_) return {length, false};
  const uint64_t end = std::min(disk_size_, offset + length);
  const uint64_t last = div_round_up(end, granularity_);  // one past the last bit the range touches
  const bool dirty = bit(offset / granularity_);
  uint64_t i = offset / granularity_ + 1;
  const std::byte same = dirty ? std::byte{0xff} : std::byte{0};
  while (i < last) {
    // Whole bytes of the same bit at once: a large clean bitmap is a quick scan.
    if (i % 8 == 0 && i + 8 <= last && bytes_[i / 8] == same) {
      i += 8;
      continue;
    }
    if (bit(i) != dirty) break;
    i++;
  }
  return {std::min(end, i * granularity_) - offset, dirty};
}

void BitmapBits::set(uint64_t offset, uint64_t length) {
  if (offset >= disk_size_ || length == 0) return;
  const uint64_t last = div_round_up(std::min(disk_size_, offset + length), granularity_);
  for (uint64_t i = offset / granularity_; i < last; i++) bytes_[i / 8] |= std::byte(1u << (i % 8));
}

std::vector<BitmapTableEntry> decode_bitmap_table(std::span<const std::byte> table, uint64_t cluster_size,
                                                  const std::string& bitmap) {
  std::vector<BitmapTableEntry> entries;
  entries.reserve(table.size() / 8);
  for (size_t i = 0; i + 8 <= table.size(); i += 8) {
    const uint64_t word = load_be<uint64_t>(table.data() + i);
    const uint64_t offset = word & kOffsetMask;
    // The all-set flag only means something without a data cluster.
    if ((word & kTableEntryReserved) || (offset & (cluster_size - 1)) || (offset && (word & kTableEntryAllSet)))
      raise(EINVAL, "Could not read bitmap_table table from image for bitmap '{}': {}", bitmap, errno_text(EINVAL));
    if (offset)
      entries.push_back({BitmapTableEntry::Kind::Stored, offset});
    else
      entries.push_back(
          {word & kTableEntryAllSet ? BitmapTableEntry::Kind::AllSet : BitmapTableEntry::Kind::AllClear, 0});
  }
  return entries;
}

uint64_t bitmap_table_entries(uint64_t disk_size, uint64_t granularity, uint64_t cluster_size) {
  return div_round_up(div_round_up(div_round_up(disk_size, granularity), 8), cluster_size);
}

Task<std::shared_ptr<Qcow2DirtyBitmap>> Qcow2DirtyBitmap::load(block::BlockNode& file, const Header& header,
                                                               const BitmapInfo& info) {
  const uint64_t cluster_size = header.cluster_size();
  if (info.type != 1 || (info.table_offset & (cluster_size - 1)) || info.table_offset == 0)
    raise(EINVAL, "Bitmap '{}' doesn't satisfy the constraints", info.name);
  if (div_round_up(div_round_up(header.size, info.granularity), 8) > kMaxBitmapBytes)
    raise(EFBIG, "Bitmap '{}' is too large for keel to load", info.name);
  BitmapBits bits(header.size, info.granularity);
  if (info.in_use)
    co_return std::shared_ptr<Qcow2DirtyBitmap>(new Qcow2DirtyBitmap(info.name, std::move(bits), info.auto_flag, true));
  if (info.table_size != bitmap_table_entries(header.size, info.granularity, cluster_size))
    raise(EINVAL, "Could not read bitmap '{}' from image: {}", info.name, errno_text(EINVAL));
  std::vector<std::byte> table(uint64_t{info.table_size} * 8);
  co_await file.read(info.table_offset, table);
  const std::vector<BitmapTableEntry> entries = decode_bitmap_table(table, cluster_size, info.name);
  std::span<std::byte> out = bits.bytes();
  std::vector<std::byte> cluster(cluster_size);
  for (size_t i = 0; i < entries.size(); i++) {
    std::span<std::byte> piece =
        out.subspan(i * cluster_size, std::min<uint64_t>(cluster_size, out.size() - i * cluster_size));
    switch (entries[i].kind) {
      case BitmapTableEntry::Kind::AllClear:
        break;
      case BitmapTableEntry::Kind::AllSet:
        std::memset(piece.data(), 0xff, piece.size());
        break;
      case BitmapTableEntry::Kind::Stored:
        // Past the end of the file a cluster reads as zeros, as in qemu.
        co_await file.read(entries[i].offset, cluster);
        std::memcpy(piece.data(), cluster.data(), piece.size());
        break;
    }
  }
  co_return std::shared_ptr<Qcow2DirtyBitmap>(new Qcow2DirtyBitmap(info.name, std::move(bits), info.auto_flag, false));
}

Task<block::DirtyBitmap::Run> Qcow2DirtyBitmap::query(uint64_t offset, uint64_t length) {
  co_return bits_.run_at(offset, length);
}

void Qcow2DirtyBitmap::mark_written(uint64_t offset, uint64_t length) {
  if (enabled_ && !inconsistent_) bits_.set(offset, length);
}

}  // namespace keel::qcow2
