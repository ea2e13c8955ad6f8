#include "nbd/client/export_list.h"

#include <libnbd.h>

#include <memory>

#include "base/error.h"
#include "nbd/client/tls_client.h"
#include "nbd/protocol.h"

namespace keel::nbd::client {

namespace {

struct HandleCloser {
  void operator()(nbd_handle* h) const noexcept { nbd_close(h); }
};
using Handle = std::unique_ptr<nbd_handle, HandleCloser>;

[[noreturn]] void raise_libnbd(std::string_view what) {
  const int code = nbd_get_errno();
  raise(code ? code : EIO, "{}: {}", what, nbd_get_error());
}

// libnbd's callbacks are C: they only record, and never throw.
int on_export(void* user, const char* name, const char* description) noexcept {
  try {
    static_cast<std::vector<ListedExport>*>(user)->push_back({.name = name, .description = description});
  } catch (...) {
    return -1;
  }
  return 0;
}

int on_context(void* user, const char* name) noexcept {
  try {
    static_cast<std::vector<std::string>*>(user)->emplace_back(name);
  } catch (...) {
    return -1;
  }
  return 0;
}

uint16_t flags_of(nbd_handle* h) {
  namespace tf = transmission_flag;
  uint16_t flags = tf::kHasFlags;
  const std::pair<int (*)(nbd_handle*), uint16_t> known[] = {
      {nbd_is_read_only, tf::kReadOnly},       {nbd_can_flush, tf::kSendFlush},   {nbd_can_fua, tf::kSendFua},
      {nbd_is_rotational, tf::kRotational},    {nbd_can_trim, tf::kSendTrim},     {nbd_can_zero, tf::kSendWriteZeroes},
      {nbd_can_df, tf::kSendDf},               {nbd_can_multi_conn, tf::kCanMultiConn},
      {nbd_can_cache, tf::kSendCache},         {nbd_can_fast_zero, tf::kSendFastZero},
  };
  for (const auto& [ask, flag] : known)
    if (ask(h) > 0) flags |= flag;
  return flags;
}

uint32_t block_size(nbd_handle* h, int which) {
  const int64_t v = nbd_get_block_size(h, which);
  return v > 0 ? static_cast<uint32_t>(v) : 0;
}

}  // namespace

std::vector<ListedExport> list_exports(const NbdAddress& server, const TlsCredentials* tls,
                                       const std::string& tls_hostname) {
  Handle h(nbd_create());
  if (!h) raise_libnbd("Could not create an NBD client");
  if (nbd_set_opt_mode(h.get(), true) < 0 || nbd_set_request_structured_replies(h.get(), true) < 0)
    raise_libnbd("Could not set up the NBD client");
  if (connect_handle(h.get(), server, tls, tls_hostname) < 0) raise_libnbd("Failed to negotiate with the NBD server");
  std::vector<ListedExport> exports;
  if (nbd_opt_list(h.get(), {.callback = on_export, .user_data = &exports}) < 0)
    raise_libnbd("Failed to list the server's exports");
  for (ListedExport& e : exports) {
    if (nbd_set_export_name(h.get(), e.name.c_str()) < 0 || nbd_opt_info(h.get()) < 0)
      raise_libnbd("Failed to get information on export '" + e.name + "'");
    const int64_t size = nbd_get_size(h.get());
    e.size = size > 0 ? static_cast<uint64_t>(size) : 0;
    e.transmission_flags = flags_of(h.get());
    e.min_block = block_size(h.get(), LIBNBD_SIZE_MINIMUM);
    e.preferred_block = block_size(h.get(), LIBNBD_SIZE_PREFERRED);
    e.max_block = block_size(h.get(), LIBNBD_SIZE_MAXIMUM);
    if (nbd_opt_list_meta_context(h.get(), {.callback = on_context, .user_data = &e.meta_contexts}) < 0)
      e.meta_contexts.clear();  // a server without structured replies has no contexts to list
  }
  nbd_opt_abort(h.get());
  return exports;
}

}  // namespace keel::nbd::client
