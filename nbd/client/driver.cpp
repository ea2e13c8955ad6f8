// The nbd protocol driver's registration: every NBD name form qemu reads, and nbds (TLS).
#include <array>

#include "block/protocol.h"
#include "nbd/client/nbd_node.h"

namespace keel::nbd::client {

namespace {

constexpr std::array<std::string_view, 6> kPrefixes = {"nbd", "nbd+tcp", "nbd+unix", "nbds", "nbds+tcp",
                                                        "nbds+unix"};

const block::ProtocolDriver kDriver{
    .name = "nbd",
    .prefixes = kPrefixes,
    .open = [](const std::string& name, const block::OpenOptions& options) -> std::unique_ptr<block::BlockNode> {
      return NbdNode::open(name, options);
    },
};

const block::ProtocolRegistration kRegistration(kDriver);

}  // namespace

}  // namespace keel::nbd::client
