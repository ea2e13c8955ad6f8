// Hostile NBD clients against keel-nbd, byte by byte: broken handshakes,
// absurd options, bad requests. Each case asserts the protocol's outcome (the
// NBD_REP_ERR_* or NBD error value, or the connection closed) and that the
// server still serves a well-behaved client afterwards. Every case runs
// against qemu-nbd 7.2 too, with the same bytes; where the two differ the
// expectation says so and why (label "robustness").
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/support/nbd_server_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_nbd_client.h"
#include "tests/support/temp_dir.h"

namespace keel::test {
namespace {

using namespace std::chrono_literals;

// Values from the NBD spec (doc/proto.md).
constexpr uint32_t kOptExportName = 1, kOptList = 3, kOptGo = 7, kOptExtendedHeaders = 11;
constexpr uint32_t kRepAck = 1, kRepServer = 2;
constexpr uint32_t kErrUnsup = 0x80000001, kErrInvalid = 0x80000003;
constexpr uint16_t kRead = 0, kWrite = 1, kDisc = 2, kFlush = 3, kTrim = 4, kWriteZeroes = 6;
constexpr uint16_t kFlagFua = 1, kFlagReadOnly = 2;
constexpr uint32_t kEperm = 1, kEinval = 22, kEnospc = 28;
constexpr uint32_t kMaxRequest = 32u << 20;
constexpr uint64_t kImageSize = 1 << 20;

class NbdHostileTest : public ::testing::TestWithParam<NbdServerKind> {
 protected:
  void SetUp() override {
    if (GetParam() == NbdServerKind::Qemu && !have_program("qemu-nbd")) GTEST_SKIP() << "qemu-nbd not installed";
    raw_ = dir_.file("disk.raw");
    contents_ = random_bytes(kImageSize, 8);
    write_file(raw_, contents_);
  }

  bool keel() const { return GetParam() == NbdServerKind::Keel; }

  // Serves the raw image, writable unless `extra` says -r.
  NbdServerProcess& serve(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"-e", "0", "-f", "raw"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(raw_);
    server_ = std::make_unique<NbdServerProcess>(GetParam(), dir_.file("s.sock"), args);
    return *server_;
  }

  // A well-behaved client is served: a full handshake and a read that returns the image's bytes.
  void expect_served() {
    RawNbdClient good(server_->socket());
    const GoResult go = good.handshake();
    EXPECT_EQ(go.size, kImageSize);
    const auto data = good.read(4096, 4096);
    ASSERT_TRUE(data) << nbd_server_name(GetParam()) << " no longer serves";
    EXPECT_TRUE(std::equal(data->begin(), data->end(), contents_.begin() + 4096));
  }

  // The error of one request's simple reply (the connection is then used on, so it must stay in sync).
  uint32_t error_of(RawNbdClient& c, uint16_t type, uint16_t flags, uint64_t offset, uint32_t length,
                    const Buffer& payload = {}) {
    static uint64_t cookie = 1000;
    const uint64_t sent = ++cookie;
    EXPECT_TRUE(c.request(type, flags, sent, offset, length, payload));
    const auto reply = c.simple_reply();
    if (!reply) {
      ADD_FAILURE() << "connection closed instead of a reply";
      return ~0u;
    }
    EXPECT_EQ(reply->cookie, sent);
    if (reply->error == 0 && type == kRead) c.receive(length);
    return reply->error;
  }

  // After an error the same connection still reads correctly (the server did not lose its place in the stream).
  void expect_in_sync(RawNbdClient& c) {
    const auto data = c.read(0, 512);
    ASSERT_TRUE(data) << "connection out of sync";
    EXPECT_TRUE(std::equal(data->begin(), data->end(), contents_.begin()));
  }

  TempDir dir_;
  std::string raw_;
  std::vector<uint8_t> contents_;
  std::unique_ptr<NbdServerProcess> server_;
};

// The client's flags carry bits the server does not know: the spec has it hang up.
TEST_P(NbdHostileTest, UnknownClientFlagsClose) {
  serve();
  RawNbdClient c(server_->socket());
  ASSERT_TRUE(c.read_greeting());
  c.send({0x80, 0, 0, 3});
  EXPECT_TRUE(c.closed_within());
  expect_served();
}

// An option whose magic is not IHAVEOPT: the stream cannot be trusted any more, the server hangs up.
TEST_P(NbdHostileTest, BadOptionMagicCloses) {
  serve();
  RawNbdClient c(server_->socket());
  ASSERT_TRUE(c.read_greeting());
  c.send({0, 0, 0, 3});
  Buffer bad = option_bytes(kOptList, 0);
  bad[7] = 'X';
  c.send(bad);
  EXPECT_TRUE(c.closed_within());
  expect_served();
}

// Clients that hang up part-way through the greeting, the flags, an option header or an option's payload.
TEST_P(NbdHostileTest, TruncatedHandshakesLeaveTheServerServing) {
  serve();
  const Buffer go = option_bytes(kOptGo, static_cast<uint32_t>(go_payload("").size()), go_payload(""));
  for (size_t cut : {size_t{0}, size_t{2}, size_t{4 + 9}, size_t{4 + 16 + 3}, size_t{4 + go.size() - 1}}) {
    RawNbdClient c(server_->socket());
    if (cut > 0) {
      ASSERT_TRUE(c.read_greeting());
      Buffer bytes{0, 0, 0, 3};
      bytes.insert(bytes.end(), go.begin(), go.end());
      c.send(Buffer(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(cut)));
    }
    c.close();
  }
  expect_served();
}

// An option header declaring 4 GiB of payload: neither server buffers (or waits for) it, both hang up.
TEST_P(NbdHostileTest, OptionWithAbsurdLengthCloses) {
  serve();
  RawNbdClient c(server_->socket());
  ASSERT_TRUE(c.read_greeting());
  c.send({0, 0, 0, 3});
  c.send(option_bytes(kOptGo, 0xffffffff, Buffer(64, 0)));
  EXPECT_TRUE(c.closed_within());
  expect_served();
}

// Options with lengths that lie within reason: the payload is read past, the error named, the handshake goes on.
TEST_P(NbdHostileTest, OptionLengthsThatDoNotFitAreAnsweredAndSkipped) {
  serve();
  RawNbdClient c(server_->socket());
  ASSERT_TRUE(c.read_greeting());
  c.send({0, 0, 0, 3});
  // LIST takes no payload: ERR_INVALID.
  c.send(option_bytes(kOptList, 100, Buffer(100, 7)));
  auto r = c.option_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kErrInvalid);
  // GO whose name length runs past the option's end: ERR_INVALID.
  Buffer lying;
  put_be32(lying, 1000);
  lying.resize(20, 'a');
  c.send(option_bytes(kOptGo, static_cast<uint32_t>(lying.size()), lying));
  r = c.option_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kErrInvalid);
  // An option code the spec does not define, with 1000 bytes of payload: ERR_UNSUP.
  c.send(option_bytes(99, 1000, Buffer(1000, 1)));
  r = c.option_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kErrUnsup);
  EXPECT_EQ(r->option, 99u);
  // Still in sync: LIST answers with the one export, then ACK.
  c.send(option_bytes(kOptList, 0));
  r = c.option_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kRepServer);
  r = c.option_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kRepAck);
  expect_served();
}

// A client that never ends its handshake with options. keel caps options per connection (128, NegotiationLimits) and
// hangs up at the 129th; qemu-nbd 7.2 has no cap and answers every one (deliberate difference: each option costs the server
// a reply, and without a cap a client could keep a connection in its handshake for ever).
TEST_P(NbdHostileTest, EndlessOptionsAreCapped) {
  serve();
  RawNbdClient c(server_->socket());
  ASSERT_TRUE(c.read_greeting());
  c.send({0, 0, 0, 3});
  size_t answered = 0;
  for (int i = 0; i < 200; i++) {
    if (!c.send(option_bytes(99, 0))) break;
    const auto r = c.option_reply();
    if (!r) break;
    EXPECT_EQ(r->type, kErrUnsup);
    answered++;
  }
  if (keel()) {
    EXPECT_EQ(answered, 128u);
    EXPECT_TRUE(c.closed_within());
  } else {
    EXPECT_EQ(answered, 200u);
  }
  expect_served();
}

// The old-style NBD_OPT_EXPORT_NAME naming an export that does not exist: no error reply exists for it, so close.
TEST_P(NbdHostileTest, ExportNameOfAMissingExportCloses) {
  serve();
  RawNbdClient c(server_->socket());
  ASSERT_TRUE(c.read_greeting());
  c.send({0, 0, 0, 3});
  c.send(option_bytes(kOptExportName, 7, Buffer{'m', 'i', 's', 's', 'i', 'n', 'g'}));
  EXPECT_TRUE(c.closed_within());
  expect_served();
}

TEST_P(NbdHostileTest, UnknownCommandIsEinvalAndTheConnectionGoesOn) {
  serve();
  RawNbdClient c(server_->socket());
  c.handshake();
  EXPECT_EQ(error_of(c, 42, 0, 0, 512), kEinval);
  expect_in_sync(c);
  EXPECT_EQ(error_of(c, 0xffff, 0, 0, 0), kEinval);
  expect_in_sync(c);
}

// Flags the command does not take (DF without structured replies, NO_HOLE on a read, an undefined bit) are EINVAL.
// FUA is valid on every command once advertised (the spec: the server MUST accept it), so it is no error on a read
// or a flush, as in qemu-nbd.
TEST_P(NbdHostileTest, UnknownFlagsAreEinval) {
  serve();
  RawNbdClient c(server_->socket());
  c.handshake();
  EXPECT_EQ(error_of(c, kRead, 1u << 2, 0, 512), kEinval);
  EXPECT_EQ(error_of(c, kRead, 1u << 1, 0, 512), kEinval);
  EXPECT_EQ(error_of(c, kRead, 1u << 9, 0, 512), kEinval);
  EXPECT_EQ(error_of(c, kWriteZeroes, 1u << 12, 0, 512), kEinval);
  expect_in_sync(c);
  EXPECT_EQ(error_of(c, kRead, kFlagFua, 0, 512), 0u);
  EXPECT_EQ(error_of(c, kFlush, kFlagFua, 0, 0), 0u);
  expect_in_sync(c);
}

// Requests past the end. Reads, trims: EINVAL. Writes and write-zeroes: keel answers ENOSPC, which the spec asks for
// ("the server SHOULD return NBD_ENOSPC" for a write beyond the end); qemu-nbd 7.2 answers EINVAL. A refused write's
// payload is read past, so the connection stays in sync on both.
TEST_P(NbdHostileTest, OutOfRangeRequestsAreRefused) {
  serve();
  RawNbdClient c(server_->socket());
  c.handshake();
  const uint32_t write_error = keel() ? kEnospc : kEinval;
  EXPECT_EQ(error_of(c, kRead, 0, kImageSize, 512), kEinval);
  EXPECT_EQ(error_of(c, kRead, 0, kImageSize - 512, 1024), kEinval);
  EXPECT_EQ(error_of(c, kRead, 0, ~uint64_t{0} - 10, 512), kEinval);  // offset + length wraps
  EXPECT_EQ(error_of(c, kTrim, 0, kImageSize, 512), kEinval);
  EXPECT_EQ(error_of(c, kWriteZeroes, 0, kImageSize - 512, 1024), write_error);
  EXPECT_EQ(error_of(c, kWrite, 0, kImageSize - 512, 4096, Buffer(4096, 0xee)), write_error);
  expect_in_sync(c);
  EXPECT_EQ(read_file(raw_), contents_);
}

// The advertised minimum block size is 1 for a raw file on both servers, so no request is misaligned "past the
// advertised minimum"; odd offsets and lengths are served (reads and writes), and the bytes land where they should.
TEST_P(NbdHostileTest, UnalignedRequestsWithinTheAdvertisedMinimumAreServed) {
  serve();
  RawNbdClient c(server_->socket());
  const GoResult go = c.handshake();
  EXPECT_EQ(go.min_block, 1u);
  EXPECT_EQ(go.max_block, kMaxRequest);
  EXPECT_EQ(error_of(c, kWrite, 0, 4097, 3, Buffer{1, 2, 3}), 0u);
  ASSERT_TRUE(c.request(kRead, 0, 7, 4096, 5));
  const auto reply = c.simple_reply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->error, 0u);
  const auto data = c.receive(5);
  ASSERT_TRUE(data);
  EXPECT_EQ(*data, (Buffer{contents_[4096], 1, 2, 3, contents_[4100]}));
}

// A read longer than the advertised maximum (32 MiB) is EINVAL and the connection goes on. A write that long is
// answered EINVAL and then the connection ends, as in qemu-nbd: the payload (up to 4 GiB) is not read past.
TEST_P(NbdHostileTest, OversizedRequests) {
  serve();
  RawNbdClient c(server_->socket());
  c.handshake();
  EXPECT_EQ(error_of(c, kRead, 0, 0, kMaxRequest + 1), kEinval);
  EXPECT_EQ(error_of(c, kRead, 0, 0, 0xffffffff), kEinval);
  expect_in_sync(c);
  ASSERT_TRUE(c.request(kWrite, 0, 5, 0, kMaxRequest + 1));
  const auto reply = c.simple_reply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->error, kEinval);
  EXPECT_TRUE(c.closed_within());
  expect_served();
}

// A read-only export (-r): every write is refused; a write's payload is read past and the connection stays in sync.
// keel answers EPERM, as the spec asks; qemu-nbd 7.2 answers EINVAL (it sends EINVAL for every request it refuses
// before running it).
TEST_P(NbdHostileTest, WritesToAReadOnlyExportAreRefused) {
  serve({"-r"});
  RawNbdClient c(server_->socket());
  const GoResult go = c.handshake();
  EXPECT_TRUE(go.transmission_flags & kFlagReadOnly);
  const uint32_t error = keel() ? kEperm : kEinval;
  EXPECT_EQ(error_of(c, kWrite, 0, 0, 4096, Buffer(4096, 0xaa)), error);
  expect_in_sync(c);
  EXPECT_EQ(error_of(c, kWrite, kFlagFua, 0, 65536, Buffer(65536, 0xbb)), error);
  EXPECT_EQ(error_of(c, kWriteZeroes, 0, 0, 4096), error);
  EXPECT_EQ(error_of(c, kTrim, 0, 0, 4096), error);
  expect_in_sync(c);
  EXPECT_EQ(read_file(raw_), contents_);
}

// After NBD_CMD_DISC the server reads nothing more: a request sent after it gets no reply, the connection closes.
TEST_P(NbdHostileTest, RequestsAfterDiscAreNotAnswered) {
  serve();
  RawNbdClient c(server_->socket());
  c.handshake();
  Buffer both = request_bytes(kDisc, 0, 1, 0, 0);
  const Buffer read = request_bytes(kRead, 0, 2, 0, 512);
  both.insert(both.end(), read.begin(), read.end());
  c.send(both);
  EXPECT_FALSE(c.receive(1)) << "a reply after NBD_CMD_DISC";
  expect_served();
}

// A request header with a wrong magic: the server cannot find the next request, so it hangs up. keel sends nothing
// (there is no cookie to answer); qemu-nbd 7.2 first sends an EINVAL reply with the garbage header's cookie.
TEST_P(NbdHostileTest, BadRequestMagicCloses) {
  serve();
  RawNbdClient c(server_->socket());
  c.handshake();
  Buffer bad = request_bytes(kRead, 0, 1, 0, 512);
  bad[0] ^= 0xff;
  c.send(bad);
  if (keel())
    EXPECT_FALSE(c.receive(1));
  else
    EXPECT_TRUE(c.closed_within());
  expect_served();
}

// With extended headers (keel only: qemu-nbd 7.2 answers NBD_OPT_EXTENDED_HEADERS with ERR_UNSUP) lengths are 64
// bits: a write declaring 2^40 bytes of payload is answered EINVAL in an error chunk and the connection closed, and
// a compact request where 32-byte ones are due is a broken stream (closed without a reply).
TEST_P(NbdHostileTest, ExtendedHeadersWithAbsurdLengths) {
  serve();
  auto extended_client = [&] {
    auto c = std::make_unique<RawNbdClient>(server_->socket());
    EXPECT_TRUE(c->read_greeting());
    c->send({0, 0, 0, 3});
    c->send(option_bytes(kOptExtendedHeaders, 0));
    const auto r = c->option_reply();
    EXPECT_TRUE(r);
    return std::make_pair(std::move(c), r ? r->type : 0);
  };
  auto [c, answer] = extended_client();
  if (!keel()) {
    EXPECT_EQ(answer, kErrUnsup);
    GTEST_SKIP() << "qemu-nbd 7.2 has no extended headers";
  }
  ASSERT_EQ(answer, kRepAck);
  const Buffer go = go_payload("");
  c->send(option_bytes(kOptGo, static_cast<uint32_t>(go.size()), go));
  for (auto r = c->option_reply(); r && r->type != kRepAck; r = c->option_reply()) ASSERT_LT(r->type, 0x80000000u);
  // 32-byte request: magic, flags, type, cookie, offset, 64-bit length.
  Buffer write;
  put_be32(write, 0x21e41c71);
  put_be16(write, 0);
  put_be16(write, kWrite);
  put_be64(write, 77);
  put_be64(write, 0);
  put_be64(write, uint64_t{1} << 40);
  write.resize(write.size() + 4096, 0xcc);
  c->send(write);
  const auto header = c->receive(32);
  ASSERT_TRUE(header);
  EXPECT_EQ(get_be32(header->data()), 0x6e8a278cu);  // extended reply magic
  EXPECT_EQ(get_be16(header->data() + 6), 0x8001);    // NBD_REPLY_TYPE_ERROR
  EXPECT_EQ(get_be64(header->data() + 8), 77u);
  const auto payload = c->receive(get_be64(header->data() + 24));
  ASSERT_TRUE(payload);
  EXPECT_EQ(get_be32(payload->data()), kEinval);
  EXPECT_TRUE(c->closed_within());

  auto [compact, ack] = extended_client();
  ASSERT_EQ(ack, kRepAck);
  compact->send(option_bytes(kOptGo, static_cast<uint32_t>(go.size()), go));
  for (auto r = compact->option_reply(); r && r->type != kRepAck; r = compact->option_reply()) {
  }
  compact->send(request_bytes(kRead, 0, 1, 0, 512));
  compact->send(Buffer(4, 0));  // 32 bytes in all, so only the magic is wrong
  EXPECT_FALSE(compact->receive(1));
  expect_served();
}

INSTANTIATE_TEST_SUITE_P(Servers, NbdHostileTest, ::testing::Values(NbdServerKind::Keel, NbdServerKind::Qemu),
                         [](const auto& info) { return info.param == NbdServerKind::Keel ? "keel" : "qemu"; });

}  // namespace
}  // namespace keel::test
