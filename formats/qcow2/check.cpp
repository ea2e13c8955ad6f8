#include "formats/qcow2/check.h"

#include <algorithm>

#include "base/endian.h"
#include "base/units.h"
#include "formats/qcow2/corruption.h"
#include "formats/qcow2/qcow2_node.h"
#include "formats/qcow2/snapshot_table.h"

namespace keel::qcow2 {

namespace {

// Counts references per host cluster, refusing to grow past the image so a
// damaged entry cannot size an allocation.
class ReferenceCounter {
 public:
  ReferenceCounter(uint64_t nb_clusters, uint32_t cluster_bits, CheckResult& result)
      : counts_(nb_clusters, 0), cluster_bits_(cluster_bits), result_(result) {}

  // Returns false (and records a corruption) if the range leaves the image.
  bool add(uint64_t offset, uint64_t length, const char* what) {
    if (length == 0) return true;
    const uint64_t first = offset >> cluster_bits_;
    const uint64_t last = (offset + length - 1) >> cluster_bits_;
    if (last >= counts_.size() || offset + length < offset) {
      result_.messages.push_back(fmt::format("ERROR {} at offset {:#x} is beyond the end of the image", what, offset));
      result_.corruptions++;
      return false;
    }
    for (uint64_t c = first; c <= last; c++) counts_[c]++;
    return true;
  }
  std::vector<uint64_t>& counts() { return counts_; }

 private:
  std::vector<uint64_t> counts_;
  uint32_t cluster_bits_;
  CheckResult& result_;
};

struct Walk {
  Qcow2Node& node;
  const Geometry& geo;
  ReferenceCounter& refs;
  CheckResult& result;
  uint64_t file_size;
};

// Counts an L1 table, its L2 tables and their data clusters. Fragmentation
// statistics come from the active table only.
Task<void> walk_l1(Walk& w, const std::vector<uint64_t>& l1, bool active, bool fix_entries) {
  for (uint64_t i = 0; i < l1.size(); i++) {
    uint64_t next_contiguous = 0;  // per L2 table, as qemu counts fragmentation
    if (l1[i] & kL1ReservedMask) {
      w.result.messages.push_back(fmt::format("ERROR found L1 entry with reserved bits set: {:x}", l1[i]));
      w.result.corruptions++;
    }
    const uint64_t l2_offset = l1[i] & kOffsetMask;
    if (!l2_offset) continue;
    if (l2_offset & (w.geo.cluster_size - 1)) {
      w.result.messages.push_back(fmt::format("ERROR l2_offset={:x}: Table is not cluster aligned; L1 entry corrupted", l2_offset));
      w.result.corruptions++;
      continue;
    }
    if (!w.refs.add(l2_offset, w.geo.cluster_size, "L2 table")) continue;
    auto table = co_await w.node.l2_table(l2_offset);
    for (uint64_t j = 0; j < w.geo.l2_entries; j++) {
      const std::byte* p = table.data() + j * w.geo.l2_entry_size;
      L2Entry e{load_be<uint64_t>(p), w.geo.extended_l2 ? load_be<uint64_t>(p + 8) : 0};
      const ClusterKind kind = e.kind(w.geo);
      if (kind != ClusterKind::Compressed && (e.word & kL2ReservedMask)) {
        w.result.messages.push_back(fmt::format("ERROR found l2 entry with reserved bits set: {:x}", e.word));
        w.result.corruptions++;
      }
      if (kind == ClusterKind::Compressed) {
        const uint64_t offset = e.compressed_offset(w.geo);
        const uint64_t length = e.compressed_length(w.geo);
        if (e.copied()) {
          w.result.messages.push_back(fmt::format("ERROR: coffset={:#x}: copied flag must never be set for compressed clusters", offset));
          w.result.corruptions++;
        }
        w.refs.add(offset, length, "Compressed cluster");
        if (active) {
          w.result.allocated_clusters++;
          w.result.compressed_clusters++;
          w.result.fragmented_clusters++;
        }
        continue;
      }
      if (kind != ClusterKind::Normal && kind != ClusterKind::ZeroAlloc) continue;
      const uint64_t host = e.host_offset();
      if (host & (w.geo.cluster_size - 1)) {
        w.result.messages.push_back(fmt::format("ERROR offset={:x}: Cluster is not properly aligned; L2 entry corrupted.", host));
        w.result.corruptions++;
        continue;
      }
      if (active) {
        w.result.allocated_clusters++;
        if (next_contiguous && host != next_contiguous) w.result.fragmented_clusters++;
        next_contiguous = host + w.geo.cluster_size;
      }
      if (!w.refs.add(host, w.geo.cluster_size, "Data cluster") && fix_entries) {
        // A mapping into nowhere: make the cluster read as zeros.
        const bool zero_flag = w.node.header().version >= 3 && !w.geo.extended_l2;
        store_be<uint64_t>(table.data() + j * w.geo.l2_entry_size, zero_flag ? kFlagZero : 0);
        if (w.geo.extended_l2) store_be<uint64_t>(table.data() + j * w.geo.l2_entry_size + 8, 0);
        table.mark_dirty();
        w.result.messages.back() = fmt::format("Repairing data cluster at offset {:#x} beyond the end of the image", host);
        w.result.corruptions--;
        w.result.corruptions_fixed++;
      }
    }
  }
}

Task<std::vector<uint64_t>> read_l1(block::BlockNode& file, uint64_t offset, uint32_t size) {
  std::vector<std::byte> bytes(uint64_t{size} * 8);
  co_await file.read(offset, bytes);
  std::vector<uint64_t> l1(size);
  for (size_t i = 0; i < size; i++) l1[i] = load_be<uint64_t>(bytes.data() + i * 8);
  co_return l1;
}

// Counts everything except the refcount structures themselves.
Task<void> count_references(Walk& w, bool fix_entries) {
  const Header& h = w.node.header();
  block::BlockNode& file = w.node.file_node();
  w.refs.add(0, w.geo.cluster_size, "Header");
  w.refs.add(h.l1_table_offset, uint64_t{h.l1_size} * 8, "Active L1 table");
  co_await walk_l1(w, w.node.l1_table(), true, fix_entries);

  SnapshotTable snapshots = co_await read_snapshot_table(file, h);
  if (h.nb_snapshots) w.refs.add(h.snapshots_offset, snapshots.table_bytes, "Snapshot table");
  for (const Snapshot& s : snapshots.snapshots) {
    if (!w.refs.add(s.l1_table_offset, uint64_t{s.l1_size} * 8, "Snapshot L1 table")) continue;
    auto l1 = co_await read_l1(file, s.l1_table_offset, s.l1_size);
    co_await walk_l1(w, l1, false, false);
  }

  for (const auto& ext : h.extensions) {
    if (ext.type == kExtCryptoHeader && ext.data.size() >= 16) {
      BigEndianReader r(ext.data, "encryption header extension");
      w.refs.add(r.get<uint64_t>(0), r.get<uint64_t>(8), "Encryption header");
    }
  }
  if (auto ext = h.bitmaps(); ext && (h.autoclear_features & kAutoclearBitmaps)) {
    w.refs.add(ext->directory_offset, ext->directory_size, "Bitmap directory");
    for (const BitmapInfo& b : co_await read_bitmap_directory(file, h)) {
      if (!w.refs.add(b.table_offset, uint64_t{b.table_size} * 8, "Bitmap table")) continue;
      std::vector<std::byte> bytes(uint64_t{b.table_size} * 8);
      co_await file.read(b.table_offset, bytes);
      for (uint32_t i = 0; i < b.table_size; i++) {
        const uint64_t entry = load_be<uint64_t>(bytes.data() + i * 8) & kOffsetMask;
        if (entry) w.refs.add(entry, w.geo.cluster_size, "Bitmap data");
      }
    }
  }
}

// Counts the refcount table and blocks; returns false if a table entry is
// unusable, which means the structures must be rebuilt.
bool count_refcount_structures(Qcow2Node& node, ReferenceCounter& refs, CheckResult& result) {
  const Header& h = node.header();
  refs.add(h.refcount_table_offset, uint64_t{h.refcount_table_clusters} << h.cluster_bits, "Refcount table");
  bool usable = true;
  const auto& table = node.refcounts().table();
  for (uint64_t i = 0; i < table.size(); i++) {
    const uint64_t offset = table[i] & kOffsetMask;
    if (!offset) continue;
    if (offset & (h.cluster_size() - 1)) {
      result.messages.push_back(fmt::format("ERROR refcount block {} is not cluster aligned; refcount table entry corrupted", i));
      result.corruptions++;
      usable = false;
      continue;
    }
    if (!refs.add(offset, h.cluster_size(), "Refcount block")) usable = false;
  }
  return usable;
}

// Every reference in the image, refcount structures included.
Task<std::vector<uint64_t>> calculate_refcounts(Qcow2Node& node, CheckResult& result, bool fix_entries, bool& rebuild) {
  const Geometry& geo = node.geometry();
  ReferenceCounter refs(div_round_up(node.file_node().size(), geo.cluster_size), geo.cluster_bits, result);
  Walk walk{node, geo, refs, result, node.file_node().size()};
  co_await count_references(walk, fix_entries);
  if (!count_refcount_structures(node, refs, result)) rebuild = true;
  co_return std::move(refs.counts());
}

// Compares stored refcounts with the references found, as qemu's
// compare_refcounts(): reports each mismatch, repairs what `fix` allows, and
// flags a rebuild where a referenced cluster has no refcount at all.
Task<void> compare_refcounts(Qcow2Node& node, CheckResult& result, CheckFix fix, const std::vector<uint64_t>& counts,
                             bool& rebuild, uint64_t& highest) {
  Refcounts& refcounts = node.refcounts();
  for (uint64_t c = 0; c < counts.size(); c++) {
    uint64_t stored = 0;
    try {
      stored = co_await refcounts.get(c);
    } catch (const Corruption& e) {
      result.messages.push_back(fmt::format("Can't get refcount for cluster {}: {}", c, e.message()));
      result.check_errors++;
      continue;
    }
    const uint64_t reference = counts[c];
    if (stored || reference) highest = c;
    if (stored == reference) continue;
    const bool leak = stored > reference;
    bool fixing = false;
    if (stored == 0) rebuild = true;
    else if (leak && fix != CheckFix::None) fixing = true;
    else if (!leak && fix == CheckFix::All) fixing = true;
    result.messages.push_back(fmt::format("{} cluster {} refcount={} reference={}", fixing ? "Repairing" : leak ? "Leaked" : "ERROR", c, stored, reference));
    if (fixing) {
      co_await refcounts.add(c, static_cast<int64_t>(reference) - static_cast<int64_t>(stored));
      (leak ? result.leaks_fixed : result.corruptions_fixed)++;
      continue;
    }
    (leak ? result.leaks : result.corruptions)++;
  }
  if (fix != CheckFix::None) co_await node.flush_metadata();
}

// COPIED must be set exactly where the refcount is 1 (qemu's check_oflag_copied).
Task<void> check_copied_flags(Qcow2Node& node, CheckResult& result, CheckFix fix) {
  const Geometry& geo = node.geometry();
  Refcounts& refcounts = node.refcounts();
  const uint64_t nb_clusters = div_round_up(node.file_node().size(), geo.cluster_size);
  const bool repair = fix == CheckFix::All;
  const std::vector<uint64_t> l1 = node.l1_table();
  for (uint64_t i = 0; i < l1.size(); i++) {
    const uint64_t l2_offset = l1[i] & kOffsetMask;
    if (!l2_offset || (l2_offset & (geo.cluster_size - 1)) || (l2_offset >> geo.cluster_bits) >= nb_clusters) continue;
    const uint64_t rc = co_await refcounts.get(l2_offset >> geo.cluster_bits);
    if ((rc == 1) != bool(l1[i] & kFlagCopied)) {
      result.messages.push_back(fmt::format("{} OFLAG_COPIED L2 cluster: l1_index={} l1_entry={:x} refcount={}", repair ? "Repairing" : "ERROR", i, l1[i], rc));
      if (repair) {
        co_await node.set_l1_entry(i, rc == 1 ? (l1[i] | kFlagCopied) : (l1[i] & ~kFlagCopied));
        result.corruptions_fixed++;
      } else {
        result.corruptions++;
      }
    }
    auto table = co_await node.l2_table(l2_offset);
    for (uint64_t j = 0; j < geo.l2_entries; j++) {
      std::byte* p = table.data() + j * geo.l2_entry_size;
      const uint64_t word = load_be<uint64_t>(p);
      const L2Entry e{word, 0};
      const ClusterKind kind = e.kind(geo);
      if (kind != ClusterKind::Normal && kind != ClusterKind::ZeroAlloc) continue;
      const uint64_t host = e.host_offset();
      if ((host & (geo.cluster_size - 1)) || (host >> geo.cluster_bits) >= nb_clusters) continue;
      const uint64_t data_rc = co_await refcounts.get(host >> geo.cluster_bits);
      if ((data_rc == 1) != e.copied()) {
        result.messages.push_back(fmt::format("{} OFLAG_COPIED data cluster: l2_entry={:x} refcount={}", repair ? "Repairing" : "ERROR", word, data_rc));
        if (repair) {
          store_be<uint64_t>(p, data_rc == 1 ? (word | kFlagCopied) : (word & ~kFlagCopied));
          table.mark_dirty();
          result.corruptions_fixed++;
        } else {
          result.corruptions++;
        }
      }
    }
  }
  if (repair) co_await node.flush_metadata();
}

Task<CheckResult> check_refcounts(Qcow2Node& node, CheckFix fix) {
  CheckResult result;
  const Geometry& geo = node.geometry();
  result.total_clusters = div_round_up(node.header().size, geo.cluster_size);
  bool rebuild = false;
  std::vector<uint64_t> counts = co_await calculate_refcounts(node, result, fix == CheckFix::All, rebuild);

  // First report only; repair afterwards from the same starting point.
  const CheckResult before_compare = result;
  uint64_t highest = 0;
  co_await compare_refcounts(node, result, CheckFix::None, counts, rebuild, highest);

  if (rebuild && fix == CheckFix::All) {
    const CheckResult old = result;
    result.messages.push_back("Rebuilding refcount structure");
    // The new structures go after everything in use, the old ones included;
    // those are then unreferenced and freed as leaks.
    co_await node.rebuild_refcounts(counts);
    result.corruptions = 0;
    result.leaks = 0;
    bool again = false;
    CheckResult scratch;
    counts = co_await calculate_refcounts(node, scratch, false, again);
    scratch.messages.clear();
    highest = 0;
    co_await compare_refcounts(node, scratch, CheckFix::Leaks, counts, again, highest);
    result.messages.insert(result.messages.end(), scratch.messages.begin(), scratch.messages.end());
    result.corruptions_fixed += old.corruptions;
    result.leaks_fixed += old.leaks;
    result.leaks += scratch.leaks;
  } else if (fix != CheckFix::None) {
    if (rebuild) {
      result.messages.push_back("ERROR need to rebuild refcount structures");
      result.check_errors++;
      result.failure = EIO;
      co_return result;
    }
    if (result.leaks || result.corruptions) {
      std::vector<std::string> messages = std::move(result.messages);
      result = before_compare;
      result.messages = std::move(messages);
      highest = 0;
      co_await compare_refcounts(node, result, fix, counts, rebuild, highest);
    }
  }
  co_await check_copied_flags(node, result, fix);
  result.image_end_offset = (highest + 1) * geo.cluster_size;
  co_return result;
}

}  // namespace

Task<CheckResult> check_image(Qcow2Node& node, CheckFix fix) {
  CheckResult result = co_await check_refcounts(node, fix);
  // A repaired image is consistent again: clear the dirty and corrupt bits, as qemu does.
  if (fix != CheckFix::None && !result.failure && !result.check_errors && !result.corruptions)
    co_await node.update_incompatible_features(0, kIncompatDirty | kIncompatCorrupt);
  co_return result;
}

}  // namespace keel::qcow2
