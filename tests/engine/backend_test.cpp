// BlockBackend over real images: each check it makes once for every front
// end, the request splitting and FUA emulation it does where a node cannot,
// draining, and arrival-order ordering of overlapping requests.
#include "block/backend.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/async/event_loop.h"
#include "base/async/sync.h"
#include "base/async/timer.h"
#include "base/error.h"
#include "block/format.h"
#include "tests/support/temp_dir.h"

using namespace keel;
using namespace keel::block;

namespace {

// A real raw image under a pass-through node that reports the limits a test gives it and records what reaches
// it, so the backend's shaping of requests is visible.
class RecordingNode final : public BlockNode {
 public:
  RecordingNode(std::unique_ptr<BlockNode> inner, Limits limits)
      : BlockNode(inner->filename(), inner->writable()), inner_(std::move(inner)), limits_(limits) {}
  struct Call {
    std::string op;
    uint64_t offset, length;
    bool fua;
    bool operator==(const Call&) const = default;
  };
  std::vector<Call> calls;
  // Holds writes until released, to leave requests in flight.
  WaitQueue* gate = nullptr;

  std::string_view format_name() const override { return inner_->format_name(); }
  uint64_t size() const override { return inner_->size(); }
  Limits limits() const override { return limits_; }
  Task<void> read(uint64_t offset, std::span<std::byte> buffer) override {
    calls.push_back({"read", offset, buffer.size(), false});
    co_await inner_->read(offset, buffer);
  }
  Task<void> write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags) override {
    calls.push_back({"write", offset, data.size(), flags.fua});
    if (gate) co_await gate->wait();
    co_await inner_->write(offset, data, flags);
  }
  Task<void> write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags) override {
    calls.push_back({"zero", offset, length, false});
    co_await inner_->write_zeroes(offset, length, flags);
  }
  Task<void> discard(uint64_t offset, uint64_t length) override {
    calls.push_back({"discard", offset, length, false});
    co_await inner_->discard(offset, length);
  }
  Task<void> flush() override {
    calls.push_back({"flush", 0, 0, false});
    co_await inner_->flush();
  }
  Task<BlockStatus> block_status(uint64_t offset, uint64_t length) override {
    co_return co_await inner_->block_status(offset, length);
  }
  Task<void> truncate(uint64_t size, Preallocation prealloc) override { co_await inner_->truncate(size, prealloc); }

 private:
  std::unique_ptr<BlockNode> inner_;
  Limits limits_;
};

struct Fixture {
  test::TempDir dir;
  EventLoop loop;
  RecordingNode* node = nullptr;

  std::unique_ptr<BlockBackend> backend(Limits limits, BackendOptions options = {}, bool writable = true) {
    const std::string path = dir.file("disk.raw");
    FileNode::create(path, 1 << 20, Preallocation::Off);
    OpenOptions open{.format = "raw", .writable = writable};
    auto recording = std::make_unique<RecordingNode>(loop.run(open_image(path, open)), limits);
    node = recording.get();
    return std::make_unique<BlockBackend>(std::move(recording), options);
  }
};

int error_of(EventLoop& loop, Task<void> t) {
  try {
    loop.run(std::move(t));
  } catch (const Error& e) {
    return e.code();
  }
  return 0;
}

Task<void> write_then_release(BlockBackend* b, WaitQueue* gate, std::vector<std::byte>* data) {
  TaskGroup g;
  g.spawn(b->write(0, *data));
  co_await Yield{};
  EXPECT_EQ(b->in_flight(), 1u);
  gate->notify_all();
  co_await b->drain();
  EXPECT_EQ(b->in_flight(), 0u);
  co_await g.join();
}

Task<void> write_then_read(BlockBackend* b, WaitQueue* gate, std::vector<std::byte>* data,
                           std::vector<std::byte>* got) {
  TaskGroup g;
  g.spawn(b->write(4096, *data));
  g.spawn(b->read(4096, *got));
  co_await Yield{};
  gate->notify_all();
  co_await g.join();
}

}  // namespace

TEST(BlockBackend, RefusesRequestsOutsideTheImageBeforeTheNode) {
  Fixture f;
  auto b = f.backend({});
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(error_of(f.loop, b->read((1 << 20) - 100, buf)), EIO);
  EXPECT_EQ(error_of(f.loop, b->write(~uint64_t{0} - 10, buf)), EIO);
  EXPECT_EQ(error_of(f.loop, b->discard(1 << 20, 1)), EIO);
  EXPECT_TRUE(f.node->calls.empty());
}

TEST(BlockBackend, RefusesMisalignedRequests) {
  Fixture f;
  auto b = f.backend({.request_alignment = 512});
  std::vector<std::byte> buf(1000);
  EXPECT_EQ(error_of(f.loop, b->read(0, buf)), EINVAL);
  EXPECT_EQ(error_of(f.loop, b->write_zeroes(100, 512)), EINVAL);
  EXPECT_TRUE(f.node->calls.empty());
}

TEST(BlockBackend, ReadOnlyRefusesEveryWrite) {
  Fixture f;
  auto b = f.backend({.can_fua = true}, {.read_only = true});
  std::vector<std::byte> buf(512);
  EXPECT_FALSE(b->writable());
  EXPECT_FALSE(b->limits().can_trim);
  EXPECT_EQ(error_of(f.loop, b->write(0, buf)), EPERM);
  EXPECT_EQ(error_of(f.loop, b->write_zeroes(0, 512)), EPERM);
  EXPECT_EQ(error_of(f.loop, b->discard(0, 512)), EPERM);
  EXPECT_EQ(error_of(f.loop, b->read(0, buf)), 0);
  EXPECT_EQ(f.node->calls.size(), 1u);
}

TEST(BlockBackend, SplitsTransfersToTheNodesMaximum) {
  Fixture f;
  auto b = f.backend({.max_transfer = 64 * 1024});
  std::vector<std::byte> buf(150 * 1024);
  f.loop.run(b->read(4096, buf));
  ASSERT_EQ(f.node->calls.size(), 3u);
  EXPECT_EQ(f.node->calls[0], (RecordingNode::Call{"read", 4096, 65536, false}));
  EXPECT_EQ(f.node->calls[2], (RecordingNode::Call{"read", 4096 + 131072, 22528, false}));
}

TEST(BlockBackend, EmulatesFuaWithAFlushWhereTheNodeCannot) {
  Fixture f;
  auto b = f.backend({.can_fua = false});
  std::vector<std::byte> buf(512);
  f.loop.run(b->write(0, buf, {.fua = true}));
  EXPECT_EQ(f.node->calls, (std::vector<RecordingNode::Call>{{"write", 0, 512, false}, {"flush", 0, 0, false}}));
}

TEST(BlockBackend, PassesFuaToANodeThatHonoursIt) {
  Fixture f;
  auto b = f.backend({.can_fua = true});
  std::vector<std::byte> buf(512);
  f.loop.run(b->write(0, buf, {.fua = true}));
  EXPECT_EQ(f.node->calls, (std::vector<RecordingNode::Call>{{"write", 0, 512, true}}));
}

TEST(BlockBackend, DiscardIgnoredSucceedsWithoutReachingTheNode) {
  Fixture f;
  auto b = f.backend({}, {.discard = false});
  f.loop.run(b->discard(0, 4096));
  EXPECT_TRUE(f.node->calls.empty());
}

TEST(BlockBackend, DrainWaitsForRequestsInFlight) {
  Fixture f;
  auto b = f.backend({});
  WaitQueue gate;
  f.node->gate = &gate;
  std::vector<std::byte> data(512, std::byte{7});
  f.loop.run(write_then_release(b.get(), &gate, &data));
}

TEST(BlockBackend, OrderedBackendsRunOverlappingRequestsInArrivalOrder) {
  for (const bool ordered : {true, false}) {
    Fixture f;
    auto b = f.backend({}, {.ordered = ordered});
    WaitQueue gate;
    f.node->gate = &gate;
    std::vector<std::byte> data(4096, std::byte{0x5a}), got(4096);
    f.loop.run(write_then_read(b.get(), &gate, &data, &got));
    // Ordered, the read waits for the held-up write; unordered it overtakes it and sees the old zeros.
    EXPECT_EQ(got[0], ordered ? std::byte{0x5a} : std::byte{0}) << "ordered=" << ordered;
  }
}
