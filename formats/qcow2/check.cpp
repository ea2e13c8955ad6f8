#include "formats/qcow2/check.h"

#include <algorithm>
#include <optional>

#include "base/endian.h"
#include "base/units.h"
#include "formats/qcow2/corruption.h"
#include "formats/qcow2/qcow2_node.h"
#include "formats/qcow2/snapshot_table.h"

namespace keel::qcow2 {

namespace {

// Counts references per host cluster as qemu's check does: up to the image's
// refcount width (a count that would pass it is an overflow), and only within
// the file plus one cluster (its last cluster may be partly written), so a
// damaged entry can neither size an allocation nor count beyond the file.
class ReferenceCounter {
 public:
  ReferenceCounter(uint64_t file_size, const Header& header, CheckResult& result)
      : counts_(div_round_up(file_size, header.cluster_size()) + 1, 0),
        file_size_(file_size),
        cluster_bits_(header.cluster_bits),
        max_(header.refcount_order == 6 ? UINT64_MAX : (uint64_t{1} << header.refcount_bits()) - 1),
        result_(result) {}

  // Returns false (and records a corruption) if the range leaves the file.
  bool add(uint64_t offset, uint64_t length) {
    if (length == 0) return true;
    const uint64_t cluster = uint64_t{1} << cluster_bits_;
    if (offset + length < offset || offset + length >= file_size_ + cluster) {
      result_.messages.push_back(
          fmt::format("ERROR: counting reference for region exceeding the end of the file by one cluster or more: "
                      "offset {:#x} size {:#x}",
                      offset, length));
      result_.corruptions++;
      return false;
    }
    const uint64_t first = offset >> cluster_bits_;
    const uint64_t last = (offset + length - 1) >> cluster_bits_;
    for (uint64_t c = first; c <= last; c++) {
      if (counts_[c] == max_) {
        result_.messages.push_back(fmt::format("ERROR: overflow cluster offset={:#x}", c << cluster_bits_));
        result_.messages.push_back(
            "Use keel-img amend to increase the refcount entry width or keel-img convert to create a clean copy if "
            "the image cannot be opened for writing");
        result_.corruptions++;
        continue;
      }
      counts_[c]++;
    }
    return true;
  }
  std::vector<uint64_t>& counts() { return counts_; }

 private:
  std::vector<uint64_t> counts_;
  uint64_t file_size_;
  uint32_t cluster_bits_;
  uint64_t max_;
  CheckResult& result_;
};

// An L2 entry that a repair would make a zero cluster. Repairs wait until
// every reference is counted: only a table referenced once, and by nothing
// but its L1 entry, is written, so a repair never changes a cluster that is
// also guest data or other metadata.
struct PlannedFix {
  uint64_t table;          // host offset of the L2 table
  uint64_t entry;          // index in it
  size_t message;          // its line in CheckResult::messages
  std::string if_refused;  // the line to print instead when the table is not trusted
  uint64_t host;           // the entry's cluster, counted if the fix is refused (0: none)
  L2Entry replacement;
};

// The entry that reads as `e` read, without its host cluster (whose bytes read
// as zeros: it lies past the file, or it was preallocated zeros): what was
// allocated becomes zero, what read through to the backing file still does.
// A version 2 image cannot say "zero" where a backing file shows through.
std::optional<L2Entry> without_host_cluster(const L2Entry& e, const Geometry& geo, const Header& h) {
  if (geo.extended_l2) return L2Entry{0, ((e.bitmap >> 32 | e.bitmap) & kAllSubclustersAllocated) << 32};
  if (h.version >= 3) return L2Entry{kFlagZero, 0};
  if (!h.backing_file.empty()) return std::nullopt;
  return L2Entry{0, 0};
}

struct Walk {
  Qcow2Node& node;
  const Geometry& geo;
  ReferenceCounter& refs;
  CheckResult& result;
  uint64_t file_size;
  std::vector<PlannedFix> fixes;
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
    // As qemu's check: any non-zero entry names a table, even one whose offset
    // is 0 (only flags set), which then counts the header cluster as an L2 table.
    if (!l1[i]) continue;
    const uint64_t l2_offset = l1[i] & kOffsetMask;
    if (l2_offset & (w.geo.cluster_size - 1)) {
      w.result.messages.push_back(
          fmt::format("ERROR l2_offset={:x}: Table is not cluster aligned; L1 entry corrupted", l2_offset));
      w.result.corruptions++;
      continue;
    }
    if (!w.refs.add(l2_offset, w.geo.cluster_size)) continue;
    auto table = co_await w.node.l2_table(l2_offset);
    const bool table_fixable = fix_entries && active;
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
          w.result.messages.push_back(
              fmt::format("ERROR: coffset={:#x}: copied flag must never be set for compressed clusters", offset));
          w.result.corruptions++;
        }
        if (e.bitmap) {
          // As qemu: the entry is not trusted, so its data is not counted either.
          w.result.messages.push_back(fmt::format(
              "ERROR compressed cluster {} with non-zero subcluster allocation bitmap, entry={:#x}", j, e.word));
          w.result.corruptions++;
          continue;
        }
        w.refs.add(offset, length);
        if (active) {
          w.result.allocated_clusters++;
          w.result.compressed_clusters++;
          w.result.fragmented_clusters++;
        }
        continue;
      }
      if (kind == ClusterKind::Unallocated && e.has_invalid_bitmap(w.geo)) {
        w.result.messages.push_back("ERROR: Unallocated cluster has non-zero subcluster allocation map");
        w.result.corruptions++;
      }
      if (kind != ClusterKind::Normal && kind != ClusterKind::ZeroAlloc) continue;
      const uint64_t host = e.host_offset();
      if (e.has_invalid_bitmap(w.geo)) {
        w.result.messages.push_back(
            fmt::format("ERROR offset={:x}: Allocated cluster has corrupted subcluster allocation bitmap", host));
        w.result.corruptions++;
      }
      const std::optional<L2Entry> replacement = without_host_cluster(e, w.geo, w.node.header());
      const bool entry_fixable = table_fixable && replacement;
      auto plan_fix = [&](std::string if_refused, uint64_t counted_if_refused) {
        w.fixes.push_back(
            {l2_offset, j, w.result.messages.size() - 1, std::move(if_refused), counted_if_refused, *replacement});
        w.result.corruptions--;
        w.result.corruptions_fixed++;
      };
      if (host & (w.geo.cluster_size - 1)) {
        w.result.corruptions++;
        const bool holds_data = w.geo.extended_l2 ? (e.bitmap & kAllSubclustersAllocated) : kind == ClusterKind::Normal;
        if (holds_data) {
          w.result.messages.push_back(
              fmt::format("ERROR offset={:x}: Data cluster is not properly aligned; L2 entry corrupted.", host));
        } else {
          // Nothing to lose: qemu repairs it into a zero cluster and counts no reference.
          const std::string what =
              fmt::format("offset={:x}: Preallocated cluster is not properly aligned; L2 entry corrupted.", host);
          w.result.messages.push_back((entry_fixable ? "Repairing " : "ERROR ") + what);
          if (entry_fixable) {
            plan_fix("ERROR " + what, host);
            continue;
          }
        }
      }
      if (active) {
        w.result.allocated_clusters++;
        if (next_contiguous && host != next_contiguous) w.result.fragmented_clusters++;
        next_contiguous = host + w.geo.cluster_size;
      }
      if (!w.refs.add(host, w.geo.cluster_size) && entry_fixable) {
        // A mapping into nowhere (keel's repair; qemu leaves it): make the cluster read as zeros.
        std::string counted = std::move(w.result.messages.back());
        w.result.messages.back() =
            fmt::format("Repairing data cluster at offset {:#x} beyond the end of the image", host);
        plan_fix(std::move(counted), 0);
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
  w.refs.add(0, w.geo.cluster_size);
  w.refs.add(h.l1_table_offset, uint64_t{h.l1_size} * 8);
  co_await walk_l1(w, w.node.l1_table(), true, fix_entries);

  SnapshotTable snapshots = co_await read_snapshot_table(file, h);
  if (h.nb_snapshots) w.refs.add(h.snapshots_offset, snapshots.table_bytes);
  for (const Snapshot& s : snapshots.snapshots) {
    if (!w.refs.add(s.l1_table_offset, uint64_t{s.l1_size} * 8)) continue;
    auto l1 = co_await read_l1(file, s.l1_table_offset, s.l1_size);
    co_await walk_l1(w, l1, false, false);
  }

  for (const auto& ext : h.extensions) {
    if (ext.type == kExtCryptoHeader && ext.data.size() >= 16) {
      BigEndianReader r(ext.data, "encryption header extension");
      w.refs.add(r.get<uint64_t>(0), r.get<uint64_t>(8));
    }
  }
  if (auto ext = h.bitmaps(); ext && (h.autoclear_features & kAutoclearBitmaps)) {
    w.refs.add(ext->directory_offset, ext->directory_size);
    for (const BitmapInfo& b : co_await read_bitmap_directory(file, h)) {
      if (!w.refs.add(b.table_offset, uint64_t{b.table_size} * 8)) continue;
      std::vector<std::byte> bytes(uint64_t{b.table_size} * 8);
      co_await file.read(b.table_offset, bytes);
      for (uint32_t i = 0; i < b.table_size; i++) {
        const uint64_t entry = load_be<uint64_t>(bytes.data() + i * 8) & kOffsetMask;
        if (entry) w.refs.add(entry, w.geo.cluster_size);
      }
    }
  }
}

// Counts the refcount table and blocks; returns false if a table entry is
// unusable, which means the structures must be rebuilt.
bool count_refcount_structures(Qcow2Node& node, ReferenceCounter& refs, CheckResult& result) {
  const Header& h = node.header();
  const uint64_t file_size = node.file_node().size();
  refs.add(h.refcount_table_offset, uint64_t{h.refcount_table_clusters} << h.cluster_bits);
  bool usable = true;
  const auto& table = node.refcounts().table();
  for (uint64_t i = 0; i < table.size(); i++) {
    const uint64_t offset = table[i] & kReftableOffsetMask;
    if (table[i] & kReftableReservedMask) {
      result.messages.push_back(fmt::format("ERROR refcount table entry {} has reserved bits set", i));
      result.corruptions++;
      usable = false;
      continue;
    }
    if (!offset) continue;
    if (offset & (h.cluster_size() - 1)) {
      result.messages.push_back(
          fmt::format("ERROR refcount block {} is not cluster aligned; refcount table entry corrupted", i));
      result.corruptions++;
      usable = false;
      continue;
    }
    const uint64_t cluster = offset >> h.cluster_bits;
    if (cluster >= div_round_up(file_size, h.cluster_size())) {
      result.messages.push_back(fmt::format("ERROR refcount block {} is outside image", i));
      result.corruptions++;
      usable = false;
      continue;
    }
    refs.add(offset, h.cluster_size());
    // A refcount block that is anything else too cannot be trusted: rebuild.
    if (refs.counts()[cluster] != 1) {
      result.messages.push_back(fmt::format("ERROR refcount block {} refcount={}", i, refs.counts()[cluster]));
      result.corruptions++;
      usable = false;
    }
  }
  return usable;
}

// Every reference in the image, refcount structures included.
// Applies the planned fixes to trusted tables; the rest are reported as
// found, and their clusters counted as qemu counts them.
Task<void> apply_fixes(Walk& w) {
  const Geometry& geo = w.geo;
  for (const PlannedFix& f : w.fixes) {
    const bool trusted = w.refs.counts()[f.table >> geo.cluster_bits] == 1 &&
                         !w.node.metadata_at(f.table, geo.cluster_size, Qcow2Node::Metadata::ActiveL2);
    if (!trusted) {
      w.result.messages[f.message] = f.if_refused;
      w.result.corruptions_fixed--;
      w.result.corruptions++;
      if (f.host) w.refs.add(f.host, geo.cluster_size);
      continue;
    }
    auto table = co_await w.node.l2_table(f.table);
    std::byte* p = table.data() + f.entry * geo.l2_entry_size;
    store_be<uint64_t>(p, f.replacement.word);
    if (geo.extended_l2) store_be<uint64_t>(p + 8, f.replacement.bitmap);
    table.mark_dirty();
  }
}

Task<std::vector<uint64_t>> calculate_refcounts(Qcow2Node& node, CheckResult& result, bool fix_entries, bool& rebuild) {
  const Geometry& geo = node.geometry();
  ReferenceCounter refs(node.file_node().size(), node.header(), result);
  Walk walk{node, geo, refs, result, node.file_node().size(), {}};
  co_await count_references(walk, fix_entries);
  if (!count_refcount_structures(node, refs, result)) rebuild = true;
  co_await apply_fixes(walk);
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
    std::optional<std::string> corruption;
    int error = 0;
    try {
      stored = co_await refcounts.get(c);
    } catch (const Corruption& e) {
      corruption = e.message();
      error = e.code();
    } catch (const Error& e) {
      error = e.code();
    }
    if (corruption) co_await node.signal_corruption(*corruption, &result.messages);
    if (error) {
      result.messages.push_back(fmt::format("Can't get refcount for cluster {}: {}", c, errno_text(error)));
      result.check_errors++;
      continue;
    }
    const uint64_t reference = counts[c];
    if (stored || reference) highest = c;
    if (stored == reference) continue;
    const bool leak = stored > reference;
    bool fixing = false;
    if (stored == 0)
      rebuild = true;
    else if (leak && fix != CheckFix::None)
      fixing = true;
    else if (!leak && fix == CheckFix::All)
      fixing = true;
    result.messages.push_back(fmt::format("{} cluster {} refcount={} reference={}",
                                          fixing ? "Repairing"
                                          : leak ? "Leaked"
                                                 : "ERROR",
                                          c, stored, reference));
    if (fixing) {
      co_await refcounts.set(c, reference);
      (leak ? result.leaks_fixed : result.corruptions_fixed)++;
      continue;
    }
    (leak ? result.leaks : result.corruptions)++;
  }
  if (fix != CheckFix::None) co_await node.flush_metadata();
}

// A refcount for the COPIED check; one that cannot be read was reported by
// compare_refcounts() already, so it is skipped here without a word, as qemu does.
Task<std::optional<uint64_t>> refcount_if_readable(Refcounts& refcounts, uint64_t cluster) {
  try {
    co_return co_await refcounts.get(cluster);
  } catch (const Error&) {
    co_return std::nullopt;
  }
}

// COPIED must be set exactly where the refcount is 1 (qemu's check_oflag_copied).
// A table is only rewritten where each cluster it covers is referenced once
// (`counts`: every reference found) and is no other structure.
Task<void> check_copied_flags(Qcow2Node& node, CheckResult& result, CheckFix fix, const std::vector<uint64_t>& counts) {
  const Geometry& geo = node.geometry();
  auto referenced_once = [&](uint64_t offset) {
    const uint64_t c = offset >> geo.cluster_bits;
    return c < counts.size() && counts[c] == 1;
  };
  Refcounts& refcounts = node.refcounts();
  const uint64_t nb_clusters = div_round_up(node.file_node().size(), geo.cluster_size);
  const bool repair = fix == CheckFix::All;
  const std::vector<uint64_t> l1 = node.l1_table();
  for (uint64_t i = 0; i < l1.size(); i++) {
    const uint64_t l2_offset = l1[i] & kOffsetMask;
    if (!l2_offset) continue;
    // Clusters past the file have refcount 0, which qemu reports here too.
    const std::optional<uint64_t> l2_rc = co_await refcount_if_readable(refcounts, l2_offset >> geo.cluster_bits);
    if (!l2_rc) continue;
    const uint64_t rc = *l2_rc;
    if ((rc == 1) != bool(l1[i] & kFlagCopied)) {
      // The L1 table may not be rewritten where it is some other structure too.
      const uint64_t at = node.header().l1_table_offset + i * 8;
      const bool l1_fixable = repair && referenced_once(at) && !node.metadata_at(at, 8, Qcow2Node::Metadata::ActiveL1);
      result.messages.push_back(fmt::format("{} OFLAG_COPIED L2 cluster: l1_index={} l1_entry={:x} refcount={}",
                                            l1_fixable ? "Repairing" : "ERROR", i, l1[i], rc));
      if (l1_fixable) {
        co_await node.set_l1_entry(i, rc == 1 ? (l1[i] | kFlagCopied) : (l1[i] & ~kFlagCopied));
        result.corruptions_fixed++;
      } else {
        result.corruptions++;
      }
    }
    if ((l2_offset & (geo.cluster_size - 1)) || (l2_offset >> geo.cluster_bits) >= nb_clusters) continue;
    auto table = co_await node.l2_table(l2_offset);
    // As in walk_l1: no repair through a table that is other metadata too.
    const bool table_fixable = repair && referenced_once(l2_offset) &&
                               !node.metadata_at(l2_offset, geo.cluster_size, Qcow2Node::Metadata::ActiveL2);
    for (uint64_t j = 0; j < geo.l2_entries; j++) {
      std::byte* p = table.data() + j * geo.l2_entry_size;
      const uint64_t word = load_be<uint64_t>(p);
      const L2Entry e{word, 0};
      const ClusterKind kind = e.kind(geo);
      if (kind != ClusterKind::Normal && kind != ClusterKind::ZeroAlloc) continue;
      const uint64_t host = e.host_offset();
      const std::optional<uint64_t> readable = co_await refcount_if_readable(refcounts, host >> geo.cluster_bits);
      if (!readable) continue;
      const uint64_t data_rc = *readable;
      if ((data_rc == 1) != e.copied()) {
        result.messages.push_back(fmt::format("{} OFLAG_COPIED data cluster: l2_entry={:x} refcount={}",
                                              table_fixable ? "Repairing" : "ERROR", word, data_rc));
        if (table_fixable) {
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

// The snapshot table's own consistency, reported first as qemu does. Entries
// of version 3 images too short for the extra data v3 requires are
// corruptions; keel cannot rewrite the table yet, so -r all leaves them.
Task<void> check_snapshot_table(Qcow2Node& node, CheckResult& result) {
  if (node.header().version < 3) co_return;
  const SnapshotTable table = co_await read_snapshot_table(node.file_node(), node.header());
  for (size_t i = 0; i < table.snapshots.size(); i++) {
    if (table.snapshots[i].extra_size >= kSnapshotExtraV3Size) continue;
    result.messages.push_back(fmt::format("ERROR snapshot table entry {} is incomplete", i));
    result.corruptions++;
  }
}

Task<CheckResult> check_refcounts(Qcow2Node& node, CheckFix fix) {
  CheckResult result;
  co_await check_snapshot_table(node, result);
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
    // What is still wrong is found by counting again over the new structures;
    // only the difference counts as fixed.
    result.corruptions = 0;
    result.leaks = 0;
    bool still_broken = false;
    counts = co_await calculate_refcounts(node, result, false, still_broken);
    result.allocated_clusters = old.allocated_clusters;
    result.fragmented_clusters = old.fragmented_clusters;
    result.compressed_clusters = old.compressed_clusters;
    CheckResult leaks_of_rebuild;
    highest = 0;
    co_await compare_refcounts(node, leaks_of_rebuild, CheckFix::Leaks, counts, still_broken, highest);
    if (still_broken) result.messages.push_back("ERROR rebuilt refcount structure is still broken");
    result.messages.insert(result.messages.end(), leaks_of_rebuild.messages.begin(), leaks_of_rebuild.messages.end());
    if (result.corruptions < old.corruptions) result.corruptions_fixed += old.corruptions - result.corruptions;
    if (result.leaks < old.leaks) result.leaks_fixed += old.leaks - result.leaks;
    result.leaks += leaks_of_rebuild.leaks;
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
  co_await check_copied_flags(node, result, fix, counts);
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

Task<CheckResult> Qcow2Node::check(CheckFix fix) { co_return co_await check_image(*this, fix); }

}  // namespace keel::qcow2
