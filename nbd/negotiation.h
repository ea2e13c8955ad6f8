// The server side of the NBD fixed-newstyle handshake as a sans-IO state
// machine: the caller sends greeting(), then passes whatever bytes arrive from
// the client to feed() and sends back what it returns. Nothing here touches a
// socket, a clock or the block engine, so every path (and every way of
// splitting the input into fragments) can be tested and fuzzed directly.
//
//   Negotiation n(exports, options);
//   send(n.greeting());
//   while (n.state() is NeedClientFlags or NeedOption) send(n.feed(receive()));
//   StartTls: send the pending output, start TLS over the socket (the bytes in
//             take_leftover() are the start of the client's TLS handshake),
//             call tls_started(), then keep feeding decrypted bytes.
//   Done:     result() says what was negotiated; take_leftover() holds any
//             transmission-phase bytes that arrived with the last option.
//   Closed:   send the pending output (e.g. the ACK to ABORT), then hang up;
//             close_reason() says why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "nbd/protocol.h"
#include "nbd/wire.h"

namespace keel::nbd {

// What the server offers under one name; filled by the caller from the block
// engine.
struct ExportDescription {
  std::string name;
  std::string description;
  uint64_t size = 0;
  uint16_t transmission_flags = transmission_flag::kHasFlags;  // as sent (HAS_FLAGS etc. included)
  uint32_t min_block = 1;
  uint32_t preferred_block = 4096;
  uint32_t max_block = 32 * 1024 * 1024;
  // Context names offered to LIST/SET_META_CONTEXT, e.g. "base:allocation",
  // "qemu:allocation-depth", "qemu:dirty-bitmap:b0".
  std::vector<std::string> meta_contexts;
};

// Bounds on what one client may make the server do or hold before it is in
// the transmission phase.
struct NegotiationLimits {
  size_t max_options = 128;  // options per connection, the final one included
  // Largest option payload accepted; a header declaring more closes the
  // connection before any of it is buffered. The default holds an export
  // name, the fixed fields and 64 KiB of meta-context queries.
  uint32_t max_option_length = 64 * 1024 + kMaxStringLength + 16;
  size_t max_meta_queries = 128;  // more is answered with ERR_TOO_BIG
};

struct NegotiationOptions {
  bool tls_configured = false;  // the server can upgrade to TLS (STARTTLS is acknowledged)
  bool tls_required = false;    // FORCEDTLS: only STARTTLS and ABORT until TLS is up; implies tls_configured
  bool tls_active = false;      // the connection is already encrypted
  // The export an empty name selects (the spec's "default export"). Left
  // empty, an empty name selects only an export actually named "".
  std::string default_export;
  bool offer_extended_headers = true;  // false: NBD_OPT_EXTENDED_HEADERS is answered ERR_UNSUP
  NegotiationLimits limits;
};

struct NegotiationResult {
  // Points into the Negotiation's own export list: valid while it lives.
  const ExportDescription* export_ = nullptr;
  // True also when extended headers were negotiated: the reply rules of
  // structured replies (chunks, DONE flag) then hold with 32-byte headers.
  bool structured_replies = false;
  bool extended_headers = false;
  // (id, name) of the contexts the last SET_META_CONTEXT selected, if it named
  // this export; empty otherwise (the client may then not send BLOCK_STATUS).
  std::vector<std::pair<uint32_t, std::string>> meta_contexts;
  bool no_zeroes = false;
  // The flags the client was sent, which can differ from the export's: the
  // spec forbids SEND_DF without structured replies, for instance.
  uint16_t transmission_flags = 0;
  // The client ended with NBD_OPT_GO asking for NBD_INFO_BLOCK_SIZE, so it
  // promised to honour the block sizes (the spec's condition for enforcing them).
  bool block_size_agreed = false;

  HeaderMode header_mode() const noexcept { return extended_headers ? HeaderMode::Extended : HeaderMode::Compact; }
};

class Negotiation {
 public:
  enum class State {
    NeedClientFlags,
    NeedOption,
    StartTls,  // the caller switches to TLS, then calls tls_started()
    Done,
    Closed,
  };

  Negotiation(std::vector<ExportDescription> exports, NegotiationOptions opts);
  // Copies would leave result().export_ pointing into the original; moves keep
  // the export list's storage, so they are safe.
  Negotiation(const Negotiation&) = delete;
  Negotiation& operator=(const Negotiation&) = delete;
  Negotiation(Negotiation&&) = default;
  Negotiation& operator=(Negotiation&&) = default;

  // The initial server bytes: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE | NO_ZEROES.
  std::vector<std::byte> greeting();

  // Consumes client bytes (any fragment size) and returns the bytes to send
  // back. Only what the message being assembled needs is buffered; bytes past
  // the end of the handshake (or of STARTTLS) go to take_leftover().
  std::vector<std::byte> feed(std::span<const std::byte> input);

  State state() const noexcept { return state_; }
  void tls_started();

  const NegotiationResult& result() const noexcept { return result_; }  // valid in Done
  std::string close_reason() const { return close_reason_; }            // why Closed

  // Bytes fed after the handshake (Done) or STARTTLS (StartTls) ended; they
  // belong to the next layer. Returns them and forgets them.
  std::vector<std::byte> take_leftover();

 private:
  void process_client_flags();
  void process_option_header(Bytes& out);
  void process_option(Bytes& out);
  void handle_export_name(std::span<const std::byte> payload, Bytes& out);
  void handle_list(uint32_t option, std::span<const std::byte> payload, Bytes& out);
  void handle_starttls(uint32_t option, std::span<const std::byte> payload, Bytes& out);
  void handle_info(uint32_t option, std::span<const std::byte> payload, Bytes& out);
  void handle_structured_reply(uint32_t option, std::span<const std::byte> payload, Bytes& out);
  void handle_extended_headers(uint32_t option, std::span<const std::byte> payload, Bytes& out);
  void handle_meta_context(uint32_t option, std::span<const std::byte> payload, Bytes& out);

  const ExportDescription* find_export(const std::string& name) const;
  uint16_t flags_to_send(const ExportDescription& e) const;
  void finish(const ExportDescription& e, bool block_size_agreed);
  void close(std::string reason);

  std::vector<ExportDescription> exports_;
  NegotiationOptions opts_;
  State state_ = State::NeedClientFlags;

  Bytes pending_;             // the part of the current message received so far
  bool have_header_ = false;  // pending_ holds the payload of header_, not a header
  OptionHeader header_{};
  size_t options_seen_ = 0;
  bool fixed_newstyle_ = false;  // the client set NBD_FLAG_C_FIXED_NEWSTYLE
  bool no_zeroes_ = false;
  bool tls_active_ = false;
  bool structured_ = false;
  bool extended_ = false;
  std::vector<std::pair<uint32_t, std::string>> selected_contexts_;
  const ExportDescription* selected_for_ = nullptr;  // the export the last SET_META_CONTEXT named

  NegotiationResult result_;
  std::string close_reason_;
  Bytes leftover_;
};

}  // namespace keel::nbd
