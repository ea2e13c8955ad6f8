// The qcow2 write path: guest writes (in place, into fresh clusters, into
// unallocated subclusters, or by copying a cluster), zeroing and discard,
// compressed cluster writes, and the in-flight tracking that keeps two
// requests from allocating the same guest cluster.
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

Task<void> Qcow2Node::wait_in_flight(uint64_t first_cluster, uint64_t count, CoMutex::Guard& guard) {
  for (;;) {
    const bool overlap = std::any_of(in_flight_.begin(), in_flight_.end(), [&](const InFlight& f) {
      return f.first < first_cluster + count && first_cluster < f.first + f.count;
    });
    if (!overlap) co_return;
    guard.unlock();
    co_await in_flight_done_.wait();
    guard = co_await meta_lock_.lock();
  }
}

void Qcow2Node::end_in_flight(uint64_t first_cluster) {
  auto it =
      std::find_if(in_flight_.begin(), in_flight_.end(), [&](const InFlight& f) { return f.first == first_cluster; });
  if (it != in_flight_.end()) in_flight_.erase(it);
  in_flight_done_.notify_all();
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

// Writes as much of `data` (at guest `offset`) as falls into one of four
// cases, and returns how many bytes that was:
//  1. clusters already allocated to this image alone: write in place;
//  2. clusters with no host cluster: allocate a contiguous run and write;
//  3. one cluster of this image's own with extended L2, where some written
//     subclusters are not allocated yet: write them in place, then mark them;
//  4. one cluster that needs a copy first (compressed, shared with a
//     snapshot, or zeroed with its host cluster kept): merge and rewrite.
Task<uint64_t> Qcow2Node::write_step(uint64_t offset, std::span<const std::byte> data) {
  auto guard = co_await meta_lock_.lock();
  const uint64_t l1_index = geo_.l1_index(offset);
  const uint64_t end = std::min<uint64_t>(offset + data.size(), (l1_index + 1) * geo_.bytes_per_l2());
  const uint64_t first_cluster = offset >> geo_.cluster_bits;
  const uint64_t last_cluster = (end - 1) >> geo_.cluster_bits;
  co_await wait_in_flight(first_cluster, last_cluster - first_cluster + 1, guard);
  co_await mark_dirty_for_lazy_refcounts();
  auto table = co_await get_l2(l1_index, true);

  enum class Case { InPlace, Fresh, Subclusters, Copy };
  auto classify = [&](uint64_t cluster) -> Case {
    const uint64_t index = geo_.l2_index(cluster << geo_.cluster_bits);
    const L2Entry e = load_entry(table, index);
    check_bitmap(e, table.offset(), index, true);
    const ClusterKind kind = e.kind(geo_);
    if (kind == ClusterKind::Normal && e.copied()) {
      if (!geo_.extended_l2) return Case::InPlace;
      const uint64_t start = cluster << geo_.cluster_bits;
      const uint64_t lo = std::max(offset, start) - start;
      const uint64_t hi = std::min(end, start + geo_.cluster_size) - start;
      const uint64_t mask = subcluster_mask(geo_, lo, hi);
      return (e.bitmap & mask) == mask ? Case::InPlace : Case::Subclusters;
    }
    if (kind == ClusterKind::Unallocated || kind == ClusterKind::ZeroPlain) return Case::Fresh;
    return Case::Copy;
  };

  const Case first_case = classify(first_cluster);
  uint64_t run_end = first_cluster + 1;
  if (first_case == Case::InPlace || first_case == Case::Fresh) {
    while (run_end <= last_cluster && classify(run_end) == first_case) {
      if (first_case == Case::InPlace) {
        // In-place runs continue only while host clusters are contiguous.
        const L2Entry prev = load_entry(table, geo_.l2_index((run_end - 1) << geo_.cluster_bits));
        const L2Entry next = load_entry(table, geo_.l2_index(run_end << geo_.cluster_bits));
        if (next.host_offset() != prev.host_offset() + geo_.cluster_size) break;
      }
      run_end++;
    }
  }
  const uint64_t step_end = std::min(end, run_end << geo_.cluster_bits);
  const uint64_t length = step_end - offset;
  std::span<const std::byte> step_data = data.first(length);

  if (first_case == Case::InPlace) {
    check_write_target(load_entry(table, geo_.l2_index(offset)).host_offset(), offset, geo_.cluster_size);
    const uint64_t host = load_entry(table, geo_.l2_index(offset)).host_offset() + geo_.cluster_offset_in(offset);
    if ((host + length - 1) >> geo_.cluster_bits >= refcounts_->end_cluster())
      raise_corruption("Data cluster at {:#x} lies beyond the end of the image", geo_.cluster_start(host));
    check_metadata_overlap(host, length);
    guard.unlock();
    co_await file_->write(host, step_data);
    co_return length;
  }

  if (first_case == Case::Subclusters) {
    const uint64_t start = first_cluster << geo_.cluster_bits;
    const uint64_t index = geo_.l2_index(start);
    const L2Entry e = load_entry(table, index);
    check_write_target(e.host_offset(), offset, geo_.cluster_size);
    // Edge subclusters that held no data are written whole: the new bytes
    // amid what the subclusters read before (zeros, or the backing file's data).
    const uint64_t lo = offset - start;
    const uint64_t hi = step_end - start;
    const unsigned first_sc = static_cast<unsigned>(lo / geo_.subcluster_size);
    const unsigned last_sc = static_cast<unsigned>((hi - 1) / geo_.subcluster_size);
    const uint64_t write_lo =
        subcluster_kind(e, geo_, first_sc) == SubclusterKind::Data ? lo : first_sc * geo_.subcluster_size;
    const uint64_t write_hi =
        subcluster_kind(e, geo_, last_sc) == SubclusterKind::Data ? hi : (last_sc + 1) * geo_.subcluster_size;
    if (e.host_offset() >> geo_.cluster_bits >= refcounts_->end_cluster())
      raise_corruption("Data cluster at {:#x} lies beyond the end of the image", e.host_offset());
    check_metadata_overlap(e.host_offset(), geo_.cluster_size);
    AlignedBuffer padded(write_hi - write_lo);
    std::memcpy(padded.data() + (lo - write_lo), step_data.data(), length);
    in_flight_.push_back({first_cluster, 1});
    guard.unlock();
    std::exception_ptr error;
    try {
      if (lo > write_lo && subcluster_kind(e, geo_, first_sc) == SubclusterKind::Unallocated)
        co_await read_backing(start + write_lo, padded.span(0, lo - write_lo));
      if (write_hi > hi && subcluster_kind(e, geo_, last_sc) == SubclusterKind::Unallocated)
        co_await read_backing(start + hi, padded.span(hi - write_lo, write_hi - hi));
      co_await file_->write(e.host_offset() + write_lo, padded.span());
    } catch (...) {
      error = std::current_exception();
    }
    guard = co_await meta_lock_.lock();
    end_in_flight(first_cluster);
    if (error) std::rethrow_exception(error);
    table = co_await get_l2(l1_index, true);
    L2Entry now = load_entry(table, index);
    const uint64_t alloc = subcluster_mask(geo_, lo, hi);
    now.bitmap = (now.bitmap | alloc) & ~(alloc << 32);
    store_entry(table, index, now);
    co_return length;
  }

  const uint64_t count = run_end - first_cluster;
  const uint64_t first_start = first_cluster << geo_.cluster_bits;
  const uint64_t last_start = (run_end - 1) << geo_.cluster_bits;
  std::vector<L2Entry> old(count);
  for (uint64_t i = 0; i < count; i++) old[i] = load_entry(table, geo_.l2_index(first_start + i * geo_.cluster_size));

  // What to write within the first and last cluster. Fresh clusters are
  // padded to whole clusters, or to whole subclusters with extended L2 (the
  // bitmap marks the rest unallocated), with what the padding read before:
  // zeros, or the backing file's data. A copy covers the whole cluster.
  uint64_t lo = offset - first_start;
  uint64_t hi = step_end - last_start;
  if (first_case == Case::Fresh) {
    const uint64_t grain = geo_.extended_l2 ? geo_.subcluster_size : geo_.cluster_size;
    lo = align_down(lo, grain);
    hi = align_up(hi, grain);
  } else {
    lo = 0;
    hi = geo_.cluster_size;
  }

  const uint64_t host = co_await refcounts_->allocate_clusters(count);
  // Only damaged refcounts can hand out metadata clusters; refuse to overwrite them.
  check_metadata_overlap(host, count * geo_.cluster_size);
  in_flight_.push_back({first_cluster, count});
  guard.unlock();

  std::exception_ptr error;
  try {
    const uint64_t head_pad = (offset - first_start) - lo;
    const uint64_t tail_pad = hi - (step_end - last_start);
    if (first_case == Case::Copy) {
      // One cluster: its old contents under the new data.
      AlignedBuffer merged(geo_.cluster_size);
      const L2Entry& e = old[0];
      if (e.kind(geo_) == ClusterKind::Compressed) {
        co_await read_compressed(e.word, merged.span());
      } else if (e.kind(geo_) == ClusterKind::Normal) {
        for (unsigned sc = 0; sc < (geo_.extended_l2 ? kSubclustersPerCluster : 1); sc++) {
          const std::span<std::byte> part = merged.span(sc * geo_.subcluster_size, geo_.subcluster_size);
          const SubclusterKind k = subcluster_kind(e, geo_, sc);
          if (k == SubclusterKind::Data)
            co_await file_->read(e.host_offset() + sc * geo_.subcluster_size, part);
          else if (k == SubclusterKind::Unallocated)
            co_await read_backing(first_start + sc * geo_.subcluster_size, part);
        }
      }
      std::memcpy(merged.data() + (offset - first_start), step_data.data(), length);
      co_await file_->write(host, merged.span());
    } else {
      // The caller's data goes straight to the new clusters, the padding
      // beside it separately. Whether a pad reads through to the backing file
      // depends on the old entry of its own (sub)cluster.
      auto reads_below = [&](const L2Entry& was, uint64_t in_cluster) {
        return subcluster_kind(was, geo_, static_cast<unsigned>(in_cluster / geo_.subcluster_size)) ==
               SubclusterKind::Unallocated;
      };
      const uint64_t tail_in = step_end - last_start;
      TaskGroup group;
      group.spawn(file_->write(host + (offset - first_start), step_data));
      if (head_pad) group.spawn(fill_cow(first_start + lo, host + lo, head_pad, reads_below(old[0], lo)));
      if (tail_pad)
        group.spawn(
            fill_cow(step_end, host + (step_end - first_start), tail_pad, reads_below(old[count - 1], tail_in)));
      co_await group.join();
    }
  } catch (...) {
    error = std::current_exception();
  }

  guard = co_await meta_lock_.lock();
  if (error) {
    end_in_flight(first_cluster);
    for (uint64_t i = 0; i < count; i++) refcounts_->free_later(host + i * geo_.cluster_size, geo_.cluster_size);
    std::rethrow_exception(error);
  }
  table = co_await get_l2(l1_index, true);
  for (uint64_t i = 0; i < count; i++) {
    const uint64_t start = first_start + i * geo_.cluster_size;
    L2Entry e{(host + i * geo_.cluster_size) | kFlagCopied, 0};
    if (geo_.extended_l2) {
      if (first_case == Case::Copy) {
        e.bitmap = kAllSubclustersAllocated;
      } else {
        const uint64_t c_lo = i == 0 ? lo : 0;
        const uint64_t c_hi = i == count - 1 ? hi : geo_.cluster_size;
        const uint64_t alloc = subcluster_mask(geo_, c_lo, c_hi);
        e.bitmap = alloc | ((old[i].bitmap & kAllSubclustersZero) & ~(alloc << 32));
      }
    }
    store_entry(table, geo_.l2_index(start), e);
    const L2Entry& was = old[i];
    if (was.kind(geo_) == ClusterKind::Compressed)
      refcounts_->free_later(was.compressed_offset(geo_), was.compressed_length(geo_));
    else if (was.host_offset())
      refcounts_->free_later(was.host_offset(), geo_.cluster_size);
  }
  end_in_flight(first_cluster);
  co_return length;
}

Task<void> Qcow2Node::write(uint64_t offset, std::span<const std::byte> data, block::WriteFlags flags) {
  if (offset > header_.size || data.size() > header_.size - offset)
    raise(EINVAL, "Write of {} bytes at offset {} is past the end of the image ({} bytes)", data.size(), offset,
          header_.size);
  require_writable();
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
  co_await wait_in_flight(first_cluster, count, guard);
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
    if (change->free_old) {
      if (kind == ClusterKind::Compressed)
        refcounts_->free_later(e.compressed_offset(geo_), e.compressed_length(geo_));
      else if (e.host_offset())
        refcounts_->free_later(e.host_offset(), geo_.cluster_size);
    }
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
  co_await wait_in_flight(offset >> geo_.cluster_bits, 1, guard);
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
  co_await wait_in_flight(start >> geo_.cluster_bits, 1, guard);
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
  AlignedBuffer input(geo_.cluster_size);
  std::memcpy(input.data(), data.data(), data.size());
  std::vector<std::byte> compressed(geo_.cluster_size - 1);
  const CompressionType type = header_.compression_type;
  const std::optional<size_t> size =
      co_await EventLoop::current().pool().run([&] { return compress_cluster(type, input.span(), compressed); });
  if (!size) {
    // Incompressible: store the cluster as ordinary data.
    co_await write(offset, data);
    co_return;
  }
  co_await guard_corruption([&]() -> Task<void> {
    const uint64_t cluster = offset >> geo_.cluster_bits;
    auto guard = co_await meta_lock_.lock();
    co_await wait_in_flight(cluster, 1, guard);
    co_await mark_dirty_for_lazy_refcounts();
    co_await get_l2(geo_.l1_index(offset), true);
    const uint64_t host = co_await refcounts_->allocate_bytes(*size);
    in_flight_.push_back({cluster, 1});
    guard.unlock();
    std::exception_ptr error;
    try {
      co_await file_->write(host, std::span<const std::byte>(compressed.data(), *size));
    } catch (...) {
      error = std::current_exception();
    }
    guard = co_await meta_lock_.lock();
    end_in_flight(cluster);
    if (error) {
      refcounts_->free_later(host, *size);
      std::rethrow_exception(error);
    }
    auto table = co_await get_l2(geo_.l1_index(offset), true);
    const uint64_t index = geo_.l2_index(offset);
    const L2Entry was = load_entry(table, index);
    store_entry(table, index, L2Entry::compressed_descriptor(geo_, host, *size));
    if (was.kind(geo_) == ClusterKind::Compressed)
      refcounts_->free_later(was.compressed_offset(geo_), was.compressed_length(geo_));
    else if (was.host_offset())
      refcounts_->free_later(was.host_offset(), geo_.cluster_size);
  });
}

}  // namespace keel::qcow2
