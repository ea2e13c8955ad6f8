#include "tools/common/json_output.h"

#include <fmt/format.h>

#include <cctype>

namespace keel::tools {

namespace {

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

}  // namespace keel::tools
