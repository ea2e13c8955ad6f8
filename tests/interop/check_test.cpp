// keel-img check versus qemu-img check on identical copies of clean and
// deliberately damaged images: exit status, stdout (human and JSON) and
// stderr must match; after keel repairs an image, qemu-img check must find
// it clean (when qemu's own repair gets there) and the data must be intact.
#include <algorithm>
#include <filesystem>
#include <functional>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

void must(const std::vector<std::string>& argv) {
  const auto r = run(argv);
  ASSERT_EQ(r.status, 0) << describe(join(argv), r);
}

// A qcow2 image with data, zero clusters and a compressed cluster.
void make_image(const TempDir& t, const std::string& img, const std::string& opts = "") {
  std::vector<std::string> create{"qemu-img", "create", "-q", "-f", "qcow2"};
  if (!opts.empty()) create.insert(create.end(), {"-o", opts});
  create.insert(create.end(), {img, "4M"});
  must(create);
  write_file(t.file("rnd"), random_bytes(64 << 10, 5));
  qemu_io(img, "qcow2",
          {"write -P 0x17 0 192k", "write -z 1M 64k", "write -P 0x18 2M 4k", "write -c -P 0x19 3M 64k",
           "write -s " + t.file("rnd") + " 3200k 64k"});
}

// Grows the file by one cluster and gives that cluster refcount 1: a leak.
void add_leak(const std::string& img) {
  const auto l = Qcow2Layout::read(img);
  const uint64_t cluster = (file_size(img) + l.cluster_size - 1) / l.cluster_size;
  std::filesystem::resize_file(img, (cluster + 1) * l.cluster_size);
  l.set_refcount(img, cluster, 1);
}

// ORs `bits` into the extended L2 subcluster bitmap of guest offset `guest`.
void or_subcluster_bitmap(const std::string& img, uint64_t guest, uint64_t bits) {
  const uint64_t at = Qcow2Layout::read(img).l2_entry_offset(img, guest) + 8;
  write_be(img, at, 8, read_be(img, at, 8) | bits);
}

// Sets the refcount of the data cluster behind guest offset `guest`.
void set_data_refcount(const std::string& img, uint64_t guest, uint64_t value) {
  const auto l = Qcow2Layout::read(img);
  const uint64_t host = l.data_cluster_for(img, guest);
  if (!host) throw std::runtime_error("no data cluster at guest offset");
  l.set_refcount(img, host / l.cluster_size, value);
}

struct Damage {
  std::string name;
  std::function<void(const TempDir&, const std::string&)> make;
  int expected_status;  // qemu-img check's, as a sanity check of the damage itself
  // keel's -r all repairs what qemu's leaves (a data cluster mapped past the
  // end of the file becomes a zero cluster), so only the verdicts are compared.
  bool keel_repairs_more = false;
};

std::ostream& operator<<(std::ostream& o, const Damage& d) { return o << d.name; }

std::vector<Damage> damages() {
  return {
      {"clean", [](const TempDir& t, const std::string& img) { make_image(t, img); }, 0},
      {"clean_v2_4k",
       [](const TempDir& t, const std::string& img) { make_image(t, img, "compat=0.10,cluster_size=4k"); }, 0},
      {"clean_refcount1_extl2",
       [](const TempDir& t, const std::string& img) { make_image(t, img, "refcount_bits=1,extended_l2=on"); }, 0},
      {"leak",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img);
         add_leak(img);
       },
       3},
      {"leak_refcount_bits_4",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img, "refcount_bits=4");
         add_leak(img);
         add_leak(img);
       },
       3},
      {"refcount_zero",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img);
         set_data_refcount(img, 0, 0);
       },
       2},
      {"refcount_too_high",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img);
         set_data_refcount(img, 2 << 20, 2);
       },
       2},
      {"leak_and_corruption",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img);
         add_leak(img);
         set_data_refcount(img, 64 << 10, 0);
       },
       2},
      {"extl2_allocated_and_zero",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img, "extended_l2=on");
         or_subcluster_bitmap(img, 0, 1ull << 33);
       },
       2},
      {"extl2_unallocated_with_allocation_bits",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img, "extended_l2=on");
         or_subcluster_bitmap(img, 512 << 10, 1);
       },
       2},
      {"extl2_compressed_with_bitmap",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img, "extended_l2=on");
         or_subcluster_bitmap(img, 3 << 20, 1ull << 40);
       },
       2},
      {"data_cluster_shared_refcount_bits_1",  // the second reference overflows a 1-bit refcount
       [](const TempDir& t, const std::string& img) {
         make_image(t, img, "refcount_bits=1");
         const auto l = Qcow2Layout::read(img);
         write_be(img, l.l2_entry_offset(img, 64 << 10), 8, read_be(img, l.l2_entry_offset(img, 0), 8));
       },
       2},
      {"refcount_64_bits_above_2_63",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img, "refcount_bits=64");
         set_data_refcount(img, 0, (1ull << 63) + 5);
       },
       2},  // a leak, and the COPIED flag is wrong for a refcount above 1
      {"refcount_64_bits_all_ones",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img, "refcount_bits=64");
         set_data_refcount(img, 0, ~0ull);
       },
       2},
      {"l1_table_is_the_refcount_table",  // the L2 "table" is a refcount block
       [](const TempDir&, const std::string& img) {
         must({"qemu-img", "create", "-q", "-f", "qcow2", img, "1M"});
         write_be(img, 40, 8, Qcow2Layout::read(img).refcount_table_offset);
       },
       2},
      {"data_offset_unaligned",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img);
         const uint64_t at = Qcow2Layout::read(img).l2_entry_offset(img, 2 << 20);
         write_be(img, at, 8, read_be(img, at, 8) | 0x200);
       },
       2},
      {"data_offset_past_the_file",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img);
         write_be(img, Qcow2Layout::read(img).l2_entry_offset(img, 2 << 20), 8, (1ull << 63) | (1ull << 40));
       },
       2, true},
      {"corrupt_flag",
       [](const TempDir& t, const std::string& img) {
         make_image(t, img);
         write_be(img, 72, 8, read_be(img, 72, 8) | 2);
       },
       0},
      {"dirty_lazy_refcounts",
       [](const TempDir& t, const std::string& img) {
         must({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", img, "4M"});
         run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x5c 0 200k", "-c", "write -P 0x5d 1M 64k", "-c", "sigraise 9",
              img});
       },
       2},  // refcounts were never written: qemu-img check (read-only) reports them as corruptions
  };
}

struct Mode {
  std::string name;
  std::vector<std::string> args;  // between "check" and the file name
};

const std::vector<Mode>& modes() {
  static const std::vector<Mode> m = {
      {"human", {}},
      {"json", {"--output=json"}},
      {"quiet", {"-q"}},
      {"format_given", {"-f", "qcow2"}},
      {"repair_leaks", {"-r", "leaks"}},
      {"repair_all", {"-r", "all"}},
      {"repair_all_json", {"-r", "all", "--output=json"}},
  };
  return m;
}

class Check : public ::testing::TestWithParam<Damage> {};

TEST_P(Check, SameAsQemu) {
  KEEL_REQUIRE_QEMU();
  const auto& damage = GetParam();
  TempDir t;
  const std::string original = t.file("original.qcow2");
  ASSERT_NO_FATAL_FAILURE(damage.make(t, original));
  ASSERT_FALSE(HasFailure());
  // The guest data, read by qemu before anything repairs the image (where
  // the damage lets it: an invalid entry fails the read).
  const bool readable =
      run({"qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", original, t.file("data.raw")}).status == 0;

  for (const auto& mode : modes()) {
    SCOPED_TRACE("mode " + mode.name);
    const std::string kdir = t.file("keel-" + mode.name), qdir = t.file("qemu-" + mode.name);
    std::filesystem::create_directory(kdir);
    std::filesystem::create_directory(qdir);
    copy_file(original, kdir + "/img");
    copy_file(original, qdir + "/img");
    std::vector<std::string> args{"check"};
    args.insert(args.end(), mode.args.begin(), mode.args.end());
    args.push_back("img");
    const std::string what = "keel-img " + join(args) + "  vs  qemu-img " + join(args) + "  [" + damage.name + "]";
    const auto q = qemu_img_in(qdir, args);
    if (mode.name == "human") {
      ASSERT_EQ(q.status, damage.expected_status) << "damage not as intended\n" << describe("qemu", q);
    }
    const auto k = keel_img_in(kdir, args);
    // What keel reports is what a fresh check by qemu finds in keel's result.
    const auto verdict = qemu_img({"check", "-f", "qcow2", kdir + "/img"});
    if (k.status != 1)  // 1: the check could not complete, so there is no verdict
      EXPECT_EQ(k.status, verdict.status) << what << ": keel's verdict is not qemu's on keel's image\n"
                                          << describe("keel", k) << "\n"
                                          << describe("qemu-img check <keel result>", verdict);
    const bool repairs = std::find(mode.args.begin(), mode.args.end(), "-r") != mode.args.end();
    if (repairs && damage.keel_repairs_more) {
      std::filesystem::remove_all(kdir);
      std::filesystem::remove_all(qdir);
      continue;
    }
    EXPECT_EQ(k.status, q.status) << what << "\n" << describe("keel", k) << "\n" << describe("qemu", q);
    EXPECT_EQ(k.out, q.out) << what;
    EXPECT_EQ(k.err, as_keel_stderr(q.err)) << what;
    if (mode.args.size() && mode.args.back() == "--output=json" && !q.out.empty()) {
      nlohmann::json kj;
      try {
        kj = nlohmann::json::parse(k.out);
      } catch (const std::exception& e) {
        ADD_FAILURE() << what << ": keel output is not JSON: " << e.what();
      }
      EXPECT_EQ(kj, nlohmann::json::parse(q.out)) << what;
    }

    // After either tool ran (possibly repairing), the image state must agree.
    const auto qafter = qemu_img({"check", "-f", "qcow2", qdir + "/img"});
    const auto kafter = qemu_img({"check", "-f", "qcow2", kdir + "/img"});
    if (qafter.status == 0) {
      EXPECT_EQ(kafter.status, 0) << what << ": qemu-img check after keel-img " << join(args) << "\n"
                                  << describe("qemu-img check <keel result>", kafter);
    }
    // The guest data survives the repair (qemu's own view of it, -U as the
    // image may still be marked corrupt).
    if (readable) {
      const auto kdata = qemu_img({"convert", "-U", "-f", "qcow2", "-O", "raw", kdir + "/img", kdir + "/data.raw"});
      ASSERT_EQ(kdata.status, 0) << describe("qemu-img convert <keel result>", kdata);
      EXPECT_TRUE(files_identical(kdir + "/data.raw", t.file("data.raw"))) << what << ": guest data changed";
    }
    const auto kread = keel_img({"convert", "-U", "-f", "qcow2", "-O", "raw", kdir + "/img", kdir + "/keel-data.raw"});
    const auto qread = qemu_img({"convert", "-U", "-f", "qcow2", "-O", "raw", kdir + "/img", kdir + "/qemu-data.raw"});
    EXPECT_EQ(kread.status, qread.status) << describe("keel-img convert <keel result>", kread);
    if (kread.status == 0 && qread.status == 0) {
      EXPECT_TRUE(files_identical(kdir + "/keel-data.raw", kdir + "/qemu-data.raw")) << what;
    }
    std::filesystem::remove_all(kdir);
    std::filesystem::remove_all(qdir);
  }
}

INSTANTIATE_TEST_SUITE_P(interop, Check, ::testing::ValuesIn(damages()),
                         [](const auto& info) { return info.param.name; });

// Formats without consistency checks, and bad command lines.
TEST(interop_check, OtherFormatsAndBadArgumentsSameAsQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  must({"qemu-img", "create", "-q", "-f", "raw", t.file("img.raw"), "1M"});
  must({"qemu-img", "create", "-q", "-f", "qcow2", t.file("img.qcow2"), "1M"});
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"check", t.file("img.raw")},
           {"check", "-f", "raw", t.file("img.raw")},
           {"check", "--output=json", t.file("img.raw")},
           {"check", "-f", "raw", t.file("img.qcow2")},
           {"check", t.file("nosuch")},
           {"check", "-r", "bogus", t.file("img.qcow2")},
           {"check", "-U", "-r", "all", t.file("img.qcow2")},
           {"check", "--output=xml", t.file("img.qcow2")},
       }) {
    same_as_qemu(args);
  }
  // The raw case specifically: status 63 and qemu's message.
  const auto k = keel_img({"check", t.file("img.raw")});
  EXPECT_EQ(k.status, 63);
  EXPECT_NE(k.err.find("This image format does not support checks"), std::string::npos) << k.err;
}

}  // namespace
}  // namespace keel::test::interop
