// keel-img convert output must read identically through qemu-img
// (`qemu-img compare` with the source), pass `qemu-img check`, and have the
// same allocation layout as `qemu-img convert` with the same flags. Both
// tools run in their own directory on identical inputs with identical names,
// so messages can be compared verbatim.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

constexpr uint64_t kSourceSize = (5 << 20) + 3 * 512;  // not cluster aligned

struct ConvertCase {
  std::string name;
  std::vector<std::string> args;          // between "convert" and the file names
  std::optional<std::string> precreate;   // -n: qemu-img create -f qcow2 -o <this> out.qcow2 first
  bool prefill = false;                   // -n: fill the pre-created target with garbage first
};

std::ostream& operator<<(std::ostream& o, const ConvertCase& c) { return o << join(c.args); }

struct Dirs {
  TempDir tmp;
  std::string keel = tmp.file("keel"), qemu = tmp.file("qemu");
  Dirs() {
    std::filesystem::create_directory(keel);
    std::filesystem::create_directory(qemu);
  }
  // Writes the same file into both directories.
  void put(const std::string& name, const std::vector<uint8_t>& data) const {
    write_file(keel + "/" + name, data);
    write_file(qemu + "/" + name, data);
  }
};

// qemu-img check --output=json counters that describe the allocation.
nlohmann::json check_counts(const std::string& image) {
  auto r = qemu_img({"check", "--output=json", "-f", "qcow2", image});
  if (r.status != 0) {
    ADD_FAILURE() << describe("qemu-img check " + image, r);
    return nullptr;
  }
  auto j = nlohmann::json::parse(r.out);
  return {{"allocated-clusters", j.value("allocated-clusters", 0)},
          {"compressed-clusters", j.value("compressed-clusters", 0)},
          {"total-clusters", j.value("total-clusters", 0)}};
}

nlohmann::json info_without_host_fields(const std::string& image, const std::string& fmt) {
  auto r = qemu_img({"info", "--output=json", "-f", fmt, image});
  if (r.status != 0) {
    ADD_FAILURE() << describe("qemu-img info " + image, r);
    return nullptr;
  }
  auto j = nlohmann::json::parse(r.out);
  j.erase("actual-size");
  j.erase("filename");
  return j;
}

std::string target_format(const std::vector<std::string>& args) {
  for (size_t i = 0; i + 1 < args.size(); i++)
    if (args[i] == "-O") return args[i + 1];
  return "raw";
}

// Runs `convert args sources out` with both tools and compares everything
// observable about the results. `source_for_compare` is the raw image the
// output must equal (in the keel directory).
void convert_and_compare(const Dirs& d, const std::vector<std::string>& args, const std::vector<std::string>& sources,
                         const std::string& out, const std::string& source_for_compare) {
  std::vector<std::string> cmd{"convert"};
  cmd.insert(cmd.end(), args.begin(), args.end());
  cmd.insert(cmd.end(), sources.begin(), sources.end());
  cmd.push_back(out);
  const std::string what = "keel-img " + join(cmd) + "  vs  qemu-img " + join(cmd);
  const auto q = qemu_img_in(d.qemu, cmd);
  ASSERT_EQ(q.status, 0) << describe("qemu-img " + join(cmd), q);
  const auto k = keel_img_in(d.keel, cmd);
  ASSERT_EQ(k.status, 0) << what << "\n" << describe("keel-img", k);
  EXPECT_EQ(k.out, q.out) << what;
  EXPECT_EQ(k.err, as_keel_stderr(q.err)) << what;

  const std::string fmt = target_format(args);
  const std::string kout = d.keel + "/" + out, qout = d.qemu + "/" + out;
  const auto cmp = qemu_img({"compare", "-f", "raw", "-F", fmt, d.keel + "/" + source_for_compare, kout});
  EXPECT_EQ(cmp.status, 0) << what << "\n" << describe("qemu-img compare <source> <keel output>", cmp);
  const auto cmp2 = qemu_img({"compare", "-f", fmt, "-F", fmt, qout, kout});
  EXPECT_EQ(cmp2.status, 0) << what << "\n" << describe("qemu-img compare <qemu output> <keel output>", cmp2);
  if (fmt == "qcow2") {
    const auto chk = qemu_img({"check", "-f", "qcow2", kout});
    EXPECT_EQ(chk.status, 0) << what << "\n" << describe("qemu-img check <keel output>", chk);
    EXPECT_EQ(check_counts(kout), check_counts(qout)) << what << ": cluster counts (keel vs qemu)";
  }
  EXPECT_TRUE(same_allocation(allocation_map(kout, fmt), allocation_map(qout, fmt))) << what;
  EXPECT_EQ(info_without_host_fields(kout, fmt), info_without_host_fields(qout, fmt)) << what << ": qemu-img info";
}

class ConvertRawToQcow2 : public ::testing::TestWithParam<ConvertCase> {};

TEST_P(ConvertRawToQcow2, ReadableByQemu) {
  KEEL_REQUIRE_QEMU();
  const auto& c = GetParam();
  Dirs d;
  d.put("src.raw", mixed_content(kSourceSize, 3));
  if (c.precreate) {
    for (const auto& dir : {d.keel, d.qemu}) {
      std::vector<std::string> create{"create", "-q", "-f", "qcow2"};
      if (!c.precreate->empty()) create.insert(create.end(), {"-o", *c.precreate});
      create.insert(create.end(), {dir + "/out.qcow2", std::to_string(kSourceSize)});
      ASSERT_EQ(qemu_img(create).status, 0) << join(create);
      if (c.prefill) qemu_io(dir + "/out.qcow2", "qcow2", {"write -P 0xee 0 " + std::to_string(kSourceSize)});
    }
    ASSERT_FALSE(HasFailure());
  }
  convert_and_compare(d, c.args, {"src.raw"}, "out.qcow2", "src.raw");
}

std::vector<ConvertCase> raw_to_qcow2_cases() {
  auto q = [](std::vector<std::string> extra) {
    std::vector<std::string> a{"-f", "raw", "-O", "qcow2"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  return {
      {"default", q({})},
      {"compress", q({"-c"})},
      {"compress_zlib_4k", q({"-c", "-o", "compression_type=zlib,cluster_size=4k"})},
      {"compress_zstd", q({"-c", "-o", "compression_type=zstd"})},
      {"compress_extended_l2", q({"-c", "-o", "extended_l2=on"})},
      {"out_of_order", q({"-W"})},
      {"parallel_1", q({"-m", "1"})},
      {"parallel_16", q({"-m", "16"})},
      {"parallel_16_oob", q({"-m", "16", "-W"})},
      {"sparse_0", q({"-S", "0"})},
      {"sparse_64k", q({"-S", "64k"})},
      {"sparse_512", q({"-S", "512"})},
      {"no_create", q({"-n"}), ""},
      {"no_create_garbage_target", q({"-n"}), "", true},
      {"no_create_target_is_zero", q({"-n", "--target-is-zero"}), ""},
      {"no_create_compress_zstd", q({"-n", "-c"}), "compression_type=zstd"},
      {"no_create_4k_sparse_0", q({"-n", "-S", "0"}), "cluster_size=4k", true},
      {"cache_none", q({"-t", "none"})},
      {"source_cache_none", q({"-T", "none"})},
      {"cluster_4k", q({"-o", "cluster_size=4k"})},
      {"cluster_2M", q({"-o", "cluster_size=2M"})},
      {"cluster_512", q({"-o", "cluster_size=512"})},
      {"extended_l2_128k", q({"-o", "extended_l2=on,cluster_size=128k"})},
      {"refcount_bits_1", q({"-o", "refcount_bits=1"})},
      {"refcount_bits_64", q({"-o", "refcount_bits=64"})},
      {"compat_0_10", q({"-o", "compat=0.10"})},
      {"lazy_refcounts", q({"-o", "lazy_refcounts=on"})},
      {"prealloc_metadata", q({"-o", "preallocation=metadata"})},
      {"two_o_options", q({"-o", "cluster_size=16k", "-o", "refcount_bits=8"})},
      {"quiet_probe", {"-q", "-O", "qcow2"}},
  };
}

INSTANTIATE_TEST_SUITE_P(interop, ConvertRawToQcow2, ::testing::ValuesIn(raw_to_qcow2_cases()),
                         [](const auto& info) { return info.param.name; });

// A qcow2 source made by qemu (compressed, zero and discarded clusters).
void make_qcow2_source(const Dirs& d, const std::string& name, const std::string& options, uint64_t seed) {
  d.put("tmp.raw", mixed_content(kSourceSize - 3 * 512, seed));
  for (const auto& dir : {d.keel, d.qemu}) {
    const auto r = qemu_img({"convert", "-c", "-f", "raw", "-O", "qcow2", "-o", options, dir + "/tmp.raw", dir + "/" + name});
    ASSERT_EQ(r.status, 0) << describe("qemu-img convert -c", r);
    qemu_io(dir + "/" + name, "qcow2",
            {"write -P 0x31 64k 64k", "write -z 1M 192k", "write -z -u 2M 64k", "discard 3M 128k", "write -P 0x32 4000000 1234"});
  }
  // The reference raw image of the source, through qemu.
  const auto r = qemu_img({"convert", "-f", "qcow2", "-O", "raw", d.keel + "/" + name, d.keel + "/" + name + ".ref"});
  ASSERT_EQ(r.status, 0) << describe("qemu-img convert to reference", r);
}

TEST(interop_convert, Qcow2ToRaw) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  ASSERT_NO_FATAL_FAILURE(make_qcow2_source(d, "src.qcow2", "cluster_size=64k", 11));
  ASSERT_NO_FATAL_FAILURE(convert_and_compare(d, {"-O", "raw"}, {"src.qcow2"}, "out.raw", "src.qcow2.ref"));
  EXPECT_TRUE(files_identical(d.keel + "/out.raw", d.qemu + "/out.raw"));
}

TEST(interop_convert, Qcow2ToRawFullyAllocated) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  ASSERT_NO_FATAL_FAILURE(make_qcow2_source(d, "src.qcow2", "compression_type=zstd", 12));
  ASSERT_NO_FATAL_FAILURE(convert_and_compare(d, {"-f", "qcow2", "-O", "raw", "-S", "0"}, {"src.qcow2"}, "out.raw", "src.qcow2.ref"));
  EXPECT_TRUE(files_identical(d.keel + "/out.raw", d.qemu + "/out.raw"));
}

TEST(interop_convert, Qcow2ToQcow2) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  ASSERT_NO_FATAL_FAILURE(make_qcow2_source(d, "src.qcow2", "cluster_size=4k", 13));
  ASSERT_NO_FATAL_FAILURE(convert_and_compare(d, {"-O", "qcow2"}, {"src.qcow2"}, "out.qcow2", "src.qcow2.ref"));
}

TEST(interop_convert, Qcow2ToQcow2CompressedExtendedL2) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  ASSERT_NO_FATAL_FAILURE(make_qcow2_source(d, "src.qcow2", "extended_l2=on,compression_type=zstd", 14));
  ASSERT_NO_FATAL_FAILURE(convert_and_compare(d, {"-c", "-O", "qcow2", "-o", "cluster_size=32k,extended_l2=on"},
                                              {"src.qcow2"}, "out.qcow2", "src.qcow2.ref"));
}

// Several sources are concatenated into one output.
TEST(interop_convert, ConcatenatedSources) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  ASSERT_NO_FATAL_FAILURE(make_qcow2_source(d, "b.qcow2", "cluster_size=64k", 21));
  d.put("a.raw", mixed_content((1 << 20) + 512, 22));
  d.put("c.raw", mixed_content(3 << 20, 23));
  // The expected concatenation, built from the qemu reference of b.
  {
    auto all = read_file(d.keel + "/a.raw");
    auto b = read_file(d.keel + "/b.qcow2.ref");
    auto c = read_file(d.keel + "/c.raw");
    all.insert(all.end(), b.begin(), b.end());
    all.insert(all.end(), c.begin(), c.end());
    write_file(d.keel + "/all.raw", all);
  }
  ASSERT_NO_FATAL_FAILURE(convert_and_compare(d, {"-O", "qcow2"}, {"a.raw", "b.qcow2", "c.raw"}, "out.qcow2", "all.raw"));
  ASSERT_NO_FATAL_FAILURE(convert_and_compare(d, {"-O", "raw"}, {"a.raw", "b.qcow2", "c.raw"}, "out.raw", "all.raw"));
  EXPECT_TRUE(files_identical(d.keel + "/out.raw", d.keel + "/all.raw"));
  ASSERT_NO_FATAL_FAILURE(convert_and_compare(d, {"-c", "-O", "qcow2", "-o", "compression_type=zstd"},
                                              {"a.raw", "b.qcow2", "c.raw"}, "outc.qcow2", "all.raw"));
}

// Invalid convert command lines fail like qemu-img's.
struct BadConvert {
  std::string name;
  std::vector<std::string> args;  // full argument list after "convert"
  bool precreate_small = false;   // an existing, too small out.qcow2
};

std::ostream& operator<<(std::ostream& o, const BadConvert& c) { return o << join(c.args); }

class ConvertEdge : public ::testing::TestWithParam<BadConvert> {};

// Command lines that are invalid or borderline: same exit status and
// messages; where qemu-img accepts them, the same image content.
TEST_P(ConvertEdge, SameResultAsQemu) {
  KEEL_REQUIRE_QEMU();
  const auto& c = GetParam();
  Dirs d;
  d.put("src.raw", mixed_content(1 << 20, 5));
  if (c.precreate_small) {
    for (const auto& dir : {d.keel, d.qemu}) {
      ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", dir + "/out.qcow2", "512k"}).status, 0);
    }
  }
  std::vector<std::string> cmd{"convert"};
  cmd.insert(cmd.end(), c.args.begin(), c.args.end());
  const auto q = qemu_img_in(d.qemu, cmd);
  const auto k = keel_img_in(d.keel, cmd);
  const std::string what = "keel-img " + join(cmd) + "  vs  qemu-img " + join(cmd);
  EXPECT_EQ(k.status, q.status) << what << "\n" << describe("keel", k) << "\n" << describe("qemu", q);
  EXPECT_EQ(k.out, q.out) << what;
  EXPECT_EQ(k.err, as_keel_stderr(q.err)) << what;
  if (q.status == 0 && k.status == 0) {
    const std::string out = cmd.back();
    const auto cmp = qemu_img({"compare", d.qemu + "/" + out, d.keel + "/" + out});
    EXPECT_EQ(cmp.status, 0) << what << "\n" << describe("qemu-img compare <qemu output> <keel output>", cmp);
    EXPECT_EQ(info_without_host_fields(d.keel + "/" + out, "qcow2"), info_without_host_fields(d.qemu + "/" + out, "qcow2"))
        << what;
  }
}

INSTANTIATE_TEST_SUITE_P(
    interop, ConvertEdge,
    ::testing::Values(BadConvert{"compress_and_oob", {"-c", "-W", "-O", "qcow2", "src.raw", "out.qcow2"}},
                      BadConvert{"target_is_zero_without_n", {"--target-is-zero", "-O", "qcow2", "src.raw", "out.qcow2"}},
                      BadConvert{"parallel_17", {"-m", "17", "-O", "qcow2", "src.raw", "out.qcow2"}},
                      BadConvert{"parallel_0", {"-m", "0", "-O", "qcow2", "src.raw", "out.qcow2"}},
                      BadConvert{"sparse_unaligned", {"-S", "1000", "-O", "qcow2", "src.raw", "out.qcow2"}},
                      BadConvert{"unknown_target_format", {"-O", "qcow9", "src.raw", "out.qcow2"}},
                      BadConvert{"size_option", {"-O", "qcow2", "-o", "size=1M", "src.raw", "out.qcow2"}},
                      BadConvert{"bad_target_option", {"-O", "qcow2", "-o", "cluster_size=3k", "src.raw", "out.qcow2"}},
                      BadConvert{"compress_raw_target", {"-c", "-O", "raw", "src.raw", "out.raw"}},
                      BadConvert{"missing_source", {"-O", "qcow2", "nosuch.raw", "out.qcow2"}},
                      BadConvert{"only_one_file", {"-O", "qcow2", "src.raw"}},
                      BadConvert{"no_create_missing_target", {"-n", "-O", "qcow2", "src.raw", "out.qcow2"}},
                      BadConvert{"no_create_with_options", {"-n", "-O", "qcow2", "-o", "cluster_size=4k", "src.raw", "out.qcow2"}, true},
                      BadConvert{"no_create_target_too_small", {"-n", "-O", "qcow2", "src.raw", "out.qcow2"}, true}),
    [](const auto& info) { return info.param.name; });

// Fraction of `path`'s pages that are in the page cache (mincore).
double resident_fraction(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const auto size = static_cast<size_t>(lseek(fd, 0, SEEK_END));
  void* map = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return -1;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> pages((size + page - 1) / page);
  const int r = mincore(map, size, pages.data());
  munmap(map, size);
  if (r < 0) return -1;
  return static_cast<double>(std::count_if(pages.begin(), pages.end(), [](unsigned char p) { return p & 1; })) /
         static_cast<double>(pages.size());
}

// keel-img convert writes a plain output around the page cache unless -t
// says otherwise (keel's default; qemu-img's is the page cache), and a
// compressed one through it. Checked before anything reads the outputs.
TEST(keel_convert, DefaultOutputCacheMode) {
  TempDir dir;
  write_file(dir.file("src.raw"), random_bytes(8 << 20, 31));
  struct Case {
    std::vector<std::string> args;
    bool cached;
  };
  const std::vector<Case> cases = {
      {{"-O", "raw"}, false},
      {{"-O", "qcow2"}, false},
      {{"-t", "unsafe", "-O", "raw"}, true},
      {{"-t", "writeback", "-O", "qcow2"}, true},
      {{"-c", "-O", "qcow2"}, true},
  };
  int n = 0;
  for (const auto& c : cases) {
    const std::string out = dir.file("out" + std::to_string(n++));
    std::vector<std::string> argv = {"keel-img", "convert", "-f", "raw"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    argv.insert(argv.end(), {dir.file("src.raw"), out});
    const auto r = run_keel(argv);
    ASSERT_EQ(r.status, 0) << join(argv) << "\n" << r.err;
    const double resident = resident_fraction(out);
    if (c.cached) EXPECT_GT(resident, 0.9) << join(argv);
    else EXPECT_LT(resident, 0.1) << join(argv);
  }
}

}  // namespace
}  // namespace keel::test::interop
