#include "tools/common/image_info_output.h"

#include <fmt/format.h>

#include <ctime>

#include "base/units.h"

namespace keel::tools {

namespace {

using block::InfoFields;
using block::InfoList;
using block::InfoValue;

nlohmann::ordered_json to_json(const InfoValue& v) {
  return std::visit(
      [](const auto& x) -> nlohmann::ordered_json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, InfoList>) {
          auto list = nlohmann::ordered_json::array();
          for (const InfoValue& item : x) list.push_back(to_json(item));
          return list;
        } else if constexpr (std::is_same_v<T, InfoFields>) {
          auto object = nlohmann::ordered_json::object();
          for (const auto& [key, item] : x) object[key] = to_json(item);
          return object;
        } else {
          return x;
        }
      },
      v.value);
}

// qemu's snapshot keys in the order qemu 7.2 prints them.
nlohmann::ordered_json snapshot_json(const block::SnapshotInfo& s) {
  nlohmann::ordered_json j;
  if (s.icount) j["icount"] = *s.icount;
  j["vm-clock-nsec"] = s.vm_clock_nsec % 1000000000;
  j["name"] = s.name;
  j["date-sec"] = s.date_sec;
  j["date-nsec"] = s.date_nsec;
  j["vm-clock-sec"] = s.vm_clock_nsec / 1000000000;
  j["id"] = s.id;
  j["vm-state-size"] = s.vm_state_size;
  return j;
}

void dump_value(std::string& out, const InfoValue& value, int indent);

void dump_entry(std::string& out, const std::string& label, const InfoValue& v, int indent) {
  if (const bool* b = std::get_if<bool>(&v.value)) {
    out += fmt::format("{:{}}{}: {}\n", "", indent, label, *b ? "true" : "false");
  } else if (const uint64_t* n = std::get_if<uint64_t>(&v.value)) {
    out += fmt::format("{:{}}{}: {}\n", "", indent, label, *n);
  } else if (const std::string* s = std::get_if<std::string>(&v.value)) {
    out += fmt::format("{:{}}{}: {}\n", "", indent, label, *s);
  } else {
    out += fmt::format("{:{}}{}:\n", "", indent, label);
    dump_value(out, v, indent + 4);
  }
}

// qemu's dump_qobject(): dict keys with '-' shown as ' ', lists as "[i]:".
void dump_value(std::string& out, const InfoValue& value, int indent) {
  if (const auto* fields = std::get_if<InfoFields>(&value.value)) {
    for (const auto& [key, v] : *fields) {
      std::string label = key;
      for (char& c : label)
        if (c == '-') c = ' ';
      dump_entry(out, label, v, indent);
    }
  } else if (const auto* list = std::get_if<InfoList>(&value.value)) {
    for (size_t i = 0; i < list->size(); i++) dump_entry(out, fmt::format("[{}]", i), (*list)[i], indent);
  }
}

// printf's "%-*s": padded to a width in bytes, not in displayed characters.
std::string pad_bytes(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string snapshot_line(const block::SnapshotInfo& s) {
  std::time_t t = s.date_sec;
  std::tm tm{};
  localtime_r(&t, &tm);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
  const uint64_t secs = s.vm_clock_nsec / 1000000000;
  const uint64_t msec = s.vm_clock_nsec % 1000000000 / 1000000;
  const std::string clock = fmt::format("{:02}:{:02}:{:02}.{:03}", secs / 3600, (secs / 60) % 60, secs % 60, msec);
  const std::string icount = s.icount ? std::to_string(*s.icount) : "";
  return fmt::format("{} {} {:>8}{:>20}{:>13}{:>11}\n", pad_bytes(s.id, 9), pad_bytes(s.name, 16),
                     format_size(s.vm_state_size), date, clock, icount);
}

}  // namespace

nlohmann::ordered_json image_info_json(const block::ImageInfo& info) {
  const block::FormatInfo& f = info.format_info;
  nlohmann::ordered_json j;
  if (f.backing_filename && f.backing_format) j["backing-filename-format"] = *f.backing_format;
  if (!f.snapshots.empty()) {
    auto list = nlohmann::ordered_json::array();
    for (const auto& s : f.snapshots) list.push_back(snapshot_json(s));
    j["snapshots"] = std::move(list);
  }
  j["virtual-size"] = info.virtual_size;
  j["filename"] = info.filename;
  if (f.cluster_size) j["cluster-size"] = *f.cluster_size;
  j["format"] = info.format;
  if (info.actual_size) j["actual-size"] = *info.actual_size;
  if (!f.specific_type.empty())
    j["format-specific"] = {{"type", f.specific_type}, {"data", to_json(InfoValue{f.specific})}};
  if (f.encrypted) j["encrypted"] = true;
  if (f.backing_filename) {
    j["full-backing-filename"] = info.full_backing_filename.value_or(*f.backing_filename);
    j["backing-filename"] = *f.backing_filename;
  }
  if (f.dirty) j["dirty-flag"] = *f.dirty;
  return j;
}

std::string image_info_human(const block::ImageInfo& info) {
  const block::FormatInfo& f = info.format_info;
  std::string out;
  out += fmt::format("image: {}\n", info.filename);
  out += fmt::format("file format: {}\n", info.format);
  out += fmt::format("virtual size: {} ({} bytes)\n", format_size(info.virtual_size), info.virtual_size);
  if (info.actual_size)
    out += fmt::format("disk size: {}\n", format_size(*info.actual_size));
  else
    out += "disk size: unavailable\n";
  if (f.encrypted) out += "encrypted: yes\n";
  if (f.cluster_size) out += fmt::format("cluster_size: {}\n", *f.cluster_size);
  if (f.dirty.value_or(false)) out += "cleanly shut down: no\n";
  if (f.backing_filename) {
    const std::string& backing = *f.backing_filename;
    const std::string full = info.full_backing_filename.value_or(backing);
    out += fmt::format("backing file: {}", backing);
    if (full != backing) out += fmt::format(" (actual path: {})", full);
    out += "\n";
    if (f.backing_format) out += fmt::format("backing file format: {}\n", *f.backing_format);
  }
  if (!f.snapshots.empty()) {
    out += "Snapshot list:\n";
    out += fmt::format("{:<10}{:<17}{:>8}{:>20}{:>13}{:>11}\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for (const auto& s : f.snapshots) out += snapshot_line(s);
  }
  out += format_specific_info_human(info);
  return out;
}

std::string format_specific_info_human(const block::ImageInfo& info) {
  std::string out;
  if (!info.format_info.specific_type.empty()) {
    out += "Format specific information:\n";
    dump_value(out, InfoValue{info.format_info.specific}, 4);
  }
  return out;
}

}  // namespace keel::tools
