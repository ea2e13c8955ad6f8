// keel-img info versus qemu-img info on the very same image file: the JSON
// output must parse to the same value and match as text, and the human
// output must be identical, with -f and with probing.
#include <functional>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

struct InfoCase {
  std::string name;
  std::string fmt;
  // Builds the image at `img` (scratch files may go next to it in `t`).
  std::function<void(const TempDir& t, const std::string& img)> make;
};

std::ostream& operator<<(std::ostream& o, const InfoCase& c) { return o << c.name; }

void must(const std::vector<std::string>& argv) {
  const auto r = run(argv);
  ASSERT_EQ(r.status, 0) << describe(join(argv), r);
}

void qcow2(const std::string& img, const std::string& opts, const std::string& size = "4M") {
  std::vector<std::string> a{"qemu-img", "create", "-q", "-f", "qcow2"};
  if (!opts.empty()) a.insert(a.end(), {"-o", opts});
  a.insert(a.end(), {img, size});
  must(a);
}

void some_data(const std::string& img, const std::string& fmt = "qcow2") {
  qemu_io(img, fmt, {"write -P 0x17 0 192k", "write -z 1M 64k", "write -P 0x18 2M 4k"});
}

class Info : public ::testing::TestWithParam<InfoCase> {};

void compare_info(const std::string& img, const std::vector<std::string>& extra) {
  for (const std::string output : {"json", "human"}) {
    std::vector<std::string> args{"info"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back("--output=" + output);
    args.push_back(img);
    const auto q = qemu_img(args);
    const auto k = keel_img(args);
    const std::string what = "keel-img " + join(args) + "  vs  qemu-img " + join(args);
    ASSERT_EQ(q.status, 0) << describe("qemu-img " + join(args), q);
    EXPECT_EQ(k.status, q.status) << what << "\n" << describe("keel-img", k);
    if (output == "json" && k.status == 0) {
      nlohmann::json kj, qj = nlohmann::json::parse(q.out);
      try {
        kj = nlohmann::json::parse(k.out);
      } catch (const std::exception& e) {
        ADD_FAILURE() << what << ": keel output is not JSON: " << e.what() << "\n" << k.out;
      }
      EXPECT_EQ(kj, qj) << what << "\n  keel: " << kj.dump() << "\n  qemu: " << qj.dump();
    }
    EXPECT_EQ(k.out, q.out) << what;
    EXPECT_EQ(k.err, as_keel_stderr(q.err)) << what;
  }
}

TEST_P(Info, SameAsQemu) {
  KEEL_REQUIRE_QEMU();
  const auto& c = GetParam();
  TempDir t;
  const std::string img = t.file("img");
  ASSERT_NO_FATAL_FAILURE(c.make(t, img));
  ASSERT_FALSE(HasFailure());
  compare_info(img, {"-f", c.fmt});
  compare_info(img, {});
  compare_info(img, {"-U"});
  compare_info(img, {"--backing-chain"});
  compare_info(img, {"-f", c.fmt, "--backing-chain"});
}

std::vector<InfoCase> info_cases() {
  std::vector<InfoCase> v;
  v.push_back({"raw", "raw", [](const TempDir&, const std::string& img) {
                 must({"qemu-img", "create", "-q", "-f", "raw", img, "4M"});
                 some_data(img, "raw");
               }});
  v.push_back({"raw_sparse_unaligned", "raw", [](const TempDir&, const std::string& img) {
                 must({"truncate", "-s", "1000100", img});
               }});
  v.push_back({"raw_empty", "raw", [](const TempDir&, const std::string& img) { write_file(img, {}); }});
  v.push_back({"raw_prealloc_full", "raw", [](const TempDir&, const std::string& img) {
                 must({"qemu-img", "create", "-q", "-f", "raw", "-o", "preallocation=full", img, "1M"});
               }});
  v.push_back({"qcow2_v3_empty", "qcow2", [](const TempDir&, const std::string& img) { qcow2(img, ""); }});
  v.push_back({"qcow2_v3_data", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "");
                 some_data(img);
               }});
  v.push_back({"qcow2_v2", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "compat=0.10");
                 some_data(img);
               }});
  v.push_back({"qcow2_size_zero", "qcow2", [](const TempDir&, const std::string& img) { qcow2(img, "", "0"); }});
  v.push_back({"qcow2_64T", "qcow2", [](const TempDir&, const std::string& img) { qcow2(img, "", "64T"); }});
  v.push_back({"qcow2_unaligned_size", "qcow2", [](const TempDir&, const std::string& img) { qcow2(img, "", "1000000"); }});
  v.push_back({"cluster_512_refcount_1", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "cluster_size=512,refcount_bits=1");
                 some_data(img);
               }});
  v.push_back({"cluster_2M_refcount_64", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "cluster_size=2M,refcount_bits=64");
                 some_data(img);
               }});
  v.push_back({"compressed", "qcow2", [](const TempDir& t, const std::string& img) {
                 write_file(t.file("src.raw"), mixed_content(3 << 20, 9));
                 must({"qemu-img", "convert", "-c", "-O", "qcow2", t.file("src.raw"), img});
               }});
  v.push_back({"compressed_zstd", "qcow2", [](const TempDir& t, const std::string& img) {
                 write_file(t.file("src.raw"), mixed_content(3 << 20, 10));
                 must({"qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", t.file("src.raw"), img});
               }});
  v.push_back({"extended_l2", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "extended_l2=on,cluster_size=128k");
                 some_data(img);
               }});
  v.push_back({"lazy_refcounts", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "lazy_refcounts=on");
                 some_data(img);
               }});
  v.push_back({"lazy_refcounts_dirty", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "lazy_refcounts=on");
                 run({"qemu-io", "-f", "qcow2", "-c", "write -P 0x5c 0 200k", "-c", "sigraise 9", img});
               }});
  v.push_back({"corrupt_flag", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "");
                 some_data(img);
                 write_be(img, 72, 8, read_be(img, 72, 8) | 2);  // incompatible_features |= corrupt
               }});
  v.push_back({"prealloc_metadata", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "preallocation=metadata");
               }});
  v.push_back({"prealloc_full", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "preallocation=full", "2M");
               }});
  v.push_back({"snapshot", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "");
                 some_data(img);
                 must({"qemu-img", "snapshot", "-c", "s1", img});
                 qemu_io(img, "qcow2", {"write -P 0x44 0 64k"});
                 must({"qemu-img", "snapshot", "-c", "second snapshot", img});
               }});
  v.push_back({"snapshot_v2", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "compat=0.10");
                 some_data(img);
                 must({"qemu-img", "snapshot", "-c", "s1", img});
               }});
  v.push_back({"bitmap", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "");
                 must({"qemu-img", "bitmap", "--add", img, "b0"});
               }});
  v.push_back({"bitmaps_mixed", "qcow2", [](const TempDir&, const std::string& img) {
                 qcow2(img, "");
                 must({"qemu-img", "bitmap", "--add", img, "b0"});
                 must({"qemu-img", "bitmap", "--add", "-g", "128k", "--disable", img, "b1"});
                 some_data(img);
               }});
  v.push_back({"backing_file", "qcow2",
               [](const TempDir& t, const std::string& img) {
                 qcow2(t.file("base.qcow2"), "");
                 some_data(t.file("base.qcow2"));
                 must({"qemu-img", "create", "-q", "-f", "qcow2", "-b", t.file("base.qcow2"), "-F", "qcow2", img});
                 qemu_io(img, "qcow2", {"write -P 0x66 64k 64k"});
               }});
  v.push_back({"backing_file_relative_raw", "qcow2",
               [](const TempDir& t, const std::string& img) {
                 must({"qemu-img", "create", "-q", "-f", "raw", t.file("base.raw"), "4M"});
                 must({"qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", img, "8M"});
               }});
  return v;
}

INSTANTIATE_TEST_SUITE_P(interop, Info, ::testing::ValuesIn(info_cases()), [](const auto& info) { return info.param.name; });

// Error paths: missing file, wrong -f.
TEST(interop_info, ErrorsSameAsQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  qcow2(t.file("img.qcow2"), "");
  write_file(t.file("junk"), random_bytes(4096, 1));
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"info", t.file("nosuch")},
           {"info", "-f", "qcow2", t.file("junk")},
           {"info", "-f", "vmdk9", t.file("img.qcow2")},
           {"info", "--output=xml", t.file("img.qcow2")},
           {"info", "-f", "raw", t.file("img.qcow2")},
       }) {
    same_as_qemu(args);
  }
}

}  // namespace
}  // namespace keel::test::interop
