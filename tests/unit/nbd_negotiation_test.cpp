// nbd/negotiation.h: the server handshake, fed client bytes as doc/proto.md
// lays them out and checked reply by reply. Every conversation goes through
// converse(), which also replays it one byte at a time and requires the same
// bytes, state and leftovers: fragmentation must never change the outcome.
#include <gtest/gtest.h>

#include <string>

#include "nbd/negotiation.h"
#include "tests/unit/nbd_test_bytes.h"

using namespace keel::nbd;
using keel::nbd::test::Wire;
using State = Negotiation::State;

namespace {

constexpr uint32_t kOptExportName = 1, kOptAbort = 2, kOptList = 3, kOptPeek = 4, kOptStartTls = 5, kOptInfo = 6,
                   kOptGo = 7, kOptStructured = 8, kOptListMeta = 9, kOptSetMeta = 10, kOptExtended = 11;
constexpr uint32_t kRepAck = 1, kRepServer = 2, kRepInfo = 3, kRepMeta = 4;
constexpr uint32_t kErrUnsup = 0x80000001, kErrPolicy = 0x80000002, kErrInvalid = 0x80000003, kErrTlsReqd = 0x80000005,
                   kErrUnknown = 0x80000006, kErrTooBig = 0x80000009, kErrExtHeaderReqd = 0x8000000a;

// HAS_FLAGS | SEND_FLUSH | SEND_DF
constexpr uint16_t kDisk0Flags = 0x0001 | 0x0004 | 0x0080;
// HAS_FLAGS | READ_ONLY
constexpr uint16_t kDisk1Flags = 0x0001 | 0x0002;

std::vector<ExportDescription> two_exports() {
  ExportDescription d0{.name = "disk0",
                       .description = "first disk",
                       .size = 1 << 20,
                       .transmission_flags = kDisk0Flags,
                       .min_block = 512,
                       .preferred_block = 4096,
                       .max_block = 1 << 25,
                       .meta_contexts = {"base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:b0"}};
  ExportDescription d1{
      .name = "disk1", .size = 4096, .transmission_flags = kDisk1Flags, .meta_contexts = {"base:allocation"}};
  return {d0, d1};
}

// Client messages.
Wire client_flags(uint32_t flags = 1) { return std::move(Wire().u32(flags)); }
Wire option(uint32_t opt, const std::vector<std::byte>& payload = {}) {
  Wire w;
  w.u64(0x49484156454f5054).u32(opt).u32(static_cast<uint32_t>(payload.size())).bytes(payload);
  return w;
}
Wire info_payload(std::string_view name, std::vector<uint16_t> infos = {}) {
  Wire w;
  w.u32(static_cast<uint32_t>(name.size())).str(name).u16(static_cast<uint16_t>(infos.size()));
  for (uint16_t i : infos) w.u16(i);
  return w;
}
Wire meta_payload(std::string_view name, std::vector<std::string> queries) {
  Wire w;
  w.u32(static_cast<uint32_t>(name.size())).str(name).u32(static_cast<uint32_t>(queries.size()));
  for (const std::string& q : queries) w.u32(static_cast<uint32_t>(q.size())).str(q);
  return w;
}

// Server replies, written from the spec's layouts.
Wire rep(uint32_t opt, uint32_t type, const std::vector<std::byte>& data = {}) {
  Wire w;
  w.u64(0x3e889045565a9).u32(opt).u32(type).u32(static_cast<uint32_t>(data.size())).bytes(data);
  return w;
}
Wire info_export(uint32_t opt, uint64_t size, uint16_t flags) {
  return rep(opt, kRepInfo, Wire().u16(0).u64(size).u16(flags));
}
Wire info_block_size(uint32_t opt, uint32_t min, uint32_t pref, uint32_t max) {
  return rep(opt, kRepInfo, Wire().u16(3).u32(min).u32(pref).u32(max));
}
Wire meta_reply(uint32_t opt, uint32_t id, std::string_view name) {
  return rep(opt, kRepMeta, Wire().u32(id).str(name));
}

// The reply type of the first option reply in `out` (for error checks where
// the message text is not the point).
uint32_t first_reply_type(const std::vector<std::byte>& out) {
  EXPECT_GE(out.size(), 20u);
  if (out.size() < 20) return 0;
  return (uint32_t(uint8_t(out[12])) << 24) | (uint32_t(uint8_t(out[13])) << 16) | (uint32_t(uint8_t(out[14])) << 8) |
         uint32_t(uint8_t(out[15]));
}

struct Conversation {
  std::vector<std::byte> out;
  State state;
  std::string close_reason;
  std::vector<std::byte> leftover;
};

Conversation run(Negotiation& n, const std::vector<std::byte>& input, bool bytewise) {
  Conversation c;
  if (bytewise) {
    for (std::byte b : input) {
      auto part = n.feed(std::span(&b, 1));
      c.out.insert(c.out.end(), part.begin(), part.end());
    }
  } else {
    c.out = n.feed(input);
  }
  c.state = n.state();
  c.close_reason = n.close_reason();
  c.leftover = n.take_leftover();
  return c;
}

// Runs `input` through a fresh Negotiation whole and byte by byte, checks both
// agree, and leaves the whole-input one in `n` for inspecting the result.
Conversation converse(std::unique_ptr<Negotiation>& n, const std::vector<std::byte>& input,
                      NegotiationOptions opts = {}) {
  Negotiation bytewise(two_exports(), opts);
  Conversation one = run(bytewise, input, true);
  n = std::make_unique<Negotiation>(two_exports(), opts);
  Conversation whole = run(*n, input, false);
  EXPECT_EQ(whole.out, one.out) << "fragmentation changed the output";
  EXPECT_EQ(whole.state, one.state);
  EXPECT_EQ(whole.close_reason, one.close_reason);
  EXPECT_EQ(whole.leftover, one.leftover);
  return whole;
}

Conversation converse(const std::vector<std::byte>& input, NegotiationOptions opts = {}) {
  std::unique_ptr<Negotiation> n;
  return converse(n, input, opts);
}

NegotiationOptions tls_required() {
  NegotiationOptions o;
  o.tls_required = true;
  return o;
}

}  // namespace

TEST(NbdNegotiation, GreetingAdvertisesFixedNewstyleAndNoZeroes) {
  Negotiation n(two_exports(), {});
  EXPECT_EQ(n.greeting(), Wire().str("NBDMAGIC").str("IHAVEOPT").u16(3).get());
  EXPECT_EQ(n.state(), State::NeedClientFlags);
}

TEST(NbdNegotiation, ClientFlagsAreChecked) {
  EXPECT_EQ(converse(client_flags(1)).state, State::NeedOption);
  EXPECT_EQ(converse(client_flags(3)).state, State::NeedOption);
  auto c = converse(client_flags(1 | 4));
  EXPECT_EQ(c.state, State::Closed);
  EXPECT_NE(c.close_reason.find("unknown client flags"), std::string::npos);
  EXPECT_TRUE(c.out.empty());
}

TEST(NbdNegotiation, BadOptionMagicCloses) {
  auto c = converse(Wire().bytes(client_flags()).u64(0x1234).u32(kOptList).u32(0));
  EXPECT_EQ(c.state, State::Closed);
  EXPECT_NE(c.close_reason.find("magic"), std::string::npos);
}

TEST(NbdNegotiation, ExportNameEntersTransmission) {
  std::unique_ptr<Negotiation> n;
  auto c = converse(n, Wire().bytes(client_flags()).bytes(option(kOptExportName, Wire().str("disk0"))));
  EXPECT_EQ(c.state, State::Done);
  // SEND_DF is dropped: structured replies were not negotiated.
  EXPECT_EQ(c.out, Wire().u64(1 << 20).u16(0x0005).zeroes(124).get());
  const NegotiationResult& r = n->result();
  ASSERT_NE(r.export_, nullptr);
  EXPECT_EQ(r.export_->name, "disk0");
  EXPECT_FALSE(r.structured_replies);
  EXPECT_FALSE(r.extended_headers);
  EXPECT_FALSE(r.no_zeroes);
  EXPECT_EQ(r.transmission_flags, 0x0005);
  EXPECT_EQ(r.header_mode(), HeaderMode::Compact);
}

TEST(NbdNegotiation, ExportNameHonoursNoZeroesAndStructuredReplies) {
  std::unique_ptr<Negotiation> n;
  auto c = converse(
      n,
      Wire().bytes(client_flags(3)).bytes(option(kOptStructured)).bytes(option(kOptExportName, Wire().str("disk0"))));
  EXPECT_EQ(c.state, State::Done);
  EXPECT_EQ(c.out, Wire().bytes(rep(kOptStructured, kRepAck)).u64(1 << 20).u16(kDisk0Flags).get());
  EXPECT_TRUE(n->result().no_zeroes);
  EXPECT_TRUE(n->result().structured_replies);
}

TEST(NbdNegotiation, ExportNameOfAnUnknownExportCloses) {
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptExportName, Wire().str("nope"))));
  EXPECT_EQ(c.state, State::Closed);
  EXPECT_TRUE(c.out.empty());
  EXPECT_NE(c.close_reason.find("nope"), std::string::npos);
}

TEST(NbdNegotiation, EmptyNameSelectsTheDefaultExport) {
  NegotiationOptions o;
  o.default_export = "disk1";
  std::unique_ptr<Negotiation> n;
  auto c = converse(n, Wire().bytes(client_flags()).bytes(option(kOptExportName)), o);
  EXPECT_EQ(c.state, State::Done);
  EXPECT_EQ(n->result().export_->name, "disk1");
  // Without a default, an empty name names nothing here.
  EXPECT_EQ(converse(Wire().bytes(client_flags()).bytes(option(kOptExportName))).state, State::Closed);
}

TEST(NbdNegotiation, AbortIsAcknowledgedThenCloses) {
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptAbort)));
  EXPECT_EQ(c.out, rep(kOptAbort, kRepAck).get());
  EXPECT_EQ(c.state, State::Closed);
  EXPECT_NE(c.close_reason.find("ABORT"), std::string::npos);
  // Data with ABORT is ignored, not refused.
  auto d = converse(Wire().bytes(client_flags()).bytes(option(kOptAbort, Wire().str("xyz"))));
  EXPECT_EQ(d.out, rep(kOptAbort, kRepAck).get());
}

TEST(NbdNegotiation, ListSendsOneServerReplyPerExport) {
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptList)));
  EXPECT_EQ(c.out, Wire()
                       .bytes(rep(kOptList, kRepServer, Wire().u32(5).str("disk0").str("first disk")))
                       .bytes(rep(kOptList, kRepServer, Wire().u32(5).str("disk1")))
                       .bytes(rep(kOptList, kRepAck))
                       .get());
  EXPECT_EQ(c.state, State::NeedOption);
}

TEST(NbdNegotiation, ListWithDataIsInvalid) {
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptList, Wire().u8(0))));
  EXPECT_EQ(first_reply_type(c.out), kErrInvalid);
  EXPECT_EQ(c.state, State::NeedOption);
}

TEST(NbdNegotiation, InfoSendsExportAndBlockSize) {
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptInfo, info_payload("disk0"))));
  EXPECT_EQ(c.out, Wire()
                       .bytes(info_export(kOptInfo, 1 << 20, 0x0005))
                       .bytes(info_block_size(kOptInfo, 512, 4096, 1 << 25))
                       .bytes(rep(kOptInfo, kRepAck))
                       .get());
  EXPECT_EQ(c.state, State::NeedOption);
}

TEST(NbdNegotiation, InfoAnswersRequestedNameAndDescription) {
  // NAME, DESCRIPTION, an unknown type (ignored) and BLOCK_SIZE.
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptInfo, info_payload("disk0", {1, 2, 77, 3}))));
  EXPECT_EQ(c.out, Wire()
                       .bytes(info_export(kOptInfo, 1 << 20, 0x0005))
                       .bytes(rep(kOptInfo, kRepInfo, Wire().u16(1).str("disk0")))
                       .bytes(rep(kOptInfo, kRepInfo, Wire().u16(2).str("first disk")))
                       .bytes(info_block_size(kOptInfo, 512, 4096, 1 << 25))
                       .bytes(rep(kOptInfo, kRepAck))
                       .get());
  // The canonical name answers a request made with the default's empty name;
  // an export without a description sends none.
  NegotiationOptions o;
  o.default_export = "disk1";
  auto d = converse(Wire().bytes(client_flags()).bytes(option(kOptInfo, info_payload("", {1, 2}))), o);
  EXPECT_EQ(d.out, Wire()
                       .bytes(info_export(kOptInfo, 4096, kDisk1Flags))
                       .bytes(rep(kOptInfo, kRepInfo, Wire().u16(1).str("disk1")))
                       .bytes(info_block_size(kOptInfo, 1, 4096, 1 << 25))
                       .bytes(rep(kOptInfo, kRepAck))
                       .get());
}

TEST(NbdNegotiation, InfoErrors) {
  auto unknown = converse(Wire().bytes(client_flags()).bytes(option(kOptInfo, info_payload("nope"))));
  EXPECT_EQ(first_reply_type(unknown.out), kErrUnknown);
  EXPECT_EQ(unknown.out.size(), 20u + std::string("export 'nope' not found").size());
  EXPECT_EQ(unknown.state, State::NeedOption);
  auto malformed = converse(Wire().bytes(client_flags()).bytes(option(kOptGo, Wire().u32(9).str("disk0"))));
  EXPECT_EQ(first_reply_type(malformed.out), kErrInvalid);
  EXPECT_EQ(malformed.state, State::NeedOption);
}

TEST(NbdNegotiation, GoEntersTransmission) {
  std::unique_ptr<Negotiation> n;
  auto c = converse(n, Wire().bytes(client_flags()).bytes(option(kOptGo, info_payload("disk1", {3}))));
  EXPECT_EQ(c.out, Wire()
                       .bytes(info_export(kOptGo, 4096, kDisk1Flags))
                       .bytes(info_block_size(kOptGo, 1, 4096, 1 << 25))
                       .bytes(rep(kOptGo, kRepAck))
                       .get());
  EXPECT_EQ(c.state, State::Done);
  EXPECT_EQ(n->result().export_->name, "disk1");
  EXPECT_TRUE(n->result().block_size_agreed);

  auto without = converse(n, Wire().bytes(client_flags()).bytes(option(kOptGo, info_payload("disk1"))));
  EXPECT_EQ(without.state, State::Done);
  EXPECT_FALSE(n->result().block_size_agreed);
}

TEST(NbdNegotiation, BytesAfterGoAreLeftForTransmission) {
  Wire request;
  request.u32(0x25609513).u16(0).u16(0).u64(1).u64(0).u32(512);
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptGo, info_payload("disk0"))).bytes(request));
  EXPECT_EQ(c.state, State::Done);
  EXPECT_EQ(c.leftover, request.get());
}

TEST(NbdNegotiation, StructuredRepliesOnceAndWithoutData) {
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptStructured)).bytes(option(kOptStructured)));
  ASSERT_GE(c.out.size(), 40u);
  EXPECT_EQ(std::vector(c.out.begin(), c.out.begin() + 20), rep(kOptStructured, kRepAck).get());
  EXPECT_EQ(first_reply_type(std::vector(c.out.begin() + 20, c.out.end())), kErrInvalid);
  auto d = converse(Wire().bytes(client_flags()).bytes(option(kOptStructured, Wire().u8(1))));
  EXPECT_EQ(first_reply_type(d.out), kErrInvalid);
}

TEST(NbdNegotiation, ExtendedHeaders) {
  std::unique_ptr<Negotiation> n;
  auto c = converse(
      n, Wire().bytes(client_flags()).bytes(option(kOptExtended)).bytes(option(kOptGo, info_payload("disk0"))));
  EXPECT_EQ(c.state, State::Done);
  // With extended headers SEND_DF stays.
  EXPECT_EQ(c.out, Wire()
                       .bytes(rep(kOptExtended, kRepAck))
                       .bytes(info_export(kOptGo, 1 << 20, kDisk0Flags))
                       .bytes(info_block_size(kOptGo, 512, 4096, 1 << 25))
                       .bytes(rep(kOptGo, kRepAck))
                       .get());
  EXPECT_TRUE(n->result().extended_headers);
  EXPECT_TRUE(n->result().structured_replies);
  EXPECT_EQ(n->result().header_mode(), HeaderMode::Extended);
}

TEST(NbdNegotiation, ExtendedHeadersRules) {
  // Structured replies cannot follow extended headers, but may precede them.
  auto after = converse(Wire().bytes(client_flags()).bytes(option(kOptExtended)).bytes(option(kOptStructured)));
  EXPECT_EQ(first_reply_type(std::vector(after.out.begin() + 20, after.out.end())), kErrExtHeaderReqd);
  auto before = converse(Wire().bytes(client_flags()).bytes(option(kOptStructured)).bytes(option(kOptExtended)));
  EXPECT_EQ(before.out, Wire().bytes(rep(kOptStructured, kRepAck)).bytes(rep(kOptExtended, kRepAck)).get());
  auto twice = converse(Wire().bytes(client_flags()).bytes(option(kOptExtended)).bytes(option(kOptExtended)));
  EXPECT_EQ(first_reply_type(std::vector(twice.out.begin() + 20, twice.out.end())), kErrInvalid);
  auto data = converse(Wire().bytes(client_flags()).bytes(option(kOptExtended, Wire().u8(0))));
  EXPECT_EQ(first_reply_type(data.out), kErrInvalid);
  // A client with extended headers must not use EXPORT_NAME.
  auto export_name = converse(
      Wire().bytes(client_flags()).bytes(option(kOptExtended)).bytes(option(kOptExportName, Wire().str("disk0"))));
  EXPECT_EQ(export_name.state, State::Closed);
  EXPECT_EQ(export_name.out, rep(kOptExtended, kRepAck).get());
}

TEST(NbdNegotiation, ExtendedHeadersCanBeWithheld) {
  NegotiationOptions o;
  o.offer_extended_headers = false;
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptExtended)), o);
  EXPECT_EQ(first_reply_type(c.out), kErrUnsup);
}

TEST(NbdNegotiation, UnknownOptionsAreUnsupported) {
  auto c = converse(Wire().bytes(client_flags()).bytes(option(42, Wire().str("payload"))).bytes(option(kOptPeek)));
  EXPECT_EQ(c.out, Wire()
                       .bytes(rep(42, kErrUnsup, Wire().str("option 42 is not supported")))
                       .bytes(rep(kOptPeek, kErrUnsup, Wire().str("NBD_OPT_PEEK_EXPORT is not supported")))
                       .get());
  EXPECT_EQ(c.state, State::NeedOption);
}

TEST(NbdNegotiation, MetaContextsNeedStructuredReplies) {
  auto list = converse(Wire().bytes(client_flags()).bytes(option(kOptListMeta, meta_payload("disk0", {}))));
  EXPECT_EQ(first_reply_type(list.out), kErrInvalid);
  auto set =
      converse(Wire().bytes(client_flags()).bytes(option(kOptSetMeta, meta_payload("disk0", {"base:allocation"}))));
  EXPECT_EQ(first_reply_type(set.out), kErrInvalid);
}

TEST(NbdNegotiation, ListMetaContext) {
  Wire start;
  start.bytes(client_flags()).bytes(option(kOptStructured));
  Bytes ack = rep(kOptStructured, kRepAck);
  auto all = converse(Wire().bytes(start).bytes(option(kOptListMeta, meta_payload("disk0", {}))));
  EXPECT_EQ(all.out, Wire()
                         .bytes(ack)
                         .bytes(meta_reply(kOptListMeta, 0, "base:allocation"))
                         .bytes(meta_reply(kOptListMeta, 0, "qemu:allocation-depth"))
                         .bytes(meta_reply(kOptListMeta, 0, "qemu:dirty-bitmap:b0"))
                         .bytes(rep(kOptListMeta, kRepAck))
                         .get());
  auto ns = converse(Wire().bytes(start).bytes(option(kOptListMeta, meta_payload("disk0", {"qemu:"}))));
  EXPECT_EQ(ns.out, Wire()
                        .bytes(ack)
                        .bytes(meta_reply(kOptListMeta, 0, "qemu:allocation-depth"))
                        .bytes(meta_reply(kOptListMeta, 0, "qemu:dirty-bitmap:b0"))
                        .bytes(rep(kOptListMeta, kRepAck))
                        .get());
  auto exact = converse(Wire().bytes(start).bytes(
      option(kOptListMeta, meta_payload("disk0", {"qemu:dirty-bitmap:b0", "x-unknown:thing", "base:"}))));
  EXPECT_EQ(exact.out, Wire()
                           .bytes(ack)
                           .bytes(meta_reply(kOptListMeta, 0, "base:allocation"))
                           .bytes(meta_reply(kOptListMeta, 0, "qemu:dirty-bitmap:b0"))
                           .bytes(rep(kOptListMeta, kRepAck))
                           .get());
  auto none = converse(Wire().bytes(start).bytes(option(kOptListMeta, meta_payload("disk0", {"x-foo:bar"}))));
  EXPECT_EQ(none.out, Wire().bytes(ack).bytes(rep(kOptListMeta, kRepAck)).get());
}

TEST(NbdNegotiation, MetaContextErrors) {
  Wire start;
  start.bytes(client_flags()).bytes(option(kOptStructured));
  auto tail = [](const Conversation& c) { return std::vector(c.out.begin() + 20, c.out.end()); };
  auto unknown = converse(Wire().bytes(start).bytes(option(kOptListMeta, meta_payload("nope", {}))));
  EXPECT_EQ(first_reply_type(tail(unknown)), kErrUnknown);
  auto no_colon = converse(Wire().bytes(start).bytes(option(kOptSetMeta, meta_payload("disk0", {"allocation"}))));
  EXPECT_EQ(first_reply_type(tail(no_colon)), kErrInvalid);
  auto malformed = converse(Wire().bytes(start).bytes(option(kOptListMeta, Wire().u32(5).str("disk0"))));
  EXPECT_EQ(first_reply_type(tail(malformed)), kErrInvalid);
  NegotiationOptions o;
  o.limits.max_meta_queries = 1;
  auto too_many =
      converse(Wire().bytes(start).bytes(option(kOptListMeta, meta_payload("disk0", {"base:", "qemu:"}))), o);
  EXPECT_EQ(first_reply_type(tail(too_many)), kErrTooBig);
}

TEST(NbdNegotiation, SetMetaContextSelectsForGo) {
  std::unique_ptr<Negotiation> n;
  auto c = converse(n, Wire()
                           .bytes(client_flags())
                           .bytes(option(kOptStructured))
                           .bytes(option(kOptSetMeta, meta_payload("disk0", {"qemu:dirty-bitmap:b0", "base:allocation",
                                                                             "base:allocation", "qemu:"})))
                           .bytes(option(kOptGo, info_payload("disk0"))));
  ASSERT_EQ(c.state, State::Done);
  // Ids follow the export's list; a bare namespace selects nothing in SET.
  Bytes expected_set = Wire()
                           .bytes(meta_reply(kOptSetMeta, 1, "base:allocation"))
                           .bytes(meta_reply(kOptSetMeta, 3, "qemu:dirty-bitmap:b0"))
                           .bytes(rep(kOptSetMeta, kRepAck));
  EXPECT_EQ(std::vector(c.out.begin() + 20, c.out.begin() + 20 + expected_set.size()), expected_set);
  using Selected = std::vector<std::pair<uint32_t, std::string>>;
  EXPECT_EQ(n->result().meta_contexts, (Selected{{1, "base:allocation"}, {3, "qemu:dirty-bitmap:b0"}}));
}

TEST(NbdNegotiation, SetMetaContextAppliesOnlyToItsExport) {
  std::unique_ptr<Negotiation> n;
  converse(n, Wire()
                  .bytes(client_flags())
                  .bytes(option(kOptStructured))
                  .bytes(option(kOptSetMeta, meta_payload("disk0", {"base:allocation"})))
                  .bytes(option(kOptGo, info_payload("disk1"))));
  ASSERT_EQ(n->state(), State::Done);
  EXPECT_TRUE(n->result().meta_contexts.empty());
}

TEST(NbdNegotiation, FailedSetMetaContextClearsTheSelection) {
  std::unique_ptr<Negotiation> n;
  converse(n, Wire()
                  .bytes(client_flags())
                  .bytes(option(kOptStructured))
                  .bytes(option(kOptSetMeta, meta_payload("disk0", {"base:allocation"})))
                  .bytes(option(kOptSetMeta, meta_payload("nope", {"base:allocation"})))
                  .bytes(option(kOptGo, info_payload("disk0"))));
  ASSERT_EQ(n->state(), State::Done);
  EXPECT_TRUE(n->result().meta_contexts.empty());
}

TEST(NbdNegotiation, StartTlsWithoutTlsIsPolicy) {
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptStartTls)));
  EXPECT_EQ(first_reply_type(c.out), kErrPolicy);
  EXPECT_EQ(c.state, State::NeedOption);
}

TEST(NbdNegotiation, StartTlsHandsOverAndForgetsEarlierState) {
  NegotiationOptions o;
  o.tls_configured = true;
  Wire client_hello;
  client_hello.u8(0x16).u8(0x03).u8(0x01);
  std::unique_ptr<Negotiation> n;
  auto c = converse(
      n, Wire().bytes(client_flags()).bytes(option(kOptStructured)).bytes(option(kOptStartTls)).bytes(client_hello), o);
  EXPECT_EQ(c.state, State::StartTls);
  EXPECT_EQ(c.out, Wire().bytes(rep(kOptStructured, kRepAck)).bytes(rep(kOptStartTls, kRepAck)).get());
  EXPECT_EQ(c.leftover, client_hello.get());

  n->tls_started();
  EXPECT_EQ(n->state(), State::NeedOption);
  auto again = n->feed(option(kOptStartTls).get());
  EXPECT_EQ(first_reply_type(again), kErrInvalid);
  n->feed(option(kOptGo, info_payload("disk0")).get());
  ASSERT_EQ(n->state(), State::Done);
  EXPECT_FALSE(n->result().structured_replies);
}

TEST(NbdNegotiation, StartTlsWithDataIsInvalid) {
  NegotiationOptions o;
  o.tls_configured = true;
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptStartTls, Wire().u8(0))), o);
  EXPECT_EQ(first_reply_type(c.out), kErrInvalid);
  EXPECT_EQ(c.state, State::NeedOption);
}

TEST(NbdNegotiation, TlsRequiredRefusesEverythingButStartTlsAndAbort) {
  for (uint32_t opt : {kOptList, kOptStructured, kOptExtended, kOptPeek, 42u}) {
    auto c = converse(Wire().bytes(client_flags()).bytes(option(opt)), tls_required());
    EXPECT_EQ(c.out, rep(opt, kErrTlsReqd, Wire().str("TLS is required")).get()) << "option " << opt;
  }
  auto info = converse(Wire().bytes(client_flags()).bytes(option(kOptInfo, info_payload("disk0"))), tls_required());
  EXPECT_EQ(first_reply_type(info.out), kErrTlsReqd);
  auto go = converse(Wire().bytes(client_flags()).bytes(option(kOptGo, info_payload("disk0"))), tls_required());
  EXPECT_EQ(first_reply_type(go.out), kErrTlsReqd);
  EXPECT_EQ(go.state, State::NeedOption);
  auto meta =
      converse(Wire().bytes(client_flags()).bytes(option(kOptListMeta, meta_payload("disk0", {}))), tls_required());
  EXPECT_EQ(first_reply_type(meta.out), kErrTlsReqd);

  auto export_name =
      converse(Wire().bytes(client_flags()).bytes(option(kOptExportName, Wire().str("disk0"))), tls_required());
  EXPECT_EQ(export_name.state, State::Closed);
  EXPECT_TRUE(export_name.out.empty());

  auto abort = converse(Wire().bytes(client_flags()).bytes(option(kOptAbort)), tls_required());
  EXPECT_EQ(abort.out, rep(kOptAbort, kRepAck).get());
  EXPECT_EQ(abort.state, State::Closed);
}

TEST(NbdNegotiation, TlsRequiredWorksOnceTlsIsUp) {
  std::unique_ptr<Negotiation> n;
  auto c = converse(n, Wire().bytes(client_flags()).bytes(option(kOptStartTls)), tls_required());
  EXPECT_EQ(c.out, rep(kOptStartTls, kRepAck).get());
  ASSERT_EQ(c.state, State::StartTls);
  n->tls_started();
  auto out = n->feed(option(kOptGo, info_payload("disk0")).get());
  EXPECT_EQ(n->state(), State::Done);
  EXPECT_EQ(first_reply_type(out), kRepInfo);

  NegotiationOptions active = tls_required();
  active.tls_active = true;
  auto pre = converse(Wire().bytes(client_flags()).bytes(option(kOptGo, info_payload("disk0"))), active);
  EXPECT_EQ(pre.state, State::Done);
}

TEST(NbdNegotiation, TlsRequiredNeedsAFixedNewstyleClient) {
  auto c = converse(client_flags(0), tls_required());
  EXPECT_EQ(c.state, State::Closed);
  EXPECT_NE(c.close_reason.find("fixed newstyle"), std::string::npos);
}

TEST(NbdNegotiation, OptionCountIsLimited) {
  NegotiationOptions o;
  o.limits.max_options = 3;
  Wire input;
  input.bytes(client_flags());
  for (int i = 0; i < 4; ++i) input.bytes(option(kOptList));
  auto c = converse(input, o);
  EXPECT_EQ(c.state, State::Closed);
  EXPECT_NE(c.close_reason.find("more than 3 options"), std::string::npos);
  // Three complete LIST answers were sent, nothing for the fourth.
  auto three =
      converse(Wire().bytes(client_flags()).bytes(option(kOptList)).bytes(option(kOptList)).bytes(option(kOptList)), o);
  EXPECT_EQ(c.out, three.out);
}

TEST(NbdNegotiation, OversizedOptionClosesBeforeItsPayloadArrives) {
  // Only the header: the declared 4 GiB is never waited for or buffered.
  auto c = converse(Wire().bytes(client_flags()).u64(0x49484156454f5054).u32(kOptInfo).u32(0xffffffff));
  EXPECT_EQ(c.state, State::Closed);
  EXPECT_NE(c.close_reason.find("exceeds the limit"), std::string::npos);

  NegotiationOptions o;
  o.limits.max_option_length = 8;
  EXPECT_EQ(converse(Wire().bytes(client_flags()).bytes(option(kOptInfo, info_payload("disk0"))), o).state,
            State::Closed);
  EXPECT_EQ(converse(Wire().bytes(client_flags()).bytes(option(kOptInfo, info_payload("d"))), o).state,
            State::NeedOption);
}

TEST(NbdNegotiation, NothingHappensAfterClose) {
  Negotiation n(two_exports(), {});
  n.feed(client_flags(0x80).get());
  ASSERT_EQ(n.state(), State::Closed);
  EXPECT_TRUE(n.feed(option(kOptList).get()).empty());
  EXPECT_TRUE(n.take_leftover().empty());
}

TEST(NbdNegotiation, FlagsSentFollowWhatWasNegotiated) {
  // SEND_DF | BLOCK_STAT_PAYLOAD, and HAS_FLAGS forgotten by the caller.
  ExportDescription e{.name = "x", .transmission_flags = 0x0080 | 0x1000};
  auto flags_after = [&](const Wire& options) {
    Negotiation n({e}, {});
    n.feed(Wire().bytes(client_flags()).bytes(options).bytes(option(kOptGo, info_payload("x"))).get());
    EXPECT_EQ(n.state(), State::Done);
    return n.result().transmission_flags;
  };
  EXPECT_EQ(flags_after(Wire()), 0x0001);
  EXPECT_EQ(flags_after(option(kOptStructured)), 0x0081);
  EXPECT_EQ(flags_after(option(kOptExtended)), 0x1081);
}

TEST(NbdNegotiation, ExportNameLongerThanTheStringLimitCloses) {
  auto c = converse(Wire().bytes(client_flags()).bytes(option(kOptExportName, Wire().str(std::string(4097, 'a')))));
  EXPECT_EQ(c.state, State::Closed);
  EXPECT_NE(c.close_reason.find("4096"), std::string::npos);
}
