#include "block/image_info.h"

#include <fmt/format.h>

#include <cctype>
#include <ctime>

#include "base/units.h"
#include "block/backing.h"

namespace keel::block {

namespace {

void dump_value(std::string& out, const nlohmann::ordered_json& value, int indent);

std::string scalar_text(const nlohmann::ordered_json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

void dump_entry(std::string& out, const std::string& label, const nlohmann::ordered_json& v, int indent) {
  if (v.is_object() || v.is_array()) {
    out += fmt::format("{:{}}{}:\n", "", indent, label);
    dump_value(out, v, indent + 4);
  } else {
    out += fmt::format("{:{}}{}: {}\n", "", indent, label, scalar_text(v));
  }
}

// qemu's dump_qobject(): dict keys with '-' shown as ' ', lists as "[i]:".
void dump_value(std::string& out, const nlohmann::ordered_json& value, int indent) {
  if (value.is_object()) {
    for (const auto& [key, v] : value.items()) {
      std::string label = key;
      for (char& c : label)
        if (c == '-') c = ' ';
      dump_entry(out, label, v, indent);
    }
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); i++) dump_entry(out, fmt::format("[{}]", i), value[i], indent);
  }
}

// printf's "%-*s": padded to a width in bytes, not in displayed characters.
std::string pad_bytes(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

// Names in images (snapshots, bitmaps, backing files) are untrusted bytes:
// invalid UTF-8 is replaced, not fatal. As qemu's JSON writer, everything
// outside printable ASCII is a \uXXXX escape, with upper-case hex digits.
std::string dump_scalar(const nlohmann::ordered_json& v) {
  const std::string text = v.dump(-1, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] == '\x7f') {
      out += "\\u007F";
    } else if (text[i] == '\\' && i + 1 < text.size()) {
      const bool unicode = text[i + 1] == 'u';
      out += text.substr(i, unicode ? 6 : 2);
      if (unicode)
        for (size_t j = out.size() - 4; j < out.size(); j++)
          out[j] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[j])));
      i += unicode ? 5 : 1;
    } else {
      out += text[i];
    }
  }
  return out;
}

void pretty(std::string& out, const nlohmann::ordered_json& v, int indent) {
  if (v.is_object() && !v.empty()) {
    out += "{\n";
    size_t i = 0;
    for (const auto& [key, child] : v.items()) {
      out += fmt::format("{:{}}{}: ", "", indent + 4, dump_scalar(nlohmann::ordered_json(key)));
      pretty(out, child, indent + 4);
      out += ++i < v.size() ? ",\n" : "\n";
    }
    out += fmt::format("{:{}}}}", "", indent);
  } else if (v.is_array() && !v.empty()) {
    out += "[\n";
    for (size_t i = 0; i < v.size(); i++) {
      out += fmt::format("{:{}}", "", indent + 4);
      pretty(out, v[i], indent + 4);
      out += i + 1 < v.size() ? ",\n" : "\n";
    }
    out += fmt::format("{:{}}]", "", indent);
  } else if (v.is_object() || v.is_array()) {
    out += fmt::format("{}\n{:{}}{}", v.is_object() ? '{' : '[', "", indent, v.is_object() ? '}' : ']');
  } else {
    out += dump_scalar(v);
  }
}

}  // namespace

std::string format_json_pretty(const nlohmann::ordered_json& value) {
  std::string out;
  pretty(out, value, 0);
  return out;
}

nlohmann::ordered_json image_info(const BlockNode& node) {
  nlohmann::ordered_json specific = nlohmann::ordered_json::object();
  node.describe(specific);
  nlohmann::ordered_json info;
  auto take = [&](const char* key) {
    if (specific.contains(key)) info[key] = specific[key];
  };
  take("backing-filename-format");
  take("snapshots");
  info["virtual-size"] = node.size();
  info["filename"] = node.filename();
  take("cluster-size");
  info["format"] = node.format_name();
  if (auto actual = node.allocated_size()) info["actual-size"] = *actual;
  take("format-specific");
  take("encrypted");
  if (specific.contains("backing-filename")) {
    const std::string backing = specific["backing-filename"];
    info["full-backing-filename"] = combine_paths(node.filename(), backing);
    info["backing-filename"] = backing;
  }
  info["dirty-flag"] = specific.value("dirty-flag", false);
  return info;
}

std::string format_image_info_human(const nlohmann::ordered_json& info) {
  std::string out;
  const uint64_t size = info["virtual-size"];
  out += fmt::format("image: {}\n", info["filename"].get<std::string>());
  out += fmt::format("file format: {}\n", info["format"].get<std::string>());
  out += fmt::format("virtual size: {} ({} bytes)\n", format_size(size), size);
  if (info.contains("actual-size"))
    out += fmt::format("disk size: {}\n", format_size(info["actual-size"]));
  else
    out += "disk size: unavailable\n";
  if (info.value("encrypted", false)) out += "encrypted: yes\n";
  if (info.contains("cluster-size")) out += fmt::format("cluster_size: {}\n", info["cluster-size"].get<uint64_t>());
  if (info.value("dirty-flag", false)) out += "cleanly shut down: no\n";
  if (info.contains("backing-filename")) {
    const std::string backing = info["backing-filename"];
    const std::string full = info.value("full-backing-filename", backing);
    out += fmt::format("backing file: {}", backing);
    if (full != backing) out += fmt::format(" (actual path: {})", full);
    out += "\n";
    if (info.contains("backing-filename-format"))
      out += fmt::format("backing file format: {}\n", info["backing-filename-format"].get<std::string>());
  }
  if (info.contains("snapshots")) {
    out += "Snapshot list:\n";
    out += fmt::format("{:<10}{:<17}{:>8}{:>20}{:>13}{:>11}\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for (const auto& s : info["snapshots"]) {
      std::time_t t = s["date-sec"].get<int64_t>();
      std::tm tm{};
      localtime_r(&t, &tm);
      char date[32];
      std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
      const uint64_t secs = s["vm-clock-sec"];
      const uint64_t nsec = s["vm-clock-nsec"];
      const std::string clock =
          fmt::format("{:02}:{:02}:{:02}.{:03}", secs / 3600, (secs / 60) % 60, secs % 60, nsec / 1000000);
      const std::string icount = s.contains("icount") ? std::to_string(s["icount"].get<uint64_t>()) : "";
      out += fmt::format("{} {} {:>8}{:>20}{:>13}{:>11}\n", pad_bytes(s["id"].get<std::string>(), 9),
                         pad_bytes(s["name"].get<std::string>(), 16), format_size(s["vm-state-size"]), date, clock,
                         icount);
    }
  }
  out += format_specific_info_human(info);
  return out;
}

std::string format_specific_info_human(const nlohmann::ordered_json& info) {
  std::string out;
  if (info.contains("format-specific")) {
    out += "Format specific information:\n";
    dump_value(out, info["format-specific"]["data"], 4);
  }
  return out;
}

}  // namespace keel::block
