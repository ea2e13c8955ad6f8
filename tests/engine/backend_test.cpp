// BlockBackend over real images: each check it makes once for every front
// end, the request splitting and FUA emulation it does where a node cannot,
// draining, arrival-order ordering of overlapping requests, and requests from
// other threads' loops.
#include "block/backend.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/async/event_loop.h"
#include "base/async/loop_thread.h"
#include "base/async/run_on.h"
#include "base/async/sync.h"
#include "base/async/timer.h"
#include "base/error.h"
#include "block/format.h"
#include "tests/support/create_image.h"
#include "tests/support/process.h"
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

Task<void> read_and_mark(BlockBackend* b, std::vector<std::byte>* got, bool* done) {
  co_await b->read(4096, *got);
  *done = true;
}

// A write held at the node, then a read of the same bytes. Unordered, the read is let finish before the write is
// released; ordered, it cannot: it is still waiting behind the write after 20 turns of the loop that would have
// let it finish.
Task<void> write_then_read(BlockBackend* b, WaitQueue* gate, std::vector<std::byte>* data,
                           std::vector<std::byte>* got, bool ordered) {
  TaskGroup g;
  bool read_done = false;
  g.spawn(b->write(4096, *data));
  g.spawn(read_and_mark(b, got, &read_done));
  co_await Yield{};
  Timer turn;
  for (int turns = 0; !read_done && (!ordered || turns < 20); turns++) {
    const bool slept = co_await turn.sleep_for(std::chrono::milliseconds(1));
    EXPECT_TRUE(slept);
  }
  EXPECT_EQ(read_done, !ordered);
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

TEST(BlockBackend, DetectZeroesTurnsWritesOfZerosIntoWriteZeroes) {
  for (const DetectZeroes mode : {DetectZeroes::Off, DetectZeroes::On}) {
    Fixture f;
    auto b = f.backend({}, {.detect_zeroes = mode});
    const std::vector<std::byte> zeros(8192), data(4096, std::byte{1});
    f.loop.run(b->write(0, zeros));
    f.loop.run(b->write(8192, data));
    const std::string first = mode == DetectZeroes::On ? "zero" : "write";
    EXPECT_EQ(f.node->calls, (std::vector<RecordingNode::Call>{{first, 0, 8192, false}, {"write", 8192, 4096, false}}));
  }
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
    f.loop.run(write_then_read(b.get(), &gate, &data, &got, ordered));
    // Ordered, the read waits for the held-up write; unordered it overtakes it and sees the old zeros.
    EXPECT_EQ(got[0], ordered ? std::byte{0x5a} : std::byte{0}) << "ordered=" << ordered;
  }
}

namespace {

constexpr int kLoops = 3;
constexpr int kWritersPerLoop = 4;
constexpr uint64_t kStripe = 48 * 1024;  // several clusters and parts of clusters per writer

std::vector<std::byte> stripe_pattern(int writer, int round) {
  std::vector<std::byte> data(kStripe);
  for (size_t i = 0; i < data.size(); i++) data[i] = std::byte(static_cast<uint8_t>(writer * 31 + round * 7 + i / 512));
  return data;
}

// One writer's rounds, on whichever loop runs it: write its stripe, read it back, compare.
Task<void> write_and_verify(BlockBackend* b, int writer, int rounds, int* mismatches) {
  for (int round = 0; round < rounds; round++) {
    const std::vector<std::byte> data = stripe_pattern(writer, round);
    const uint64_t offset = static_cast<uint64_t>(writer) * kStripe + 1536;  // unaligned to clusters
    co_await b->write(offset, data);
    std::vector<std::byte> got(data.size());
    co_await b->read(offset, got);
    if (got != data) ++*mismatches;
  }
}

Task<void> writers_on(BlockBackend* b, int first_writer, int rounds, int* mismatches) {
  TaskGroup group;
  for (int i = 0; i < kWritersPerLoop; i++) group.spawn(write_and_verify(b, first_writer + i, rounds, mismatches));
  co_await group.join();
}

Task<void> from_every_loop(BlockBackend* b, std::vector<EventLoop*> loops, int rounds, std::vector<int>* mismatches) {
  TaskGroup group;
  for (size_t i = 0; i < loops.size(); i++)
    group.spawn(run_on(*loops[i], writers_on(b, static_cast<int>(i) * kWritersPerLoop, rounds, &(*mismatches)[i])));
  co_await group.join();
  co_await b->drain();
}

}  // namespace

// Front ends on several threads' loops share one qcow2 backend, as NBD connections on connection threads do:
// every request runs on the node's loop, so allocations never race (TSan runs this case too).
TEST(BlockBackendLoops, RequestsFromOtherLoopsRunOnTheNodesLoop) {
  test::TempDir dir;
  EventLoop loop;
  const std::string path = dir.file("disk.qcow2");
  test::create_qcow2(loop, path, 4 << 20, "cluster_size=16384");
  {
    BlockBackend backend(loop.run(open_image(path, OpenOptions{.format = "qcow2", .writable = true})));
    std::vector<std::unique_ptr<LoopThread>> threads;
    std::vector<EventLoop*> loops;
    for (int i = 0; i < kLoops; i++) {
      threads.push_back(std::make_unique<LoopThread>());
      loops.push_back(&threads.back()->loop());
    }
    std::vector<int> mismatches(kLoops, 0);
    loop.run(from_every_loop(&backend, loops, 6, &mismatches));
    for (int i = 0; i < kLoops; i++) EXPECT_EQ(mismatches[i], 0) << "loop " << i;
    loop.run(backend.close());
  }
  const test::RunResult check = test::run({"qemu-img", "check", path});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  // The last round of every writer is what the image holds.
  BlockBackend reopened(loop.run(open_image(path, OpenOptions{.format = "qcow2"})));
  for (int writer = 0; writer < kLoops * kWritersPerLoop; writer++) {
    std::vector<std::byte> got(kStripe);
    loop.run(reopened.read(static_cast<uint64_t>(writer) * kStripe + 1536, got));
    EXPECT_EQ(got, stripe_pattern(writer, 5)) << "writer " << writer;
  }
}
