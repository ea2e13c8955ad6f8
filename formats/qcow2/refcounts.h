// Reference counts and the cluster allocator. Refcount blocks live in a
// MetadataCache; the refcount table is held whole in memory. New refcount
// blocks (and a larger table, when needed) are placed at the end of the image
// where they describe themselves, and reach the file before anything points at
// them. Decrements are queued and applied only after the tables that dropped
// the reference are on disk, so a crash can leak clusters but never free one
// that is still in use.
#pragma once

#include <cstdint>
#include <unordered_set>
#include <vector>

#include "base/async/task.h"
#include "block/node.h"
#include "formats/qcow2/header.h"
#include "formats/qcow2/layout.h"
#include "formats/qcow2/metadata_cache.h"

namespace keel::qcow2 {

// Reads and writes one refcount of width 2^order bits inside a refcount block.
uint64_t get_refcount_entry(const std::byte* block, uint64_t index, uint32_t order);
void set_refcount_entry(std::byte* block, uint64_t index, uint32_t order, uint64_t value);

class Refcounts {
 public:
  Refcounts(block::BlockNode& file, Header& header, MetadataCache& cache, std::vector<uint64_t> table);

  uint64_t max_refcount() const { return max_refcount_; }
  uint64_t entries_per_block() const { return entries_per_block_; }
  const std::vector<uint64_t>& table() const { return table_; }
  // One past the last cluster in use or handed out (the image's end).
  uint64_t end_cluster() const { return end_cluster_; }
  void set_barriers(bool on) { barriers_ = on; }

  Task<uint64_t> get(uint64_t cluster);
  Task<void> add(uint64_t cluster, int64_t delta);
  // Sets one refcount outright (repair), whatever the width.
  Task<void> set(uint64_t cluster, uint64_t value);

  // Extends end_cluster() past the last cluster with a non-zero refcount: after
  // a crash, refcounts may describe clusters that never reached the file, and
  // those must not be handed out again.
  Task<void> find_end();
  // Whether the cluster at `offset` holds a refcount block.
  bool is_refcount_block(uint64_t offset) const { return block_offsets_.count(offset) != 0; }

  // Allocates `count` contiguous free clusters with refcount 1; returns the byte offset.
  Task<uint64_t> allocate_clusters(uint64_t count);
  // Allocates `length` bytes for compressed data, packing several compressed
  // clusters into shared host clusters as qemu does.
  Task<uint64_t> allocate_bytes(uint64_t length);

  // Queues a decrement of every cluster overlapping [offset, offset+length).
  void free_later(uint64_t offset, uint64_t length);
  bool has_pending_frees() const { return !pending_frees_.empty(); }
  // Applies queued decrements; clusters that reach zero are returned so the
  // caller can release their storage.
  Task<std::vector<uint64_t>> apply_pending_frees();

  // Rewrites the table and blocks wholesale (repair): `counts[c]` for each cluster.
  Task<void> rebuild(const std::vector<uint64_t>& counts);

 private:
  // Offset of refcount block `index` (0 if none); the table's reserved bits are not part of it.
  uint64_t block_offset(uint64_t index) const {
    return index < table_.size() ? table_[index] & kReftableOffsetMask : 0;
  }
  Task<MetadataCache::Ref> block_for(uint64_t cluster, bool create);
  void store(const MetadataCache::Ref& block, uint64_t cluster, uint64_t value);
  Task<void> grow(uint64_t block_index);
  Task<void> write_table_header(uint64_t offset, uint32_t clusters);

  block::BlockNode& file_;
  Header& header_;
  MetadataCache& cache_;
  std::vector<uint64_t> table_;
  uint64_t cluster_size_;
  uint32_t cluster_bits_;
  uint64_t entries_per_block_;
  uint64_t max_refcount_;
  uint64_t end_cluster_;
  uint64_t free_hint_ = 0;
  uint64_t free_byte_offset_ = 0;
  bool barriers_ = true;
  std::vector<uint64_t> pending_frees_;
  std::unordered_set<uint64_t> block_offsets_;
};

}  // namespace keel::qcow2
