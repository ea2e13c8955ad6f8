// Backing chains against qemu: overlays made by qemu-img read through keel
// as through qemu; the same keel-io and qemu-io commands on identical copies
// of an overlay print the same and leave the same contents and allocation
// (qemu-img map, depth included); keel-img info describes overlays and whole
// chains as qemu-img info does.
#include <fcntl.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <tuple>
#include <thread>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

struct ChainCase {
  std::string name;
  // Builds top.qcow2 (and what lies below it) in `dir`, naming backing files relatively.
  std::function<void(const std::string& dir)> make;
};

std::ostream& operator<<(std::ostream& o, const ChainCase& c) { return o << c.name; }

void must(const std::vector<std::string>& argv) {
  const auto r = run(argv);
  ASSERT_EQ(r.status, 0) << describe(join(argv), r);
}

void create(const std::string& dir, const std::string& name, const std::string& fmt, const std::string& opts,
            const std::string& size, const std::string& backing = "", const std::string& backing_fmt = "") {
  std::vector<std::string> a{"env", "-C", dir, "qemu-img", "create", "-q", "-f", fmt};
  if (!opts.empty()) a.insert(a.end(), {"-o", opts});
  if (!backing.empty()) a.insert(a.end(), {"-b", backing, "-F", backing_fmt});
  a.push_back(name);
  if (!size.empty()) a.push_back(size);
  must(a);
}

// Base contents: data, a hole, zeros, data across cluster boundaries; what fits in `size`.
void fill_base(const std::string& image, const std::string& fmt, uint64_t size = 4 << 20) {
  std::vector<std::string> commands;
  for (const auto& [what, offset, length] : std::vector<std::tuple<std::string, uint64_t, uint64_t>>{
           {"-P 0x11", 0, 1 << 20}, {"-P 0x12", 1200 << 10, 100 << 10}, {"-z", 64 << 10, 64 << 10},
           {"-P 0x13", 2 << 20, 8 << 10}, {"-P 0x14", 3000000, 5000}, {"-P 0x15", 990 << 10, 10 << 10}})
    if (offset + length <= size) commands.push_back("write " + what + " " + std::to_string(offset) + " " + std::to_string(length));
  qemu_io(image, fmt, commands);
}

ChainCase qcow2_pair(const std::string& name, const std::string& base_opts, const std::string& top_opts,
                     const std::string& base_size = "4096k", const std::string& top_size = "") {
  return {name, [=](const std::string& dir) {
            create(dir, "base.qcow2", "qcow2", base_opts, base_size);
            fill_base(dir + "/base.qcow2", "qcow2", std::stoull(base_size.substr(0, base_size.size() - 1)) << 10);
            create(dir, "top.qcow2", "qcow2", top_opts, top_size, "base.qcow2", "qcow2");
          }};
}

std::vector<ChainCase> chain_cases() {
  return {
      qcow2_pair("v3", "", ""),
      qcow2_pair("v2", "compat=0.10", "compat=0.10"),
      qcow2_pair("extended_l2", "", "extended_l2=on"),
      qcow2_pair("extended_l2_both_16k", "extended_l2=on,cluster_size=16k", "extended_l2=on,cluster_size=16k"),
      qcow2_pair("base_4k_top_64k", "cluster_size=4k", ""),
      qcow2_pair("base_64k_top_512", "", "cluster_size=512"),
      qcow2_pair("base_smaller", "", "", "1536k", "4M"),
      qcow2_pair("top_smaller", "", "", "4096k", "1500k"),
      qcow2_pair("top_smaller_v2", "compat=0.10", "compat=0.10", "4096k", "1500k"),
      qcow2_pair("base_smaller_extended_l2", "", "extended_l2=on", "1000k", "4M"),
      {"raw_base",
       [](const std::string& dir) {
         create(dir, "base.raw", "raw", "", "4M");
         fill_base(dir + "/base.raw", "raw");
         create(dir, "top.qcow2", "qcow2", "", "", "base.raw", "raw");
       }},
      {"three_deep",
       [](const std::string& dir) {
         create(dir, "base.qcow2", "qcow2", "cluster_size=4k", "4M");
         fill_base(dir + "/base.qcow2", "qcow2");
         create(dir, "mid.qcow2", "qcow2", "compat=0.10", "", "base.qcow2", "qcow2");
         qemu_io(dir + "/mid.qcow2", "qcow2", {"write -P 0x21 32k 40k", "write -P 0x22 1M 64k", "write -z 2M 4k"});
         create(dir, "top.qcow2", "qcow2", "", "", "mid.qcow2", "qcow2");
       }},
  };
}

class Chain : public ::testing::TestWithParam<ChainCase> {};

// Reads through the chain: keel-img convert -O raw and qemu-img convert -O raw give the same bytes.
TEST_P(Chain, ReadsLikeQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  ASSERT_NO_FATAL_FAILURE(GetParam().make(t.path()));
  const std::string top = t.file("top.qcow2");
  qemu_io(top, "qcow2", {"write -P 0x31 4k 4k", "write -P 0x32 1100k 200k", "write -z 1400k 2k", "discard 1344k 64k"});
  ASSERT_FALSE(HasFailure());
  for (const std::vector<std::string>& format : {std::vector<std::string>{"-f", "qcow2"}, std::vector<std::string>{}}) {
    auto args = [&](const std::string& out) {
      std::vector<std::string> a{"convert", "-O", "raw"};
      a.insert(a.end(), format.begin(), format.end());
      a.insert(a.end(), {top, out});
      return a;
    };
    const auto q = qemu_img(args(t.file("q.raw")));
    ASSERT_EQ(q.status, 0) << describe("qemu-img convert", q);
    const auto k = keel_img(args(t.file("k.raw")));
    ASSERT_EQ(k.status, 0) << describe("keel-img convert", k);
    EXPECT_TRUE(files_identical(t.file("k.raw"), t.file("q.raw")));
  }
}

// Writes into an overlay: copy-on-write from the backing file, zeroing and
// discard over unallocated clusters, with qemu's layout.
TEST_P(Chain, WritesLikeQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  const std::string qdir = t.file("q"), kdir = t.file("k");
  // Made twice rather than copied, so that raw bases keep their holes.
  for (const auto& dir : {qdir, kdir}) {
    std::filesystem::create_directories(dir);
    ASSERT_NO_FATAL_FAILURE(GetParam().make(dir));
  }
  const std::vector<std::string> commands = {
      "write -P 0xa1 1000 3000",      "write -P 0xa2 100k 1",           "write -P 0xa3 60k 72k",
      "write -P 0xa4 1190k 20k",      "write -P 0xa5 2050k 512",        "write -P 0xa6 2990000 20000",
      "write -z 200k 64k",            "write -z 300k 4k",               "write -z -u 512k 128k",
      "write -z 1300k 1k",            "write -z -n 1536k 64k",          "write -z -n 1700k 3k",
      "discard 640k 128k",            "discard 3M 100k",                "discard 1100k 1k",
      "write -c -P 0xa7 3584k 64k",   "write -P 0xa8 3600k 1k",         "read -P 0xa1 1000 3000",
      "read -P 0x11 0 1000",          "read -P 0 200k 64k",             "read -P 0xa6 2990000 20000",
      "alloc 0 4M",                   "alloc 1M 512k",                  "map",
      // Growing must not uncover the backing file's data past the old end.
      "truncate 4M",                  "map",
  };
  std::vector<std::string> args{"-f", "qcow2"};
  for (const auto& c : commands) args.insert(args.end(), {"-c", c});
  args.push_back("top.qcow2");
  std::vector<std::string> q{"env", "-C", qdir, "qemu-io"}, k{"env", "-C", kdir, std::filesystem::absolute(keel_bin("keel-io")).string()};
  q.insert(q.end(), args.begin(), args.end());
  k.insert(k.end(), args.begin(), args.end());
  const auto qr = run(q), kr = run(k);
  EXPECT_EQ(kr.status, qr.status) << describe("keel-io", kr) << describe("qemu-io", qr);
  EXPECT_EQ(mask_timings(kr.out), mask_timings(qr.out));
  EXPECT_EQ(kr.err, as_keel_io_stderr(qr.err));

  const auto cmp = qemu_img({"compare", "-f", "qcow2", "-F", "qcow2", qdir + "/top.qcow2", kdir + "/top.qcow2"});
  EXPECT_EQ(cmp.status, 0) << describe("qemu-img compare", cmp);
  EXPECT_TRUE(same_allocation(allocation_map(kdir + "/top.qcow2", "qcow2"), allocation_map(qdir + "/top.qcow2", "qcow2")));
  const auto check = qemu_img({"check", "-f", "qcow2", kdir + "/top.qcow2"});
  EXPECT_EQ(check.status, 0) << describe("qemu-img check (keel's overlay)", check);
}

// keel-img info on the overlay, alone and with its whole chain.
TEST_P(Chain, InfoLikeQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  ASSERT_NO_FATAL_FAILURE(GetParam().make(t.path()));
  for (const std::vector<std::string>& extra : std::vector<std::vector<std::string>>{{}, {"--backing-chain"}, {"-f", "qcow2", "--backing-chain"}})
    for (const std::string output : {"--output=json", "--output=human"}) {
      std::vector<std::string> args{"info"};
      args.insert(args.end(), extra.begin(), extra.end());
      args.insert(args.end(), {output, t.file("top.qcow2")});
      same_as_qemu(args);
    }
}

INSTANTIATE_TEST_SUITE_P(interop, Chain, ::testing::ValuesIn(chain_cases()), [](const auto& info) { return info.param.name; });

// A backing file that cannot be opened fails the open with qemu's message; info still describes the overlay.
TEST(ChainErrors, MissingBackingFile) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  std::filesystem::create_directories(t.file("sub"));
  must({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "nonexist", "-F", "qcow2", t.file("sub/top.qcow2"), "1M"});
  const std::string top = t.file("sub/top.qcow2");
  same_as_qemu({"convert", "-O", "raw", top, t.file("out.raw")});
  same_as_qemu({"check", top});
  same_as_qemu({"info", top});
  same_as_qemu({"info", "--backing-chain", top});
  const auto q = run({"qemu-io", "-c", "read 0 1", top});
  const auto k = run({keel_bin("keel-io"), "-c", "read 0 1", top});
  EXPECT_EQ(k.status, q.status);
  EXPECT_EQ(k.err, as_keel_io_stderr(q.err));
}

// A loop in the chain (here a -> b -> a) fails with one clear error, never hangs.
TEST(ChainErrors, LoopIsRefused) {
  TempDir t;
  for (const auto& [image, backing] : {std::pair{"a.qcow2", "b.qcow2"}, std::pair{"b.qcow2", "a.qcow2"}})
    ASSERT_EQ(run_keel({"keel-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "qcow2", t.file(image), "1M"}).status, 0);
  const auto r = run_keel({"keel-io", "-r", "-c", "read 0 1", t.file("a.qcow2")});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "keel-io: can't open device " + t.file("a.qcow2") + ": Could not open backing file: Backing file '" +
                       t.file("a.qcow2") + "' creates an infinite loop\n");
  const auto info = run_keel({"keel-img", "info", "--backing-chain", t.file("a.qcow2")});
  EXPECT_EQ(info.status, 1);
  EXPECT_EQ(info.err, "keel-img: Backing file '" + t.file("a.qcow2") + "' creates an infinite loop.\n");
}


// Waits until some process refuses to share write access to `image` (qemu's
// lock byte 201), without taking a lock that could disturb it.
bool wait_until_write_unshared(const std::string& image) {
  const int fd = open(image.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool locked = false;
  for (int i = 0; i < 500 && !locked; i++) {
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 201;
    fl.l_len = 1;
    locked = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    if (!locked) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  close(fd);
  return locked;
}

// While an overlay is open, its backing file takes consistent read and shares
// no write, as qemu's backing nodes do: others may read it, not write it.
TEST(ChainLocks, BaseRefusesWritersWhileOverlayOpen) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  must({"qemu-img", "create", "-q", "-f", "qcow2", t.file("base.qcow2"), "1M"});
  must({"qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", t.file("top.qcow2")});
  const std::string base = t.file("base.qcow2");
  const std::string refused = "Failed to get \"write\" lock\nIs another process using the image [" + base + "]?\n";
  {
    BackgroundProcess keel({keel_bin("keel-io"), "-c", "sleep 30000", t.file("top.qcow2")});  // holds the chain open
    ASSERT_TRUE(wait_until_write_unshared(base));
    const auto write = run({"qemu-io", "-c", "write 0 1", base});
    EXPECT_EQ(write.status, 1);
    EXPECT_EQ(write.err, "qemu-io: can't open device " + base + ": " + refused);
    EXPECT_EQ(run({"qemu-io", "-r", "-c", "read 0 1", base}).status, 0);
  }
  BackgroundProcess qemu({"qemu-io", "-c", "sleep 30000", t.file("top.qcow2")});
  ASSERT_TRUE(wait_until_write_unshared(base));
  const auto write = run_keel({"keel-io", "-c", "write 0 1", base});
  EXPECT_EQ(write.status, 1);
  EXPECT_EQ(write.err, "keel-io: can't open device " + base + ": " + refused);
  EXPECT_EQ(run_keel({"keel-io", "-r", "-c", "read 0 1", base}).status, 0);
}

}  // namespace
}  // namespace keel::test::interop
