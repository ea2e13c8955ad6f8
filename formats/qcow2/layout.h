// Geometry of one qcow2 image and the decoding of L1/L2 entries: how a guest
// offset maps to an L1 index, an L2 slot and a subcluster, and what each kind
// of L2 entry means. Pure functions over already-validated header fields.
#pragma once

#include <cstdint>

#include "formats/qcow2/header.h"

namespace keel::qcow2 {

constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;  // bits 9..55
constexpr uint64_t kFlagCopied = 1ull << 63;
constexpr uint64_t kFlagCompressed = 1ull << 62;
constexpr uint64_t kFlagZero = 1ull;
constexpr uint64_t kL1ReservedMask = 0x7f000000000001ffull;
constexpr uint64_t kL2ReservedMask = 0x3f000000000001feull;
// Refcount table entries: bits 9..63 are the block's offset, 0..8 reserved.
constexpr uint64_t kReftableOffsetMask = ~uint64_t{0x1ff};
constexpr uint64_t kReftableReservedMask = 0x1ff;
constexpr unsigned kSubclustersPerCluster = 32;

struct Geometry {
  uint32_t cluster_bits;
  uint64_t cluster_size;
  bool extended_l2;
  uint64_t l2_entries;     // entries per L2 table
  uint32_t l2_entry_size;  // 8, or 16 with extended L2
  uint64_t subcluster_size;

  explicit Geometry(const Header& h)
      : cluster_bits(h.cluster_bits),
        cluster_size(h.cluster_size()),
        extended_l2(h.extended_l2()),
        l2_entries(h.cluster_size() / (h.extended_l2() ? 16 : 8)),
        l2_entry_size(h.extended_l2() ? 16 : 8),
        subcluster_size(h.extended_l2() ? h.cluster_size() / kSubclustersPerCluster : h.cluster_size()) {}

  uint64_t l1_index(uint64_t guest) const { return guest / (l2_entries * cluster_size); }
  uint64_t l2_index(uint64_t guest) const { return (guest / cluster_size) % l2_entries; }
  uint64_t cluster_offset_in(uint64_t guest) const { return guest & (cluster_size - 1); }
  uint64_t bytes_per_l2() const { return l2_entries * cluster_size; }
  uint64_t l1_entries_for(uint64_t disk_size) const { return (disk_size + bytes_per_l2() - 1) / bytes_per_l2(); }
  // Offset of the start of `guest`'s cluster.
  uint64_t cluster_start(uint64_t guest) const { return guest & ~(cluster_size - 1); }

  // Compressed cluster descriptor layout: the host offset takes `x` low bits.
  unsigned compressed_offset_bits() const { return 62 - (cluster_bits - 8); }
};

enum class ClusterKind {
  Unallocated,  // reads from the backing file, or zeros
  ZeroPlain,    // reads as zeros, no host cluster
  ZeroAlloc,    // reads as zeros, host cluster kept for reuse
  Normal,       // data at the host offset
  Compressed,
};

constexpr uint64_t kAllSubclustersAllocated = 0xffffffffull;
constexpr uint64_t kAllSubclustersZero = 0xffffffffull << 32;

struct L2Entry {
  uint64_t word = 0;
  uint64_t bitmap = 0;  // extended L2 only: bits 0..31 allocated, 32..63 reads-as-zero

  uint64_t host_offset() const { return word & kOffsetMask; }
  bool copied() const { return word & kFlagCopied; }
  bool compressed() const { return word & kFlagCompressed; }

  ClusterKind kind(const Geometry& g) const {
    if (compressed()) return ClusterKind::Compressed;
    if (!g.extended_l2 && (word & kFlagZero)) return host_offset() ? ClusterKind::ZeroAlloc : ClusterKind::ZeroPlain;
    return host_offset() ? ClusterKind::Normal : ClusterKind::Unallocated;
  }

  // Extended L2: a bitmap no valid image holds (a subcluster both allocated and
  // zero, or allocation bits without a host cluster). qemu refuses to read or
  // write through such an entry; compressed entries are judged only by check.
  bool has_invalid_bitmap(const Geometry& g) const {
    if (!g.extended_l2) return false;
    switch (kind(g)) {
      case ClusterKind::Normal: return (bitmap >> 32) & bitmap;
      case ClusterKind::Unallocated: return bitmap & kAllSubclustersAllocated;
      default: return false;
    }
  }

  // Compressed clusters: the byte offset of the data and how many bytes to read.
  uint64_t compressed_offset(const Geometry& g) const { return word & ((1ull << g.compressed_offset_bits()) - 1); }
  uint64_t compressed_length(const Geometry& g) const {
    uint64_t sectors = ((word & ~kFlagCopied & ~kFlagCompressed) >> g.compressed_offset_bits()) + 1;
    return sectors * 512 - (compressed_offset(g) & 511);
  }

  static L2Entry compressed_descriptor(const Geometry& g, uint64_t offset, uint64_t length) {
    uint64_t extra_sectors = ((offset + length - 1) >> 9) - (offset >> 9);
    return L2Entry{kFlagCompressed | offset | (extra_sectors << g.compressed_offset_bits()), 0};
  }
};

// Bits of the extended-L2 allocation bitmap for subclusters overlapping [lo, hi) of a cluster.
inline uint64_t subcluster_mask(const Geometry& g, uint64_t lo, uint64_t hi) {
  const uint64_t first = lo / g.subcluster_size;
  const uint64_t last = (hi - 1) / g.subcluster_size;
  return ((last - first == 31) ? kAllSubclustersAllocated : ((1ull << (last - first + 1)) - 1)) << first;
}

// How a subcluster (or, without extended L2, the whole cluster) reads.
enum class SubclusterKind { Unallocated, Zero, Data, Compressed };

inline SubclusterKind subcluster_kind(const L2Entry& e, const Geometry& g, unsigned index) {
  switch (e.kind(g)) {
    case ClusterKind::Compressed: return SubclusterKind::Compressed;
    case ClusterKind::ZeroPlain:
    case ClusterKind::ZeroAlloc: return SubclusterKind::Zero;
    case ClusterKind::Unallocated:
      if (g.extended_l2 && (e.bitmap >> (32 + index) & 1)) return SubclusterKind::Zero;
      return SubclusterKind::Unallocated;
    case ClusterKind::Normal:
      if (!g.extended_l2) return SubclusterKind::Data;
      if (e.bitmap >> index & 1) return SubclusterKind::Data;
      if (e.bitmap >> (32 + index) & 1) return SubclusterKind::Zero;
      return SubclusterKind::Unallocated;
  }
  return SubclusterKind::Unallocated;
}

}  // namespace keel::qcow2
