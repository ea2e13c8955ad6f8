#include "formats/qcow2/refcounts.h"

#include <algorithm>
#include <optional>
#include <set>

#include "base/endian.h"
#include "base/units.h"
#include "formats/qcow2/corruption.h"
#include "formats/qcow2/layout.h"

namespace keel::qcow2 {

uint64_t get_refcount_entry(const std::byte* block, uint64_t index, uint32_t order) {
  switch (order) {
    case 4:
      return load_be<uint16_t>(block + index * 2);
    case 5:
      return load_be<uint32_t>(block + index * 4);
    case 6:
      return load_be<uint64_t>(block + index * 8);
    default: {
      // Sub-byte widths pack entries least significant bits first.
      const uint64_t bits = 1u << order;
      const uint64_t bit = index * bits;
      const auto byte = static_cast<uint8_t>(block[bit / 8]);
      return (byte >> (bit % 8)) & ((1u << bits) - 1);
    }
  }
}

void set_refcount_entry(std::byte* block, uint64_t index, uint32_t order, uint64_t value) {
  switch (order) {
    case 4:
      store_be<uint16_t>(block + index * 2, static_cast<uint16_t>(value));
      return;
    case 5:
      store_be<uint32_t>(block + index * 4, static_cast<uint32_t>(value));
      return;
    case 6:
      store_be<uint64_t>(block + index * 8, value);
      return;
    default: {
      const uint64_t bits = 1u << order;
      const uint64_t bit = index * bits;
      const uint8_t mask = static_cast<uint8_t>(((1u << bits) - 1) << (bit % 8));
      auto byte = static_cast<uint8_t>(block[bit / 8]);
      byte = static_cast<uint8_t>((byte & ~mask) | ((value << (bit % 8)) & mask));
      block[bit / 8] = static_cast<std::byte>(byte);
    }
  }
}

Refcounts::Refcounts(block::BlockNode& file, Header& header, MetadataCache& cache, std::vector<uint64_t> table)
    : file_(file),
      header_(header),
      cache_(cache),
      table_(std::move(table)),
      cluster_size_(header.cluster_size()),
      cluster_bits_(header.cluster_bits),
      entries_per_block_(header.cluster_size() * 8 / header.refcount_bits()),
      max_refcount_(header.refcount_order == 6 ? UINT64_MAX : (uint64_t{1} << header.refcount_bits()) - 1),
      end_cluster_(div_round_up(file.size(), header.cluster_size())) {
  for (uint64_t entry : table_)
    if (entry & kReftableOffsetMask) block_offsets_.insert(entry & kReftableOffsetMask);
}

Task<void> Refcounts::find_end() {
  for (uint64_t index = table_.size(); index-- > 0;) {
    if (block_offset(index) == 0) continue;
    auto ref = co_await block_for(index * entries_per_block_, false);
    if (!ref) continue;
    for (uint64_t i = entries_per_block_; i-- > 0;) {
      if (get_refcount_entry(ref.data(), i, header_.refcount_order) != 0) {
        end_cluster_ = std::max(end_cluster_, index * entries_per_block_ + i + 1);
        co_return;
      }
    }
  }
}

Task<MetadataCache::Ref> Refcounts::block_for(uint64_t cluster, bool create) {
  const uint64_t index = cluster / entries_per_block_;
  if (block_offset(index) == 0) {
    if (!create) co_return MetadataCache::Ref();
    co_await grow(index);
  }
  const uint64_t offset = block_offset(index);
  if (offset & (cluster_size_ - 1))
    raise_corruption("Refblock offset {:#x} unaligned (reftable index: {})", offset, c_hex(index));
  // An offset no file position can have fails to read, as in qemu.
  if (offset > uint64_t{INT64_MAX})
    raise(EIO, "Refcount block offset {:#x} (reftable index: {}) is not a file offset", offset, c_hex(index));
  if ((offset >> cluster_bits_) >= end_cluster_) {
    // Past the end of the file a block reads as zeros, as in qemu, but is never written.
    if (!create) co_return MetadataCache::Ref();
    raise_corruption("Refblock at {:#x} is outside the image (reftable index: {})", offset, c_hex(index));
  }
  co_return co_await cache_.get(offset);
}

Task<uint64_t> Refcounts::get(uint64_t cluster) {
  if (cluster >= end_cluster_) co_return 0;
  auto ref = co_await block_for(cluster, false);
  if (!ref) co_return 0;
  co_return get_refcount_entry(ref.data(), cluster % entries_per_block_, header_.refcount_order);
}

Task<void> Refcounts::add(uint64_t cluster, int64_t delta) {
  // Only an increment may need a new refcount block; a decrement of a cluster
  // nothing counts is an inconsistency, whatever its offset.
  auto ref = co_await block_for(cluster, delta > 0);
  if (!ref) raise_corruption("Refcount of cluster {:#x} would drop below zero", cluster);
  const uint64_t old = get_refcount_entry(ref.data(), cluster % entries_per_block_, header_.refcount_order);
  // The magnitude as unsigned, so that no delta (INT64_MIN included) overflows.
  const uint64_t change = delta < 0 ? uint64_t{0} - static_cast<uint64_t>(delta) : static_cast<uint64_t>(delta);
  if (delta < 0 && old < change) raise_corruption("Refcount of cluster {:#x} would drop below zero", cluster);
  if (delta > 0 && max_refcount_ - old < change)
    raise(ERANGE, "Refcount of cluster {:#x} would overflow the {}-bit refcount width", cluster,
          header_.refcount_bits());
  store(ref, cluster, delta < 0 ? old - change : old + change);
}

Task<void> Refcounts::set(uint64_t cluster, uint64_t value) {
  if (value > max_refcount_)
    raise(ERANGE, "Refcount {} of cluster {:#x} does not fit the {}-bit refcount width", value, cluster,
          header_.refcount_bits());
  auto ref = co_await block_for(cluster, value != 0);
  if (!ref) co_return;  // no block: the refcount is 0 already
  store(ref, cluster, value);
}

void Refcounts::store(const MetadataCache::Ref& block, uint64_t cluster, uint64_t value) {
  set_refcount_entry(block.data(), cluster % entries_per_block_, header_.refcount_order, value);
  block.mark_dirty();
  if (value == 0) free_hint_ = std::min(free_hint_, cluster);
  end_cluster_ = std::max(end_cluster_, cluster + 1);
}

Task<uint64_t> Refcounts::allocate_clusters(uint64_t count) {
  uint64_t start = free_hint_;
  uint64_t run = 0;
  std::optional<uint64_t> first_free;
  while (run < count) {
    const uint64_t c = start + run;
    if (c >= end_cluster_) break;  // everything past the end is free
    if (co_await get(c) == 0) {
      if (!first_free) first_free = c;
      run++;
    } else {
      start = c + 1;
      run = 0;
    }
  }
  if (start == 0) raise_corruption("Allocator found the header cluster free (refcount 0)");
  // Structures that grow() adds go after this range, never inside it.
  end_cluster_ = std::max(end_cluster_, start + count);
  for (uint64_t i = 0; i < count; i++) co_await add(start + i, 1);
  // Everything before the first free cluster seen is in use: later searches start there.
  free_hint_ = (!first_free || *first_free == start) ? start + count : *first_free;
  co_return start << cluster_bits_;
}

Task<uint64_t> Refcounts::allocate_bytes(uint64_t length) {
  if (length == 0 || length > cluster_size_) raise(EINVAL, "Invalid compressed allocation of {} bytes", length);
  if (free_byte_offset_ % cluster_size_ != 0) {
    const uint64_t current = free_byte_offset_ >> cluster_bits_;
    const uint64_t room = cluster_size_ - free_byte_offset_ % cluster_size_;
    if (co_await get(current) < max_refcount_) {
      if (length <= room) {
        co_await add(current, 1);
        const uint64_t offset = free_byte_offset_;
        free_byte_offset_ += length;
        co_return offset;
      }
      const uint64_t extra = div_round_up(length - room, cluster_size_);
      const uint64_t next = co_await allocate_clusters(extra);
      if (next == (current + 1) << cluster_bits_) {
        co_await add(current, 1);
        const uint64_t offset = free_byte_offset_;
        free_byte_offset_ += length;
        co_return offset;
      }
      // Not contiguous: give those back and start afresh below.
      for (uint64_t i = 0; i < extra; i++) co_await add((next >> cluster_bits_) + i, -1);
    }
  }
  const uint64_t offset = co_await allocate_clusters(div_round_up(length, cluster_size_));
  free_byte_offset_ = offset + length;
  co_return offset;
}

void Refcounts::free_later(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  for (uint64_t c = offset >> cluster_bits_; c <= (offset + length - 1) >> cluster_bits_; c++)
    pending_frees_.push_back(c);
}

Task<std::vector<uint64_t>> Refcounts::apply_pending_frees() {
  std::vector<uint64_t> released;
  auto frees = std::move(pending_frees_);
  pending_frees_.clear();
  for (uint64_t c : frees) {
    co_await add(c, -1);
    if (co_await get(c) == 0) {
      released.push_back(c);
      // The compressed-data cursor must not point into a cluster that is free again.
      if (free_byte_offset_ >> cluster_bits_ == c) free_byte_offset_ = 0;
    }
  }
  co_return released;
}

Task<void> Refcounts::write_table_header(uint64_t offset, uint32_t clusters) {
  std::byte field[12];
  store_be<uint64_t>(field, offset);
  store_be<uint32_t>(field + 8, clusters);
  co_await file_.write(48, field);
  header_.refcount_table_offset = offset;
  header_.refcount_table_clusters = clusters;
}

Task<void> Refcounts::grow(uint64_t block_index) {
  // Place the new refcount blocks (and a new table, if the table is too small)
  // at the end of the image, covering themselves. Iterate until every block
  // the new area needs is part of the area.
  if ((block_index + 1) * 8 > kMaxRefTableBytes)
    raise(EFBIG, "Cluster index {:#x} needs a refcount table larger than {} bytes", block_index * entries_per_block_,
          kMaxRefTableBytes);
  const uint64_t area_start = end_cluster_;
  std::set<uint64_t> new_blocks{block_index};
  uint64_t table_entries = table_.size();
  uint64_t table_clusters = 0;
  for (;;) {
    const uint64_t max_block = std::max(*new_blocks.rbegin(), table_.empty() ? 0 : table_.size() - 1);
    table_clusters = 0;
    table_entries = table_.size();
    if (max_block >= table_.size()) {
      // Grow by half again to amortise future growth.
      table_entries = align_up((max_block + 1) * 3 / 2 + 1, cluster_size_ / 8);
      table_clusters = table_entries * 8 / cluster_size_;
    }
    const uint64_t area_end = area_start + new_blocks.size() + table_clusters;
    bool changed = false;
    for (uint64_t c = area_start; c < area_end; c++) {
      const uint64_t b = c / entries_per_block_;
      const bool present = block_offset(b) != 0;
      if (!present && new_blocks.insert(b).second) changed = true;
    }
    if (!changed) break;
  }
  if (table_clusters * cluster_size_ > kMaxRefTableBytes)
    raise(EFBIG, "Image would need a refcount table larger than {} bytes", kMaxRefTableBytes);

  // Assign positions: blocks first, then the table.
  std::vector<std::pair<uint64_t, uint64_t>> placed;  // block index, cluster
  uint64_t next = area_start;
  for (uint64_t b : new_blocks) placed.emplace_back(b, next++);
  const uint64_t table_cluster = next;
  const uint64_t area_end = next + table_clusters;
  end_cluster_ = area_end;

  // Existing blocks must count the area clusters they cover too.
  for (uint64_t c = area_start; c < area_end; c++) {
    const uint64_t b = c / entries_per_block_;
    if (new_blocks.count(b)) continue;
    auto ref = co_await cache_.get(block_offset(b));
    set_refcount_entry(ref.data(), c % entries_per_block_, header_.refcount_order, 1);
    ref.mark_dirty();
  }
  if (cache_.has_dirty()) co_await cache_.flush();

  // Write the new blocks, each describing the area clusters it covers.
  for (auto [b, cluster] : placed) {
    block::AlignedBuffer data(cluster_size_);
    for (uint64_t c = std::max(area_start, b * entries_per_block_);
         c < std::min(area_end, (b + 1) * entries_per_block_); c++)
      set_refcount_entry(data.data(), c % entries_per_block_, header_.refcount_order, 1);
    cache_.forget(cluster << cluster_bits_);
    co_await file_.write(cluster << cluster_bits_, data.span());
  }
  if (barriers_) co_await file_.flush();

  std::vector<uint64_t> table = table_;
  table.resize(table_entries, 0);
  for (auto [b, cluster] : placed) {
    table[b] = cluster << cluster_bits_;
    block_offsets_.insert(cluster << cluster_bits_);
  }

  if (table_clusters) {
    // A new table: write it whole, then switch the header to it, then release the old one.
    block::AlignedBuffer bytes(table_clusters * cluster_size_);
    for (size_t i = 0; i < table.size(); i++) store_be<uint64_t>(bytes.data() + i * 8, table[i]);
    co_await file_.write(table_cluster << cluster_bits_, bytes.span());
    if (barriers_) co_await file_.flush();
    const uint64_t old_offset = header_.refcount_table_offset;
    const uint64_t old_clusters = header_.refcount_table_clusters;
    co_await write_table_header(table_cluster << cluster_bits_, static_cast<uint32_t>(table_clusters));
    if (barriers_) co_await file_.flush();
    table_ = std::move(table);
    for (uint64_t i = 0; i < old_clusters; i++) free_later(old_offset + i * cluster_size_, 1);
  } else {
    for (auto [b, cluster] : placed) {
      std::byte entry[8];
      store_be<uint64_t>(entry, cluster << cluster_bits_);
      co_await file_.write(header_.refcount_table_offset + b * 8, entry);
    }
    table_ = std::move(table);
  }
}

Task<void> Refcounts::rebuild(const std::vector<uint64_t>& counts) {
  // Lay out a fresh table and blocks after every cluster in use, describing
  // `counts` plus themselves; then point the header at them.
  uint64_t used_end = counts.size();
  while (used_end > 0 && counts[used_end - 1] == 0) used_end--;
  const uint64_t area_start = std::max(used_end, uint64_t{1});
  uint64_t blocks = 0, table_clusters = 0;
  for (;;) {
    const uint64_t end = area_start + blocks + table_clusters;
    const uint64_t need_blocks = div_round_up(end, entries_per_block_);
    const uint64_t need_table = div_round_up(need_blocks * 8, cluster_size_);
    if (need_blocks == blocks && need_table == table_clusters) break;
    blocks = need_blocks;
    table_clusters = need_table;
  }
  if (table_clusters * cluster_size_ > kMaxRefTableBytes) raise(EFBIG, "Rebuilt refcount table would be too large");
  // Cached blocks describe the old structures, which are about to be abandoned.
  cache_.drop_all();
  const uint64_t area_end = area_start + blocks + table_clusters;
  std::vector<uint64_t> table(table_clusters * cluster_size_ / 8, 0);
  for (uint64_t b = 0; b < blocks; b++) {
    block::AlignedBuffer data(cluster_size_);
    for (uint64_t c = b * entries_per_block_; c < std::min(area_end, (b + 1) * entries_per_block_); c++) {
      uint64_t value = c < counts.size() ? counts[c] : 0;
      if (c >= area_start) value = 1;
      set_refcount_entry(data.data(), c % entries_per_block_, header_.refcount_order, std::min(value, max_refcount_));
    }
    const uint64_t cluster = area_start + b;
    co_await file_.write(cluster << cluster_bits_, data.span());
    table[b] = cluster << cluster_bits_;
    block_offsets_.insert(table[b]);
  }
  block::AlignedBuffer bytes(table_clusters * cluster_size_);
  for (size_t i = 0; i < table.size(); i++) store_be<uint64_t>(bytes.data() + i * 8, table[i]);
  const uint64_t table_offset = (area_start + blocks) << cluster_bits_;
  co_await file_.write(table_offset, bytes.span());
  co_await file_.flush();
  co_await write_table_header(table_offset, static_cast<uint32_t>(table_clusters));
  co_await file_.flush();
  table_ = std::move(table);
  block_offsets_.clear();
  for (uint64_t entry : table_)
    if (entry & kReftableOffsetMask) block_offsets_.insert(entry & kReftableOffsetMask);
  end_cluster_ = area_end;
  free_hint_ = 0;
  free_byte_offset_ = 0;
  pending_frees_.clear();
}

}  // namespace keel::qcow2
