#include "block/image_name.h"

#include <array>
#include <nlohmann/json.hpp>
#include <string_view>

#include "base/error.h"
#include "block/protocol.h"

namespace keel::block {

namespace {

constexpr std::string_view kJsonPrefix = "json:";

// Protocols qemu has and keel does not (yet): named as unsupported rather than unknown.
constexpr std::array<std::string_view, 21> kQemuProtocols = {
    "http",        "https",      "ftp",      "ftps",     "ssh",      "gluster", "gluster+tcp",
    "gluster+unix", "gluster+rdma", "iscsi", "iser",     "nfs",      "rbd",     "null-co",
    "null-aio",    "nvme",       "vvfat",    "host_device", "host_cdrom", "blkdebug", "blkverify"};

// The path a "proto:rest" name gives the file protocol.
std::string protocol_path(const std::string& name, const std::string& protocol) {
  if (protocol == "file") {
    // What follows is a path even when it looks like a protocol; qemu names it "./file:x" then.
    const std::string path = name.substr(protocol.size() + 1);
    return protocol_of(path) ? "./" + path : path;
  }
  if (const ProtocolDriver* driver = find_protocol(protocol))
    raise(ENOTSUP, "Creating images over the '{}' protocol is not supported by keel yet", driver->name);
  for (std::string_view known : kQemuProtocols)
    if (protocol == known)
      raise(ENOTSUP, "Protocol '{}' is not supported by keel yet: only local files can be opened", protocol);
  raise(EINVAL, "Unknown protocol '{}'", protocol);
}

// Nested objects become dotted keys ({"file": {"filename": "x"}} is file.filename=x),
// as qemu flattens its JSON options.
void flatten(const nlohmann::json& object, const std::string& prefix, std::string& list) {
  for (const auto& [key, value] : object.items()) {
    const std::string name = prefix + key;
    if (value.is_object()) {
      flatten(value, name + ".", list);
      continue;
    }
    std::string text;
    if (value.is_string())
      text = value.get<std::string>();
    else if (value.is_boolean())
      text = value.get<bool>() ? "on" : "off";
    else if (value.is_number())
      text = value.dump();
    else
      raise(EINVAL, "Invalid JSON value for option '{}'", name);
    std::string escaped;
    for (char c : text) escaped += c == ',' ? std::string(",,") : std::string(1, c);
    list += (list.empty() ? "" : ",") + name + "=" + escaped;
  }
}

void apply_json(std::string_view text, ImageOptions& options) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
    raise(EINVAL, "Could not parse the JSON options: Expecting a JSON value");
  nlohmann::json object;
  try {
    object = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann reports the end of input as byte size + 1.
    const bool at_end = e.byte > text.size();
    raise(EINVAL, "Could not parse the JSON options: JSON parse error, {}", at_end ? "premature EOI" : "invalid JSON");
  }
  if (!object.is_object()) raise(EINVAL, "Invalid JSON object given");
  std::string list;
  flatten(object, "", list);
  if (!list.empty()) apply_image_options(list, options);
}

}  // namespace

std::optional<std::string> protocol_of(const std::string& name) {
  const size_t end = name.find_first_of(":/");
  if (end == std::string::npos || name[end] != ':') return std::nullopt;
  return name.substr(0, end);
}

bool is_json_name(const std::string& name) { return name.starts_with(kJsonPrefix); }

void apply_json_name(const std::string& name, ImageOptions& options) {
  apply_json(std::string_view(name).substr(kJsonPrefix.size()), options);
}

std::string local_path(const std::string& name) {
  const auto protocol = protocol_of(name);
  return protocol ? protocol_path(name, *protocol) : name;
}

}  // namespace keel::block
