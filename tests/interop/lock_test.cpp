// Image locking against qemu: while qemu-nbd serves an image, keel-img must
// respect qemu's OFD locks exactly like qemu-img does.

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

// Whether some other open file holds a lock in qemu's lock byte range
// (permissions from byte 100, shared-permission refusals from byte 200).
bool holds_qemu_locks(const std::string& image) {
  const int fd = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock probe = {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 100;
  probe.l_len = 200;
  const bool locked = ::fcntl(fd, F_OFD_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
  ::close(fd);
  return locked;
}

// qemu-nbd serving one image in the background for the lifetime of the object.
class NbdServer {
 public:
  NbdServer(const std::string& image, const std::string& socket, bool read_only)
      : process_(read_only ? std::vector<std::string>{"qemu-nbd", "-f", "qcow2", "-k", socket, "-r", image}
                           : std::vector<std::string>{"qemu-nbd", "-f", "qcow2", "-k", socket, image}) {
    // qemu-nbd listens before it opens the image: ready once it holds
    // qemu's lock bytes on the image (a client would end a non-persistent server).
    for (int i = 0; i < 500 && !process_.exited(); i++) {
      if (std::filesystem::exists(socket) && holds_qemu_locks(image)) {
        ready_ = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  bool ready() const { return ready_; }

 private:
  BackgroundProcess process_;
  bool ready_ = false;
};

struct Fixture {
  TempDir t;
  std::string img = t.file("img.qcow2"), src = t.file("src.raw"), sock = t.file("nbd.sock");
  Fixture() {
    EXPECT_EQ(qemu_img({"create", "-q", "-f", "qcow2", img, "2M"}).status, 0);
    qemu_io(img, "qcow2", {"write -P 0x42 0 128k"});
    write_file(src, random_bytes(1 << 20, 77));
  }
};

TEST(interop_lock, ImageInUseByWriter) {
  KEEL_REQUIRE_QEMU();
  if (!have_program("qemu-nbd")) GTEST_SKIP() << "qemu-nbd not installed";
  Fixture f;
  const auto before = read_file(f.img);
  NbdServer server(f.img, f.sock, false);
  ASSERT_TRUE(server.ready()) << "qemu-nbd did not start";

  // Reading without -U needs qemu's shared "write" lock.
  for (const auto& args : std::vector<std::vector<std::string>>{{"info", f.img}, {"info", "--output=json", f.img}}) {
    const auto k = same_as_qemu(args);
    EXPECT_NE(k.status, 0) << "keel-img " << join(args) << " succeeded on an image in use";
    EXPECT_NE(k.err.find("Failed to get shared \"write\" lock"), std::string::npos) << k.err;
    EXPECT_NE(k.err.find("Is another process using the image"), std::string::npos) << k.err;
  }
  const auto check = same_as_qemu({"check", f.img});
  EXPECT_NE(check.status, 0);
  const auto as_source = same_as_qemu({"convert", "-O", "raw", f.img, f.t.file("out1.raw")});
  EXPECT_NE(as_source.status, 0);

  // -U shares: info and reading succeed.
  const auto info_u = same_as_qemu({"info", "-U", f.img});
  EXPECT_EQ(info_u.status, 0) << info_u.err;
  const auto info_u_json = same_as_qemu({"info", "-U", "--output=json", f.img});
  EXPECT_EQ(info_u_json.status, 0) << info_u_json.err;
  const auto read_u = keel_img({"convert", "-U", "-O", "raw", f.img, f.t.file("out2.raw")});
  EXPECT_EQ(read_u.status, 0) << describe("keel-img convert -U", read_u);

  // Writing into it fails, whether the target is reused (-n) or recreated.
  const auto into = same_as_qemu({"convert", "-n", "-O", "qcow2", f.src, f.img});
  EXPECT_NE(into.status, 0);
  EXPECT_NE(into.err.find("lock"), std::string::npos) << into.err;
  const auto over = same_as_qemu({"convert", "-O", "qcow2", f.src, f.img});
  EXPECT_NE(over.status, 0);
  const auto repair = same_as_qemu({"check", "-r", "all", f.img});
  EXPECT_NE(repair.status, 0);
  const auto create = same_as_qemu({"create", "-f", "qcow2", f.img, "1M"});
  EXPECT_NE(create.status, 0);
  EXPECT_EQ(read_file(f.img), before) << "the served image was modified";
}

TEST(interop_lock, ImageInUseByReadOnlyServer) {
  KEEL_REQUIRE_QEMU();
  if (!have_program("qemu-nbd")) GTEST_SKIP() << "qemu-nbd not installed";
  Fixture f;
  const auto before = read_file(f.img);
  NbdServer server(f.img, f.sock, true);
  ASSERT_TRUE(server.ready()) << "qemu-nbd -r did not start";

  const auto info = same_as_qemu({"info", f.img});
  EXPECT_EQ(info.status, 0) << info.err;
  const auto check = same_as_qemu({"check", f.img});
  EXPECT_EQ(check.status, 0) << check.err;
  const auto read = keel_img({"convert", "-O", "raw", f.img, f.t.file("out.raw")});
  EXPECT_EQ(read.status, 0) << describe("keel-img convert from a read-only served image", read);

  const auto into = same_as_qemu({"convert", "-n", "-O", "qcow2", f.src, f.img});
  EXPECT_NE(into.status, 0) << "keel-img wrote into an image qemu-nbd has open";
  EXPECT_NE(into.err.find("Failed to get \"write\" lock"), std::string::npos) << into.err;
  const auto repair = same_as_qemu({"check", "-r", "leaks", f.img});
  EXPECT_NE(repair.status, 0);
  EXPECT_NE(repair.err.find("Failed to get \"write\" lock"), std::string::npos) << repair.err;
  EXPECT_EQ(read_file(f.img), before) << "the served image was modified";
}

// After the server is gone, the locks are gone too.
TEST(interop_lock, ReleasedAfterServerExit) {
  KEEL_REQUIRE_QEMU();
  if (!have_program("qemu-nbd")) GTEST_SKIP() << "qemu-nbd not installed";
  Fixture f;
  {
    NbdServer server(f.img, f.sock, false);
    ASSERT_TRUE(server.ready());
    EXPECT_NE(keel_img({"info", f.img}).status, 0);
  }
  const auto k = keel_img({"info", f.img});
  EXPECT_EQ(k.status, 0) << describe("keel-img info after qemu-nbd exited", k);
}

}  // namespace
}  // namespace keel::test::interop
