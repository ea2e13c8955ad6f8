#include "formats/qcow2/allocation_plan.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

using namespace keel::qcow2;
using Kind = AllocationPlan::Kind;

namespace {

constexpr uint64_t kCluster = 64 * 1024;
constexpr uint64_t kSub = kCluster / 32;  // with extended L2

Geometry geometry(bool extended_l2) {
  Header h;
  h.cluster_bits = 16;
  if (extended_l2) h.incompatible_features |= kIncompatExtendedL2;
  return Geometry(h);
}

// L2 entries by guest cluster (unallocated where not given), and which ones the planner asked for.
struct Table {
  std::map<uint64_t, L2Entry> entries;
  std::vector<uint64_t> asked;

  AllocationPlan plan(const Geometry& geo, uint64_t offset, uint64_t end) {
    return plan_allocation(geo, offset, end, [this](uint64_t cluster) {
      asked.push_back(cluster);
      auto it = entries.find(cluster);
      return it == entries.end() ? L2Entry{} : it->second;
    });
  }
};

L2Entry owned(uint64_t host, uint64_t bitmap = 0) { return L2Entry{host | kFlagCopied, bitmap}; }

}  // namespace

TEST(AllocationPlan, UnallocatedClustersBecomeOneRunPaddedToWholeClusters) {
  const Geometry geo = geometry(false);
  Table t;
  t.entries[4] = owned(0x50000);
  const AllocationPlan p = t.plan(geo, 1000, 6 * kCluster);
  EXPECT_EQ(p.kind, Kind::Allocate);
  EXPECT_EQ(p.clusters(), 4u);  // stops at the allocated cluster 4
  EXPECT_EQ(p.end, 4 * kCluster);
  EXPECT_EQ(p.write_begin, 0u);
  EXPECT_EQ(p.write_end, 4 * kCluster);
  EXPECT_EQ(p.head.begin, 0u);
  EXPECT_EQ(p.head.end, 1000u);
  EXPECT_TRUE(p.head.from_backing);
  EXPECT_EQ(p.tail.length(), 0u);
  EXPECT_FALSE(p.tail.from_backing);
  EXPECT_EQ(t.asked, (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(p.new_entry(geo, 2, 0x100000).word, (0x100000 + 2 * kCluster) | kFlagCopied);
}

TEST(AllocationPlan, ZeroClustersAreAllocatedWithEdgesThatReadZeros) {
  const Geometry geo = geometry(false);
  Table t;
  t.entries[0] = L2Entry{kFlagZero, 0};
  const AllocationPlan p = t.plan(geo, 100, 200);
  EXPECT_EQ(p.kind, Kind::Allocate);
  EXPECT_EQ(p.end, 200u);
  EXPECT_FALSE(p.head.from_backing);
  EXPECT_EQ(p.tail.begin, 200u);
  EXPECT_EQ(p.tail.end, kCluster);
  EXPECT_FALSE(p.tail.from_backing);
}

TEST(AllocationPlan, InPlaceRunsEndWhereHostClustersStopBeingContiguous) {
  const Geometry geo = geometry(false);
  Table t;
  t.entries[0] = owned(0x50000);
  t.entries[1] = owned(0x60000);
  t.entries[2] = owned(0x90000);
  const AllocationPlan p = t.plan(geo, 10, 3 * kCluster);
  EXPECT_EQ(p.kind, Kind::InPlace);
  EXPECT_EQ(p.clusters(), 2u);
  EXPECT_EQ(p.end, 2 * kCluster);
  EXPECT_EQ(p.write_begin, 10u);
  EXPECT_EQ(p.write_end, 2 * kCluster);
}

TEST(AllocationPlan, CompressedAndSharedClustersAreCopiedOneAtATime) {
  const Geometry geo = geometry(false);
  Table t;
  t.entries[0] = L2Entry::compressed_descriptor(geo, 0x70000, 300);
  t.entries[1] = L2Entry{0x80000, 0};  // no COPIED flag: shared with a snapshot
  const AllocationPlan compressed = t.plan(geo, 0, 2 * kCluster);
  EXPECT_EQ(compressed.kind, Kind::Copy);
  EXPECT_EQ(compressed.clusters(), 1u);
  EXPECT_EQ(compressed.write_begin, 0u);
  EXPECT_EQ(compressed.write_end, kCluster);
  EXPECT_EQ(t.asked, (std::vector<uint64_t>{0}));  // the entry beyond is not looked at
  const AllocationPlan shared = t.plan(geo, kCluster + 5, 2 * kCluster);
  EXPECT_EQ(shared.kind, Kind::Copy);
  EXPECT_EQ(shared.new_entry(geo, 0, 0xa0000).word, 0xa0000 | kFlagCopied);
}

TEST(AllocationPlan, UnallocatedSubclustersOfAnOwnedClusterAreWrittenInPlaceWhole) {
  const Geometry geo = geometry(true);
  Table t;
  // Subcluster 0 holds data, 2 is unallocated, 3 reads as zeros.
  t.entries[0] = owned(0x50000, (1ull << 0) | (1ull << (32 + 3)));
  const AllocationPlan p = t.plan(geo, 2 * kSub + 100, 3 * kSub + 50);
  EXPECT_EQ(p.kind, Kind::Subclusters);
  EXPECT_EQ(p.write_begin, 2 * kSub);
  EXPECT_EQ(p.write_end, 4 * kSub);
  EXPECT_TRUE(p.head.from_backing);
  EXPECT_EQ(p.head.end, 2 * kSub + 100);
  EXPECT_FALSE(p.tail.from_backing);
  EXPECT_EQ(p.tail.begin, 3 * kSub + 50);
  const L2Entry after = p.with_written_subclusters(geo, t.entries[0]);
  EXPECT_EQ(after.bitmap, (1ull << 0) | (1ull << 2) | (1ull << 3));  // 3's zero bit cleared
}

TEST(AllocationPlan, WritesWithinAllocatedSubclustersStayInPlace) {
  const Geometry geo = geometry(true);
  Table t;
  t.entries[0] = owned(0x50000, 0b110);
  const AllocationPlan p = t.plan(geo, kSub + 1, 3 * kSub);
  EXPECT_EQ(p.kind, Kind::InPlace);
}

TEST(AllocationPlan, NewExtendedClustersAllocateOnlyTheWrittenSubclusters) {
  const Geometry geo = geometry(true);
  Table t;
  t.entries[0] = L2Entry{0, kAllSubclustersZero};
  const AllocationPlan p = t.plan(geo, 3 * kSub + 7, 4 * kSub + 1);
  EXPECT_EQ(p.kind, Kind::Allocate);
  EXPECT_EQ(p.write_begin, 3 * kSub);
  EXPECT_EQ(p.write_end, 5 * kSub);
  EXPECT_FALSE(p.head.from_backing);  // it read as zeros
  const L2Entry e = p.new_entry(geo, 0, 0x100000);
  EXPECT_EQ(e.bitmap, (0b11ull << 3) | (kAllSubclustersZero & ~(0b11ull << 35)));
}

TEST(AllocationPlan, CopiedExtendedClustersAreWhollyAllocated) {
  const Geometry geo = geometry(true);
  Table t;
  t.entries[0] = L2Entry{0x50000, 0b1};  // shared
  const AllocationPlan p = t.plan(geo, 0, 10);
  EXPECT_EQ(p.kind, Kind::Copy);
  EXPECT_EQ(p.new_entry(geo, 0, 0x100000).bitmap, kAllSubclustersAllocated);
}
