#include "formats/qcow2/allocation_plan.h"

#include <algorithm>

#include "base/units.h"

namespace keel::qcow2 {

namespace {

using Kind = AllocationPlan::Kind;

Kind classify(const Geometry& geo, const L2Entry& e, uint64_t cluster, uint64_t offset, uint64_t end) {
  const ClusterKind kind = e.kind(geo);
  if (kind == ClusterKind::Normal && e.copied()) {
    if (!geo.extended_l2) return Kind::InPlace;
    const uint64_t start = cluster << geo.cluster_bits;
    const uint64_t lo = std::max(offset, start) - start;
    const uint64_t hi = std::min(end, start + geo.cluster_size) - start;
    const uint64_t mask = subcluster_mask(geo, lo, hi);
    return (e.bitmap & mask) == mask ? Kind::InPlace : Kind::Subclusters;
  }
  if (kind == ClusterKind::Unallocated || kind == ClusterKind::ZeroPlain) return Kind::Allocate;
  return Kind::Copy;
}

// In-place runs continue only while the host clusters are contiguous, so the run is one write.
bool extends_run(const Geometry& geo, Kind kind, const L2Entry& last, const L2Entry& next) {
  return kind != Kind::InPlace || next.host_offset() == last.host_offset() + geo.cluster_size;
}

// Whether the byte `in_cluster` of a cluster whose entry was `was` read from the backing chain.
bool read_from_backing(const Geometry& geo, const L2Entry& was, uint64_t in_cluster) {
  return subcluster_kind(was, geo, static_cast<unsigned>(in_cluster / geo.subcluster_size)) ==
         SubclusterKind::Unallocated;
}

// The edge subclusters that held no data are written whole: the new bytes
// amid what the subclusters read before (zeros, or the backing file's data).
void plan_subclusters(const Geometry& geo, AllocationPlan& plan) {
  const L2Entry& e = plan.old[0];
  const uint64_t lo = plan.data_begin(geo);
  const uint64_t hi = lo + plan.length();
  const auto first_sc = static_cast<unsigned>(lo / geo.subcluster_size);
  const auto last_sc = static_cast<unsigned>((hi - 1) / geo.subcluster_size);
  const SubclusterKind first_kind = subcluster_kind(e, geo, first_sc);
  const SubclusterKind last_kind = subcluster_kind(e, geo, last_sc);
  plan.write_begin = first_kind == SubclusterKind::Data ? lo : first_sc * geo.subcluster_size;
  plan.write_end = last_kind == SubclusterKind::Data ? hi : (last_sc + 1) * geo.subcluster_size;
  plan.head = {plan.write_begin, lo, first_kind == SubclusterKind::Unallocated};
  plan.tail = {hi, plan.write_end, last_kind == SubclusterKind::Unallocated};
}

// New clusters are padded to whole clusters, or to whole subclusters with
// extended L2 (the bitmap marks the rest unallocated). Whether a pad reads
// through to the backing file depends on the old entry of its own (sub)cluster.
void plan_new_run(const Geometry& geo, AllocationPlan& plan) {
  const uint64_t grain = geo.extended_l2 ? geo.subcluster_size : geo.cluster_size;
  const uint64_t data_begin = plan.data_begin(geo);
  const uint64_t data_end = data_begin + plan.length();
  const uint64_t last_start = (plan.clusters() - 1) * geo.cluster_size;
  plan.write_begin = align_down(data_begin, grain);
  plan.write_end = last_start + align_up(data_end - last_start, grain);
  // An empty tail may start at the end of its cluster: it has no subcluster to ask about.
  plan.head = {plan.write_begin, data_begin, read_from_backing(geo, plan.old.front(), plan.write_begin)};
  plan.tail = {data_end, plan.write_end,
               data_end < plan.write_end && read_from_backing(geo, plan.old.back(), data_end - last_start)};
}

}  // namespace

AllocationPlan plan_allocation(const Geometry& geo, uint64_t offset, uint64_t end, const L2EntryReader& entry) {
  AllocationPlan plan;
  plan.offset = offset;
  plan.first_cluster = offset >> geo.cluster_bits;
  const uint64_t last_cluster = (end - 1) >> geo.cluster_bits;
  plan.old.push_back(entry(plan.first_cluster));
  plan.kind = classify(geo, plan.old[0], plan.first_cluster, offset, end);
  for (uint64_t c = plan.first_cluster + 1; c <= last_cluster; c++) {
    if (plan.kind == Kind::Subclusters || plan.kind == Kind::Copy) break;
    const L2Entry next = entry(c);
    if (classify(geo, next, c, offset, end) != plan.kind || !extends_run(geo, plan.kind, plan.old.back(), next))
      break;
    plan.old.push_back(next);
  }
  plan.end = std::min(end, (plan.first_cluster + plan.clusters()) << geo.cluster_bits);
  switch (plan.kind) {
    case Kind::InPlace:
      plan.write_begin = plan.data_begin(geo);
      plan.write_end = plan.write_begin + plan.length();
      break;
    case Kind::Subclusters: plan_subclusters(geo, plan); break;
    case Kind::Allocate: plan_new_run(geo, plan); break;
    case Kind::Copy:  // the old contents fill the rest of the cluster
      plan.write_begin = 0;
      plan.write_end = geo.cluster_size;
      break;
  }
  return plan;
}

// With extended L2 the written subclusters become allocated; others keep
// their zero bits (and read as zeros or from the backing chain as before).
L2Entry AllocationPlan::new_entry(const Geometry& geo, uint64_t i, uint64_t host) const {
  L2Entry e{(host + i * geo.cluster_size) | kFlagCopied, 0};
  if (!geo.extended_l2) return e;
  const uint64_t start = i * geo.cluster_size;
  const uint64_t lo = std::max(write_begin, start) - start;
  const uint64_t hi = std::min(write_end, start + geo.cluster_size) - start;
  const uint64_t allocated = subcluster_mask(geo, lo, hi);
  e.bitmap = allocated | ((old[i].bitmap & kAllSubclustersZero) & ~(allocated << 32));
  return e;
}

L2Entry AllocationPlan::with_written_subclusters(const Geometry& geo, L2Entry now) const {
  const uint64_t lo = data_begin(geo);
  const uint64_t allocated = subcluster_mask(geo, lo, lo + length());
  now.bitmap = (now.bitmap | allocated) & ~(allocated << 32);
  return now;
}

}  // namespace keel::qcow2
