// What one step of a qcow2 guest write does with the clusters it covers.
// The plan is decided under the metadata lock from the L2 entries alone; the
// write path then carries it out: the data (and the copy-on-write edges
// around it) goes to the file with the lock released, the L2 entries change
// once it is there. One plan covers one run of clusters that share a kind,
// from the start of the write: after it, the lock has been released and the
// entries beyond may have changed, so the rest is planned afresh.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "formats/qcow2/layout.h"

namespace keel::qcow2 {

// Bytes around the guest's data in what a step writes, filled with what they
// read before: the backing chain's data, or zeros. Offsets count from the
// start of the run's first cluster.
struct CowEdge {
  uint64_t begin = 0;
  uint64_t end = 0;
  bool from_backing = false;  // the old (sub)cluster left these bytes to the backing chain

  uint64_t length() const { return end - begin; }
};

struct AllocationPlan {
  enum class Kind {
    // Clusters of this image alone, contiguous on the host: write there.
    InPlace,
    // Clusters without a host cluster: a new contiguous run, padded to whole
    // clusters (whole subclusters with extended L2) by copy-on-write edges.
    Allocate,
    // Extended L2: one cluster of this image's own where some written
    // subclusters are unallocated: write in place, whole subclusters where
    // they held no data, then mark them allocated.
    Subclusters,
    // One compressed cluster, shared with a snapshot, or zeroed with its host
    // cluster kept: a new cluster with the old contents under the new data.
    Copy,
  };

  Kind kind = Kind::InPlace;
  uint64_t offset = 0;         // the guest bytes [offset, end) this step writes
  uint64_t end = 0;
  uint64_t first_cluster = 0;  // guest cluster index where the run starts
  std::vector<L2Entry> old;    // the run's L2 entries as planned, one a cluster
  // What goes to the file, from the start of the run's first cluster: the
  // guest's data with the edges either side of it.
  uint64_t write_begin = 0;
  uint64_t write_end = 0;
  CowEdge head;
  CowEdge tail;

  uint64_t clusters() const { return old.size(); }
  uint64_t length() const { return end - offset; }
  // Whether the step gives its clusters new host clusters (Allocate, Copy).
  bool allocates() const { return kind == Kind::Allocate || kind == Kind::Copy; }
  // Where the guest's data starts, from the start of the run's first cluster.
  uint64_t data_begin(const Geometry& geo) const { return offset - (first_cluster << geo.cluster_bits); }
  // The new L2 entry of the run's cluster `i` once its host cluster is `host` (Allocate, Copy).
  L2Entry new_entry(const Geometry& geo, uint64_t i, uint64_t host) const;
  // Subclusters: `now`, the cluster's entry after the data is written, with the written subclusters allocated.
  L2Entry with_written_subclusters(const Geometry& geo, L2Entry now) const;
};

// The L2 entry of a guest cluster (by index). It may raise on an entry the
// write path must refuse; it is asked only for the clusters the plan looks at.
using L2EntryReader = std::function<L2Entry(uint64_t cluster)>;

// Plans the step of a write of guest bytes [offset, end), a range within one
// L2 table: the run of clusters from `offset` that share one kind.
AllocationPlan plan_allocation(const Geometry& geo, uint64_t offset, uint64_t end, const L2EntryReader& entry);

}  // namespace keel::qcow2
