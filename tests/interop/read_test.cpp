// Images written by qemu (qemu-img create + qemu-io, qemu-img convert -c)
// must read back through keel byte for byte like they read through qemu-img:
// `keel-img convert -O raw` and `qemu-img convert -O raw` of the same image
// are compared.
#include <algorithm>
#include <filesystem>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

struct ReadCase {
  std::string name;
  std::string options;  // qemu-img create -o
  uint64_t cluster_size;
};

std::ostream& operator<<(std::ostream& o, const ReadCase& c) { return o << "-o " << c.options; }

std::string n(uint64_t v) { return std::to_string(v); }

// A qemu-io script exercising every kind of cluster: data, compressed (both
// compressible and not), zero with and without unmap, discarded, partially
// overwritten, unaligned writes across cluster boundaries, subclusters.
std::vector<std::string> fill_commands(uint64_t c, uint64_t base, uint64_t size, const std::string& rnd,
                                       const std::string& text, bool compress) {
  // Cluster i of the exercised area.
  auto at = [&](uint64_t i, uint64_t plus = 0) { return n(base + i * c + plus); };
  const uint64_t sub = c >= 16384 ? c / 32 : c / 4;  // a subcluster with extended L2, a part otherwise
  std::vector<std::string> cmds = {
      "write -P 0xab 0 64k",
      "write -s " + rnd + " 70000 333",
      "write -c -P 0x11 " + at(2) + " " + n(c),
      "write -c -s " + text + " " + at(3) + " " + n(c),
      "write -c -s " + rnd + " " + at(4) + " " + n(c),
      "write -z " + at(5) + " " + n(c),
      "write -P 0x22 " + at(6) + " " + n(2 * c),
      "write -z -u " + at(6) + " " + n(c),
      "write -P 0x33 " + at(8) + " " + n(c),
      "discard " + at(8) + " " + n(c),
      "write -P 0x44 " + at(9) + " " + n(c),
      "write -z " + at(9, c / 4) + " " + n(c / 2),
      "write -P 0x66 " + at(10, 100) + " 50",
      "write -s " + rnd + " " + at(11, -300) + " 600",
      "write -P 0x77 " + at(12, sub) + " " + n(sub),
      "write -z " + at(12, 3 * sub) + " " + n(sub),
      "write -c -P 0x88 " + at(13) + " " + n(c),
      "write -P 0x99 " + at(13, c / 2) + " " + n(std::min<uint64_t>(c / 2, 4096)),
      "write -c -s " + text + " " + at(14) + " " + n(c),
      "discard " + at(14) + " " + n(c),
      "write -P 0x55 " + n(size - c) + " " + n(c),
  };
  // qemu cannot write compressed clusters over preallocated ones.
  if (!compress)
    for (auto& cmd : cmds)
      if (cmd.rfind("write -c ", 0) == 0) cmd.replace(0, 9, "write ");
  return cmds;
}

class ReadQemuImage : public ::testing::TestWithParam<ReadCase> {};

void compare_reads(const TempDir& t, const std::string& image, const std::string& fmt, const std::string& what) {
  for (bool explicit_format : {true, false}) {
    std::vector<std::string> src;
    if (explicit_format) src = {"-f", fmt};
    src.push_back(image);
    auto args = [&](const std::string& out) {
      std::vector<std::string> a{"convert", "-O", "raw"};
      a.insert(a.end(), src.begin(), src.end());
      a.push_back(out);
      return a;
    };
    const auto q = qemu_img(args(t.file("qemu.raw")));
    ASSERT_EQ(q.status, 0) << describe("qemu-img " + join(args(t.file("qemu.raw"))), q);
    const auto k = keel_img(args(t.file("keel.raw")));
    ASSERT_EQ(k.status, 0) << what << "\n" << describe("keel-img " + join(args(t.file("keel.raw"))), k);
    EXPECT_TRUE(files_identical(t.file("keel.raw"), t.file("qemu.raw")))
        << what << ": keel-img " << join(args("keel.raw")) << " vs qemu-img " << join(args("qemu.raw"));
    std::filesystem::remove(t.file("keel.raw"));
    std::filesystem::remove(t.file("qemu.raw"));
  }
}

TEST_P(ReadQemuImage, ReadsLikeQemu) {
  KEEL_REQUIRE_QEMU();
  const auto& c = GetParam();
  TempDir t;
  // The exercised clusters start past the 64k written first, cluster aligned.
  const uint64_t base = std::max<uint64_t>(128 << 10, c.cluster_size);
  const uint64_t size = std::max<uint64_t>(4 << 20, base + 16 * c.cluster_size);
  const std::string rnd = t.file("rnd.bin"), text = t.file("text.bin");
  write_file(rnd, random_bytes(std::max<uint64_t>(2 * c.cluster_size, 128 << 10), 42));
  {
    std::vector<uint8_t> txt(std::max<uint64_t>(2 * c.cluster_size, 128 << 10));
    const std::string line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit 42\n";
    for (size_t i = 0; i < txt.size(); i++) txt[i] = static_cast<uint8_t>(line[i % line.size()]);
    write_file(text, txt);
  }
  const std::string img = t.file("img.qcow2");
  std::vector<std::string> create{"create", "-q", "-f", "qcow2"};
  if (!c.options.empty()) create.insert(create.end(), {"-o", c.options});
  create.insert(create.end(), {img, n(size)});
  const auto cr = qemu_img(create);
  ASSERT_EQ(cr.status, 0) << describe(join(create), cr);
  qemu_io(img, "qcow2", fill_commands(c.cluster_size, base, size, rnd, text, c.options.find("preallocation") == std::string::npos));
  ASSERT_FALSE(HasFailure());
  compare_reads(t, img, "qcow2", "qemu-img create -o " + c.options + " + qemu-io fill");

  // Internal snapshot, then more writes: shared clusters (refcount 2) and COW.
  // Not possible with 1-bit refcounts (qemu-img snapshot fails: refcount overflow).
  if (c.options.find("refcount_bits=1") != std::string::npos) return;
  ASSERT_EQ(qemu_img({"snapshot", "-c", "s1", img}).status, 0);
  qemu_io(img, "qcow2",
          {"write -P 0xc1 0 " + n(c.cluster_size), "write -z -u " + n(base + 2 * c.cluster_size) + " " + n(c.cluster_size),
           "discard " + n(base + 6 * c.cluster_size) + " " + n(2 * c.cluster_size),
           "write -P 0xc2 " + n(base + 9 * c.cluster_size + 512) + " 512"});
  ASSERT_FALSE(HasFailure());
  compare_reads(t, img, "qcow2", "after snapshot + overwrite, -o " + c.options);
}

std::vector<ReadCase> read_cases() {
  return {
      {"default", "", 65536},
      {"cluster_512", "cluster_size=512", 512},
      {"cluster_4k", "cluster_size=4k", 4096},
      {"cluster_2M", "cluster_size=2M", 2 << 20},
      {"extended_l2", "extended_l2=on", 65536},
      {"extended_l2_16k", "extended_l2=on,cluster_size=16k", 16384},
      {"extended_l2_zstd_2M", "extended_l2=on,cluster_size=2M,compression_type=zstd", 2 << 20},
      {"zstd", "compression_type=zstd", 65536},
      {"compat_0_10", "compat=0.10", 65536},
      {"refcount_bits_1", "refcount_bits=1", 65536},
      {"refcount_bits_64", "refcount_bits=64", 65536},
      {"lazy_refcounts", "lazy_refcounts=on", 65536},
      {"prealloc_metadata", "preallocation=metadata", 65536},
      {"prealloc_falloc_4k", "preallocation=falloc,cluster_size=4k", 4096},
  };
}

INSTANTIATE_TEST_SUITE_P(interop, ReadQemuImage, ::testing::ValuesIn(read_cases()),
                         [](const auto& info) { return info.param.name; });

// qemu-img convert -c output (zlib and zstd) reads back identically.
class ReadQemuCompressed : public ::testing::TestWithParam<std::string> {};

TEST_P(ReadQemuCompressed, ReadsLikeQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  const std::string src = t.file("src.raw"), img = t.file("c.qcow2");
  write_file(src, mixed_content((5 << 20) + 4096, 7));
  std::vector<std::string> conv{"convert", "-c", "-O", "qcow2"};
  if (!GetParam().empty()) conv.insert(conv.end(), {"-o", GetParam()});
  conv.insert(conv.end(), {src, img});
  const auto r = qemu_img(conv);
  ASSERT_EQ(r.status, 0) << describe(join(conv), r);
  const auto chk = qemu_img({"check", "--output=json", img});
  ASSERT_EQ(chk.status, 0);
  ASSERT_GT(nlohmann::json::parse(chk.out).value("compressed-clusters", 0), 0) << "qemu produced no compressed clusters";
  compare_reads(t, img, "qcow2", "qemu-img " + join(conv));
  const auto k = keel_img({"convert", "-O", "raw", img, t.file("back.raw")});
  ASSERT_EQ(k.status, 0) << describe("keel-img convert", k);
  EXPECT_TRUE(files_identical(t.file("back.raw"), src));
}

INSTANTIATE_TEST_SUITE_P(interop, ReadQemuCompressed,
                         ::testing::Values("", "compression_type=zlib,cluster_size=4k", "compression_type=zstd",
                                           "compression_type=zstd,cluster_size=2M", "compression_type=zstd,extended_l2=on"),
                         [](const auto& info) {
                           std::string s = info.param.empty() ? "default" : info.param;
                           for (auto& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// A dirty image (lazy refcounts, qemu-io killed before closing) still reads
// like qemu reads it.
TEST(interop_read, DirtyLazyRefcountsImage) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  const std::string img = t.file("dirty.qcow2");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", img, "4M"}).status, 0);
  const auto r = run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x5c 0 200k", "-c", "write -P 0x6d 1M 64k", "-c",
                      "sigraise 9", img});
  ASSERT_NE(r.status, 0) << "qemu-io was meant to die";
  const auto info = qemu_img({"info", "--output=json", "-U", img});
  ASSERT_EQ(info.status, 0) << describe("qemu-img info", info);
  ASSERT_TRUE(nlohmann::json::parse(info.out).value("dirty-flag", false))
      << "image is not marked dirty";
  compare_reads(t, img, "qcow2", "dirty lazy-refcounts image");
  // keel-img info also reports the dirty flag like qemu-img.
  const auto ki = keel_img({"info", "--output=json", img});
  const auto qi = qemu_img({"info", "--output=json", img});
  EXPECT_EQ(ki.status, qi.status) << describe("keel-img info", ki);
  EXPECT_EQ(ki.out, qi.out);
}

// Raw images written by qemu-io read identically (and through probing).
TEST(interop_read, RawImage) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  const std::string img = t.file("img.raw");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", img, "3M"}).status, 0);
  qemu_io(img, "raw", {"write -P 0x12 0 100k", "write -P 0x34 1M 4k", "write -z 64k 8k", "write -P 0x56 2000000 17"});
  ASSERT_FALSE(HasFailure());
  compare_reads(t, img, "raw", "raw image");
}

}  // namespace
}  // namespace keel::test::interop
