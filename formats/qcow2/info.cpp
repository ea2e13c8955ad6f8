// What `info` reports about a qcow2 image: the fields of qemu's ImageInfo and
// ImageInfoSpecificQCow2, the latter in the order qemu 7.2 prints them.
#include <algorithm>

#include "formats/qcow2/qcow2_node.h"

namespace keel::qcow2 {

namespace {

block::InfoValue bitmap_info(const BitmapInfo& b) {
  block::InfoList flags;
  if (b.in_use) flags.push_back({std::string("in-use")});
  if (b.auto_flag) flags.push_back({std::string("auto")});
  return {
      block::InfoFields{{"flags", {std::move(flags)}}, {"name", {b.name}}, {"granularity", {uint64_t{b.granularity}}}}};
}

}  // namespace

block::FormatInfo Qcow2Node::format_info() const {
  block::FormatInfo info;
  info.cluster_size = geo_.cluster_size;
  info.encrypted = header_.crypt_method != 0;
  if (!header_.backing_file.empty()) {
    info.backing_filename = header_.backing_file;
    info.backing_format = header_.backing_format();
  }
  for (const Snapshot& s : snapshots_.snapshots)
    info.snapshots.push_back({.id = s.id,
                              .name = s.name,
                              .vm_state_size = s.vm_state_size,
                              .date_sec = s.date_sec,
                              .date_nsec = s.date_nsec,
                              .vm_clock_nsec = s.vm_clock_nsec,
                              .icount = s.icount});
  info.specific_type = "qcow2";
  block::InfoFields& data = info.specific;
  data.push_back({"compat", {std::string(header_.version >= 3 ? "1.1" : "0.10")}});
  data.push_back(
      {"compression-type", {std::string(header_.compression_type == CompressionType::Zstd ? "zstd" : "zlib")}});
  if (header_.version >= 3) {
    data.push_back({"lazy-refcounts", {bool(header_.compatible_features & kCompatLazyRefcounts)}});
    if (!bitmaps_.empty()) {
      block::InfoList list;
      for (const BitmapInfo& b : bitmaps_) list.push_back(bitmap_info(b));
      data.push_back({"bitmaps", {std::move(list)}});
    }
  }
  data.push_back({"refcount-bits", {uint64_t{header_.refcount_bits()}}});
  if (header_.crypt_method == kCryptAes)
    data.push_back({"encrypt", {block::InfoFields{{"format", {std::string("aes")}}}}});
  if (auto file = header_.data_file()) data.push_back({"data-file", {*file}});
  if (header_.incompatible_features & kIncompatDataFile)
    data.push_back({"data-file-raw", {bool(header_.autoclear_features & kAutoclearDataFileRaw)}});
  if (header_.version >= 3) {
    data.push_back({"corrupt", {bool(header_.incompatible_features & kIncompatCorrupt) || corrupt_}});
    data.push_back({"extended-l2", {header_.extended_l2()}});
  }
  info.dirty = (header_.incompatible_features & kIncompatDirty) != 0;
  return info;
}

block::Limits Qcow2Node::limits() const {
  const block::Limits file = file_->limits();
  return {.request_alignment = 1,
          .max_transfer = file.max_transfer,
          .discard_granularity = static_cast<uint32_t>(geo_.cluster_size),
          .zero_granularity = static_cast<uint32_t>(geo_.subcluster_size),
          .can_zero = true,
          .can_fast_zero = header_.version >= 3,
          .can_trim = true,
          .can_fua = true,
          .can_multi_conn = true,
          .is_rotational = file.is_rotational,
          .zero_init = true};
}

}  // namespace keel::qcow2
