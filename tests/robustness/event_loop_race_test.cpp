// Many small requests that each end on the thread pool (decompressing one
// 512-byte compressed cluster): every one must succeed. A request whose only
// outstanding work is a thread-pool job is where the event loop may wrongly
// conclude it has nothing to wait for ("event loop has nothing to wait for
// (internal error)"), abandoning the request while its job still runs.
#include <chrono>

#include <gtest/gtest.h>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "block/format.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace keel::test {
namespace {

TEST(EventLoopRace, SingleCompressedClusterReads) {
  TempDir dir;
  const std::string raw = dir.file("src.raw"), image = dir.file("c.qcow2");
  std::vector<uint8_t> data(4 << 20);
  auto noise = random_bytes(data.size(), 11);
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<uint8_t>('a' + noise[i] % 16);  // compressible
  write_file(raw, data);
  auto r = run_keel({"keel-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=512", raw, image});
  ASSERT_EQ(r.status, 0) << r.err;

  EventLoop loop;
  block::OpenOptions options;
  options.format = "qcow2";
  auto node = loop.run(block::open_image(image, options));
  const uint64_t clusters = node->size() / 512;
  std::vector<std::byte> buf(512);
  uint64_t reads = 0, errors = 0, wrong = 0;
  std::string first_error;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  for (uint64_t i = 0; i < 400000 && std::chrono::steady_clock::now() < deadline; i++) {
    const uint64_t c = (i * 7919) % clusters;
    reads++;
    try {
      loop.run(node->read(c * 512, buf));
      if (std::memcmp(buf.data(), data.data() + c * 512, 512) != 0) wrong++;
    } catch (const Error& e) {
      if (errors++ == 0) first_error = fmt::format("read {} (cluster {}): {}", i, c, e.what());
      // The abandoned request may still be running; stop here rather than
      // reuse the node under it.
      break;
    }
  }
  EXPECT_EQ(errors, 0u) << "after " << reads << " reads: " << first_error;
  EXPECT_EQ(wrong, 0u);
}

}  // namespace
}  // namespace keel::test
