// The file protocol driver: O_DIRECT alignment handling, zeroing, and
// sparse-aware block status, on both I/O backends.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "block/file/file_node.h"
#include "tests/support/temp_dir.h"

using namespace keel;
using namespace keel::block;
using keel::test::TempDir;

namespace {

Task<void> unaligned_round_trip(BlockNode& f) {
  std::vector<std::byte> data(10000);
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<std::byte>(i * 31);
  co_await f.write(4097, data);
  std::vector<std::byte> back(10000);
  co_await f.read(4097, back);
  EXPECT_EQ(back, data);
  std::vector<std::byte> before(4097);
  co_await f.read(0, before);
  EXPECT_TRUE(std::all_of(before.begin(), before.end(), [](std::byte b) { return b == std::byte{0}; }));
}

Task<void> zero_and_status(BlockNode& f) {
  std::vector<std::byte> data(1 << 20, std::byte{7});
  co_await f.write(0, data);
  co_await f.write_zeroes(256 << 10, 256 << 10, ZeroFlags{.may_unmap = true});
  BlockStatus head = co_await f.block_status(0, 1 << 20);
  EXPECT_TRUE(head.data);
  EXPECT_EQ(head.length, 256u << 10);
  BlockStatus hole = co_await f.block_status(256 << 10, 1 << 20);
  EXPECT_TRUE(hole.zero);
  EXPECT_FALSE(hole.data);
  EXPECT_EQ(hole.length, 256u << 10);
  std::vector<std::byte> back(1 << 20);
  co_await f.read(0, back);
  size_t wrong = 0;
  for (size_t i = 0; i < back.size(); i++)
    if (back[i] != ((i >= (256u << 10) && i < (512u << 10)) ? std::byte{0} : std::byte{7})) wrong++;
  EXPECT_EQ(wrong, 0u);
  // Reads past the end of the file are zeros.
  std::vector<std::byte> past(100, std::byte{1});
  co_await f.read((4 << 20) + 5, past);
  EXPECT_TRUE(std::all_of(past.begin(), past.end(), [](std::byte b) { return b == std::byte{0}; }));
}

}  // namespace

class FileNodeTest : public ::testing::TestWithParam<std::tuple<IoBackend, bool>> {};

TEST_P(FileNodeTest, UnalignedRequestsAndSparseStatus) {
  auto [backend, direct] = GetParam();
  TempDir dir;
  const std::string path = dir.file("f.raw");
  FileNode::create(path, 4 << 20, Preallocation::Off);
  EventLoop loop(backend);
  auto file = FileNode::open(path, FileOptions{.writable = true, .cache = {.direct = direct}});
  loop.run(unaligned_round_trip(*file));
  loop.run(zero_and_status(*file));
  EXPECT_EQ(file->size(), 4u << 20) << "bounce buffers must not grow the file";
}

INSTANTIATE_TEST_SUITE_P(Modes, FileNodeTest,
                         ::testing::Combine(::testing::Values(IoBackend::IoUring, IoBackend::Threads),
                                            ::testing::Bool()));

TEST(FileNode, OpenErrorsNameTheFile) {
  try {
    FileNode::open("/nonexistent/x.img", {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "Could not open '/nonexistent/x.img': No such file or directory");
  }
}

// /dev/null, like tmpfs before Linux 6.6 and many FUSE file systems, refuses O_DIRECT.
TEST(FileNode, DirectIoRefusedUnlessFallbackAllowed) {
  EventLoop loop;
  try {
    FileNode::open("/dev/null", FileOptions{.writable = true, .cache = {.direct = true}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "Could not open '/dev/null': filesystem does not support O_DIRECT");
  }
  auto file =
      FileNode::open("/dev/null", FileOptions{.writable = true, .cache = {.direct = true, .buffered_fallback = true}});
  std::vector<std::byte> data(1000, std::byte{1});
  loop.run(file->write(7, std::span<const std::byte>(data).subspan(1)));
}

// Closing a node releases its image locks at once, even while something
// else still holds its open file description (as io_uring may, for a moment,
// after a request completed; a dup stands in for it here): a writer
// reopening right away must not find the old locks.
TEST(FileNode, CloseReleasesLocksWhileTheFileIsStillReferenced) {
  EventLoop loop;  // a node belongs to a loop
  TempDir dir;
  const std::string path = dir.file("f.raw");
  FileNode::create(path, 1 << 20, Preallocation::Off);
  auto file = FileNode::open(path, FileOptions{.writable = true});
  const int still_referenced = dup(file->fd());
  ASSERT_GE(still_referenced, 0);
  file.reset();
  EXPECT_NO_THROW(FileNode::open(path, FileOptions{.writable = true}));
  close(still_referenced);
}

namespace {

Task<void> status_after_punching(FileNode* file, std::vector<BlockStatus>* seen) {
  std::vector<std::byte> data(1 << 20, std::byte{7});
  co_await file->write(0, data);
  seen->push_back(co_await file->block_status(0, 4 << 20));        // finds the data extent
  seen->push_back(co_await file->block_status(64 << 10, 4 << 20));  // answered inside it
  co_await file->discard(256 << 10, 256 << 10);
  seen->push_back(co_await file->block_status(256 << 10, 4 << 20));
  co_await file->write_zeroes(0, 64 << 10, {.may_unmap = true});
  seen->push_back(co_await file->block_status(0, 4 << 20));
  co_await file->truncate(0, Preallocation::Off);
  co_await file->truncate(1 << 20, Preallocation::Off);
  seen->push_back(co_await file->block_status(512 << 10, 4 << 20));
}

}  // namespace

// Sequential block-status queries inside one data extent are answered from the last one found; punching a hole,
// zeroing with unmap and truncating each make the next query look again.
TEST(FileNode, BlockStatusForgetsItsDataExtentWhenHolesAppear) {
  EventLoop loop;
  TempDir dir;
  const std::string path = dir.file("f.raw");
  FileNode::create(path, 4 << 20, Preallocation::Off);
  auto file = FileNode::open(path, FileOptions{.writable = true});
  std::vector<BlockStatus> seen;
  loop.run(status_after_punching(file.get(), &seen));
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_TRUE(seen[0].data);
  EXPECT_EQ(seen[0].length, 1u << 20);
  EXPECT_TRUE(seen[1].data);
  EXPECT_EQ(seen[1].length, (1u << 20) - (64u << 10));
  EXPECT_FALSE(seen[2].data) << "the punched hole still reads as data";
  EXPECT_EQ(seen[2].length, 256u << 10);
  EXPECT_FALSE(seen[3].data) << "the zeroed range still reads as data";
  EXPECT_FALSE(seen[4].data) << "the truncated file still reads as data";
}
