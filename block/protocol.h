// The registry of protocol drivers other than file: a name such as
// "nbd://host/x" or "nbd:unix:/s" is opened by the driver that registered its
// prefix (the part before the first ':'), and the format is probed or opened
// on top of the node it returns, as for a local file. Drivers register
// themselves with a static ProtocolRegistration (nbd/client/driver.cpp), so
// the block core names no protocol and includes nothing from above it.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "block/node.h"

namespace keel::block {

struct OpenOptions;

struct ProtocolDriver {
  std::string_view name;  // the driver's name, as qemu's file.driver would take it ("nbd")
  // Name prefixes the driver opens: "nbd" for "nbd:...", "nbd+unix" for "nbd+unix://...".
  std::span<const std::string_view> prefixes;
  // Opens the protocol node for the whole name; raises with the reason only
  // (the tools add "Could not open 'name': ").
  std::unique_ptr<BlockNode> (*open)(const std::string& name, const OpenOptions& options);
};

// A static ProtocolRegistration in a driver's file adds the driver before main() runs.
struct ProtocolRegistration {
  explicit ProtocolRegistration(const ProtocolDriver& driver);
};

// The driver registered for `prefix` ("nbd+unix"), or nullptr.
const ProtocolDriver* find_protocol(std::string_view prefix);
// The driver registered for the protocol `name` starts with, or nullptr (a local file, file:, json:, unknown).
const ProtocolDriver* protocol_driver_for(const std::string& name);

}  // namespace keel::block
