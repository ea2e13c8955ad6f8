// Drives qcow2 images through random requests, several at once, and compares
// every read with an in-memory model of the disk; then has qemu-img check the
// image and read it back independently.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

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

struct ModelCase {
  std::string name;
  std::string options;
  IoBackend backend;
  std::string cache = "writeback";
};

constexpr uint64_t kDiskSize = 24ull << 20;

std::vector<std::byte> pattern(size_t n, uint64_t seed, bool compressible) {
  std::vector<std::byte> out(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i++) out[i] = static_cast<std::byte>(compressible ? (seed + i / 512) & 0xff : rng() & 0xff);
  return out;
}

class Workload {
 public:
  Workload(BlockNode& node, std::vector<std::byte>& model, uint64_t seed, uint64_t cluster)
      : node_(node), model_(model), rng_(seed), cluster_(cluster) {}

  // One batch: up to 6 requests on disjoint ranges, in flight together.
  Task<void> batch() {
    TaskGroup group;
    std::vector<std::pair<uint64_t, uint64_t>> taken;
    const int n = 1 + static_cast<int>(rng_() % 6);
    for (int i = 0; i < n; i++) {
      const int kind = static_cast<int>(rng_() % 100);
      uint64_t length = 1 + rng_() % (kind < 10 ? 4 * cluster_ : 300000);
      uint64_t offset = rng_() % (kDiskSize - 1);
      if (rng_() % 3 == 0) offset = offset / cluster_ * cluster_;
      if (kind >= 85) {  // compressed whole cluster
        offset = offset / cluster_ * cluster_;
        length = cluster_;
      }
      length = std::min(length, kDiskSize - offset);
      bool overlaps = std::any_of(taken.begin(), taken.end(), [&](auto& r) {
        return offset < r.first + r.second + cluster_ && r.first < offset + length + cluster_;
      });
      if (overlaps) continue;
      taken.emplace_back(offset, length);
      if (kind < 55) group.spawn(write(offset, length));
      else if (kind < 70) group.spawn(zero(offset, length, rng_() % 2));
      else if (kind < 80) group.spawn(discard(offset, length));
      else if (kind < 85) group.spawn(verify(offset, length));
      else group.spawn(compressed(offset));
    }
    co_await group.join();
    if (rng_() % 5 == 0) co_await node_.flush();
  }

  Task<void> verify(uint64_t offset, uint64_t length) {
    std::vector<std::byte> got(length);
    co_await node_.read(offset, got);
    if (std::memcmp(got.data(), model_.data() + offset, length) != 0) {
      size_t i = 0;
      while (got[i] == model_[offset + i]) i++;
      ADD_FAILURE() << "mismatch at " << offset + i << " (read of " << length << " at " << offset << ")";
      throw std::runtime_error("model mismatch");
    }
  }

  Task<void> verify_all() {
    for (uint64_t pos = 0; pos < kDiskSize; pos += 4 << 20) co_await verify(pos, std::min<uint64_t>(4 << 20, kDiskSize - pos));
  }

 private:
  Task<void> write(uint64_t offset, uint64_t length) {
    auto data = pattern(length, rng_(), rng_() % 2);
    std::memcpy(model_.data() + offset, data.data(), length);
    co_await node_.write(offset, data);
  }
  Task<void> zero(uint64_t offset, uint64_t length, bool unmap) {
    std::memset(model_.data() + offset, 0, length);
    co_await node_.write_zeroes(offset, length, ZeroFlags{.may_unmap = unmap});
  }
  Task<void> discard(uint64_t offset, uint64_t length) {
    // Without a backing file, discarded whole clusters read as zeros; partial edges keep their data.
    const uint64_t start = (offset + cluster_ - 1) / cluster_ * cluster_;
    const uint64_t end = offset + length == kDiskSize ? kDiskSize : (offset + length) / cluster_ * cluster_;
    if (start < end) std::memset(model_.data() + start, 0, end - start);
    co_await node_.discard(offset, length);
  }
  Task<void> compressed(uint64_t offset) {
    auto data = pattern(cluster_, rng_(), true);
    std::memcpy(model_.data() + offset, data.data(), cluster_);
    co_await node_.write_compressed(offset, data);
  }

  BlockNode& node_;
  std::vector<std::byte>& model_;
  std::mt19937_64 rng_;
  uint64_t cluster_;
};

Task<void> run_batches(Workload& w, int batches) {
  for (int i = 0; i < batches; i++) co_await w.batch();
  co_await w.verify_all();
}

class Qcow2Model : public ::testing::TestWithParam<ModelCase> {};

TEST_P(Qcow2Model, RandomRequestsMatchTheModel) {
  const ModelCase& c = GetParam();
  TempDir dir;
  const std::string path = dir.file("disk.qcow2");
  EventLoop loop(c.backend);
  test::create_qcow2(loop, path, kDiskSize, c.options);

  OpenOptions options{.format = std::string("qcow2"), .writable = true, .cache = *CacheMode::parse(c.cache)};
  std::vector<std::byte> model(kDiskSize);
  for (int round = 0; round < 3; round++) {
    // Reopening between rounds checks that what was written back reads back.
    auto node = loop.run(open_image(path, options));
    Workload w(*node, model, 1000 + static_cast<uint64_t>(round), node->cluster_size());
    ASSERT_NO_THROW(loop.run(run_batches(w, 120)));
    loop.run(node->close());
  }

  auto check = test::run({"qemu-img", "check", path});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  const std::string raw = dir.file("disk.raw");
  ASSERT_EQ(test::run({"qemu-img", "convert", "-O", "raw", path, raw}).status, 0);
  auto bytes = test::read_file(raw);
  ASSERT_EQ(bytes.size(), kDiskSize);
  EXPECT_TRUE(std::memcmp(bytes.data(), model.data(), kDiskSize) == 0) << "qemu-img reads different data";
}

INSTANTIATE_TEST_SUITE_P(
    Geometries, Qcow2Model,
    ::testing::Values(ModelCase{"default_uring", "", IoBackend::IoUring}, ModelCase{"default_threads", "", IoBackend::Threads},
                      ModelCase{"cluster4k_refcount1", "cluster_size=4k,refcount_bits=1", IoBackend::IoUring},
                      ModelCase{"cluster512_refcount64", "cluster_size=512,refcount_bits=64", IoBackend::IoUring, "unsafe"},
                      ModelCase{"cluster2M", "cluster_size=2M", IoBackend::IoUring},
                      ModelCase{"v2", "compat=0.10", IoBackend::Threads},
                      ModelCase{"extended_l2", "extended_l2=on,cluster_size=64k", IoBackend::IoUring},
                      ModelCase{"extended_l2_zstd", "extended_l2=on,cluster_size=32k,compression_type=zstd", IoBackend::Threads},
                      ModelCase{"lazy_refcounts", "lazy_refcounts=on,refcount_bits=8", IoBackend::IoUring},
                      ModelCase{"prealloc_metadata", "preallocation=metadata", IoBackend::IoUring},
                      ModelCase{"prealloc_full_direct", "preallocation=full", IoBackend::IoUring, "none"},
                      ModelCase{"direct_threads", "cluster_size=16k", IoBackend::Threads, "none"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
