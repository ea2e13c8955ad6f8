// Requests through damaged qcow2 metadata, keel-io against qemu-io on
// identical copies: the same replies (a failed request is EIO, and once a
// writable image is marked corrupt every later request is ENOMEDIUM), the
// same corruption notice on stderr, and afterwards the same corrupt bit and
// the same qemu-img check verdict on both images.
#include <filesystem>
#include <functional>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

// 64 KiB clusters, data at 0 (whole cluster) and 128k (one 4 KiB piece), a
// compressed cluster at 192k, nothing at 64k.
void make_image(const std::string& img, bool extended_l2) {
  std::vector<std::string> create{"qemu-img", "create", "-q", "-f", "qcow2"};
  if (extended_l2) create.insert(create.end(), {"-o", "extended_l2=on"});
  create.insert(create.end(), {img, "4M"});
  ASSERT_EQ(run(create).status, 0);
  qemu_io(img, "qcow2", {"write -P 1 0 64k", "write -P 2 128k 4k", "write -c -P 3 192k 64k"});
}

void or_bitmap(const std::string& img, uint64_t guest, uint64_t bits) {
  const uint64_t at = Qcow2Layout::read(img).l2_entry_offset(img, guest) + 8;
  write_be(img, at, 8, read_be(img, at, 8) | bits);
}

void or_l2_entry(const std::string& img, uint64_t guest, uint64_t bits) {
  const uint64_t at = Qcow2Layout::read(img).l2_entry_offset(img, guest);
  write_be(img, at, 8, read_be(img, at, 8) | bits);
}

struct Damage {
  std::string name;
  bool extended_l2;
  std::function<void(const std::string&)> apply;
};

std::ostream& operator<<(std::ostream& o, const Damage& d) { return o << d.name; }

const std::vector<Damage>& damages() {
  static const std::vector<Damage> d = {
      {"extl2_allocated_and_zero", true, [](const std::string& img) { or_bitmap(img, 0, 1ull << 32); }},
      {"extl2_unallocated_with_allocation_bits", true, [](const std::string& img) { or_bitmap(img, 64 << 10, 1); }},
      {"extl2_compressed_with_bitmap", true, [](const std::string& img) { or_bitmap(img, 192 << 10, 1ull << 33); }},
      {"data_offset_unaligned", false, [](const std::string& img) { or_l2_entry(img, 0, 0x200); }},
      {"l2_offset_unaligned", false,
       [](const std::string& img) {
         const auto l = Qcow2Layout::read(img);
         write_be(img, l.l1_table_offset, 8, read_be(img, l.l1_table_offset, 8) | 0x200);
       }},
  };
  return d;
}

// Command sequences: read-only, and writable where the first failure takes the image out of use.
const std::vector<std::vector<std::string>>& sequences() {
  static const std::vector<std::vector<std::string>> s = {
      {"-r", "-c", "read -P 1 0 64k", "-c", "read 64k 64k", "-c", "read -P 3 192k 64k", "-c", "read 0 4k"},
      {"-c", "read 64k 64k", "-c", "read -P 1 0 64k", "-c", "write -P 9 128k 4k", "-c", "read 192k 4k", "-c", "flush"},
      {"-c", "write -P 8 0 4k", "-c", "read -P 8 0 4k"},
      {"-c", "write -P 8 64k 64k", "-c", "read 64k 64k"},
      {"-c", "write -P 8 192k 4k", "-c", "read -P 8 192k 4k"},
      {"-c", "map"},
  };
  return s;
}

class CorruptIo : public ::testing::TestWithParam<Damage> {};

TEST_P(CorruptIo, SameAsQemu) {
  KEEL_REQUIRE_QEMU();
  const Damage& damage = GetParam();
  TempDir t;
  const std::string original = t.file("original.qcow2");
  ASSERT_NO_FATAL_FAILURE(make_image(original, damage.extended_l2));
  damage.apply(original);
  for (const auto& commands : sequences()) {
    const std::string what = "[" + damage.name + "] keel-io/qemu-io " + join(commands);
    SCOPED_TRACE(what);
    const std::string qdir = t.file("q"), kdir = t.file("k");
    for (const auto& dir : {qdir, kdir}) {
      std::filesystem::create_directories(dir);
      copy_file(original, dir + "/img");
    }
    std::vector<std::string> args{"-f", "qcow2"};
    args.insert(args.end(), commands.begin(), commands.end());
    args.push_back("img");
    expect_same(run_both(qdir, kdir, args), what, false);
    constexpr uint64_t kCorruptBit = 2;
    EXPECT_EQ(read_be(kdir + "/img", 72, 8) & kCorruptBit, read_be(qdir + "/img", 72, 8) & kCorruptBit)
        << "corrupt bit";
    const auto qcheck = qemu_img({"check", qdir + "/img"});
    const auto kcheck = qemu_img({"check", kdir + "/img"});
    EXPECT_EQ(kcheck.status, qcheck.status) << describe("qemu-img check <keel's image>", kcheck);
    EXPECT_EQ(kcheck.out, qcheck.out);
    EXPECT_EQ(kcheck.err, qcheck.err);
    std::filesystem::remove_all(qdir);
    std::filesystem::remove_all(kdir);
  }
}

INSTANTIATE_TEST_SUITE_P(interop, CorruptIo, ::testing::ValuesIn(damages()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace keel::test::interop
