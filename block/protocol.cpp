#include "block/protocol.h"

#include <algorithm>

#include "block/image_name.h"

namespace keel::block {

namespace {

std::vector<const ProtocolDriver*>& registry() {
  static std::vector<const ProtocolDriver*> drivers;
  return drivers;
}

}  // namespace

ProtocolRegistration::ProtocolRegistration(const ProtocolDriver& driver) { registry().push_back(&driver); }

const ProtocolDriver* find_protocol(std::string_view prefix) {
  for (const ProtocolDriver* driver : registry())
    if (std::find(driver->prefixes.begin(), driver->prefixes.end(), prefix) != driver->prefixes.end()) return driver;
  return nullptr;
}

const ProtocolDriver* protocol_driver_for(const std::string& name) {
  const auto protocol = protocol_of(name);
  return protocol ? find_protocol(*protocol) : nullptr;
}

}  // namespace keel::block
