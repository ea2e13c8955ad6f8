// Image names as qemu reads them: "json:{...}" is a set of open options, a
// name with a colon before any '/' starts with a protocol ("file:disk.img",
// "nbd:host:port"), and anything else ("./a:b", "/x/y:z", "disk.img") is a
// local file. Protocols other than file are opened by their registered driver
// (block/protocol.h); qemu's others are refused by name.
#pragma once

#include <optional>
#include <string>

#include "block/image_options.h"

namespace keel::block {

// The protocol part of `name` ("nbd+unix" of "nbd+unix:///x?socket=s"), when a colon comes before any '/'.
std::optional<std::string> protocol_of(const std::string& name);

// True for "json:{...}".
bool is_json_name(const std::string& name);

// Applies the keys of a "json:{...}" name ("driver", "file.filename",
// "file": {...}, ...) to `options` as apply_image_options() takes them.
void apply_json_name(const std::string& name, ImageOptions& options);

// The local path `name` gives the file protocol: "file:x" is x, a name
// without a protocol is itself, other protocols are refused ("Unknown
// protocol 'x'"; "json" too, as qemu-img create reads it; a registered
// protocol such as nbd has no local path: images are not created over it).
std::string local_path(const std::string& name);

}  // namespace keel::block
