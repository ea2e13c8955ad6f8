// A qcow2 persistent dirty bitmap (the bitmaps extension), loaded whole into
// memory as qemu loads it: the bitmap table lists one data cluster per
// cluster_size * 8 bits (0: all clear, 1: all set), each bit covering
// `granularity` guest bytes, least significant bit first. Everything is
// validated before use; writes through the node mark an enabled bitmap.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "block/dirty_bitmap.h"
#include "block/node.h"
#include "formats/qcow2/header.h"
#include "formats/qcow2/snapshot_table.h"

namespace keel::qcow2 {

// The bits of a bitmap over `disk_size` guest bytes, in the on-disk byte layout.
class BitmapBits {
 public:
  BitmapBits(uint64_t disk_size, uint64_t granularity);

  uint64_t disk_size() const { return disk_size_; }
  uint64_t granularity() const { return granularity_; }
  std::span<std::byte> bytes() { return bytes_; }
  // The run from `offset` of bytes with the same bit, at most `length` long and within the disk.
  block::DirtyBitmap::Run run_at(uint64_t offset, uint64_t length) const;
  // Sets the bits of every granule [offset, offset+length) touches (within the disk).
  void set(uint64_t offset, uint64_t length);

 private:
  bool bit(uint64_t index) const { return (std::to_integer<unsigned>(bytes_[index / 8]) >> (index % 8)) & 1; }

  uint64_t disk_size_;
  uint64_t granularity_;
  std::vector<std::byte> bytes_;
};

// What one bitmap table entry says about its cluster of bitmap data.
struct BitmapTableEntry {
  enum class Kind { AllClear, AllSet, Stored } kind;
  uint64_t offset;  // of the data cluster, for Stored
};

// Decodes a bitmap table; raises EINVAL (qemu's wording, naming `bitmap`) for reserved bits or an unaligned
// data cluster offset.
std::vector<BitmapTableEntry> decode_bitmap_table(std::span<const std::byte> table, uint64_t cluster_size,
                                                  const std::string& bitmap);

// The number of table entries a bitmap of `granularity` over `disk_size` bytes has.
uint64_t bitmap_table_entries(uint64_t disk_size, uint64_t granularity, uint64_t cluster_size);

class Qcow2DirtyBitmap final : public block::DirtyBitmap {
 public:
  // Validates `info` against the image and reads its table and data (unless it is in use).
  static Task<std::shared_ptr<Qcow2DirtyBitmap>> load(block::BlockNode& file, const Header& header,
                                                      const BitmapInfo& info);

  const std::string& name() const override { return name_; }
  uint64_t granularity() const override { return bits_.granularity(); }
  bool inconsistent() const override { return inconsistent_; }
  Task<Run> query(uint64_t offset, uint64_t length) override;

  // A write to the node: an enabled bitmap records it.
  void mark_written(uint64_t offset, uint64_t length);

 private:
  Qcow2DirtyBitmap(std::string name, BitmapBits bits, bool enabled, bool inconsistent)
      : name_(std::move(name)), bits_(std::move(bits)), enabled_(enabled), inconsistent_(inconsistent) {}

  std::string name_;
  BitmapBits bits_;
  bool enabled_;
  bool inconsistent_;
};

}  // namespace keel::qcow2
