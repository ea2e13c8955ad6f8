// Image-level state: the corrupt bit, the dirty bit of lazy refcounts, and
// image locks as seen by QEMU's own tools.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include "base/async/event_loop.h"
#include "base/endian.h"
#include "block/format.h"
#include "formats/qcow2/qcow2_node.h"
#include "tests/support/create_image.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

using namespace keel;
using namespace keel::block;
using keel::test::TempDir;

namespace {

const OpenOptions kWritable{.format = std::string("qcow2"), .writable = true};
const OpenOptions kReadOnly{.format = std::string("qcow2")};

uint64_t read_be64(const std::string& path, off_t offset) {
  int fd = ::open(path.c_str(), O_RDONLY);
  std::byte b[8];
  EXPECT_EQ(pread(fd, b, 8, offset), 8);
  close(fd);
  return load_be<uint64_t>(b);
}

void write_be64(const std::string& path, off_t offset, uint64_t value) {
  int fd = ::open(path.c_str(), O_WRONLY);
  std::byte b[8];
  store_be<uint64_t>(b, value);
  EXPECT_EQ(pwrite(fd, b, 8, offset), 8);
  close(fd);
}

Task<void> write_some(BlockNode& node, uint64_t offset) {
  std::vector<std::byte> data(70000, std::byte{0x42});
  co_await node.write(offset, data);
}

}  // namespace

TEST(Qcow2State, InconsistentMetadataSetsTheCorruptBit) {
  TempDir dir;
  const std::string path = dir.file("c.qcow2");
  EventLoop loop;
  test::create_qcow2(loop, path, 16 << 20);
  {
    auto node = loop.run(open_image(path, kWritable));
    loop.run(write_some(*node, 0));
    loop.run(node->close());
  }
  // Point the first L1 entry at an unaligned offset.
  const uint64_t l1 = read_be64(path, 40);
  write_be64(path, static_cast<off_t>(l1), read_be64(path, static_cast<off_t>(l1)) + 512);
  {
    auto node = loop.run(open_image(path, kWritable));
    EXPECT_THROW(loop.run(write_some(*node, 0)), Error);
  }
  EXPECT_TRUE(read_be64(path, 72) & 2) << "corrupt bit not set";
  try {
    loop.run(open_image(path, kWritable));
    FAIL() << "a corrupt image opened for writing";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Image is corrupt; cannot be opened read/write"), std::string::npos) << e.what();
  }
  auto info = test::run({"qemu-img", "info", path});
  EXPECT_NE(info.out.find("corrupt: true"), std::string::npos) << info.out;
  // Read-only access still works, as in qemu.
  EXPECT_NO_THROW(loop.run(open_image(path, kReadOnly)));
}

TEST(Qcow2State, LazyRefcountsMarkDirtyAndRecoverOnOpen) {
  TempDir dir;
  const std::string path = dir.file("lazy.qcow2");
  EventLoop loop;
  test::create_qcow2(loop, path, 16 << 20, "lazy_refcounts=on");
  {
    auto node = loop.run(open_image(path, kWritable));
    loop.run(write_some(*node, 1 << 20));
    loop.run(node->flush());
    // Dropped without close(): as after a crash, the dirty bit stays set.
  }
  EXPECT_TRUE(read_be64(path, 72) & 1) << "dirty bit not set";
  auto info = test::run({"qemu-img", "info", "-U", path});
  EXPECT_NE(info.out.find("cleanly shut down: no"), std::string::npos) << info.out;
  {
    auto node = loop.run(open_image(path, kWritable));  // repairs
    loop.run(node->close());
  }
  EXPECT_FALSE(read_be64(path, 72) & 1) << "dirty bit not cleared";
  auto check = test::run({"qemu-img", "check", path});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  auto compare = test::run({"qemu-io", "-c", "read -P 0x42 1M 70000", path});
  EXPECT_EQ(compare.status, 0);
  EXPECT_EQ(compare.out.find("Pattern verification failed"), std::string::npos) << compare.out;
}

TEST(Qcow2State, LocksAreVisibleToQemu) {
  TempDir dir;
  const std::string path = dir.file("locked.qcow2");
  EventLoop loop;
  test::create_qcow2(loop, path, 16 << 20);
  {
    auto node = loop.run(open_image(path, kWritable));
    auto info = test::run({"qemu-img", "info", path});
    EXPECT_NE(info.status, 0);
    EXPECT_NE(info.err.find("Failed to get shared \"write\" lock"), std::string::npos) << info.err;
    EXPECT_EQ(test::run({"qemu-img", "info", "-U", path}).status, 0);
    // A second writer in this process is refused as well: locks are per open file description.
    EXPECT_THROW(loop.run(open_image(path, kWritable)), Error);
    loop.run(node->close());
  }
  {
    auto reader = loop.run(open_image(path, kReadOnly));
    auto write = test::run({"qemu-io", "-c", "write 0 512", path});
    EXPECT_NE(write.err.find("Failed to get \"write\" lock"), std::string::npos) << write.err;
    EXPECT_EQ(test::run({"qemu-img", "info", path}).status, 0) << "readers share";
  }
  EXPECT_EQ(test::run({"qemu-io", "-c", "write 0 512", path}).status, 0) << "locks released on close";
}
