// What `info` reports about a qcow2 image: the fields of qemu's ImageInfo and
// ImageInfoSpecificQCow2, in the order qemu 7.2 prints them.
#include "formats/qcow2/qcow2_node.h"

namespace keel::qcow2 {

void Qcow2Node::describe(nlohmann::ordered_json& info) const {
  info["cluster-size"] = geo_.cluster_size;
  if (header_.crypt_method) info["encrypted"] = true;
  if (!header_.backing_file.empty()) {
    info["backing-filename"] = header_.backing_file;
    if (auto format = header_.backing_format()) info["backing-filename-format"] = *format;
  }
  if (!snapshots_.snapshots.empty()) {
    auto list = nlohmann::ordered_json::array();
    for (const Snapshot& s : snapshots_.snapshots) {
      nlohmann::ordered_json j;
      if (s.icount) j["icount"] = *s.icount;
      j["vm-clock-nsec"] = s.vm_clock_nsec % 1000000000;
      j["name"] = s.name;
      j["date-sec"] = s.date_sec;
      j["date-nsec"] = s.date_nsec;
      j["vm-clock-sec"] = s.vm_clock_nsec / 1000000000;
      j["id"] = s.id;
      j["vm-state-size"] = s.vm_state_size;
      list.push_back(std::move(j));
    }
    info["snapshots"] = std::move(list);
  }
  nlohmann::ordered_json data;
  data["compat"] = header_.version >= 3 ? "1.1" : "0.10";
  data["compression-type"] = header_.compression_type == CompressionType::Zstd ? "zstd" : "zlib";
  if (header_.version >= 3) {
    data["lazy-refcounts"] = bool(header_.compatible_features & kCompatLazyRefcounts);
    if (!bitmaps_.empty()) {
      auto list = nlohmann::ordered_json::array();
      for (const BitmapInfo& b : bitmaps_) {
        auto flags = nlohmann::ordered_json::array();
        if (b.in_use) flags.push_back("in-use");
        if (b.auto_flag) flags.push_back("auto");
        list.push_back({{"flags", flags}, {"name", b.name}, {"granularity", b.granularity}});
      }
      data["bitmaps"] = std::move(list);
    }
  }
  data["refcount-bits"] = header_.refcount_bits();
  if (header_.crypt_method == kCryptAes) data["encrypt"] = {{"format", "aes"}};
  if (auto file = header_.data_file()) data["data-file"] = *file;
  if (header_.incompatible_features & kIncompatDataFile)
    data["data-file-raw"] = bool(header_.autoclear_features & kAutoclearDataFileRaw);
  if (header_.version >= 3) {
    data["corrupt"] = bool(header_.incompatible_features & kIncompatCorrupt) || corrupt_;
    data["extended-l2"] = header_.extended_l2();
  }
  info["format-specific"] = {{"type", "qcow2"}, {"data", std::move(data)}};
  info["dirty-flag"] = bool(header_.incompatible_features & kIncompatDirty);
}

}  // namespace keel::qcow2
