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
  uint64_t next_contiguous = 0;
  for (uint64_t i = 0; i < l1.size(); i++) {
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

uint64_t count_refcount_structures(Qcow2Node& node, ReferenceCounter& refs) {
  const Header& h = node.header();
  refs.add(h.refcount_table_offset, uint64_t{h.refcount_table_clusters} << h.cluster_bits, "Refcount table");
  uint64_t bad = 0;
  for (uint64_t entry : node.refcounts().table()) {
    const uint64_t offset = entry & kOffsetMask;
    if (!offset) continue;
    if (offset & (h.cluster_size() - 1)) {
      bad++;
      continue;
    }
    if (!refs.add(offset, h.cluster_size(), "Refcount block")) bad++;
  }
  return bad;
}

Task<CheckResult> check_once(Qcow2Node& node, CheckFix fix) {
  CheckResult result;
  const Geometry& geo = node.geometry();
  const uint64_t file_size = node.file_node().size();
  const uint64_t nb_clusters = div_round_up(file_size, geo.cluster_size);
  result.total_clusters = div_round_up(node.header().size, geo.cluster_size);

  ReferenceCounter refs(nb_clusters, geo.cluster_bits, result);
  Walk walk{node, geo, refs, result, file_size};
  co_await count_references(walk, fix == CheckFix::All);
  const std::vector<uint64_t> without_refcount_structures = refs.counts();
  const uint64_t bad_refblocks = count_refcount_structures(node, refs);
  if (bad_refblocks) result.corruptions += bad_refblocks;
  std::vector<uint64_t>& counts = refs.counts();

  Refcounts& refcounts = node.refcounts();
  bool rebuild = bad_refblocks > 0;
  uint64_t highest = 0;
  std::vector<std::pair<uint64_t, int64_t>> leak_fixes;
  for (uint64_t c = 0; c < nb_clusters; c++) {
    uint64_t stored = 0;
    try {
      stored = co_await refcounts.get(c);
    } catch (const Corruption& e) {
      result.messages.push_back(fmt::format("ERROR {}", e.message()));
      result.corruptions++;
      rebuild = true;
      break;
    }
    const uint64_t reference = counts[c];
    if (stored || reference) highest = c;
    if (stored == reference) continue;
    const bool leak = stored > reference;
    if (stored == 0) rebuild = true;
    const bool fixing = (leak && fix != CheckFix::None && stored != 0) || (!leak && fix == CheckFix::All);
    result.messages.push_back(fmt::format("{} cluster {} refcount={} reference={}", fixing ? "Repairing" : leak ? "Leaked" : "ERROR", c, stored, reference));
    if (fixing) {
      if (leak) {
        result.leaks_fixed++;
        leak_fixes.emplace_back(c, -static_cast<int64_t>(stored - reference));
      } else {
        result.corruptions_fixed++;
        rebuild = true;
      }
      continue;
    }
    if (leak) result.leaks++;
    else result.corruptions++;
  }
  result.image_end_offset = (highest + 1) * geo.cluster_size;

  if (fix == CheckFix::All && (rebuild || result.corruptions_fixed)) {
    co_await node.rebuild_refcounts(without_refcount_structures);
    if (!result.corruptions_fixed) result.corruptions_fixed = result.corruptions;
    result.corruptions = 0;
    result.leaks_fixed += result.leaks;
    result.leaks = 0;
  } else if (!leak_fixes.empty()) {
    for (auto [c, delta] : leak_fixes) co_await refcounts.add(c, delta);
    co_await node.flush_metadata();
  }

  // COPIED must be set exactly where the refcount is 1.
  const bool fix_copied = fix == CheckFix::All;
  std::vector<uint64_t> l1 = node.l1_table();
  for (uint64_t i = 0; i < l1.size(); i++) {
    const uint64_t l2_offset = l1[i] & kOffsetMask;
    if (!l2_offset || (l2_offset & (geo.cluster_size - 1)) || (l2_offset >> geo.cluster_bits) >= nb_clusters) continue;
    const uint64_t rc = co_await refcounts.get(l2_offset >> geo.cluster_bits);
    if ((rc == 1) != bool(l1[i] & kFlagCopied)) {
      result.messages.push_back(fmt::format("{} OFLAG_COPIED L2 cluster: l1_index={} l1_entry={:x} refcount={}",
                                            fix_copied ? "Repairing" : "ERROR", i, l1[i], rc));
      if (fix_copied) {
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
        result.messages.push_back(fmt::format("{} OFLAG_COPIED data cluster: l2_entry={:x} refcount={}", fix_copied ? "Repairing" : "ERROR", word, data_rc));
        if (fix_copied) {
          store_be<uint64_t>(p, data_rc == 1 ? (word | kFlagCopied) : (word & ~kFlagCopied));
          table.mark_dirty();
          result.corruptions_fixed++;
        } else {
          result.corruptions++;
        }
      }
    }
  }
  if (fix != CheckFix::None) co_await node.flush_metadata();
  co_return result;
}

}  // namespace

Task<CheckResult> check_image(Qcow2Node& node, CheckFix fix) {
  co_return co_await check_once(node, fix);
}

}  // namespace keel::qcow2
