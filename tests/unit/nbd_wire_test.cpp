// nbd/protocol.h and nbd/wire.h against the byte layouts of doc/proto.md.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "base/error.h"
#include "nbd/protocol.h"
#include "nbd/wire.h"
#include "tests/unit/nbd_test_bytes.h"

using namespace keel::nbd;
using keel::nbd::test::Wire;

namespace {

// By value: callers pass temporaries.
template <typename T>
OptionError error_of(const Parsed<T>& p) {
  if (const auto* e = std::get_if<OptionError>(&p)) return *e;
  ADD_FAILURE() << "parsed without error";
  return {};
}

// The 20-byte option reply header as the spec lays it out.
Wire reply_header(uint32_t option, uint32_t type, uint32_t length) {
  Wire w;
  w.u64(0x3e889045565a9).u32(option).u32(type).u32(length);
  return w;
}

}  // namespace

TEST(NbdProtocol, ConstantsMatchTheSpec) {
  EXPECT_EQ(kNbdMagic, 0x4e42444d41474943u);  // "NBDMAGIC"
  EXPECT_EQ(kIHaveOpt, 0x49484156454f5054u);  // "IHAVEOPT"
  EXPECT_EQ(static_cast<uint32_t>(Reply::ErrUnsup), 0x80000001u);
  EXPECT_EQ(static_cast<uint32_t>(Reply::ErrExtHeaderReqd), 0x8000000au);
  EXPECT_TRUE(is_error(Reply::ErrTlsReqd));
  EXPECT_FALSE(is_error(Reply::MetaContext));
  EXPECT_EQ(static_cast<uint16_t>(ChunkType::Error), 0x8001u);
  EXPECT_EQ(static_cast<uint16_t>(ChunkType::ErrorOffset), 0x8002u);
  EXPECT_EQ(transmission_flag::kBlockStatPayload, 1u << 12);
  EXPECT_EQ(command_flag::kPayloadLen, 1u << 5);
}

TEST(NbdProtocol, ErrnoMapsToTheSpecsValues) {
  EXPECT_EQ(nbd_error_from_errno(0), 0u);
  EXPECT_EQ(nbd_error_from_errno(EPERM), 1u);
  EXPECT_EQ(nbd_error_from_errno(EROFS), 1u);
  EXPECT_EQ(nbd_error_from_errno(EIO), 5u);
  EXPECT_EQ(nbd_error_from_errno(ENOMEM), 12u);
  EXPECT_EQ(nbd_error_from_errno(EINVAL), 22u);
  EXPECT_EQ(nbd_error_from_errno(ENOSPC), 28u);
  EXPECT_EQ(nbd_error_from_errno(EDQUOT), 28u);
  EXPECT_EQ(nbd_error_from_errno(EFBIG), 28u);
  EXPECT_EQ(nbd_error_from_errno(EOVERFLOW), 75u);
  EXPECT_EQ(nbd_error_from_errno(EOPNOTSUPP), 95u);
  EXPECT_EQ(nbd_error_from_errno(ESHUTDOWN), 108u);
  EXPECT_EQ(nbd_error_from_errno(ENOENT), 22u);
  EXPECT_EQ(nbd_error_from_errno(-1), 22u);
}

TEST(NbdProtocol, OptionNames) {
  EXPECT_EQ(option_name(7), "NBD_OPT_GO");
  EXPECT_EQ(option_name(11), "NBD_OPT_EXTENDED_HEADERS");
  EXPECT_EQ(option_name(42), "option 42");
}

TEST(NbdWire, OptionHeaderAndClientFlags) {
  Wire w;
  w.u64(kIHaveOpt).u32(7).u32(0x01020304);
  auto h = parse_option_header(w.get());
  ASSERT_TRUE(h);
  EXPECT_EQ(h->magic, kIHaveOpt);
  EXPECT_EQ(h->option, 7u);
  EXPECT_EQ(h->length, 0x01020304u);
  EXPECT_FALSE(parse_option_header(std::span(w.get()).first(15)));

  Wire f;
  f.u32(3);
  EXPECT_EQ(parse_client_flags(f.get()), 3u);
  EXPECT_FALSE(parse_client_flags(std::span(f.get()).first(3)));
}

TEST(NbdWire, InfoRequest) {
  Wire w;
  w.u32(5).str("disk0").u16(2).u16(3).u16(1);
  auto r = std::get<InfoRequest>(parse_info_request(w.get()));
  EXPECT_EQ(r.name, "disk0");
  EXPECT_EQ(r.infos, (std::vector<uint16_t>{3, 1}));

  Wire empty_name;
  empty_name.u32(0).u16(0);
  EXPECT_EQ(std::get<InfoRequest>(parse_info_request(empty_name.get())).name, "");
}

TEST(NbdWire, InfoRequestLengthsMustMatchExactly) {
  EXPECT_EQ(error_of(parse_info_request({})).reply, Reply::ErrInvalid);
  Wire name_overruns;
  name_overruns.u32(100).str("abc");
  EXPECT_EQ(error_of(parse_info_request(name_overruns.get())).reply, Reply::ErrInvalid);
  Wire no_count;
  no_count.u32(1).str("a").u8(0);
  EXPECT_EQ(error_of(parse_info_request(no_count.get())).reply, Reply::ErrInvalid);
  Wire too_few;
  too_few.u32(1).str("a").u16(2).u16(1);
  EXPECT_EQ(error_of(parse_info_request(too_few.get())).reply, Reply::ErrInvalid);
  Wire trailing;
  trailing.u32(1).str("a").u16(1).u16(1).u8(9);
  EXPECT_EQ(error_of(parse_info_request(trailing.get())).reply, Reply::ErrInvalid);
}

TEST(NbdWire, StringsFollowTheSpecLimits) {
  Wire too_long;
  too_long.u32(4097).str(std::string(4097, 'x')).u16(0);
  OptionError e = error_of(parse_info_request(too_long.get()));
  EXPECT_EQ(e.reply, Reply::ErrInvalid);
  EXPECT_NE(e.message.find("4096"), std::string::npos);
  Wire at_limit;
  at_limit.u32(4096).str(std::string(4096, 'x')).u16(0);
  EXPECT_TRUE(std::holds_alternative<InfoRequest>(parse_info_request(at_limit.get())));
  Wire nul;
  nul.u32(3).str(std::string("a\0b", 3)).u16(0);
  EXPECT_EQ(error_of(parse_info_request(nul.get())).reply, Reply::ErrInvalid);
}

TEST(NbdWire, MetaContextRequest) {
  Wire w;
  w.u32(5).str("disk0").u32(2).u32(15).str("base:allocation").u32(5).str("qemu:");
  auto r = std::get<MetaContextRequest>(parse_meta_context_request(w.get(), 8));
  EXPECT_EQ(r.export_name, "disk0");
  EXPECT_EQ(r.queries, (std::vector<std::string>{"base:allocation", "qemu:"}));

  Wire none;
  none.u32(0).u32(0);
  EXPECT_TRUE(std::get<MetaContextRequest>(parse_meta_context_request(none.get(), 8)).queries.empty());
}

TEST(NbdWire, MetaContextRequestIsBounded) {
  Wire too_many;
  too_many.u32(0).u32(3).u32(2).str("a:").u32(2).str("b:").u32(2).str("c:");
  EXPECT_EQ(error_of(parse_meta_context_request(too_many.get(), 2)).reply, Reply::ErrTooBig);
  // A huge count with no room for it is refused before anything is reserved.
  Wire huge_count;
  huge_count.u32(0).u32(0x7fffffff);
  EXPECT_EQ(error_of(parse_meta_context_request(huge_count.get(), SIZE_MAX)).reply, Reply::ErrInvalid);
  Wire query_overruns;
  query_overruns.u32(0).u32(1).u32(50).str("base:");
  EXPECT_EQ(error_of(parse_meta_context_request(query_overruns.get(), 8)).reply, Reply::ErrInvalid);
  Wire trailing;
  trailing.u32(0).u32(1).u32(2).str("a:").u8(0);
  EXPECT_EQ(error_of(parse_meta_context_request(trailing.get(), 8)).reply, Reply::ErrInvalid);
  Wire no_count;
  no_count.u32(0).u16(0);
  EXPECT_EQ(error_of(parse_meta_context_request(no_count.get(), 8)).reply, Reply::ErrInvalid);
  Wire long_query;
  long_query.u32(0).u32(1).u32(4097).str(std::string(4097, 'q'));
  EXPECT_EQ(error_of(parse_meta_context_request(long_query.get(), 8)).reply, Reply::ErrInvalid);
}

TEST(NbdWire, ExportName) {
  Wire w;
  w.str("disk0");
  EXPECT_EQ(std::get<std::string>(parse_export_name(w.get())), "disk0");
  EXPECT_EQ(std::get<std::string>(parse_export_name({})), "");
  Wire too_long;
  too_long.str(std::string(4097, 'x'));
  EXPECT_EQ(error_of(parse_export_name(too_long.get())).reply, Reply::ErrInvalid);
}

TEST(NbdWire, GreetingAndExportNameReply) {
  Bytes out;
  append_greeting(out, 3);
  EXPECT_EQ(out, Wire().str("NBDMAGIC").str("IHAVEOPT").u16(3).get());
  EXPECT_EQ(out.size(), kGreetingSize);

  out.clear();
  append_export_name_reply(out, 0x123456789, 0x0003, false);
  EXPECT_EQ(out, Wire().u64(0x123456789).u16(3).zeroes(124).get());
  out.clear();
  append_export_name_reply(out, 512, 1, true);
  EXPECT_EQ(out, Wire().u64(512).u16(1).get());
}

TEST(NbdWire, OptionReplies) {
  Bytes out;
  append_ack(out, 8);
  EXPECT_EQ(out, reply_header(8, 1, 0).get());

  out.clear();
  append_server_reply(out, 3, "disk0", "first");
  EXPECT_EQ(out, reply_header(3, 2, 14).u32(5).str("disk0").str("first").get());

  out.clear();
  append_info_export(out, 7, 1 << 20, 0x0005);
  EXPECT_EQ(out, reply_header(7, 3, 12).u16(0).u64(1 << 20).u16(5).get());

  out.clear();
  append_info_name(out, 6, "disk0");
  EXPECT_EQ(out, reply_header(6, 3, 7).u16(1).str("disk0").get());

  out.clear();
  append_info_description(out, 6, "d");
  EXPECT_EQ(out, reply_header(6, 3, 3).u16(2).str("d").get());

  out.clear();
  append_info_block_size(out, 7, 512, 4096, 1 << 25);
  EXPECT_EQ(out, reply_header(7, 3, 14).u16(3).u32(512).u32(4096).u32(1 << 25).get());

  out.clear();
  append_meta_context_reply(out, 10, 3, "base:allocation");
  EXPECT_EQ(out, reply_header(10, 4, 19).u32(3).str("base:allocation").get());

  out.clear();
  append_option_error(out, 42, Reply::ErrUnsup, "no");
  EXPECT_EQ(out, reply_header(42, 0x80000001, 2).str("no").get());
}

TEST(NbdWire, MessagesAreCutToTheStringLimitOnACharacterBoundary) {
  EXPECT_EQ(clamp_string("short"), "short");
  std::string ascii(5000, 'a');
  EXPECT_EQ(clamp_string(ascii).size(), 4096u);
  // 4095 ASCII bytes then a 2-byte character straddling the limit: the whole
  // character goes.
  std::string straddling = std::string(4095, 'a') + "\xc3\xa9" + "tail";
  EXPECT_EQ(clamp_string(straddling), std::string(4095, 'a'));

  Bytes out;
  append_option_error(out, 1, Reply::ErrInvalid, ascii);
  EXPECT_EQ(out.size(), kOptionReplyHeaderSize + 4096);
}

TEST(NbdWire, CompactRequest) {
  Wire w;
  w.u32(0x25609513).u16(1).u16(1).u64(0xc00c1e).u64(4096).u32(512);
  auto r = std::get<Request>(parse_request(w.get(), HeaderMode::Compact));
  EXPECT_EQ(r.flags, command_flag::kFua);
  EXPECT_EQ(r.type, static_cast<uint16_t>(Command::Write));
  EXPECT_EQ(r.cookie, 0xc00c1eu);
  EXPECT_EQ(r.offset, 4096u);
  EXPECT_EQ(r.length, 512u);
}

TEST(NbdWire, ExtendedRequest) {
  Wire w;
  w.u32(0x21e41c71).u16(0x20).u16(6).u64(9).u64(1ull << 40).u64(1ull << 33);
  auto r = std::get<Request>(parse_request(w.get(), HeaderMode::Extended));
  EXPECT_EQ(r.flags, command_flag::kPayloadLen);
  EXPECT_EQ(r.type, static_cast<uint16_t>(Command::WriteZeroes));
  EXPECT_EQ(r.cookie, 9u);
  EXPECT_EQ(r.offset, 1ull << 40);
  EXPECT_EQ(r.length, 1ull << 33);
}

TEST(NbdWire, RequestMagicAndSizeMustMatchTheMode) {
  Wire compact;
  compact.u32(0x25609513).u16(0).u16(0).u64(1).u64(0).u32(1);
  Wire extended;
  extended.u32(0x21e41c71).u16(0).u16(0).u64(1).u64(0).u64(1);
  EXPECT_TRUE(std::holds_alternative<RequestError>(parse_request(compact.get(), HeaderMode::Extended)));
  EXPECT_TRUE(std::holds_alternative<RequestError>(parse_request(extended.get(), HeaderMode::Compact)));
  // Right size, wrong magic: a compact-sized extended magic.
  Wire wrong_magic;
  wrong_magic.u32(0x21e41c71).u16(0).u16(0).u64(1).u64(0).u32(1);
  auto e = parse_request(wrong_magic.get(), HeaderMode::Compact);
  ASSERT_TRUE(std::holds_alternative<RequestError>(e));
  EXPECT_NE(std::get<RequestError>(e).message.find("magic"), std::string::npos);
  EXPECT_TRUE(std::holds_alternative<RequestError>(parse_request({}, HeaderMode::Compact)));
}

TEST(NbdWire, ReplyHeaders) {
  Bytes out;
  append_simple_reply(out, 5, 0xabc);
  EXPECT_EQ(out, Wire().u32(0x67446698).u32(5).u64(0xabc).get());
  EXPECT_EQ(out.size(), kSimpleReplySize);

  out.clear();
  append_structured_reply_header(out, reply_flag::kDone, ChunkType::OffsetHole, 7, 12);
  EXPECT_EQ(out, Wire().u32(0x668e33ef).u16(1).u16(2).u64(7).u32(12).get());
  EXPECT_EQ(out.size(), kStructuredReplyHeaderSize);

  out.clear();
  append_extended_reply_header(out, 0, ChunkType::BlockStatusExt, 7, 1ull << 36, 24);
  EXPECT_EQ(out, Wire().u32(0x6e8a278c).u16(0).u16(6).u64(7).u64(1ull << 36).u64(24).get());
  EXPECT_EQ(out.size(), kExtendedReplyHeaderSize);
}

TEST(NbdWire, ChunkPayloads) {
  Bytes out;
  append_offset_data_payload(out, 4096);
  EXPECT_EQ(out, Wire().u64(4096).get());

  out.clear();
  append_offset_hole_payload(out, 8192, 65536);
  EXPECT_EQ(out, Wire().u64(8192).u32(65536).get());
  EXPECT_EQ(out.size(), kOffsetHolePayloadSize);

  out.clear();
  append_error_payload(out, error::kIo, "bad");
  EXPECT_EQ(out, Wire().u32(5).u16(3).str("bad").get());

  out.clear();
  append_error_offset_payload(out, error::kIo, "", 512);
  EXPECT_EQ(out, Wire().u32(5).u16(0).u64(512).get());

  out.clear();
  std::vector<BlockStatusDescriptor> d{{4096, state_flag::kHole | state_flag::kZero}, {512, 0}};
  append_block_status_payload(out, 1, d);
  EXPECT_EQ(out, Wire().u32(1).u32(4096).u32(3).u32(512).u32(0).get());

  out.clear();
  std::vector<BlockStatusExtDescriptor> x{{1ull << 35, state_flag::kZero}};
  append_block_status_ext_payload(out, 2, x);
  EXPECT_EQ(out, Wire().u32(2).u32(1).u64(1ull << 35).u32(0).u32(2).get());
}

TEST(NbdWire, ReplyChunkInEitherMode) {
  Bytes payload = Wire().u32(5).u16(0).get();
  Bytes out;
  append_reply_chunk(out, HeaderMode::Compact, reply_flag::kDone, ChunkType::Error, 3, 100, payload);
  EXPECT_EQ(out, Wire().u32(0x668e33ef).u16(1).u16(0x8001).u64(3).u32(6).bytes(payload).get());
  out.clear();
  append_reply_chunk(out, HeaderMode::Extended, reply_flag::kDone, ChunkType::Error, 3, 100, payload);
  EXPECT_EQ(out, Wire().u32(0x6e8a278c).u16(1).u16(0x8001).u64(3).u64(100).u64(6).bytes(payload).get());
}
