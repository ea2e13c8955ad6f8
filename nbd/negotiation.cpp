#include "nbd/negotiation.h"

#include <fmt/format.h>

#include <algorithm>

namespace keel::nbd {
namespace {

bool is(uint32_t option, Option o) { return option == static_cast<uint32_t>(o); }

bool has_colon(const std::string& query) { return query.find(':') != std::string::npos; }

// A LIST query names one context exactly, or ends in ':' and then stands for
// every context under that prefix ("base:" is the spec's mandatory wildcard;
// "qemu:dirty-bitmap:" works the same way).
bool list_query_matches(const std::string& query, const std::string& context) {
  if (!query.empty() && query.back() == ':') return context.starts_with(query);
  return context == query;
}

}  // namespace

Negotiation::Negotiation(std::vector<ExportDescription> exports, NegotiationOptions opts)
    : exports_(std::move(exports)), opts_(std::move(opts)) {
  if (opts_.tls_required) opts_.tls_configured = true;
  tls_active_ = opts_.tls_active;
}

std::vector<std::byte> Negotiation::greeting() {
  Bytes out;
  append_greeting(out, handshake_flag::kFixedNewstyle | handshake_flag::kNoZeroes);
  return out;
}

std::vector<std::byte> Negotiation::feed(std::span<const std::byte> input) {
  Bytes out;
  while (!input.empty() && (state_ == State::NeedClientFlags || state_ == State::NeedOption)) {
    size_t target = state_ == State::NeedClientFlags ? kClientFlagsSize
                    : have_header_                   ? header_.length
                                                     : kOptionHeaderSize;
    size_t take = std::min(target - pending_.size(), input.size());
    pending_.insert(pending_.end(), input.begin(), input.begin() + take);
    input = input.subspan(take);
    if (pending_.size() < target) break;
    if (state_ == State::NeedClientFlags)
      process_client_flags();
    else if (!have_header_)
      process_option_header(out);
    else
      process_option(out);
  }
  // Whatever is left belongs to TLS or the transmission phase; after a close
  // nobody wants it.
  if (state_ == State::Done || state_ == State::StartTls) leftover_.insert(leftover_.end(), input.begin(), input.end());
  return out;
}

void Negotiation::tls_started() {
  if (state_ != State::StartTls) return;
  tls_active_ = true;
  state_ = State::NeedOption;
}

std::vector<std::byte> Negotiation::take_leftover() { return std::exchange(leftover_, {}); }

void Negotiation::process_client_flags() {
  uint32_t flags = *parse_client_flags(pending_);
  pending_.clear();
  // The spec makes the server drop clients with flags it does not know.
  if (flags & ~client_flag::kKnown) return close(fmt::format("client sent unknown client flags {:#x}", flags));
  fixed_newstyle_ = (flags & client_flag::kFixedNewstyle) != 0;
  no_zeroes_ = (flags & client_flag::kNoZeroes) != 0;
  // TLS needs fixed newstyle; such a client can only ever ask for an export
  // without TLS, which a TLS-only server must refuse anyway.
  if (opts_.tls_required && !tls_active_ && !fixed_newstyle_)
    return close("TLS is required but the client does not use fixed newstyle negotiation");
  state_ = State::NeedOption;
}

void Negotiation::process_option_header(Bytes& out) {
  header_ = *parse_option_header(pending_);
  pending_.clear();
  if (header_.magic != kIHaveOpt) return close(fmt::format("option magic is {:#x}, not IHAVEOPT", header_.magic));
  if (++options_seen_ > opts_.limits.max_options)
    return close(fmt::format("client sent more than {} options", opts_.limits.max_options));
  if (header_.length > opts_.limits.max_option_length)
    return close(fmt::format("{} payload of {} bytes exceeds the limit of {}", option_name(header_.option),
                             header_.length, opts_.limits.max_option_length));
  have_header_ = true;
  if (header_.length == 0) process_option(out);
}

void Negotiation::process_option(Bytes& out) {
  Bytes payload = std::exchange(pending_, {});
  have_header_ = false;
  const uint32_t option = header_.option;
  if (opts_.tls_required && !tls_active_ && !is(option, Option::StartTls) && !is(option, Option::Abort)) {
    // EXPORT_NAME cannot carry an error, so the only refusal is to hang up.
    if (is(option, Option::ExportName)) return close("client sent NBD_OPT_EXPORT_NAME before starting TLS");
    return append_option_error(out, option, Reply::ErrTlsReqd, "TLS is required");
  }
  switch (static_cast<Option>(option)) {
    case Option::ExportName:
      return handle_export_name(payload, out);
    case Option::Abort:
      // Any payload is ignored, as the spec asks.
      append_ack(out, option);
      return close("client sent NBD_OPT_ABORT");
    case Option::List:
      return handle_list(option, payload, out);
    case Option::StartTls:
      return handle_starttls(option, payload, out);
    case Option::Info:
    case Option::Go:
      return handle_info(option, payload, out);
    case Option::StructuredReply:
      return handle_structured_reply(option, payload, out);
    case Option::ListMetaContext:
    case Option::SetMetaContext:
      return handle_meta_context(option, payload, out);
    case Option::ExtendedHeaders:
      if (opts_.offer_extended_headers) return handle_extended_headers(option, payload, out);
      break;
    case Option::PeekExport:
      break;
  }
  append_option_error(out, option, Reply::ErrUnsup, fmt::format("{} is not supported", option_name(option)));
}

void Negotiation::handle_export_name(std::span<const std::byte> payload, Bytes& out) {
  // A client that negotiated extended headers must use GO; the reply here has
  // no way to confirm the header mode.
  if (extended_) return close("client sent NBD_OPT_EXPORT_NAME after negotiating extended headers");
  Parsed<std::string> name = parse_export_name(payload);
  if (auto* e = std::get_if<OptionError>(&name)) return close("NBD_OPT_EXPORT_NAME: " + e->message);
  const ExportDescription* e = find_export(std::get<std::string>(name));
  if (!e) return close(fmt::format("client asked for unknown export '{}'", std::get<std::string>(name)));
  append_export_name_reply(out, e->size, flags_to_send(*e), no_zeroes_);
  finish(*e, false);
}

void Negotiation::handle_list(uint32_t option, std::span<const std::byte> payload, Bytes& out) {
  if (!payload.empty()) return append_option_error(out, option, Reply::ErrInvalid, "NBD_OPT_LIST takes no data");
  for (const ExportDescription& e : exports_) append_server_reply(out, option, e.name, e.description);
  append_ack(out, option);
}

void Negotiation::handle_starttls(uint32_t option, std::span<const std::byte> payload, Bytes& out) {
  if (!opts_.tls_configured || !fixed_newstyle_)
    return append_option_error(out, option, Reply::ErrPolicy, "TLS is not available on this server");
  if (tls_active_) return append_option_error(out, option, Reply::ErrInvalid, "TLS is already active");
  if (!payload.empty()) return append_option_error(out, option, Reply::ErrInvalid, "NBD_OPT_STARTTLS takes no data");
  append_ack(out, option);
  // The spec forbids keeping anything negotiated in the clear.
  structured_ = false;
  extended_ = false;
  selected_contexts_.clear();
  selected_for_ = nullptr;
  state_ = State::StartTls;
}

void Negotiation::handle_info(uint32_t option, std::span<const std::byte> payload, Bytes& out) {
  Parsed<InfoRequest> parsed = parse_info_request(payload);
  if (auto* err = std::get_if<OptionError>(&parsed)) return append_option_error(out, option, err->reply, err->message);
  const InfoRequest& request = std::get<InfoRequest>(parsed);
  const ExportDescription* e = find_export(request.name);
  if (!e)
    return append_option_error(out, option, Reply::ErrUnknown, fmt::format("export '{}' not found", request.name));
  auto requested = [&](Info info) {
    return std::find(request.infos.begin(), request.infos.end(), static_cast<uint16_t>(info)) != request.infos.end();
  };
  append_info_export(out, option, e->size, flags_to_send(*e));
  if (requested(Info::Name)) append_info_name(out, option, e->name);
  if (requested(Info::Description) && !e->description.empty()) append_info_description(out, option, e->description);
  // Sent whether or not it was asked for: the spec says a server with
  // constraints SHOULD advertise them, and clients ignore what they did not ask.
  append_info_block_size(out, option, e->min_block, e->preferred_block, e->max_block);
  append_ack(out, option);
  if (is(option, Option::Go)) finish(*e, requested(Info::BlockSize));
}

void Negotiation::handle_structured_reply(uint32_t option, std::span<const std::byte> payload, Bytes& out) {
  if (!payload.empty())
    return append_option_error(out, option, Reply::ErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data");
  if (extended_)
    return append_option_error(out, option, Reply::ErrExtHeaderReqd, "extended headers are already negotiated");
  if (structured_)
    return append_option_error(out, option, Reply::ErrInvalid, "structured replies are already negotiated");
  structured_ = true;
  append_ack(out, option);
}

void Negotiation::handle_extended_headers(uint32_t option, std::span<const std::byte> payload, Bytes& out) {
  if (!payload.empty())
    return append_option_error(out, option, Reply::ErrInvalid, "NBD_OPT_EXTENDED_HEADERS takes no data");
  if (extended_) return append_option_error(out, option, Reply::ErrInvalid, "extended headers are already negotiated");
  extended_ = true;
  append_ack(out, option);
}

void Negotiation::handle_meta_context(uint32_t option, std::span<const std::byte> payload, Bytes& out) {
  const bool set = is(option, Option::SetMetaContext);
  // SET replaces the selection even when it fails.
  if (set) {
    selected_contexts_.clear();
    selected_for_ = nullptr;
  }
  if (!structured_ && !extended_)
    return append_option_error(
        out, option, Reply::ErrInvalid,
        fmt::format("{} needs structured replies or extended headers first", option_name(option)));
  Parsed<MetaContextRequest> parsed = parse_meta_context_request(payload, opts_.limits.max_meta_queries);
  if (auto* err = std::get_if<OptionError>(&parsed)) return append_option_error(out, option, err->reply, err->message);
  const MetaContextRequest& request = std::get<MetaContextRequest>(parsed);
  for (const std::string& q : request.queries)
    if (!has_colon(q))
      return append_option_error(out, option, Reply::ErrInvalid, fmt::format("query '{}' has no namespace", q));
  const ExportDescription* e = find_export(request.export_name);
  if (!e)
    return append_option_error(out, option, Reply::ErrUnknown,
                               fmt::format("export '{}' not found", request.export_name));
  Bytes replies;
  std::vector<std::pair<uint32_t, std::string>> selected;
  for (size_t i = 0; i < e->meta_contexts.size(); ++i) {
    const std::string& context = e->meta_contexts[i];
    if (set) {
      // Only exact names select; the spec has a bare namespace select nothing.
      if (std::find(request.queries.begin(), request.queries.end(), context) == request.queries.end()) continue;
      // A name offered twice (qemu-nbd -B b -B b) is selected once, as by qemu.
      if (std::any_of(selected.begin(), selected.end(), [&](const auto& s) { return s.second == context; }))
        continue;
      // Ids follow the export's list so the transmission side can map them back.
      uint32_t id = static_cast<uint32_t>(i + 1);
      append_meta_context_reply(replies, option, id, context);
      selected.emplace_back(id, context);
    } else {
      bool listed =
          request.queries.empty() || std::any_of(request.queries.begin(), request.queries.end(),
                                                 [&](const auto& q) { return list_query_matches(q, context); });
      // LIST replies carry id 0: the spec reserves it there.
      if (listed) append_meta_context_reply(replies, option, 0, context);
    }
  }
  out.insert(out.end(), replies.begin(), replies.end());
  append_ack(out, option);
  if (set) {
    selected_contexts_ = std::move(selected);
    selected_for_ = e;
  }
}

const ExportDescription* Negotiation::find_export(const std::string& name) const {
  const std::string& wanted = name.empty() && !opts_.default_export.empty() ? opts_.default_export : name;
  for (const ExportDescription& e : exports_)
    if (e.name == wanted) return &e;
  return nullptr;
}

uint16_t Negotiation::flags_to_send(const ExportDescription& e) const {
  uint16_t flags = e.transmission_flags | transmission_flag::kHasFlags;  // the spec: MUST always be 1
  // DF only means something for structured reads, and the payload flag only
  // with extended headers; the spec has both left clear otherwise.
  if (!structured_ && !extended_) flags &= ~transmission_flag::kSendDf;
  if (!extended_) flags &= ~transmission_flag::kBlockStatPayload;
  return flags;
}

void Negotiation::finish(const ExportDescription& e, bool block_size_agreed) {
  result_.export_ = &e;
  result_.structured_replies = structured_ || extended_;
  result_.extended_headers = extended_;
  if (selected_for_ == &e) result_.meta_contexts = selected_contexts_;
  result_.no_zeroes = no_zeroes_;
  result_.transmission_flags = flags_to_send(e);
  result_.block_size_agreed = block_size_agreed;
  state_ = State::Done;
}

void Negotiation::close(std::string reason) {
  close_reason_ = std::move(reason);
  pending_.clear();
  have_header_ = false;
  state_ = State::Closed;
}

}  // namespace keel::nbd
