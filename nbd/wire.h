// On-wire NBD messages: parsers for what the client sends and builders for
// what the server sends, all big-endian and all in one place. Parsers take a
// span of untrusted bytes, measure before they read and never throw: a bad
// option payload becomes an OptionError (the NBD_REP_ERR_* to answer with and
// a message), a bad request header a RequestError. Builders append to a byte
// vector so one reply can be assembled from several pieces without copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nbd/protocol.h"

namespace keel::nbd {

using Bytes = std::vector<std::byte>;

inline constexpr size_t kGreetingSize = 18;  // NBDMAGIC, IHAVEOPT, u16 handshake flags
inline constexpr size_t kClientFlagsSize = 4;
inline constexpr size_t kOptionHeaderSize = 16;  // IHAVEOPT, u32 option, u32 length
inline constexpr size_t kOptionReplyHeaderSize = 20;
inline constexpr size_t kExportNameZeroes = 124;  // reserved padding after the EXPORT_NAME reply
inline constexpr size_t kCompactRequestSize = 28;
inline constexpr size_t kExtendedRequestSize = 32;
inline constexpr size_t kSimpleReplySize = 16;
inline constexpr size_t kStructuredReplyHeaderSize = 20;
inline constexpr size_t kExtendedReplyHeaderSize = 32;
inline constexpr size_t kOffsetDataPayloadHeaderSize = 8;  // u64 offset; the data follows
inline constexpr size_t kOffsetHolePayloadSize = 12;

// ---- Handshake: client -> server ----

struct OptionHeader {
  uint64_t magic;
  uint32_t option;
  uint32_t length;
};

// nullopt when fewer than 16 bytes are given; the magic is returned as sent
// so the caller decides what a wrong one means (in the handshake: hang up).
std::optional<OptionHeader> parse_option_header(std::span<const std::byte> bytes);

// nullopt when fewer than 4 bytes are given.
std::optional<uint32_t> parse_client_flags(std::span<const std::byte> bytes);

// Why an option payload cannot be acted on, in the form the reply needs.
struct OptionError {
  Reply reply;  // an error reply type (bit 31 set)
  std::string message;
};

template <typename T>
using Parsed = std::variant<T, OptionError>;

// NBD_OPT_INFO and NBD_OPT_GO: u32 name length, name, u16 count, count x u16.
struct InfoRequest {
  std::string name;
  std::vector<uint16_t> infos;  // as sent; unknown types are kept so the caller can ignore them
};
Parsed<InfoRequest> parse_info_request(std::span<const std::byte> payload);

// NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: u32 export name
// length, name, u32 query count, each query a u32 length and a string. More
// than max_queries queries is ERR_TOO_BIG, which the spec allows for this.
struct MetaContextRequest {
  std::string export_name;
  std::vector<std::string> queries;
};
Parsed<MetaContextRequest> parse_meta_context_request(std::span<const std::byte> payload, size_t max_queries);

// NBD_OPT_EXPORT_NAME: the whole payload is the name.
Parsed<std::string> parse_export_name(std::span<const std::byte> payload);

// ---- Handshake: server -> client ----

// The fixed-newstyle greeting: NBDMAGIC, IHAVEOPT, handshake flags.
void append_greeting(Bytes& out, uint16_t handshake_flags);

// The reply to NBD_OPT_EXPORT_NAME: u64 size, u16 flags, then 124 zero bytes
// unless the client set NBD_FLAG_C_NO_ZEROES.
void append_export_name_reply(Bytes& out, uint64_t size, uint16_t transmission_flags, bool no_zeroes);

// The 20-byte header every other option reply starts with.
void append_option_reply_header(Bytes& out, uint32_t option, Reply type, uint32_t length);

void append_ack(Bytes& out, uint32_t option);

// NBD_REP_SERVER: u32 name length, name, then the description (the spec's
// free-form, human-readable rest of the reply).
void append_server_reply(Bytes& out, uint32_t option, std::string_view name, std::string_view description);

// NBD_REP_INFO replies.
void append_info_export(Bytes& out, uint32_t option, uint64_t size, uint16_t transmission_flags);
void append_info_name(Bytes& out, uint32_t option, std::string_view name);
void append_info_description(Bytes& out, uint32_t option, std::string_view description);
void append_info_block_size(Bytes& out, uint32_t option, uint32_t minimum, uint32_t preferred, uint32_t maximum);

// NBD_REP_META_CONTEXT: u32 context id, name.
void append_meta_context_reply(Bytes& out, uint32_t option, uint32_t context_id, std::string_view name);

// An error reply carrying a message for humans; the message is cut to the
// spec's 4096-byte string limit (at a UTF-8 character boundary).
void append_option_error(Bytes& out, uint32_t option, Reply error, std::string_view message);

// ---- Transmission ----

// Which request and reply headers the connection uses: compact (28-byte
// requests; simple or structured replies) unless NBD_OPT_EXTENDED_HEADERS was
// acknowledged (32-byte requests and replies).
enum class HeaderMode { Compact, Extended };

constexpr size_t request_header_size(HeaderMode mode) noexcept {
  return mode == HeaderMode::Extended ? kExtendedRequestSize : kCompactRequestSize;
}

struct Request {
  uint16_t flags;
  uint16_t type;    // a Command value; unknown values are kept for the server to answer EINVAL
  uint64_t cookie;  // opaque, echoed in every reply
  uint64_t offset;
  uint64_t length;  // compact headers carry 32 bits; extended 64
};

struct RequestError {
  std::string message;
};

// Parses exactly request_header_size(mode) bytes; a wrong size or magic (for
// instance a compact request on an extended connection) is a RequestError,
// after which the spec lets the server hang up.
std::variant<Request, RequestError> parse_request(std::span<const std::byte> header, HeaderMode mode);

// Simple reply: magic, u32 error, u64 cookie (read data follows on success).
void append_simple_reply(Bytes& out, uint32_t error, uint64_t cookie);

// Structured reply chunk header (compact mode): magic, u16 flags, u16 type,
// u64 cookie, u32 payload length.
void append_structured_reply_header(Bytes& out, uint16_t flags, ChunkType type, uint64_t cookie, uint32_t length);

// Extended reply header: magic, u16 flags, u16 type, u64 cookie, u64 offset
// (the request's), u64 payload length.
void append_extended_reply_header(Bytes& out, uint16_t flags, ChunkType type, uint64_t cookie, uint64_t offset,
                                  uint64_t length);

// Chunk payloads. Each appends only the payload; the header's length is the
// number of bytes appended (plus, for OFFSET_DATA, the data the caller adds).
void append_offset_data_payload(Bytes& out, uint64_t offset);
// The hole size stays 32 bits in extended mode too: the extension defines no
// 64-bit hole chunk, so larger holes are split over several chunks.
void append_offset_hole_payload(Bytes& out, uint64_t offset, uint32_t hole_size);
// u32 error, u16 message length, message (cut to the 4096-byte limit).
void append_error_payload(Bytes& out, uint32_t error, std::string_view message);
// As ERROR, then the u64 offset the error happened at.
void append_error_offset_payload(Bytes& out, uint32_t error, std::string_view message, uint64_t offset);

struct BlockStatusDescriptor {
  uint32_t length;
  uint32_t status;
};
struct BlockStatusExtDescriptor {
  uint64_t length;
  uint32_t status;
};
// u32 context id, then u32 length + u32 status per descriptor.
void append_block_status_payload(Bytes& out, uint32_t context_id, std::span<const BlockStatusDescriptor> extents);
// u32 context id, u32 descriptor count, then u64 length, u32 zero padding and
// u32 status per descriptor.
void append_block_status_ext_payload(Bytes& out, uint32_t context_id,
                                     std::span<const BlockStatusExtDescriptor> extents);

// One complete reply chunk in the connection's mode: a structured header
// (compact) or an extended one, then the payload. `offset` is the request's
// offset, used only by extended headers. A payload too big for the 32-bit
// length of a compact header raises keel::Error(EOVERFLOW): a caller's bug.
void append_reply_chunk(Bytes& out, HeaderMode mode, uint16_t flags, ChunkType type, uint64_t cookie, uint64_t offset,
                        std::span<const std::byte> payload);

// `message` shortened to at most kMaxStringLength bytes without splitting a
// UTF-8 sequence; used for every string the server sends.
std::string_view clamp_string(std::string_view message) noexcept;

}  // namespace keel::nbd
