// keel-img create versus qemu-img create: the same command line in two
// directories (same basename) must print the same "Formatting" line, exit the
// same way, and produce an image qemu-img accepts and describes identically.
#include <filesystem>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

struct CreateCase {
  std::string name;
  std::vector<std::string> args;  // after "create"; the image is always "img"
};

std::ostream& operator<<(std::ostream& o, const CreateCase& c) { return o << join(c.args); }

std::string test_name(const ::testing::TestParamInfo<CreateCase>& info) { return info.param.name; }

struct Pair {
  TempDir tmp;
  std::string keel_dir = tmp.file("keel"), qemu_dir = tmp.file("qemu");
  Pair() {
    std::filesystem::create_directory(keel_dir);
    std::filesystem::create_directory(qemu_dir);
  }
};

std::vector<std::string> create_args(const std::vector<std::string>& args) {
  std::vector<std::string> v{"create"};
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

// qemu-img info --output=json minus the fields that legitimately depend on
// the host file system.
nlohmann::json info_of(const std::string& dir, const std::string& fmt) {
  auto r = qemu_img_in(dir, {"info", "--output=json", "-f", fmt, "img"});
  if (r.status != 0) {
    ADD_FAILURE() << describe("qemu-img info in " + dir, r);
    return nullptr;
  }
  auto j = nlohmann::json::parse(r.out);
  j.erase("actual-size");
  return j;
}

class CreateValid : public ::testing::TestWithParam<CreateCase> {};

TEST_P(CreateValid, SameOutputAndCleanImage) {
  KEEL_REQUIRE_QEMU();
  const auto& c = GetParam();
  Pair p;
  const auto args = create_args(c.args);
  const auto q = qemu_img_in(p.qemu_dir, args);
  ASSERT_EQ(q.status, 0) << "peer rejected a case meant to be valid: " << describe("qemu-img " + join(args), q);
  const auto k = keel_img_in(p.keel_dir, args);
  const std::string cmd = "keel-img " + join(args) + "  vs  qemu-img " + join(args);
  EXPECT_EQ(k.status, q.status) << cmd << "\n" << describe("keel", k);
  EXPECT_EQ(k.out, q.out) << cmd;
  EXPECT_EQ(k.err, as_keel_stderr(q.err)) << cmd;
  const std::string keel_image = p.keel_dir + "/img";
  ASSERT_TRUE(std::filesystem::exists(keel_image)) << cmd;

  std::string fmt = "raw";
  for (size_t i = 0; i + 1 < c.args.size(); i++)
    if (c.args[i] == "-f") fmt = c.args[i + 1];

  if (fmt == "qcow2") {
    const auto check = qemu_img({"check", "-f", "qcow2", keel_image});
    EXPECT_EQ(check.status, 0) << cmd << "\n" << describe("qemu-img check <keel image>", check);
  }
  // qemu-img describes both images the same way (same basename, same cwd-relative name).
  EXPECT_EQ(info_of(p.keel_dir, fmt), info_of(p.qemu_dir, fmt)) << cmd;
  EXPECT_EQ(file_size(keel_image), file_size(p.qemu_dir + "/img")) << cmd << ": image file sizes differ";
  // Preallocation must really allocate host blocks (as qemu's does).
  const auto qa = qemu_img_in(p.qemu_dir, {"info", "--output=json", "-f", fmt, "img"});
  const auto ka = qemu_img_in(p.keel_dir, {"info", "--output=json", "-f", fmt, "img"});
  if (qa.status == 0 && ka.status == 0) {
    const auto qsize = nlohmann::json::parse(qa.out).value("actual-size", 0ull);
    const auto ksize = nlohmann::json::parse(ka.out).value("actual-size", 0ull);
    // Allow a little slack for file-system block placement, not for missing preallocation.
    EXPECT_GE(ksize + 64 * 1024, qsize) << cmd << ": keel image occupies far less disk than qemu's";
  }

  // keel reads back its own empty image as zeros, like qemu (small images only).
  const auto vsize = info_of(p.qemu_dir, fmt).value("virtual-size", 0ull);
  if (vsize > (64ull << 20)) return;
  const auto kc = keel_img({"convert", "-f", fmt, "-O", "raw", keel_image, p.keel_dir + "/back.raw"});
  EXPECT_EQ(kc.status, 0) << describe("keel-img convert of the created image", kc);
  const auto qc = qemu_img({"convert", "-f", fmt, "-O", "raw", p.qemu_dir + "/img", p.qemu_dir + "/back.raw"});
  ASSERT_EQ(qc.status, 0) << describe("qemu-img convert", qc);
  if (kc.status == 0) {
    EXPECT_TRUE(files_identical(p.keel_dir + "/back.raw", p.qemu_dir + "/back.raw"));
  }
}

std::vector<CreateCase> valid_cases() {
  std::vector<CreateCase> v;
  auto q = [&](std::string name, std::string opts, std::string size = "4M") {
    std::vector<std::string> a{"-f", "qcow2"};
    if (!opts.empty()) {
      a.push_back("-o");
      a.push_back(opts);
    }
    a.push_back("img");
    a.push_back(size);
    v.push_back({std::move(name), std::move(a)});
  };
  q("qcow2_default", "");
  for (auto cs : {"512", "4k", "64k", "2M"}) q(std::string("cluster_") + cs, std::string("cluster_size=") + cs, "8M");
  for (auto rb : {"1", "2", "4", "8", "16", "32", "64"}) q(std::string("refcount_bits_") + rb, std::string("refcount_bits=") + rb);
  q("refcount64_cluster512", "refcount_bits=64,cluster_size=512");
  q("refcount1_cluster2M", "refcount_bits=1,cluster_size=2M", "16M");
  q("compat_0_10", "compat=0.10");
  q("compat_1_1", "compat=1.1");
  q("compat_v2", "compat=v2");
  q("compat_v3", "compat=v3");
  q("lazy_refcounts", "lazy_refcounts=on");
  q("lazy_refcounts_compat_1_1", "compat=1.1,lazy_refcounts=on");
  q("extended_l2_16k", "extended_l2=on,cluster_size=16k");
  q("extended_l2_64k", "extended_l2=on");
  q("extended_l2_2M", "extended_l2=on,cluster_size=2M", "16M");
  q("zstd", "compression_type=zstd");
  q("zstd_extended_l2_refcount8", "compression_type=zstd,extended_l2=on,cluster_size=32k,refcount_bits=8");
  for (auto pa : {"off", "metadata", "falloc", "full"}) q(std::string("prealloc_") + pa, std::string("preallocation=") + pa);
  q("prealloc_metadata_cluster512", "preallocation=metadata,cluster_size=512", "1M");
  q("prealloc_metadata_extended_l2", "preallocation=metadata,extended_l2=on", "8M");
  q("prealloc_full_cluster2M", "preallocation=full,cluster_size=2M", "4M");
  q("prealloc_falloc_compat_0_10", "preallocation=falloc,compat=0.10", "2M");
  q("prealloc_metadata_1G", "preallocation=metadata", "1G");
  q("size_1G", "", "1G");
  q("size_64T", "", "64T");
  q("size_unaligned", "", "1000");
  q("size_zero", "", "0");
  q("size_fractional", "", "1.5M");
  v.push_back({"size_as_option", {"-f", "qcow2", "-o", "size=3M,cluster_size=4k", "img"}});
  v.push_back({"two_o_options", {"-f", "qcow2", "-o", "cluster_size=4k", "-o", "refcount_bits=8", "img", "2M"}});
  v.push_back({"quiet", {"-q", "-f", "qcow2", "img", "2M"}});
  v.push_back({"raw_default", {"img", "3M"}});
  v.push_back({"raw_explicit", {"-f", "raw", "img", "3M"}});
  for (auto pa : {"off", "falloc", "full"})
    v.push_back({std::string("raw_prealloc_") + pa, {"-f", "raw", "-o", std::string("preallocation=") + pa, "img", "3M"}});
  v.push_back({"raw_unaligned", {"-f", "raw", "img", "1000"}});
  return v;
}

INSTANTIATE_TEST_SUITE_P(interop, CreateValid, ::testing::ValuesIn(valid_cases()), test_name);

class CreateInvalid : public ::testing::TestWithParam<CreateCase> {};

TEST_P(CreateInvalid, SameErrorAsQemu) {
  KEEL_REQUIRE_QEMU();
  const auto& c = GetParam();
  Pair p;
  const auto args = create_args(c.args);
  const auto q = qemu_img_in(p.qemu_dir, args);
  ASSERT_NE(q.status, 0) << "peer accepted a case meant to be invalid: " << describe("qemu-img " + join(args), q);
  const auto k = keel_img_in(p.keel_dir, args);
  const std::string cmd = "keel-img " + join(args) + "  vs  qemu-img " + join(args);
  EXPECT_EQ(k.status, q.status) << cmd << "\n" << describe("keel", k);
  EXPECT_EQ(k.out, q.out) << cmd;
  const auto lines = split_lines(k.err);
  ASSERT_FALSE(lines.empty()) << cmd << ": no error message";
  // The first line carries the program prefix; continuation lines follow qemu (compared below).
  EXPECT_EQ(lines.front().rfind("keel-img: ", 0), 0u) << cmd << ": error without prefix: " << lines.front();
  EXPECT_EQ(k.err, as_keel_stderr(q.err)) << cmd;
  // A failed create leaves no file behind where qemu leaves none.
  if (!std::filesystem::exists(p.qemu_dir + "/img")) {
    EXPECT_FALSE(std::filesystem::exists(p.keel_dir + "/img")) << cmd << ": failed create left a file";
  }
}

std::vector<CreateCase> invalid_cases() {
  std::vector<CreateCase> v;
  auto q = [&](std::string name, std::string opts, std::string size = "4M") {
    v.push_back({std::move(name), {"-f", "qcow2", "-o", std::move(opts), "img", std::move(size)}});
  };
  q("cluster_size_3k", "cluster_size=3k");
  q("cluster_size_4M", "cluster_size=4M");
  q("cluster_size_256", "cluster_size=256");
  q("refcount_bits_3", "refcount_bits=3");
  q("refcount_bits_128", "refcount_bits=128");
  q("unknown_option", "foo=bar");
  q("bad_compat", "compat=0.9");
  q("lazy_refcounts_v2", "compat=0.10,lazy_refcounts=on");
  q("refcount_bits_v2", "compat=0.10,refcount_bits=8");
  q("extended_l2_small_cluster", "extended_l2=on,cluster_size=4k");
  q("extended_l2_v2", "extended_l2=on,compat=0.10");
  q("zstd_v2", "compression_type=zstd,compat=0.10");
  q("bad_compression", "compression_type=lz4");
  q("bad_preallocation", "preallocation=bogus");
  q("bad_bool", "lazy_refcounts=maybe");
  q("bad_cluster_size_text", "cluster_size=abc");
  v.push_back({"bad_size_suffix", {"-f", "qcow2", "img", "1X"}});
  v.push_back({"negative_size", {"-f", "qcow2", "img", "--", "-1"}});
  v.push_back({"missing_size", {"-f", "qcow2", "img"}});
  v.push_back({"missing_size_raw", {"img"}});
  v.push_back({"unknown_format", {"-f", "vmdk9", "img", "1M"}});
  v.push_back({"raw_bad_option", {"-f", "raw", "-o", "cluster_size=4k", "img", "1M"}});
  v.push_back({"raw_bad_prealloc", {"-f", "raw", "-o", "preallocation=metadata", "img", "1M"}});
  return v;
}

INSTANTIATE_TEST_SUITE_P(interop, CreateInvalid, ::testing::ValuesIn(invalid_cases()), test_name);

// Overlays: -b/-F/-u and -o backing_file/backing_fmt over a qcow2 and a raw
// base made by qemu-img in both directories.
struct OverlayCase {
  std::string name;
  std::vector<std::string> args;  // after "create"
  bool valid;
};

std::ostream& operator<<(std::ostream& o, const OverlayCase& c) { return o << join(c.args); }

class CreateOverlay : public ::testing::TestWithParam<OverlayCase> {};

TEST_P(CreateOverlay, SameAsQemu) {
  KEEL_REQUIRE_QEMU();
  const auto& c = GetParam();
  Pair p;
  for (const auto& dir : {p.qemu_dir, p.keel_dir}) {
    ASSERT_EQ(qemu_img_in(dir, {"create", "-q", "-f", "qcow2", "base.qcow2", "3M"}).status, 0);
    ASSERT_EQ(qemu_img_in(dir, {"create", "-q", "-f", "raw", "base.raw", "1000000"}).status, 0);
  }
  const auto args = create_args(c.args);
  const auto q = qemu_img_in(p.qemu_dir, args);
  ASSERT_EQ(q.status == 0, c.valid) << describe("qemu-img " + join(args), q);
  const auto k = keel_img_in(p.keel_dir, args);
  const std::string cmd = "keel-img " + join(args) + "  vs  qemu-img " + join(args);
  EXPECT_EQ(k.status, q.status) << cmd << "\n" << describe("keel", k);
  EXPECT_EQ(k.out, q.out) << cmd;
  // qemu-img ends a "Detected format of ..." hint without a newline; keel ends every message with one.
  std::string qerr = as_keel_stderr(q.err);
  if (!qerr.empty() && qerr.back() != '\n') qerr += '\n';
  EXPECT_EQ(k.err, qerr) << cmd;
  if (!c.valid) {
    EXPECT_EQ(std::filesystem::exists(p.keel_dir + "/img"), std::filesystem::exists(p.qemu_dir + "/img")) << cmd;
    return;
  }
  const auto info = [](const std::string& dir) {
    auto r = qemu_img_in(dir, {"info", "--output=json", "-f", "qcow2", "img"});
    EXPECT_EQ(r.status, 0) << describe("qemu-img info", r);
    auto j = nlohmann::json::parse(r.out);
    j.erase("actual-size");
    return j;
  };
  EXPECT_EQ(info(p.keel_dir), info(p.qemu_dir)) << cmd;
  EXPECT_EQ(qemu_img_in(p.keel_dir, {"check", "-f", "qcow2", "-U", "img"}).status, qemu_img_in(p.qemu_dir, {"check", "-f", "qcow2", "-U", "img"}).status);
  // The header (name, backing format extension) is qemu's byte for byte.
  const auto header = [](const std::string& image) {
    auto bytes = read_file(image);
    bytes.resize(std::min<size_t>(bytes.size(), 512));
    return bytes;
  };
  EXPECT_EQ(header(p.keel_dir + "/img"), header(p.qemu_dir + "/img")) << cmd;
}

std::vector<OverlayCase> overlay_cases() {
  return {
      {"size_from_backing", {"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "img"}, true},
      {"explicit_size", {"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "img", "8M"}, true},
      {"options", {"-f", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2", "img"}, true},
      {"options_v2", {"-f", "qcow2", "-o", "compat=0.10,cluster_size=4k", "-b", "base.qcow2", "-F", "qcow2", "img"}, true},
      {"raw_base", {"-f", "qcow2", "-b", "base.raw", "-F", "raw", "img"}, true},
      {"qcow2_read_as_raw", {"-f", "qcow2", "-b", "base.qcow2", "-F", "raw", "img"}, true},
      {"unsafe_missing", {"-f", "qcow2", "-u", "-b", "nonexist", "-F", "qcow2", "img", "1M"}, true},
      {"extended_l2_prealloc", {"-f", "qcow2", "-o", "extended_l2=on,preallocation=metadata", "-b", "base.qcow2", "-F", "qcow2", "img"}, true},
      {"no_backing_format", {"-f", "qcow2", "-b", "base.qcow2", "img"}, false},
      {"missing_backing", {"-f", "qcow2", "-b", "nonexist", "-F", "qcow2", "img"}, false},
      {"unsafe_no_format", {"-f", "qcow2", "-u", "-b", "nonexist", "img", "1M"}, false},
      {"unsafe_no_size", {"-f", "qcow2", "-u", "-b", "nonexist", "-F", "qcow2", "img"}, false},
      {"format_without_file", {"-f", "qcow2", "-F", "qcow2", "img", "1M"}, false},
      {"raw_overlay", {"-f", "raw", "-b", "base.qcow2", "-F", "qcow2", "img", "1M"}, false},
      {"raw_overlay_format", {"-f", "raw", "-F", "qcow2", "img", "1M"}, false},
      {"same_name", {"-f", "qcow2", "-b", "img", "-F", "qcow2", "img", "1M"}, false},
      {"wrong_format", {"-f", "qcow2", "-b", "base.raw", "-F", "qcow2", "img"}, false},
      {"prealloc_without_extended_l2", {"-f", "qcow2", "-o", "preallocation=metadata", "-b", "base.qcow2", "-F", "qcow2", "img"}, false},
  };
}

INSTANTIATE_TEST_SUITE_P(interop, CreateOverlay, ::testing::ValuesIn(overlay_cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace keel::test::interop
