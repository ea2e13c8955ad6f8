#include "tools/keel-nbd/list_mode.h"

#include <cstdio>

#include "base/error.h"
#include "nbd/client/export_list.h"
#include "nbd/protocol.h"

namespace keel::nbdtool {

namespace {

// qemu-nbd's names for the transmission flags, in bit order.
std::string flag_names(uint16_t flags) {
  namespace tf = nbd::transmission_flag;
  const std::pair<uint16_t, const char*> names[] = {
      {tf::kReadOnly, "readonly"}, {tf::kSendFlush, "flush"}, {tf::kSendFua, "fua"},
      {tf::kRotational, "rotational"}, {tf::kSendTrim, "trim"}, {tf::kSendWriteZeroes, "zeroes"},
      {tf::kSendDf, "df"}, {tf::kCanMultiConn, "multi"}, {tf::kSendResize, "resize"},
      {tf::kSendCache, "cache"}, {tf::kSendFastZero, "fast-zero"},
  };
  std::string out;
  for (const auto& [flag, name] : names)
    if (flags & flag) out += std::string(" ") + name;
  return out;
}

// The client credentials --tls-creds names, worded as qemu-nbd's errors.
const nbd::TlsCredentials* client_credentials(const CommandLine& cl) {
  if (!cl.tls_creds) return nullptr;
  for (const nbd::TlsObject& object : cl.objects.tls) {
    if (object.id != *cl.tls_creds) continue;
    if (object.server_endpoint)
      raise(EINVAL, "Failed to get TLS creds: Expected TLS credentials for a client endpoint");
    return &object.credentials;
  }
  raise(ENOENT, "Failed to get TLS creds: No TLS credentials with id '{}'", *cl.tls_creds);
}

}  // namespace

int list_exports(const CommandLine& cl) {
  nbd::client::NbdAddress server;
  if (cl.socket_path) {
    server.is_unix = true;
    server.socket = *cl.socket_path;
  } else {
    server.host = cl.bind;
    server.port = cl.port;
  }
  const auto exports = nbd::client::list_exports(server, client_credentials(cl), cl.tls_hostname.value_or(""));
  std::printf("exports available: %zu\n", exports.size());
  for (const auto& e : exports) {
    std::printf(" export: '%s'\n", e.name.c_str());
    if (!e.description.empty()) std::printf("  description: %s\n", e.description.c_str());
    std::printf("  size:  %llu\n", static_cast<unsigned long long>(e.size));
    std::printf("  flags: 0x%x (%s )\n", e.transmission_flags, flag_names(e.transmission_flags).c_str());
    if (e.min_block) {
      std::printf("  min block: %u\n", e.min_block);
      std::printf("  opt block: %u\n", e.preferred_block);
      std::printf("  max block: %u\n", e.max_block);
    }
    if (!e.meta_contexts.empty()) {
      std::printf("  available meta contexts: %zu\n", e.meta_contexts.size());
      for (const auto& c : e.meta_contexts) std::printf("   %s\n", c.c_str());
    }
  }
  return 0;
}

}  // namespace keel::nbdtool
