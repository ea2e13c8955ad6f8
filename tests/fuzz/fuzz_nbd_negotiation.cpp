// libFuzzer target: the input is a client's side of an NBD handshake, fed to
// the server's Negotiation (two exports) in fragments the input chooses, and
// what follows the handshake is parsed as transmission request headers.
//
// Input layout:
//   byte 0      configuration: bit 0 TLS required, bit 1 TLS configured,
//               bit 2 withhold extended headers, bit 3 a default export
//   byte 1      fragment count n (low 3 bits)
//   n bytes     fragment sizes (0 counts as 1); the rest is fed in one piece
//   the rest    the client byte stream
//
// Besides crashes and sanitizer reports, it aborts when feeding the same
// stream in one piece gives other bytes or another end state than the
// fragmented run (the machine must not depend on how TCP splits the input),
// and when a finished negotiation breaks the result's invariants.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <span>
#include <variant>
#include <vector>

#include "nbd/negotiation.h"
#include "nbd/wire.h"

namespace {

using namespace keel::nbd;

std::vector<ExportDescription> exports() {
  ExportDescription d0{.name = "disk0",
                       .description = "first",
                       .size = 1 << 20,
                       .transmission_flags = 0x01 | 0x04 | 0x80,
                       .min_block = 512,
                       .meta_contexts = {"base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:b0"}};
  ExportDescription d1{.name = "disk1", .size = 4096, .transmission_flags = 0x03, .meta_contexts = {"base:allocation"}};
  return {d0, d1};
}

struct Outcome {
  Bytes out;
  Negotiation::State state;
  Bytes after;  // bytes past the handshake
};

// Feeds `stream` in the given fragment sizes (then the rest at once), acting
// out STARTTLS as an instant TLS start whose "decrypted" bytes are the
// leftover, as a transport would after its TLS handshake.
Outcome run(const NegotiationOptions& opts, std::span<const std::byte> stream, std::span<const uint8_t> fragments,
            NegotiationResult* result) {
  Negotiation n(exports(), opts);
  Outcome o;
  o.out = n.greeting();
  auto feed = [&](std::span<const std::byte> piece) {
    Bytes part = n.feed(piece);
    o.out.insert(o.out.end(), part.begin(), part.end());
    while (n.state() == Negotiation::State::StartTls) {
      Bytes rest = n.take_leftover();
      n.tls_started();
      part = n.feed(rest);
      o.out.insert(o.out.end(), part.begin(), part.end());
    }
  };
  for (uint8_t f : fragments) {
    size_t size = std::min<size_t>(f == 0 ? 1 : f, stream.size());
    feed(stream.first(size));
    stream = stream.subspan(size);
  }
  feed(stream);
  o.state = n.state();
  o.after = n.take_leftover();
  if (result && o.state == Negotiation::State::Done) *result = n.result();
  return o;
}

void check_result(const NegotiationResult& r) {
  if (!r.export_) std::abort();
  if (r.extended_headers && !r.structured_replies) std::abort();
  if (!(r.transmission_flags & transmission_flag::kHasFlags)) std::abort();
  std::set<uint32_t> ids;
  for (const auto& [id, name] : r.meta_contexts)
    if (!ids.insert(id).second) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  NegotiationOptions opts;
  opts.tls_required = data[0] & 1;
  opts.tls_configured = data[0] & 2;
  opts.offer_extended_headers = !(data[0] & 4);
  if (data[0] & 8) opts.default_export = "disk1";
  opts.limits.max_options = 32;
  size_t count = std::min<size_t>(data[1] & 7, size - 2);
  std::span<const uint8_t> fragments(data + 2, count);
  std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 2 + count), size - 2 - count);

  NegotiationResult result;
  Outcome fragmented = run(opts, stream, fragments, &result);
  Outcome whole = run(opts, stream, {}, nullptr);
  if (fragmented.out != whole.out || fragmented.state != whole.state || fragmented.after != whole.after) std::abort();
  if (fragmented.state != Negotiation::State::Done) return 0;
  check_result(result);

  // Whatever followed the handshake, read as request headers of the
  // negotiated kind until one does not parse.
  std::span<const std::byte> rest(fragmented.after);
  const size_t header = request_header_size(result.header_mode());
  while (rest.size() >= header) {
    if (std::holds_alternative<RequestError>(parse_request(rest.first(header), result.header_mode()))) break;
    rest = rest.subspan(header);
  }
  return 0;
}
