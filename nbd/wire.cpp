#include "nbd/wire.h"

#include <fmt/format.h>

#include "base/endian.h"
#include "base/error.h"

namespace keel::nbd {
namespace {

// Consumes fields from the front of an untrusted span. Every take checks the
// remaining length first and reports failure instead of throwing, so hostile
// payloads turn into protocol errors rather than exceptions.
class Cursor {
 public:
  explicit Cursor(std::span<const std::byte> data) : data_(data) {}

  template <std::unsigned_integral T>
  bool take(T& value) {
    if (data_.size() < sizeof(T)) return false;
    value = load_be<T>(data_.data());
    data_ = data_.subspan(sizeof(T));
    return true;
  }

  bool take_string(size_t length, std::string& value) {
    if (data_.size() < length) return false;
    value.assign(reinterpret_cast<const char*>(data_.data()), length);
    data_ = data_.subspan(length);
    return true;
  }

  size_t remaining() const noexcept { return data_.size(); }

 private:
  std::span<const std::byte> data_;
};

template <std::unsigned_integral T>
void put(Bytes& out, T value) {
  size_t at = out.size();
  out.resize(at + sizeof(T));
  store_be<T>(out.data() + at, value);
}

void put_string(Bytes& out, std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size());
}

OptionError invalid(std::string message) { return OptionError{Reply::ErrInvalid, std::move(message)}; }

// The spec's rules for every string: at most 4096 bytes, no NUL.
std::optional<OptionError> check_string(std::string_view what, std::string_view s) {
  if (s.size() > kMaxStringLength)
    return invalid(fmt::format("{} is {} bytes, longer than the limit of {}", what, s.size(), kMaxStringLength));
  if (s.find('\0') != std::string_view::npos) return invalid(fmt::format("{} contains a NUL byte", what));
  return std::nullopt;
}

// Reads a u32 length and that many bytes of string, checked against both the
// payload and the string limit before anything is allocated.
std::optional<OptionError> take_sized_string(Cursor& c, std::string_view what, std::string& value) {
  uint32_t length;
  if (!c.take(length)) return invalid(fmt::format("option payload ends before the {} length", what));
  if (length > kMaxStringLength)
    return invalid(fmt::format("{} is {} bytes, longer than the limit of {}", what, length, kMaxStringLength));
  if (!c.take_string(length, value)) return invalid(fmt::format("{} runs past the end of the option", what));
  return check_string(what, value);
}

}  // namespace

std::optional<OptionHeader> parse_option_header(std::span<const std::byte> bytes) {
  Cursor c(bytes);
  OptionHeader h;
  if (!c.take(h.magic) || !c.take(h.option) || !c.take(h.length)) return std::nullopt;
  return h;
}

std::optional<uint32_t> parse_client_flags(std::span<const std::byte> bytes) {
  Cursor c(bytes);
  uint32_t flags;
  if (!c.take(flags)) return std::nullopt;
  return flags;
}

Parsed<InfoRequest> parse_info_request(std::span<const std::byte> payload) {
  Cursor c(payload);
  InfoRequest r;
  if (auto e = take_sized_string(c, "export name", r.name)) return *e;
  uint16_t count;
  if (!c.take(count)) return invalid("option payload ends before the information request count");
  // The count must account for exactly the rest of the payload.
  if (c.remaining() != size_t{count} * 2)
    return invalid(fmt::format("{} information requests need {} bytes, the option has {}", count, size_t{count} * 2,
                               c.remaining()));
  r.infos.resize(count);
  for (uint16_t& info : r.infos) c.take(info);
  return r;
}

Parsed<MetaContextRequest> parse_meta_context_request(std::span<const std::byte> payload, size_t max_queries) {
  Cursor c(payload);
  MetaContextRequest r;
  if (auto e = take_sized_string(c, "export name", r.export_name)) return *e;
  uint32_t count;
  if (!c.take(count)) return invalid("option payload ends before the query count");
  if (count > max_queries)
    return OptionError{Reply::ErrTooBig, fmt::format("{} queries, more than the limit of {}", count, max_queries)};
  // Each query takes at least its 4-byte length; refuse a count the payload
  // cannot hold before reserving anything for it.
  if (size_t{count} * 4 > c.remaining())
    return invalid(fmt::format("{} queries do not fit in the {} bytes left", count, c.remaining()));
  r.queries.resize(count);
  for (std::string& q : r.queries)
    if (auto e = take_sized_string(c, "query", q)) return *e;
  if (c.remaining() != 0) return invalid(fmt::format("{} bytes left over after the last query", c.remaining()));
  return r;
}

Parsed<std::string> parse_export_name(std::span<const std::byte> payload) {
  Cursor c(payload);
  std::string name;
  c.take_string(payload.size(), name);
  if (auto e = check_string("export name", name)) return *e;
  return name;
}

std::string_view clamp_string(std::string_view message) noexcept {
  if (message.size() <= kMaxStringLength) return message;
  size_t end = kMaxStringLength;
  // Back up over continuation bytes (10xxxxxx) so the cut lands on the start
  // of a character, which then is dropped whole.
  while (end > 0 && (static_cast<unsigned char>(message[end]) & 0xc0) == 0x80) --end;
  return message.substr(0, end);
}

void append_greeting(Bytes& out, uint16_t handshake_flags) {
  put(out, kNbdMagic);
  put(out, kIHaveOpt);
  put(out, handshake_flags);
}

void append_export_name_reply(Bytes& out, uint64_t size, uint16_t transmission_flags, bool no_zeroes) {
  put(out, size);
  put(out, transmission_flags);
  if (!no_zeroes) out.resize(out.size() + kExportNameZeroes);
}

void append_option_reply_header(Bytes& out, uint32_t option, Reply type, uint32_t length) {
  put(out, kOptionReplyMagic);
  put(out, option);
  put(out, static_cast<uint32_t>(type));
  put(out, length);
}

void append_ack(Bytes& out, uint32_t option) { append_option_reply_header(out, option, Reply::Ack, 0); }

void append_server_reply(Bytes& out, uint32_t option, std::string_view name, std::string_view description) {
  name = clamp_string(name);
  description = clamp_string(description);
  append_option_reply_header(out, option, Reply::Server, static_cast<uint32_t>(4 + name.size() + description.size()));
  put(out, static_cast<uint32_t>(name.size()));
  put_string(out, name);
  put_string(out, description);
}

void append_info_export(Bytes& out, uint32_t option, uint64_t size, uint16_t transmission_flags) {
  append_option_reply_header(out, option, Reply::Info, 12);
  put(out, static_cast<uint16_t>(Info::Export));
  put(out, size);
  put(out, transmission_flags);
}

namespace {
void append_info_string(Bytes& out, uint32_t option, Info type, std::string_view s) {
  s = clamp_string(s);
  append_option_reply_header(out, option, Reply::Info, static_cast<uint32_t>(2 + s.size()));
  put(out, static_cast<uint16_t>(type));
  put_string(out, s);
}
}  // namespace

void append_info_name(Bytes& out, uint32_t option, std::string_view name) {
  append_info_string(out, option, Info::Name, name);
}

void append_info_description(Bytes& out, uint32_t option, std::string_view description) {
  append_info_string(out, option, Info::Description, description);
}

void append_info_block_size(Bytes& out, uint32_t option, uint32_t minimum, uint32_t preferred, uint32_t maximum) {
  append_option_reply_header(out, option, Reply::Info, 14);
  put(out, static_cast<uint16_t>(Info::BlockSize));
  put(out, minimum);
  put(out, preferred);
  put(out, maximum);
}

void append_meta_context_reply(Bytes& out, uint32_t option, uint32_t context_id, std::string_view name) {
  name = clamp_string(name);
  append_option_reply_header(out, option, Reply::MetaContext, static_cast<uint32_t>(4 + name.size()));
  put(out, context_id);
  put_string(out, name);
}

void append_option_error(Bytes& out, uint32_t option, Reply error, std::string_view message) {
  message = clamp_string(message);
  append_option_reply_header(out, option, error, static_cast<uint32_t>(message.size()));
  put_string(out, message);
}

std::variant<Request, RequestError> parse_request(std::span<const std::byte> header, HeaderMode mode) {
  const bool extended = mode == HeaderMode::Extended;
  if (header.size() != request_header_size(mode))
    return RequestError{
        fmt::format("request header is {} bytes, expected {}", header.size(), request_header_size(mode))};
  Cursor c(header);
  uint32_t magic;
  Request r;
  c.take(magic);
  const uint32_t expected = extended ? kExtendedRequestMagic : kRequestMagic;
  if (magic != expected)
    return RequestError{fmt::format("request magic {:#x}, expected {:#x} ({} headers)", magic, expected,
                                    extended ? "extended" : "compact")};
  c.take(r.flags);
  c.take(r.type);
  c.take(r.cookie);
  c.take(r.offset);
  if (extended) {
    c.take(r.length);
  } else {
    uint32_t length;
    c.take(length);
    r.length = length;
  }
  return r;
}

void append_simple_reply(Bytes& out, uint32_t error, uint64_t cookie) {
  put(out, kSimpleReplyMagic);
  put(out, error);
  put(out, cookie);
}

void append_structured_reply_header(Bytes& out, uint16_t flags, ChunkType type, uint64_t cookie, uint32_t length) {
  put(out, kStructuredReplyMagic);
  put(out, flags);
  put(out, static_cast<uint16_t>(type));
  put(out, cookie);
  put(out, length);
}

void append_extended_reply_header(Bytes& out, uint16_t flags, ChunkType type, uint64_t cookie, uint64_t offset,
                                  uint64_t length) {
  put(out, kExtendedReplyMagic);
  put(out, flags);
  put(out, static_cast<uint16_t>(type));
  put(out, cookie);
  put(out, offset);
  put(out, length);
}

void append_offset_data_payload(Bytes& out, uint64_t offset) { put(out, offset); }

void append_offset_hole_payload(Bytes& out, uint64_t offset, uint32_t hole_size) {
  put(out, offset);
  put(out, hole_size);
}

void append_error_payload(Bytes& out, uint32_t error, std::string_view message) {
  message = clamp_string(message);
  put(out, error);
  put(out, static_cast<uint16_t>(message.size()));
  put_string(out, message);
}

void append_error_offset_payload(Bytes& out, uint32_t error, std::string_view message, uint64_t offset) {
  append_error_payload(out, error, message);
  put(out, offset);
}

void append_block_status_payload(Bytes& out, uint32_t context_id, std::span<const BlockStatusDescriptor> extents) {
  put(out, context_id);
  for (const BlockStatusDescriptor& e : extents) {
    put(out, e.length);
    put(out, e.status);
  }
}

void append_block_status_ext_payload(Bytes& out, uint32_t context_id,
                                     std::span<const BlockStatusExtDescriptor> extents) {
  put(out, context_id);
  put(out, static_cast<uint32_t>(extents.size()));
  for (const BlockStatusExtDescriptor& e : extents) {
    put(out, e.length);
    put(out, uint32_t{0});
    put(out, e.status);
  }
}

void append_reply_chunk(Bytes& out, HeaderMode mode, uint16_t flags, ChunkType type, uint64_t cookie, uint64_t offset,
                        std::span<const std::byte> payload) {
  if (mode == HeaderMode::Extended) {
    append_extended_reply_header(out, flags, type, cookie, offset, payload.size());
  } else {
    if (payload.size() > UINT32_MAX)
      raise(EOVERFLOW, "NBD reply payload of {} bytes does not fit a structured reply", payload.size());
    append_structured_reply_header(out, flags, type, cookie, static_cast<uint32_t>(payload.size()));
  }
  out.insert(out.end(), payload.begin(), payload.end());
}

}  // namespace keel::nbd
