// The qcow2 write path: guest writes, carried out from an AllocationPlan (in
// place, into fresh clusters, into unallocated subclusters, or by copying a
// cluster), zeroing and discard, and compressed cluster writes.
#include <algorithm>
#include <cstring>

#include "base/async/thread_pool.h"
#include "base/endian.h"
#include "base/units.h"
#include "formats/qcow2/compression.h"
#include "formats/qcow2/corruption.h"
#include "formats/qcow2/qcow2_node.h"

namespace keel::qcow2 {

using block::AlignedBuffer;
using block::BlockStatus;

namespace {

// qemu's write path names the guest offset where its read path names the L2 slot.
void check_write_target(uint64_t host, uint64_t guest, uint64_t cluster_size) {
  if (host & (cluster_size - 1))
    raise_corruption("Data cluster offset {:#x} unaligned (guest offset: {})", host, c_hex(guest));
}

}  // namespace

Task<void> Qcow2Node::wait_for_allocations(uint64_t first_cluster, uint64_t count, CoMutex::Guard& guard) {
  co_await allocations_.wait_unheld(first_cluster, first_cluster + count, block::RangeLock::Mode::Exclusive,
                                    meta_lock_, guard);
}

void Qcow2Node::free_clusters_of(const L2Entry& was) {
  if (was.kind(geo_) == ClusterKind::Compressed)
    refcounts_->free_later(was.compressed_offset(geo_), was.compressed_length(geo_));
  else if (was.host_offset())
    refcounts_->free_later(was.host_offset(), geo_.cluster_size);
}

Task<void> Qcow2Node::mark_dirty_for_lazy_refcounts() {
  if (!lazy_refcounts_ || marked_dirty_) co_return;
  marked_dirty_ = true;
  co_await update_incompatible_features(kIncompatDirty, 0);
}

Task<bool> Qcow2Node::backing_allocated(uint64_t from, uint64_t to) {
  while (from < to) {
    const BlockStatus st = co_await backing_status(from, to - from);
    if (st.allocated_in_chain) co_return true;
    from += st.length;
  }
  co_return false;
}

// The zeros are allocated in the file without writing buffers, as qemu's
// copy-on-write does where no node below holds data.
Task<void> Qcow2Node::fill_cow(uint64_t guest, uint64_t host, uint64_t length, bool from_backing) {
  if (!from_backing || !backing_ || !co_await backing_allocated(guest, guest + length)) {
    co_await file_->write_zeroes(host, length, {});
    co_return;
  }
  AlignedBuffer copy(length);
  co_await read_backing(guest, copy.span());
  co_await file_->write(host, copy.span());
}

// Writes as much of `data` (at guest `offset`) as one plan covers (see
// allocation_plan.h) and returns how many bytes that was. The guest clusters
// are held in `allocations_` while the plan is made, then only those the
// step gives new data to with the metadata lock released, so no other request
// maps or allocates them meanwhile.
Task<uint64_t> Qcow2Node::write_step(uint64_t offset, std::span<const std::byte> data) {
  auto guard = co_await meta_lock_.lock();
  const uint64_t l1_index = geo_.l1_index(offset);
  const uint64_t end = std::min<uint64_t>(offset + data.size(), (l1_index + 1) * geo_.bytes_per_l2());
  block::RangeLock::Guard clusters = co_await allocations_.lock(
      offset >> geo_.cluster_bits, ((end - 1) >> geo_.cluster_bits) + 1, block::RangeLock::Mode::Exclusive,
      meta_lock_, guard);
  co_await mark_dirty_for_lazy_refcounts();
  auto table = co_await get_l2(l1_index, true);
  const AllocationPlan plan = plan_allocation(geo_, offset, end, [&](uint64_t cluster) {
    const uint64_t index = geo_.l2_index(cluster << geo_.cluster_bits);
    const L2Entry e = load_entry(table, index);
    check_bitmap(e, table.offset(), index, true);
    return e;
  });
  // In-place writes change no metadata: they need not hold their clusters.
  const uint64_t held = plan.kind == AllocationPlan::Kind::InPlace ? 0 : plan.clusters();
  clusters.shrink_to(plan.first_cluster, plan.first_cluster + held);
  data = data.first(plan.length());
  switch (plan.kind) {
    case AllocationPlan::Kind::InPlace: co_await write_in_place(plan, data, guard); break;
    case AllocationPlan::Kind::Subclusters: co_await write_subclusters(plan, data, clusters, guard); break;
    case AllocationPlan::Kind::Allocate:
    case AllocationPlan::Kind::Copy: co_await write_new_clusters(plan, data, clusters, guard); break;
  }
  co_return plan.length();
}

Task<void> Qcow2Node::write_in_place(const AllocationPlan& plan, std::span<const std::byte> data,
                                     CoMutex::Guard& guard) {
  const uint64_t cluster = plan.old[0].host_offset();
  check_write_target(cluster, plan.offset, geo_.cluster_size);
  const uint64_t host = cluster + plan.data_begin(geo_);
  if ((host + data.size() - 1) >> geo_.cluster_bits >= refcounts_->end_cluster())
    raise_corruption("Data cluster at {:#x} lies beyond the end of the image", geo_.cluster_start(host));
  check_metadata_overlap(host, data.size());
  guard.unlock();
  co_await file_->write(host, data);
}

Task<void> Qcow2Node::write_subclusters(const AllocationPlan& plan, std::span<const std::byte> data,
                                        block::RangeLock::Guard& clusters, CoMutex::Guard& guard) {
  const uint64_t cluster = plan.old[0].host_offset();
  check_write_target(cluster, plan.offset, geo_.cluster_size);
  if (cluster >> geo_.cluster_bits >= refcounts_->end_cluster())
    raise_corruption("Data cluster at {:#x} lies beyond the end of the image", cluster);
  check_metadata_overlap(cluster, geo_.cluster_size);
  AlignedBuffer padded(plan.write_end - plan.write_begin);
  std::memcpy(padded.data() + (plan.data_begin(geo_) - plan.write_begin), data.data(), data.size());
  guard.unlock();
  std::exception_ptr error;
  try {
    const uint64_t guest = plan.first_cluster << geo_.cluster_bits;
    for (const CowEdge& edge : {plan.head, plan.tail})
      if (edge.length() && edge.from_backing)
        co_await read_backing(guest + edge.begin, padded.span(edge.begin - plan.write_begin, edge.length()));
    co_await file_->write(cluster + plan.write_begin, padded.span());
  } catch (...) {
    error = std::current_exception();
  }
  guard = co_await meta_lock_.lock();
  clusters.release();
  if (error) std::rethrow_exception(error);
  auto table = co_await get_l2(geo_.l1_index(plan.offset), true);
  const uint64_t index = geo_.l2_index(plan.offset);
  store_entry(table, index, plan.with_written_subclusters(geo_, load_entry(table, index)));
}

Task<void> Qcow2Node::write_new_clusters(const AllocationPlan& plan, std::span<const std::byte> data,
                                         block::RangeLock::Guard& clusters, CoMutex::Guard& guard) {
  const uint64_t count = plan.clusters();
  const uint64_t host = co_await refcounts_->allocate_clusters(count);
  // Only damaged refcounts can hand out metadata clusters; refuse to overwrite them.
  check_metadata_overlap(host, count * geo_.cluster_size);
  guard.unlock();
  std::exception_ptr error;
  try {
    if (plan.kind == AllocationPlan::Kind::Copy)
      co_await write_copied_cluster(plan, data, host);
    else
      co_await write_allocated_run(plan, data, host);
  } catch (...) {
    error = std::current_exception();
  }
  guard = co_await meta_lock_.lock();
  if (error) {
    clusters.release();
    for (uint64_t i = 0; i < count; i++) refcounts_->free_later(host + i * geo_.cluster_size, geo_.cluster_size);
    std::rethrow_exception(error);
  }
  auto table = co_await get_l2(geo_.l1_index(plan.offset), true);
  for (uint64_t i = 0; i < count; i++) {
    store_entry(table, geo_.l2_index((plan.first_cluster + i) << geo_.cluster_bits), plan.new_entry(geo_, i, host));
    free_clusters_of(plan.old[i]);
  }
  clusters.release();
}

// The caller's data goes straight to the new clusters, the edges beside it separately.
Task<void> Qcow2Node::write_allocated_run(const AllocationPlan& plan, std::span<const std::byte> data,
                                          uint64_t host) {
  const uint64_t guest = plan.first_cluster << geo_.cluster_bits;
  TaskGroup group;
  group.spawn(file_->write(host + plan.data_begin(geo_), data));
  for (const CowEdge& edge : {plan.head, plan.tail})
    if (edge.length()) group.spawn(fill_cow(guest + edge.begin, host + edge.begin, edge.length(), edge.from_backing));
  co_await group.join();
}

Task<void> Qcow2Node::write_copied_cluster(const AllocationPlan& plan, std::span<const std::byte> data,
                                           uint64_t host) {
  AlignedBuffer merged(geo_.cluster_size);
  co_await read_cluster_contents(plan.old[0], plan.first_cluster << geo_.cluster_bits, merged.span());
  std::memcpy(merged.data() + plan.data_begin(geo_), data.data(), data.size());
  co_await file_->write(host, merged.span());
}

// What the cluster at guest `guest` with entry `e` reads as (zeros where it holds none).
Task<void> Qcow2Node::read_cluster_contents(const L2Entry& e, uint64_t guest, std::span<std::byte> cluster) {
  if (e.kind(geo_) == ClusterKind::Compressed) {
    co_await read_compressed(e.word, cluster);
    co_return;
  }
  if (e.kind(geo_) != ClusterKind::Normal) co_return;
  for (unsigned sc = 0; sc < (geo_.extended_l2 ? kSubclustersPerCluster : 1); sc++) {
    const std::span<std::byte> part = cluster.subspan(sc * geo_.subcluster_size, geo_.subcluster_size);
    const SubclusterKind k = subcluster_kind(e, geo_, sc);
    if (k == SubclusterKind::Data)
      co_await file_->read(e.host_offset() + sc * geo_.subcluster_size, part);
    else if (k == SubclusterKind::Unallocated)
      co_await read_backing(guest + sc * geo_.subcluster_size, part);
  }
}

Task<void> Qcow2Node::write(uint64_t offset, std::span<const std::byte> data, block::WriteFlags flags) {
  if (offset > header_.size || data.size() > header_.size - offset)
    raise(EINVAL, "Write of {} bytes at offset {} is past the end of the image ({} bytes)", data.size(), offset,
          header_.size);
  require_writable();
  // Marked before the data goes out: a write that fails half-way may still have changed the range.
  mark_bitmaps(offset, data.size());
  co_await guard_corruption([&]() -> Task<void> {
    uint64_t done = 0;
    while (done < data.size()) done += co_await write_step(offset + done, data.subspan(done));
  });
  if (flags.fua || cache_.writethrough) co_await flush();
}

// Zeroing and discard follow qemu's qcow2 driver and block layer, so that
// images keep the same layout as qemu leaves them:
//  - a zero request is cut as qemu's block layer cuts it: an unaligned head
//    up to the first subcluster boundary, the aligned bulk, an unaligned tail;
//  - an unaligned piece zeroes its whole subcluster when the rest of it
//    already reads as zeros and it holds no data, else it is written as a
//    buffer of zeros (or fails with ENOTSUP under no_fallback);
//  - aligned runs are zeroized in the L2 tables: v3 images mark clusters (or
//    subclusters) zero, keeping their host clusters unless may_unmap, and
//    whether or not they were allocated (unallocated would read the backing
//    file); v2 images, which cannot say "zero", drop the clusters instead
//    when there is no backing file, and write zeros when there is one;
//  - discard drops allocated clusters, leaving v3 clusters marked zero; with
//    a backing file every cluster is marked zero, allocated or not, and v2
//    images are left alone (qemu's driver refuses, its block layer ignores it).

namespace {

bool is_allocated(ClusterKind kind) {
  return kind == ClusterKind::Normal || kind == ClusterKind::Compressed || kind == ClusterKind::ZeroAlloc;
}

}  // namespace

Task<uint64_t> Qcow2Node::change_entries(uint64_t offset, uint64_t length, bool create_table, const EntryRule& rule,
                                         CoMutex::Guard& guard) {
  const uint64_t l1_index = geo_.l1_index(offset);
  const uint64_t end = std::min(offset + length, (l1_index + 1) * geo_.bytes_per_l2());
  const uint64_t first_cluster = offset >> geo_.cluster_bits;
  // The disk's last cluster may be partial; it still counts.
  const uint64_t count = div_round_up(end - offset, geo_.cluster_size);
  co_await wait_for_allocations(first_cluster, count, guard);
  auto table = co_await get_l2(l1_index, false);
  if (!table && !create_table) co_return end - offset;  // nothing allocated
  if (!table || !(l1_[l1_index] & kFlagCopied)) table = co_await get_l2(l1_index, true);
  co_await mark_dirty_for_lazy_refcounts();
  for (uint64_t i = 0; i < count; i++) {
    const uint64_t index = geo_.l2_index(offset) + i;
    const L2Entry e = load_entry(table, index);
    const ClusterKind kind = e.kind(geo_);
    const std::optional<EntryChange> change = rule(e, kind);
    if (!change || (change->entry.word == e.word && change->entry.bitmap == e.bitmap)) continue;
    store_entry(table, index, change->entry);
    if (change->free_old) free_clusters_of(e);
  }
  co_return end - offset;
}

Task<void> Qcow2Node::for_each_table(uint64_t offset, uint64_t end, bool create_tables, const EntryRule& rule,
                                     CoMutex::Guard& guard) {
  for (uint64_t pos = offset; pos < end;) {
    pos += co_await change_entries(pos, end - pos, create_tables, rule, guard);
    if (pos < end) {
      // Let other requests in between tables: a large range may span many.
      guard.unlock();
      guard = co_await meta_lock_.lock();
    }
  }
}

Task<bool> Qcow2Node::zero_subclusters(uint64_t offset, uint64_t end, CoMutex::Guard& guard) {
  const uint64_t cluster_start = align_down(offset, geo_.cluster_size);
  co_await wait_for_allocations(offset >> geo_.cluster_bits, 1, guard);
  const uint64_t l1_index = geo_.l1_index(offset);
  auto table = co_await get_l2(l1_index, false);
  if (!table || !(l1_[l1_index] & kFlagCopied)) table = co_await get_l2(l1_index, true);
  const uint64_t index = geo_.l2_index(offset);
  L2Entry e = load_entry(table, index);
  if (e.kind(geo_) == ClusterKind::Compressed) co_return false;  // a compressed cluster is all or nothing
  const uint64_t mask = subcluster_mask(geo_, offset - cluster_start, end - cluster_start);
  const L2Entry next{e.word, (e.bitmap | mask << 32) & ~mask};
  if (next.bitmap != e.bitmap) {
    co_await mark_dirty_for_lazy_refcounts();
    store_entry(table, index, next);
  }
  co_return true;
}

Task<bool> Qcow2Node::zeroize(uint64_t offset, uint64_t end, bool may_unmap, CoMutex::Guard& guard) {
  if (header_.version < 3) {
    if (backing_) co_return false;
    co_await for_each_table(offset, end, false, discard_rule(), guard);
    co_return true;
  }
  const EntryRule zero_rule = [&](const L2Entry& e, ClusterKind kind) -> std::optional<EntryChange> {
    const bool unmap = kind == ClusterKind::Compressed || (may_unmap && is_allocated(kind));
    L2Entry next = unmap ? L2Entry{} : e;
    if (geo_.extended_l2)
      next.bitmap = kAllSubclustersZero;
    else
      next.word |= kFlagZero;
    return EntryChange{next, unmap};
  };
  // Subclusters of partial clusters at either end (extended L2 only), whole clusters between.
  const uint64_t head_end = std::min(end, align_up(offset, geo_.cluster_size));
  if (head_end > offset && !co_await zero_subclusters(offset, head_end, guard)) co_return false;
  const uint64_t tail_start = end == header_.size ? end : std::max(head_end, align_down(end, geo_.cluster_size));
  co_await for_each_table(head_end, tail_start, true, zero_rule, guard);
  if (end > tail_start && !co_await zero_subclusters(tail_start, end, guard)) co_return false;
  co_return true;
}

Qcow2Node::EntryRule Qcow2Node::discard_rule() const {
  return [this](const L2Entry&, ClusterKind kind) -> std::optional<EntryChange> {
    if (!is_allocated(kind) && !backing_) return std::nullopt;  // already reads as zeros
    if (geo_.extended_l2) return EntryChange{L2Entry{0, kAllSubclustersZero}, true};
    return EntryChange{L2Entry{header_.version >= 3 ? kFlagZero : 0, 0}, true};
  };
}

Task<bool> Qcow2Node::reads_as_zeros(uint64_t from, uint64_t to) {
  while (from < to) {
    const BlockStatus st = co_await block_status(from, to - from);
    if (!st.zero || st.length == 0) co_return false;
    from += st.length;
  }
  co_return true;
}

Task<bool> Qcow2Node::zero_piece(uint64_t offset, uint64_t end, bool may_unmap) {
  const uint64_t unit = geo_.subcluster_size;
  const uint64_t start = align_down(offset, unit);
  const uint64_t stop = end == header_.size ? end : std::min(align_up(end, unit), header_.size);
  if (start == offset && stop == end) {
    auto guard = co_await meta_lock_.lock();
    co_return co_await zeroize(offset, end, may_unmap, guard);
  }
  if (!co_await reads_as_zeros(start, offset) || !co_await reads_as_zeros(end, stop)) co_return false;
  // The subcluster must still hold no data once the lock is held.
  auto guard = co_await meta_lock_.lock();
  co_await wait_for_allocations(start >> geo_.cluster_bits, 1, guard);
  const uint64_t l1_index = geo_.l1_index(start);
  auto table = co_await get_l2(l1_index, false);
  const L2Entry e = table ? load_entry(table, geo_.l2_index(start)) : L2Entry{};
  const SubclusterKind kind = subcluster_kind(e, geo_, static_cast<unsigned>((start % geo_.cluster_size) / unit));
  if (kind == SubclusterKind::Data || kind == SubclusterKind::Compressed) co_return false;
  co_return co_await zeroize(start, std::min(start + unit, header_.size), may_unmap, guard);
}

Task<void> Qcow2Node::write_zeroes(uint64_t offset, uint64_t length, block::ZeroFlags flags) {
  if (offset > header_.size || length > header_.size - offset)
    raise(EINVAL, "Write of {} zero bytes at offset {} is past the end of the image ({} bytes)", length, offset,
          header_.size);
  require_writable();
  // qemu offers no fallback-free zeroing on v2 images, which have no zero flag.
  if (flags.no_fallback && header_.version < 3) raise(ENOTSUP, "qcow2 version 2 images cannot mark clusters zero");
  mark_bitmaps(offset, length);
  const uint64_t unit = geo_.subcluster_size;
  const uint64_t end = offset + length;
  for (uint64_t pos = offset; pos < end;) {
    uint64_t piece_end = end;
    if (pos % unit)
      piece_end = std::min(end, align_up(pos, unit));
    else if (end % unit && end - pos > unit)
      piece_end = align_down(end, unit);
    bool zeroized = false;
    co_await guard_corruption([&]() -> Task<void> { zeroized = co_await zero_piece(pos, piece_end, flags.may_unmap); });
    if (!zeroized) {
      if (flags.no_fallback)
        raise(ENOTSUP, "Zeroing {} bytes at offset {} needs a write of zeros", piece_end - pos, pos);
      AlignedBuffer zeros(std::min<uint64_t>(piece_end - pos, 1ull << 20));
      for (uint64_t at = pos; at < piece_end; at += zeros.size())
        co_await write(at, zeros.span(0, std::min<uint64_t>(zeros.size(), piece_end - at)));
    }
    pos = piece_end;
  }
}

Task<void> Qcow2Node::discard(uint64_t offset, uint64_t length) {
  if (offset > header_.size || length > header_.size - offset)
    raise(EINVAL, "Discard of {} bytes at offset {} is past the end of the image ({} bytes)", length, offset,
          header_.size);
  require_writable();
  mark_bitmaps(offset, length);
  if (backing_ && header_.version < 3) co_return;
  // Only whole clusters can be dropped; a discard is a hint, so the partial edges are left alone.
  const uint64_t start = align_up(offset, geo_.cluster_size);
  const uint64_t end =
      offset + length == header_.size ? offset + length : align_down(offset + length, geo_.cluster_size);
  const EntryRule rule = discard_rule();
  co_await guard_corruption([&]() -> Task<void> {
    auto guard = co_await meta_lock_.lock();
    co_await for_each_table(start, end, backing_ != nullptr, rule, guard);
  });
}

Task<void> Qcow2Node::write_compressed(uint64_t offset, std::span<const std::byte> data) {
  if (offset % geo_.cluster_size != 0 || data.size() > geo_.cluster_size ||
      (data.size() != geo_.cluster_size && offset + data.size() != header_.size))
    raise(EINVAL, "Compressed writes must cover one whole cluster (offset {}, {} bytes)", offset, data.size());
  require_writable();
  mark_bitmaps(offset, data.size());
  AlignedBuffer input(geo_.cluster_size);
  std::memcpy(input.data(), data.data(), data.size());
  std::vector<std::byte> compressed(geo_.cluster_size - 1);
  const CompressionType type = header_.compression_type;
  const std::optional<size_t> size =
      co_await loop().pool().run([&] { return compress_cluster(type, input.span(), compressed); });
  if (!size) {
    // Incompressible: store the cluster as ordinary data.
    co_await write(offset, data);
    co_return;
  }
  co_await guard_corruption([&]() -> Task<void> {
    const uint64_t cluster = offset >> geo_.cluster_bits;
    auto guard = co_await meta_lock_.lock();
    block::RangeLock::Guard held = co_await allocations_.lock(cluster, cluster + 1, block::RangeLock::Mode::Exclusive,
                                                              meta_lock_, guard);
    co_await mark_dirty_for_lazy_refcounts();
    co_await get_l2(geo_.l1_index(offset), true);
    const uint64_t host = co_await refcounts_->allocate_bytes(*size);
    guard.unlock();
    std::exception_ptr error;
    try {
      co_await file_->write(host, std::span<const std::byte>(compressed.data(), *size));
    } catch (...) {
      error = std::current_exception();
    }
    guard = co_await meta_lock_.lock();
    held.release();
    if (error) {
      refcounts_->free_later(host, *size);
      std::rethrow_exception(error);
    }
    auto table = co_await get_l2(geo_.l1_index(offset), true);
    const uint64_t index = geo_.l2_index(offset);
    const L2Entry was = load_entry(table, index);
    store_entry(table, index, L2Entry::compressed_descriptor(geo_, host, *size));
    free_clusters_of(was);
  });
}

}  // namespace keel::qcow2
