// Requests in flight together on the same qcow2 clusters, at different bytes:
// what the in-flight allocations (Qcow2Node::allocations_) guard. Without
// them two writers would each give the cluster a host cluster of its own and
// one's data would be lost (and its cluster leaked), and zeroing beside a
// write that copies the cluster would be undone by it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ostream>

#include "base/async/event_loop.h"
#include "base/async/sync.h"
#include "block/format.h"
#include "tests/support/create_image.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

using namespace keel;
using namespace keel::block;
using keel::test::TempDir;

namespace {

constexpr uint64_t kDiskSize = 4 << 20;
constexpr uint64_t kPiece = 1000;  // not a subcluster multiple: writes share subclusters too
constexpr int kWriters = 12;

struct ConcurrencyCase {
  std::string name;
  std::string options;
  IoBackend backend;
};
void PrintTo(const ConcurrencyCase& c, std::ostream* os) { *os << c.name; }

std::vector<std::byte> piece(int writer) { return std::vector<std::byte>(kPiece, std::byte(0x10 + writer)); }

// kWriters writes at once, side by side from `offset` (within one or two clusters).
Task<void> write_side_by_side(BlockNode& node, uint64_t offset, std::vector<std::byte>& model) {
  TaskGroup group;
  std::vector<std::vector<std::byte>> data;
  for (int i = 0; i < kWriters; i++) data.push_back(piece(i));
  for (int i = 0; i < kWriters; i++) {
    const uint64_t at = offset + static_cast<uint64_t>(i) * kPiece;
    std::memcpy(model.data() + at, data[static_cast<size_t>(i)].data(), kPiece);
    group.spawn(node.write(at, data[static_cast<size_t>(i)]));
  }
  co_await group.join();
}

// Zeroing alongside a write in the same cluster (with extended L2, zeroing
// whole subclusters only changes the L2 entry).
Task<void> zero_beside_writes(BlockNode& node, uint64_t offset, std::vector<std::byte>& model) {
  TaskGroup group;
  std::vector<std::byte> data = piece(1);
  std::memcpy(model.data() + offset, data.data(), kPiece);
  std::memset(model.data() + offset + 4096, 0, 8192);
  group.spawn(node.write(offset, data));
  group.spawn(node.write_zeroes(offset + 4096, 8192, {}));
  co_await group.join();
}

Task<void> read_all(BlockNode& node, std::vector<std::byte>& out) { co_await node.read(0, out); }

class Qcow2Concurrency : public ::testing::TestWithParam<ConcurrencyCase> {};

}  // namespace

TEST_P(Qcow2Concurrency, WritesSharingClustersKeepEachOthersData) {
  const ConcurrencyCase& c = GetParam();
  TempDir dir;
  const std::string path = dir.file("disk.qcow2");
  EventLoop loop(c.backend);
  test::create_qcow2(loop, path, kDiskSize, c.options);
  const OpenOptions writable{.format = std::string("qcow2"), .writable = true};
  std::vector<std::byte> model(kDiskSize);
  uint64_t cluster = 0;
  {
    // A cluster of data for a snapshot to share: writes must copy it.
    auto node = loop.run(open_image(path, writable));
    cluster = node->cluster_size();
    std::fill(model.begin() + 16 * cluster, model.begin() + 17 * cluster, std::byte{0x77});
    loop.run(node->write(16 * cluster, std::span(model).subspan(16 * cluster, cluster)));
    loop.run(node->close());
  }
  ASSERT_EQ(test::run({"qemu-img", "snapshot", "-c", "shared", path}).status, 0);
  {
    auto node = loop.run(open_image(path, writable));
    // Unallocated clusters (allocated by the first writer, written in place or into subclusters by the rest).
    loop.run(write_side_by_side(*node, 3 * cluster - 5000, model));
    // A compressed cluster, copied by the first writer.
    std::vector<std::byte> compressible(cluster, std::byte{0x55});
    std::memcpy(model.data() + 8 * cluster, compressible.data(), cluster);
    loop.run(node->write_compressed(8 * cluster, compressible));
    loop.run(write_side_by_side(*node, 8 * cluster + 100, model));
    loop.run(zero_beside_writes(*node, 12 * cluster, model));
    loop.run(zero_beside_writes(*node, 16 * cluster, model));
    std::vector<std::byte> got(kDiskSize);
    loop.run(read_all(*node, got));
    EXPECT_TRUE(got == model) << "data lost between requests on the same cluster";
    loop.run(node->close());
  }
  // A cluster allocated twice would be leaked.
  const auto check = test::run({"qemu-img", "check", path});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  // And qemu reads back what the model holds.
  const std::string raw = dir.file("model.raw");
  FILE* f = fopen(raw.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(fwrite(model.data(), 1, model.size(), f), model.size());
  fclose(f);
  const auto compare = test::run({"qemu-img", "compare", "-f", "qcow2", "-F", "raw", path, raw});
  EXPECT_EQ(compare.status, 0) << compare.out << compare.err;
}

INSTANTIATE_TEST_SUITE_P(
    Configs, Qcow2Concurrency,
    ::testing::Values(ConcurrencyCase{"c64k", "", IoBackend::IoUring},
                      ConcurrencyCase{"c64k_threads", "", IoBackend::Threads},
                      ConcurrencyCase{"c4k", "cluster_size=4096", IoBackend::IoUring},
                      ConcurrencyCase{"extended_l2", "extended_l2=on", IoBackend::IoUring},
                      ConcurrencyCase{"extended_l2_threads", "extended_l2=on", IoBackend::Threads}),
    [](const auto& info) { return info.param.name; });
