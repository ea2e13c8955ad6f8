// Qcow2Node: the qcow2 format driver's open image. Guest requests map through
// the in-memory L1 table and cached L2 tables to host clusters. Metadata is
// guarded by one coroutine mutex that is never held across guest data I/O;
// clusters being allocated are tracked so two writers never allocate the same
// guest cluster twice.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/async/sync.h"
#include "block/format.h"
#include "block/range_lock.h"
#include "formats/qcow2/allocation_plan.h"
#include "formats/qcow2/corruption.h"
#include "formats/qcow2/dirty_bitmap.h"
#include "formats/qcow2/header.h"
#include "formats/qcow2/layout.h"
#include "formats/qcow2/metadata_cache.h"
#include "formats/qcow2/refcounts.h"
#include "formats/qcow2/snapshot_table.h"

namespace keel::qcow2 {

class Qcow2Node final : public block::BlockNode {
 public:
  static Task<std::unique_ptr<Qcow2Node>> open(std::unique_ptr<block::BlockNode> file,
                                               const block::OpenOptions& options);

  std::string_view format_name() const override { return "qcow2"; }
  uint64_t size() const override { return header_.size; }

  Task<void> read(uint64_t offset, std::span<std::byte> buffer) override;
  Task<void> write(uint64_t offset, std::span<const std::byte> data, block::WriteFlags flags = {}) override;
  Task<void> write_zeroes(uint64_t offset, uint64_t length, block::ZeroFlags flags = {}) override;
  Task<void> discard(uint64_t offset, uint64_t length) override;
  Task<void> flush() override;
  Task<block::BlockStatus> block_status(uint64_t offset, uint64_t length) override;
  Task<void> truncate(uint64_t size, block::Preallocation prealloc) override;
  bool supports_compressed_writes() const override { return true; }
  uint64_t cluster_size() const override { return geo_.cluster_size; }
  uint64_t allocation_granularity() const override { return geo_.subcluster_size; }
  uint64_t vm_state_offset() const override { return geo_.l1_entries_for(header_.size) * geo_.bytes_per_l2(); }
  Task<void> write_compressed(uint64_t offset, std::span<const std::byte> data) override;
  block::Limits limits() const override;
  block::FormatInfo format_info() const override;
  bool supports_check() const override { return true; }
  Task<block::CheckResult> check(block::CheckFix fix) override;
  Task<void> close() override;
  void attach_backing(std::unique_ptr<block::BlockNode> backing) override;
  Task<void> load_snapshot(const block::SnapshotRef& snapshot) override;
  Task<std::shared_ptr<block::DirtyBitmap>> dirty_bitmap(const std::string& name) override;

  const Header& header() const { return header_; }
  const Geometry& geometry() const { return geo_; }
  const std::vector<uint64_t>& l1_table() const { return l1_; }
  Refcounts& refcounts() { return *refcounts_; }
  block::BlockNode& file_node() { return *file_; }

  // Allocates and maps every cluster of the disk (preallocation=metadata and up).
  Task<void> preallocate(block::Preallocation mode);
  // Gives a freshly formatted (empty, size 0) image its size and L1 table.
  Task<void> allocate_l1_table(uint64_t size);
  // Writes back all metadata in a crash-safe order (no storage flush).
  Task<void> flush_metadata();
  // Rewrites the refcount structures from a full scan (repair, dirty images).
  Task<void> rebuild_refcounts(const std::vector<uint64_t>& counts);
  // Sets or clears header feature bits on disk.
  Task<void> update_incompatible_features(uint64_t set, uint64_t clear);
  // Rewrites the whole header cluster.
  Task<void> write_header();
  Task<MetadataCache::Ref> l2_table(uint64_t offset) { return l2_cache_->get(offset); }
  // The metadata structure [host, host+length) overlaps, if any, other than
  // the kind being written there (qemu's overlap check).
  enum class Metadata { Data, Header, ActiveL1, RefcountTable, SnapshotTable, RefcountBlock, ActiveL2 };
  const char* metadata_at(uint64_t host, uint64_t length, Metadata writing = Metadata::Data) const;
  Task<void> set_l1_entry(uint64_t index, uint64_t value);
  // qemu's qcow2_signal_corruption(): on a writable image, sets the corrupt bit
  // and takes the image out of use (later requests fail with ENOMEDIUM) until
  // a repair clears the bit; on a read-only one only the request fails.
  // Either way it is reported once: on stderr, or appended to `notices` by a
  // caller that prints its own lines in order (check).
  Task<void> signal_corruption(const std::string& why, std::vector<std::string>* notices = nullptr);

 private:
  Qcow2Node(std::unique_ptr<block::BlockNode> file, Header header, const block::OpenOptions& options);

  struct Segment {
    uint64_t length;
    SubclusterKind kind;
    uint64_t host;  // Data: host offset of the first byte; Compressed: the L2 word
  };

  // Maps [offset, offset+length) up to the end of one L2 table (or, where
  // there are no L2 tables, across all of them). Metadata lock held.
  Task<std::vector<Segment>> map_range(uint64_t offset, uint64_t length);
  Task<MetadataCache::Ref> get_l2(uint64_t l1_index, bool allocate);
  L2Entry load_entry(const MetadataCache::Ref& table, uint64_t index) const;
  void store_entry(const MetadataCache::Ref& table, uint64_t index, const L2Entry& entry) const;
  void check_data_offset(uint64_t host, uint64_t l2_offset, uint64_t index) const;
  // Raises Corruption if a data write to [host, host+length) would hit metadata (qemu's overlap check).
  void check_metadata_overlap(uint64_t host, uint64_t length, Metadata writing = Metadata::Data) const;

  Task<void> read_compressed(uint64_t l2_word, std::span<std::byte> cluster);
  // What the backing chain shows at guest `offset`: its data, zeros past its end or without one.
  Task<void> read_backing(uint64_t offset, std::span<std::byte> out);
  // block_status() of a range this image leaves to its backing node.
  Task<block::BlockStatus> backing_status(uint64_t offset, uint64_t length);
  // Whether any node below holds [from, to) (else copy-on-write may just zero it).
  Task<bool> backing_allocated(uint64_t from, uint64_t to);
  // Fills part of a new cluster, at guest `guest` and host `host`, with what it read before a write.
  Task<void> fill_cow(uint64_t guest, uint64_t host, uint64_t length, bool from_backing);
  // One pass of write(): plans the clusters from `offset` within one L2 table, carries the plan out
  // and returns the bytes it wrote. The helpers each carry out one kind of plan, taking `data` (the
  // plan's bytes) and the metadata lock's guard, which they release for the data I/O and retake.
  Task<uint64_t> write_step(uint64_t offset, std::span<const std::byte> data);
  Task<void> write_in_place(const AllocationPlan& plan, std::span<const std::byte> data, CoMutex::Guard& guard);
  Task<void> write_subclusters(const AllocationPlan& plan, std::span<const std::byte> data,
                               block::RangeLock::Guard& clusters, CoMutex::Guard& guard);
  Task<void> write_new_clusters(const AllocationPlan& plan, std::span<const std::byte> data,
                                block::RangeLock::Guard& clusters, CoMutex::Guard& guard);
  // The data I/O of write_new_clusters(), to the new host clusters from `host`.
  Task<void> write_allocated_run(const AllocationPlan& plan, std::span<const std::byte> data, uint64_t host);
  Task<void> write_copied_cluster(const AllocationPlan& plan, std::span<const std::byte> data, uint64_t host);
  Task<void> read_cluster_contents(const L2Entry& e, uint64_t guest, std::span<std::byte> cluster);
  // Queues the host cluster (or compressed bytes) an entry pointed at for freeing.
  void free_clusters_of(const L2Entry& was);

  // Zeroing and discard (write_path.cpp). An EntryRule gives the new L2
  // entry of a whole cluster, or nullopt to leave it.
  struct EntryChange {
    L2Entry entry;
    bool free_old;  // release the old host cluster
  };
  using EntryRule = std::function<std::optional<EntryChange>(const L2Entry&, ClusterKind)>;
  EntryRule discard_rule() const;
  // Applies `rule` to the clusters from `offset` within one L2 table; returns bytes covered.
  Task<uint64_t> change_entries(uint64_t offset, uint64_t length, bool create_table, const EntryRule& rule,
                                CoMutex::Guard& guard);
  // change_entries() over [offset, end), letting other requests take the lock between tables.
  Task<void> for_each_table(uint64_t offset, uint64_t end, bool create_tables, const EntryRule& rule,
                            CoMutex::Guard& guard);
  // Marks the subclusters [offset, end) of one cluster zero; false for a compressed cluster.
  Task<bool> zero_subclusters(uint64_t offset, uint64_t end, CoMutex::Guard& guard);
  // qemu's qcow2_subcluster_zeroize of a subcluster-aligned range; false where a write is needed.
  Task<bool> zeroize(uint64_t offset, uint64_t end, bool may_unmap, CoMutex::Guard& guard);
  // One piece of write_zeroes(); false where zeros must be written instead.
  Task<bool> zero_piece(uint64_t offset, uint64_t end, bool may_unmap);
  Task<bool> reads_as_zeros(uint64_t from, uint64_t to);

  // Waits, releasing the metadata lock meanwhile, until no request writes [first_cluster, +count) with
  // the lock released, for a caller that then changes their entries under the lock alone.
  Task<void> wait_for_allocations(uint64_t first_cluster, uint64_t count, CoMutex::Guard& guard);

  // Each request first checks that the image can serve it: not refused
  // (encryption, data file) and not put out of use by a corruption.
  void require_io() const;
  // Records a successful write of [offset, offset+length) in the bitmaps handed out.
  void mark_bitmaps(uint64_t offset, uint64_t length);
  void require_writable() const;
  Task<void> mark_dirty_for_lazy_refcounts();
  // Raises Corruption if an extended L2 entry's bitmap is invalid; qemu's
  // read and write paths word the message differently.
  void check_bitmap(const L2Entry& e, uint64_t l2_offset, uint64_t index, bool for_write) const;
  template <typename Fn>
  Task<void> guard_corruption(Fn fn);

  Header header_;
  Geometry geo_;
  std::vector<uint64_t> l1_;
  std::unordered_set<uint64_t> l2_tables_;  // host offsets of the active L2 tables
  std::unique_ptr<MetadataCache> l2_cache_;
  std::unique_ptr<MetadataCache> refblock_cache_;
  std::unique_ptr<Refcounts> refcounts_;
  CoMutex meta_lock_;
  // Guest clusters (by index) that writes hold while their data goes to the
  // file with meta_lock_ released; taken and released under meta_lock_.
  block::RangeLock allocations_;
  SnapshotTable snapshots_;
  std::vector<BitmapInfo> bitmaps_;
  std::vector<std::shared_ptr<Qcow2DirtyBitmap>> loaded_bitmaps_;  // handed out by dirty_bitmap()
  std::optional<std::string> io_refusal_;  // why guest I/O is refused (encryption, external data file)
  bool lazy_refcounts_ = false;
  bool marked_dirty_ = false;
  bool corrupt_ = false;              // marked corrupt while open: out of use
  bool corruption_reported_ = false;  // a read-only image's corruption was reported
  block::CacheMode cache_;
};

// Runs fn(); if it finds the metadata inconsistent, signals the corruption
// before passing the error on. (co_await is not allowed in a handler.)
template <typename Fn>
Task<void> Qcow2Node::guard_corruption(Fn fn) {
  std::exception_ptr error;
  std::string why;
  try {
    co_await fn();
  } catch (const Corruption& c) {
    error = std::current_exception();
    why = c.message();
  }
  if (error) {
    co_await signal_corruption(why);
    std::rethrow_exception(error);
  }
}

}  // namespace keel::qcow2
