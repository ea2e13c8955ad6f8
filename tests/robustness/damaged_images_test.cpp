// Damaged qcow2 images: valid images made by keel-img are corrupted field by
// field (found by parsing the header and tables), and keel-img info, check and
// convert are run on each under `timeout` and an address-space limit. Keel
// must not crash or hang, must not size an allocation by a damaged field, must
// fail where the image is unusable, and must say what is wrong in one line
// starting with "keel-img: ".
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace keel::test {
namespace {

constexpr const char* kTimeout = "20";
constexpr const char* kAddressSpace = "--as=2000000000";

using Bytes = std::vector<uint8_t>;

uint64_t get_be(const Bytes& b, uint64_t off, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | b.at(off + i);
  return v;
}
void put_be(Bytes& b, uint64_t off, int n, uint64_t v) {
  if (b.size() < off + n) b.resize(off + n);
  for (int i = n - 1; i >= 0; i--, v >>= 8) b[off + i] = static_cast<uint8_t>(v);
}
uint64_t be64(const Bytes& b, uint64_t off) { return get_be(b, off, 8); }
uint32_t be32(const Bytes& b, uint64_t off) { return static_cast<uint32_t>(get_be(b, off, 4)); }
void set64(Bytes& b, uint64_t off, uint64_t v) { put_be(b, off, 8, v); }
void set32(Bytes& b, uint64_t off, uint32_t v) { put_be(b, off, 4, v); }

constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;
constexpr uint64_t kCopied = 1ull << 63;
constexpr uint64_t kCompressed = 1ull << 62;

// Where things are in a valid image, read from its header and tables.
struct Layout {
  uint32_t cluster_bits;
  uint64_t cluster;
  uint64_t l1_offset;
  uint32_t l1_size;
  uint64_t reftable_offset;
  uint32_t reftable_clusters;
  uint64_t refblock0;
  uint32_t refcount_order;
  uint32_t header_length;
  uint64_t l2_offset;     // the first L2 table (L1[l1_index])
  uint64_t l1_index;
  uint64_t l2_index;      // first allocated entry in that table
  uint64_t l2_entry;      // its value
  uint64_t l2_index2;     // the next allocated entry
  uint64_t feature_table; // offset of the feature name table extension data, 0 if none
  uint64_t extensions_end;  // offset of the end-of-extensions marker

  explicit Layout(const Bytes& b) {
    cluster_bits = be32(b, 20);
    cluster = uint64_t{1} << cluster_bits;
    l1_size = be32(b, 36);
    l1_offset = be64(b, 40);
    reftable_offset = be64(b, 48);
    reftable_clusters = be32(b, 56);
    refblock0 = be64(b, reftable_offset) & kOffsetMask;
    refcount_order = be32(b, 96);
    header_length = be32(b, 100);
    l1_index = l2_offset = l2_index = l2_entry = l2_index2 = 0;
    for (uint64_t i = 0; i < l1_size; i++) {
      if (be64(b, l1_offset + i * 8) & kOffsetMask) {
        l1_index = i;
        l2_offset = be64(b, l1_offset + i * 8) & kOffsetMask;
        break;
      }
    }
    bool first = true;
    for (uint64_t i = 0; l2_offset && i < cluster / 8; i++) {
      const uint64_t e = be64(b, l2_offset + i * 8);
      if (!e) continue;
      if (first) {
        l2_index = i;
        l2_entry = e;
        first = false;
      } else {
        l2_index2 = i;
        break;
      }
    }
    feature_table = 0;
    uint64_t pos = header_length;
    while (pos + 8 <= cluster) {
      const uint32_t type = be32(b, pos), len = be32(b, pos + 4);
      if (type == 0) break;
      if (type == 0x6803f857) feature_table = pos + 8;
      pos += 8 + ((len + 7) & ~7u);
    }
    extensions_end = pos;
  }
  uint64_t l2_slot(uint64_t index) const { return l2_offset + index * 8; }
  uint64_t l1_slot(uint64_t index) const { return l1_offset + index * 8; }
};

struct Outcome {
  int status;
  std::string out, err;
};

// Runs keel-img under a time limit and a memory limit, so that no
// allocation can be sized by a damaged field.
Outcome run_limited(std::vector<std::string> args) {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of shadow address space, so an
  // address-space limit cannot apply; its own cap on a single allocation
  // (an oversized one aborts with a report) stands in for it.
  std::vector<std::string> argv = {"env", "ASAN_OPTIONS=max_allocation_size_mb=2000:allocator_may_return_null=0:detect_leaks=1",
                                   "timeout", "-k", "5", kTimeout, keel_bin("keel-img")};
#else
  std::vector<std::string> argv = {"timeout", "-k", "5", kTimeout, "prlimit", kAddressSpace, keel_bin("keel-img")};
#endif
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run(argv);
  return {r.status, r.out, r.err};
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// What each command must do with a damaged image.
enum class Must { Fail, Succeed, Either };
// Check must report the damage (status 1 or 2), or must do so whenever
// `qemu-img check` does.
enum class CheckMust { Report, LikeQemu };

struct Case {
  std::string name;
  std::string base;  // which valid image to start from
  std::function<void(Bytes&, const Layout&)> damage;
  Must info;
  CheckMust check;
  Must convert;
  std::string names_problem;  // regex (case-insensitive) the error line must match
  bool try_write = false;     // also write into the image (convert -n into it); must be refused
  bool try_repair = false;    // also run check -r all
};

std::string describe(const std::string& what, const Outcome& o) {
  return fmt::format("{} -> status {}\n--- stdout:\n{}--- stderr:\n{}", what, o.status, o.out, o.err);
}

// No crash, no hang, no allocation failure, and errors in keel's one-line form.
void expect_sane(const std::string& what, const Outcome& o, bool is_check) {
  std::string problems;
  if (o.status == 124) problems += "hang (killed by timeout); ";
  else if (o.status > 124) problems += "crash or kill; ";
  if (o.err.find("Out of memory") != std::string::npos) problems += "allocation sized by a damaged field; ";
  if (o.err.find("terminate called") != std::string::npos) problems += "uncaught exception; ";
  if (o.err.find("runtime error") != std::string::npos) problems += "undefined behaviour; ";
  const auto lines = lines_of(o.err);
  int tool_lines = 0;
  for (const auto& l : lines) {
    if (l.rfind("keel-img: ", 0) == 0) {
      tool_lines++;
      continue;
    }
    // check prints qemu's per-problem lines on stderr; qemu prints the
    // corruption notice without the program name too.
    static const std::regex check_line("^(ERROR|Leaked cluster|Repairing|Rebuilding|Warning|Use keel-img amend|Can't get refcount for cluster).*");
    const bool lock_hint = l.rfind("Is another process using the image", 0) == 0;
    const bool corruption_notice =
        l.rfind("qcow2: Marking image as corrupt: ", 0) == 0 || l.rfind("qcow2: Image is corrupt: ", 0) == 0;
    // qemu's hint under "Too much extra metadata in snapshot table entry N".
    const bool snapshot_hint = l.rfind("You can force-remove this extra metadata with keel-img check -r all", 0) == 0;
    if (!(is_check && std::regex_match(l, check_line)) && !lock_hint && !corruption_notice && !snapshot_hint) {
      problems += "stray stderr line \"" + l + "\"; ";
      break;
    }
  }
  // qemu's own two-line messages are kept as they are.
  const bool known_two_line = o.err.find("keel-img: kilobytes, megabytes, gigabytes") != std::string::npos;
  if (tool_lines > (known_two_line ? 2 : 1)) problems += "more than one error line; ";
  if (o.status != 0 && o.status < 124 && !(is_check && (o.status == 2 || o.status == 3)) && tool_lines == 0)
    problems += "failed without a \"keel-img: \" error line; ";
  EXPECT_TRUE(problems.empty()) << problems << describe(what, o);
}

void expect_status(const std::string& what, const Outcome& o, Must must) {
  if (must == Must::Fail) {
    EXPECT_NE(o.status, 0) << "accepted an unusable image: " << describe(what, o);
  } else if (must == Must::Succeed) {
    EXPECT_EQ(o.status, 0) << describe(what, o);
  }
}

void expect_names(const std::string& what, const Outcome& o, const std::string& pattern) {
  if (o.status == 0 || pattern.empty()) return;
  std::string line;
  for (const auto& l : lines_of(o.err))
    if (l.rfind("keel-img: ", 0) == 0) line = l;
  if (line.empty()) return;  // check reporting corruptions
  if (line == "keel-img: Check failed") line = o.err;  // check's own lines above name the problem
  EXPECT_TRUE(std::regex_search(line, std::regex(pattern, std::regex::icase)))
      << "the error does not name the problem (expected /" << pattern << "/): " << describe(what, o);
}

class DamagedImages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    // A sparse 1 GiB disk with data in a few places, some of it compressible.
    const std::string raw = dir_->file("src.raw");
    Bytes data(1 << 20);
    auto rnd = random_bytes(data.size(), 7);
    for (size_t i = 0; i < data.size(); i++) data[i] = (i / 4096) % 2 ? rnd[i] : static_cast<uint8_t>(i / 4096);
    write_file(raw, data);
    ASSERT_EQ(truncate(raw.c_str(), 1ull << 30), 0);
    {
      FILE* f = fopen(raw.c_str(), "r+b");
      for (uint64_t at : {300ull << 20, 700ull << 20}) {
        fseek(f, static_cast<long>(at), SEEK_SET);
        fwrite(data.data(), 1, 256 << 10, f);
      }
      fclose(f);
    }
    struct Base {
      const char* name;
      std::vector<std::string> args;
    };
    const Base bases[] = {
        {"plain", {"-o", "cluster_size=65536"}},
        {"small", {"-o", "cluster_size=4096"}},
        {"compressed", {"-c", "-o", "cluster_size=65536"}},
        {"rc1", {"-o", "cluster_size=65536,refcount_bits=1"}},
        {"v2", {"-o", "compat=0.10,cluster_size=65536"}},
        {"tiny", {"-o", "cluster_size=512"}},
    };
    for (const auto& b : bases) {
      std::vector<std::string> argv = {"keel-img", "convert", "-f", "raw", "-O", "qcow2"};
      argv.insert(argv.end(), b.args.begin(), b.args.end());
      argv.push_back(raw);
      argv.push_back(dir_->file(std::string(b.name) + ".qcow2"));
      auto r = run_keel(argv);
      ASSERT_EQ(r.status, 0) << r.err;
      auto check = run({"qemu-img", "check", dir_->file(std::string(b.name) + ".qcow2")});
      ASSERT_EQ(check.status, 0) << "base image " << b.name << " is not clean: " << check.out << check.err;
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string make_case(const Case& c) {
    Bytes bytes = read_file(dir_->file(c.base + ".qcow2"));
    const Layout layout(bytes);
    c.damage(bytes, layout);
    const std::string path = dir_->file("case-" + c.name + ".qcow2");
    write_file(path, bytes);
    return path;
  }

  static void run_case(const Case& c) {
    SCOPED_TRACE("case " + c.name);
    const std::string image = make_case(c);
    const auto info = run_limited({"info", "-f", "qcow2", image});
    expect_sane("info", info, false);
    expect_status("info", info, c.info);
    expect_names("info", info, c.names_problem);

    const auto probed = run_limited({"info", image});
    expect_sane("info (probed)", probed, false);

    const auto json = run_limited({"info", "-f", "qcow2", "--output=json", image});
    expect_sane("info --output=json", json, false);

    const auto check = run_limited({"check", "-f", "qcow2", image});
    expect_sane("check", check, true);
    const auto qcheck = run({"timeout", "60", "qemu-img", "check", "-f", "qcow2", image});
    if (c.check == CheckMust::Report || qcheck.status == 1 || qcheck.status == 2) {
      EXPECT_TRUE(check.status == 1 || check.status == 2)
          << "check did not report the damage: " << describe("check", check) << "\n(qemu-img check: status " << qcheck.status << "\n"
          << qcheck.out << qcheck.err << ")";
    }
    expect_names("check", check, c.names_problem);

    const std::string raw = dir_->file("out.raw");
    const auto convert = run_limited({"convert", "-f", "qcow2", "-O", "raw", image, raw});
    std::filesystem::remove(raw);
    expect_sane("convert", convert, false);
    expect_status("convert", convert, c.convert);
    expect_names("convert", convert, c.names_problem);

    if (std::getenv("KEEL_ROBUST_VERBOSE")) {
      std::printf("%-36s info=%d check=%d (qemu %d) convert=%d\n    info: %s    check: %s    convert: %s", c.name.c_str(), info.status,
                  check.status, qcheck.status, convert.status, info.err.empty() ? "\n" : info.err.c_str(),
                  check.err.empty() ? "\n" : lines_of(check.err).back().append("\n").c_str(),
                  convert.err.empty() ? "\n" : convert.err.c_str());
    }
    if (c.try_repair) {
      const std::string copy = dir_->file("repair.qcow2");
      std::filesystem::copy_file(image, copy, std::filesystem::copy_options::overwrite_existing);
      const auto repair = run_limited({"check", "-r", "all", "-f", "qcow2", copy});
      expect_sane("check -r all", repair, true);
      const auto after = run({"qemu-img", "check", "-f", "qcow2", copy});
      EXPECT_NE(after.status, 1) << "the repaired image cannot be checked: " << after.out << after.err;
      std::filesystem::remove(copy);
    }
    if (c.try_write) {
      // Writing through damaged metadata must be refused, not spread the damage.
      const std::string patch = dir_->file("patch.raw");
      Bytes ones(1 << 20, 0x5a);
      write_file(patch, ones);
      ASSERT_EQ(truncate(patch.c_str(), 1ull << 30), 0);
      const auto write = run_limited({"convert", "-n", "-f", "raw", "-O", "qcow2", patch, image});
      std::filesystem::remove(patch);
      expect_sane("convert -n into the image", write, false);
      EXPECT_NE(write.status, 0) << "wrote through damaged metadata: " << describe("convert -n", write);
      if (write.status == 0) {
        auto after = run({"qemu-img", "check", "-f", "qcow2", image});
        ADD_FAILURE() << "qemu-img check after the write: status " << after.status << "\n" << after.out << after.err.substr(0, 2000);
      }
    }
  }

  static TempDir* dir_;
};

TempDir* DamagedImages::dir_ = nullptr;

std::vector<Case> header_cases() {
  std::vector<Case> cases;
  auto header = [&](std::string name, std::function<void(Bytes&, const Layout&)> f, std::string names) {
    cases.push_back({std::move(name), "plain", std::move(f), Must::Fail, CheckMust::Report, Must::Fail, std::move(names)});
  };
  // Damage qemu 7.2 opens the image with (tables past the end of the file read
  // as zeros, fields it does not check): keel opens it too, read-only, and
  // must still stay sane; header_conformance_test compares the outcomes with qemu's.
  auto opens_like_qemu = [&](std::string name, std::function<void(Bytes&, const Layout&)> f) {
    cases.push_back({std::move(name), "plain", std::move(f), Must::Either, CheckMust::LikeQemu, Must::Either, ""});
  };
  // Truncations.
  header("truncated_to_magic", [](Bytes& b, const Layout&) { b.resize(8); }, "too small|header|truncat");
  header("truncated_in_v3_header", [](Bytes& b, const Layout&) { b.resize(90); }, "too small|header|truncat");
  opens_like_qemu("truncated_header_only", [](Bytes& b, const Layout& l) { b.resize(l.cluster); });
  opens_like_qemu("truncated_mid_l1", [](Bytes& b, const Layout& l) { b.resize(l.l1_offset + l.l1_size * 4); });
  // Table offsets past the end of the file, unaligned, or absurd.
  opens_like_qemu("l1_offset_past_eof", [](Bytes& b, const Layout&) { set64(b, 40, 1ull << 40); });
  header("l1_offset_unaligned", [](Bytes& b, const Layout& l) { set64(b, 40, l.l1_offset + 512); }, "L1");
  header("l1_offset_huge", [](Bytes& b, const Layout&) { set64(b, 40, ~0ull << 16); }, "L1");
  header("l1_size_2e31", [](Bytes& b, const Layout&) { set32(b, 36, 0x80000000u); }, "L1");
  header("l1_size_max", [](Bytes& b, const Layout&) { set32(b, 36, 0xffffffffu); }, "L1");
  header("l1_size_too_small", [](Bytes& b, const Layout&) { set32(b, 36, 1); }, "L1");
  opens_like_qemu("reftable_offset_past_eof", [](Bytes& b, const Layout&) { set64(b, 48, 1ull << 40); });
  header("reftable_offset_unaligned", [](Bytes& b, const Layout& l) { set64(b, 48, l.reftable_offset + 8); }, "refcount|reference count");
  header("reftable_clusters_huge", [](Bytes& b, const Layout&) { set32(b, 56, 0xffffffffu); }, "refcount|reference count");
  header("reftable_clusters_zero", [](Bytes& b, const Layout&) { set32(b, 56, 0); }, "refcount|reference count");
  // Geometry and version.
  for (uint32_t bits : {0u, 8u, 22u, 31u, 63u, 64u, 0xffffffffu})
    header(fmt::format("cluster_bits_{}", bits), [bits](Bytes& b, const Layout&) { set32(b, 20, bits); }, "cluster size|cluster_bits|cluster bits");
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu})
    header(fmt::format("version_{}", v), [v](Bytes& b, const Layout&) { set32(b, 4, v); }, "version");
  header("refcount_order_7", [](Bytes& b, const Layout&) { set32(b, 96, 7); }, "refcount|reference count");
  header("refcount_order_huge", [](Bytes& b, const Layout&) { set32(b, 96, 0xffffffffu); }, "refcount|reference count");
  header("size_2e63", [](Bytes& b, const Layout&) { set64(b, 24, 1ull << 63); }, "size|L1");
  header("size_max", [](Bytes& b, const Layout&) { set64(b, 24, ~0ull); }, "size|L1");
  header("crypt_method_7", [](Bytes& b, const Layout&) { set32(b, 32, 7); }, "encrypt");
  // Feature bits.
  header("unknown_incompatible_bit5", [](Bytes& b, const Layout&) { set64(b, 72, 1ull << 5); }, "feature");
  header("unknown_incompatible_bit63", [](Bytes& b, const Layout&) { set64(b, 72, 1ull << 63); }, "feature");
  header("compression_bit_without_type", [](Bytes& b, const Layout&) { set64(b, 72, 1ull << 3); }, "compression");
  header("extended_l2_with_small_clusters", [](Bytes& b, const Layout&) {
    set64(b, 72, 1ull << 4);
    set32(b, 20, 12);
  }, "extended|cluster");
  opens_like_qemu("bitmaps_autoclear_without_extension", [](Bytes& b, const Layout&) { set64(b, 88, 1); });
  // Header length.
  opens_like_qemu("header_length_odd", [](Bytes& b, const Layout&) { set32(b, 100, 105); });
  header("header_length_short", [](Bytes& b, const Layout&) { set32(b, 100, 72); }, "header");
  header("header_length_past_cluster", [](Bytes& b, const Layout& l) { set32(b, 100, static_cast<uint32_t>(l.cluster + 8)); }, "header");
  header("header_length_max", [](Bytes& b, const Layout&) { set32(b, 100, 0xfffffff8u); }, "header");
  header("compression_type_2", [](Bytes& b, const Layout&) { b[104] = 2; }, "compression");
  // Extensions.
  header("extension_overruns_cluster", [](Bytes& b, const Layout& l) {
    set32(b, l.extensions_end, 0x12345678);
    set32(b, l.extensions_end + 4, 0xfffffff0u);
  }, "extension");
  header("bitmaps_extension_absurd", [](Bytes& b, const Layout& l) {
    set32(b, l.extensions_end, 0x23852875);
    set32(b, l.extensions_end + 4, 24);
    set32(b, l.extensions_end + 8, 0xffffffffu);  // nb_bitmaps
    set64(b, l.extensions_end + 16, 1ull << 40);  // directory size
    set64(b, l.extensions_end + 24, 0x10000);      // directory offset
    set64(b, l.extensions_end + 32, 0);
    set64(b, 88, 1);
  }, "bitmap");
  header("bitmaps_directory_past_eof", [](Bytes& b, const Layout& l) {
    set32(b, l.extensions_end, 0x23852875);
    set32(b, l.extensions_end + 4, 24);
    set32(b, l.extensions_end + 8, 1);
    set64(b, l.extensions_end + 16, 4096);
    set64(b, l.extensions_end + 24, 1ull << 40);
    set64(b, l.extensions_end + 32, 0);
    set64(b, 88, 1);
  }, "bitmap");
  // Backing file name.
  header("backing_file_size_1024", [](Bytes& b, const Layout& l) {
    set64(b, 8, l.extensions_end + 8);
    set32(b, 16, 1024);
  }, "backing");
  header("backing_file_size_huge", [](Bytes& b, const Layout& l) {
    set64(b, 8, l.extensions_end + 8);
    set32(b, 16, 0xffffffffu);
  }, "backing");
  header("backing_file_offset_past_cluster", [](Bytes& b, const Layout& l) {
    set64(b, 8, l.cluster * 4);
    set32(b, 16, 10);
  }, "backing");
  header("backing_file_offset_huge", [](Bytes& b, const Layout&) {
    set64(b, 8, ~0ull - 4);
    set32(b, 16, 10);
  }, "backing");
  // Snapshots.
  header("snapshot_count_huge", [](Bytes& b, const Layout& l) {
    set32(b, 60, 0xffffffffu);
    set64(b, 64, l.cluster);
  }, "snapshot");
  opens_like_qemu("snapshot_offset_past_eof", [](Bytes& b, const Layout&) {
    set32(b, 60, 1);
    set64(b, 64, 1ull << 40);
  });
  header("snapshot_offset_unaligned", [](Bytes& b, const Layout& l) {
    set32(b, 60, 1);
    set64(b, 64, l.l1_offset + 8);
  }, "snapshot");
  // The snapshot table overlaps the L1 and refcount tables: garbage entries.
  header("snapshot_table_is_garbage", [](Bytes& b, const Layout& l) {
    set32(b, 60, 65536);
    set64(b, 64, l.reftable_offset);
  }, "snapshot");
  header("snapshot_table_truncated", [](Bytes& b, const Layout& l) {
    set32(b, 60, 1000);
    set64(b, 64, (b.size() - 1) & ~(l.cluster - 1));
  }, "snapshot");
  return cases;
}

std::vector<Case> table_cases() {
  std::vector<Case> cases;
  // Damage below the header: info may still describe the image, but reading
  // the data must fail (or at least check must see the problem).
  auto table = [&](std::string name, std::string base, std::function<void(Bytes&, const Layout&)> f, Must convert, std::string names,
                   bool try_write = false) {
    cases.push_back({std::move(name), std::move(base), std::move(f), Must::Either, CheckMust::LikeQemu, convert, std::move(names), try_write});
  };
  table("truncated_mid_l2", "small", [](Bytes& b, const Layout& l) { b.resize(l.l2_offset + l.cluster / 2); }, Must::Either,
        "L2|end of|beyond|truncat|short|read");
  table("truncated_before_data", "plain", [](Bytes& b, const Layout& l) { b.resize(l.l2_offset + l.cluster); }, Must::Either,
        "end of|beyond|truncat|short|read");
  // An L2 table past the end of the file reads as zeros, as in qemu (writes through it are refused).
  table("l2_offset_past_eof", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l1_slot(l.l1_index), kCopied | (1ull << 40)); },
        Must::Succeed, "", true);
  table("l2_offset_unaligned", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l1_slot(l.l1_index), kCopied | (l.l2_offset + 512)); },
        Must::Fail, "L2|unaligned|align");
  table("l1_entry_reserved_bits", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l1_slot(l.l1_index), be64(b, l.l1_slot(l.l1_index)) | 0x7f); },
        Must::Either, "L1|reserved");
  // Overlapping metadata: an L2 table that is the header or the refcount table.
  table("data_cluster_is_l1_table", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), kCopied | l.l1_offset); },
        Must::Either, "", true);
  table("data_cluster_is_reftable", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), kCopied | l.reftable_offset); },
        Must::Either, "", true);
  table("l2_table_is_reftable", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l1_slot(l.l1_index), kCopied | l.reftable_offset); },
        Must::Either, "", true);
  table("l2_table_is_l1_table", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l1_slot(l.l1_index), kCopied | l.l1_offset); },
        Must::Either, "", true);
  table("data_cluster_is_refblock", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), kCopied | l.refblock0); },
        Must::Either, "", true);
  table("data_cluster_past_eof", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), kCopied | (1ull << 40)); },
        Must::Either, "end of|beyond|read|offset");
  table("data_cluster_at_max_offset", "plain", [](Bytes& b, const Layout& l) {
    set64(b, l.l2_slot(l.l2_index), kCopied | (kOffsetMask & ~(l.cluster - 1)));
  }, Must::Either, "end of|beyond|read|offset");
  // Writing over it frees the old cluster: its refcount lies far past any
  // refcount block, which must not make keel build refcount structures for it.
  table("data_cluster_at_max_offset_512", "tiny", [](Bytes& b, const Layout& l) {
    set64(b, l.l2_slot(l.l2_index), kOffsetMask & ~(l.cluster - 1));
  }, Must::Either, "end of|beyond|read|offset|refcount", true);
  table("data_cluster_past_eof_512", "tiny", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), 1ull << 40); },
        Must::Either, "end of|beyond|read|offset|refcount", true);
  table("l2_offset_max", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l1_slot(l.l1_index), kCopied | (kOffsetMask & ~(l.cluster - 1))); },
        Must::Succeed, "", true);
  table("reftable_entry_max", "plain", [](Bytes& b, const Layout& l) { set64(b, l.reftable_offset, kOffsetMask & ~(l.cluster - 1)); },
        Must::Either, "refblock|refcount|reference count|end of|beyond|outside");
  table("data_cluster_unaligned", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), l.l2_entry + 512); },
        Must::Fail, "unaligned|align");
  table("l2_entry_reserved_bits_low", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), l.l2_entry | 0x1fe); },
        Must::Either, "reserved|L2");
  table("l2_entry_reserved_bits_high", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), l.l2_entry | (0x3full << 56)); },
        Must::Either, "reserved|L2|offset");
  table("same_data_cluster_twice", "plain", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index2), l.l2_entry); }, Must::Either, "");
  cases.back().check = CheckMust::Report;
  cases.back().try_repair = true;
  // 1-bit refcounts cannot count a cluster referenced twice.
  table("refcount_overflow_1bit", "rc1", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index2), l.l2_entry); }, Must::Either, "");
  cases.back().check = CheckMust::Report;
  cases.back().try_repair = true;
  table("reftable_entry_past_eof", "plain", [](Bytes& b, const Layout& l) { set64(b, l.reftable_offset, 1ull << 40); }, Must::Either,
        "refblock|refcount|reference count|end of|beyond", true);
  table("reftable_entry_unaligned", "plain", [](Bytes& b, const Layout& l) { set64(b, l.reftable_offset, l.refblock0 + 0x1000); },
        Must::Either, "refblock|refcount|reference count|unaligned", true);
  // Reserved bits of a refcount table entry are not part of the offset; check reports them, I/O ignores them (as qemu).
  table("reftable_entry_reserved_bits", "plain", [](Bytes& b, const Layout& l) { set64(b, l.reftable_offset, l.refblock0 + 8); },
        Must::Succeed, "");
  cases.back().try_repair = true;
  table("reftable_entry_is_header", "plain", [](Bytes& b, const Layout& l) { set64(b, l.reftable_offset, 0x0 | 0x200); }, Must::Either,
        "refblock|refcount|reference count|unaligned", true);
  table("refblock_zeroed", "plain", [](Bytes& b, const Layout& l) { std::fill_n(b.begin() + l.refblock0, l.cluster, 0); }, Must::Either, "",
        true);
  table("refblock_all_ones", "plain", [](Bytes& b, const Layout& l) { std::fill_n(b.begin() + l.refblock0, l.cluster, 0xff); }, Must::Either,
        "");
  table("corrupt_bit_set", "plain", [](Bytes& b, const Layout&) { set64(b, 72, 2); }, Must::Either, "corrupt", true);
  // Compressed clusters.
  table("compressed_past_eof", "compressed", [](Bytes& b, const Layout& l) {
    const int offset_bits = 62 - (static_cast<int>(l.cluster_bits) - 8);
    set64(b, l.l2_slot(l.l2_index), kCompressed | (1ull << 40 & ((1ull << offset_bits) - 1)));
  }, Must::Fail, "compress|end of|beyond|read|offset");
  table("compressed_at_offset_max", "compressed", [](Bytes& b, const Layout& l) {
    const int offset_bits = 62 - (static_cast<int>(l.cluster_bits) - 8);
    set64(b, l.l2_slot(l.l2_index), kCompressed | ((1ull << offset_bits) - 1) | (0xffull << offset_bits));
  }, Must::Fail, "compress|end of|beyond|read|offset");
  table("compressed_garbage_data", "compressed", [](Bytes& b, const Layout& l) {
    const int offset_bits = 62 - (static_cast<int>(l.cluster_bits) - 8);
    const uint64_t host = l.l2_entry & ((1ull << offset_bits) - 1);
    auto junk = random_bytes(512, 99);
    std::copy(junk.begin(), junk.end(), b.begin() + host);
  }, Must::Fail, "compress|decompress|inflate|data");
  table("compressed_points_at_l1", "compressed", [](Bytes& b, const Layout& l) {
    set64(b, l.l2_slot(l.l2_index), kCompressed | l.l1_offset);
  }, Must::Fail, "compress|decompress|inflate|data");
  table("compressed_zero_length_garbage", "compressed", [](Bytes& b, const Layout& l) {
    // Offset at the very end of the file: the sector count runs past EOF.
    const int offset_bits = 62 - (static_cast<int>(l.cluster_bits) - 8);
    set64(b, l.l2_slot(l.l2_index), kCompressed | (b.size() - 1) | (3ull << offset_bits));
  }, Must::Fail, "compress|decompress|inflate|end of|beyond|read|data");
  table("compressed_points_at_header", "compressed", [](Bytes& b, const Layout& l) {
    const int offset_bits = 62 - (static_cast<int>(l.cluster_bits) - 8);
    set64(b, l.l2_slot(l.l2_index), kCompressed | 0 | (7ull << offset_bits));
  }, Must::Fail, "compress|decompress|inflate|data", true);
  table("compressed_with_copied_flag", "compressed", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), l.l2_entry | kCopied); },
        Must::Either, "");
  // v2 images have no zero flag: bit 0 set there is a reserved bit.
  table("v2_zero_flag", "v2", [](Bytes& b, const Layout& l) { set64(b, l.l2_slot(l.l2_index), l.l2_entry | 1); }, Must::Either, "");
  return cases;
}

TEST_F(DamagedImages, HeaderDamage) {
  for (const Case& c : header_cases()) run_case(c);
}

TEST_F(DamagedImages, TableDamage) {
  for (const Case& c : table_cases()) run_case(c);
}

// A named but unknown incompatible feature: the error names it as qemu does.
TEST_F(DamagedImages, UnknownFeatureIsNamedFromTheFeatureTable) {
  Case c{"named_unknown_feature", "plain", [](Bytes& b, const Layout& l) {
           ASSERT_NE(l.feature_table, 0u);
           // Turn the first entry of the feature name table into "incompatible bit 9".
           b[l.feature_table] = 0;
           b[l.feature_table + 1] = 9;
           std::memset(b.data() + l.feature_table + 2, 0, 46);
           std::memcpy(b.data() + l.feature_table + 2, "frobnication", 12);
           set64(b, 72, 1ull << 9);
         },
         Must::Fail, CheckMust::Report, Must::Fail, "frobnication"};
  run_case(c);
}

// After a crash, a refcount block may count clusters past the end of the
// file (the allocation reached the refcount block, the data never reached the
// file). qemu-img check does not look past the end of the file and calls such
// an image clean; writing to it must keep it clean.
TEST_F(DamagedImages, AllocationAfterRefcountsPastEndOfFile) {
  for (const char* base : {"plain", "rc1"}) {
    SCOPED_TRACE(base);
    Bytes b = read_file(dir_->file(std::string(base) + ".qcow2"));
    const Layout l(b);
    const uint64_t end_cluster = (b.size() + l.cluster - 1) / l.cluster;
    const uint32_t bits = 1u << l.refcount_order;
    const uint64_t bit = end_cluster * bits;  // refcount entry of the first cluster past the end
    if (bits >= 8) put_be(b, l.refblock0 + bit / 8, static_cast<int>(bits / 8), 1);
    else b[l.refblock0 + bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
    const std::string image = dir_->file(std::string("past-eof-") + base + ".qcow2");
    write_file(image, b);
    auto before = run({"qemu-img", "check", "-f", "qcow2", image});
    ASSERT_EQ(before.status, 0) << "qemu-img check should call this image clean: " << before.out << before.err;

    const std::string patch = dir_->file("patch.raw");
    Bytes data = random_bytes(4 << 20, 3);
    write_file(patch, data);
    ASSERT_EQ(truncate(patch.c_str(), 1ull << 30), 0);
    const auto write = run_limited({"convert", "-n", "-f", "raw", "-O", "qcow2", patch, image});
    std::filesystem::remove(patch);
    expect_sane("convert -n", write, false);
    EXPECT_EQ(write.status, 0) << describe("convert -n into a clean image", write);
    auto after = run({"qemu-img", "check", "-f", "qcow2", image});
    EXPECT_TRUE(after.status == 0 || after.status == 3) << "keel corrupted a clean image: qemu-img check status " << after.status << "\n"
                                                         << after.out << after.err;
  }
}

// Names in the image are bytes, not necessarily UTF-8: the JSON output must
// cope (qemu escapes them) instead of aborting.
TEST_F(DamagedImages, SnapshotNameNotUtf8) {
  const std::string image = dir_->file("snapname.qcow2");
  std::filesystem::copy_file(dir_->file("plain.qcow2"), image, std::filesystem::copy_options::overwrite_existing);
  auto snap = run({"qemu-img", "snapshot", "-c", "snapNAMEmarker", image});
  ASSERT_EQ(snap.status, 0) << snap.err;
  Bytes b = read_file(image);
  const std::string marker = "snapNAMEmarker";
  auto it = std::search(b.begin(), b.end(), marker.begin(), marker.end());
  ASSERT_NE(it, b.end());
  it[4] = 0x80;
  it[5] = 0xff;
  write_file(image, b);
  for (std::vector<std::string> args : {std::vector<std::string>{"info", image}, {"info", "--output=json", image}, {"check", image},
                                        {"check", "--output=json", image}}) {
    const auto r = run_limited(args);
    expect_sane(args[0] + " " + args[1], r, args[0] == "check");
    EXPECT_EQ(r.status, 0) << describe(args[0] + " " + args[1], r);
  }
}

// Large but legal images stay cheap: nothing is sized by the virtual size.
TEST_F(DamagedImages, HugeLegalImage) {
  const std::string image = dir_->file("huge.qcow2");
  auto created = run_limited({"create", "-q", "-f", "qcow2", image, "1P"});
  ASSERT_EQ(created.status, 0) << created.err;
  for (std::vector<std::string> args : {std::vector<std::string>{"info", image}, {"check", image},
                                        {"convert", "-O", "qcow2", image, dir_->file("huge-copy.qcow2")}}) {
    const auto r = run_limited(args);
    expect_sane(args[0], r, args[0] == "check");
    EXPECT_EQ(r.status, 0) << describe(args[0], r);
  }
}

// Backing chains that never end: an image that is its own backing file, a
// longer loop, and a chain deeper than keel opens fail with one error each,
// without hanging or recursing without bound. info (which opens no backing
// file) still describes the image.
TEST_F(DamagedImages, EndlessBackingChains) {
  auto overlay = [&](const std::string& name, const std::string& backing) {
    const auto r = run_limited({"create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "qcow2", dir_->file(name), "1M"});
    ASSERT_EQ(r.status, 0) << r.err;
  };
  // An image naming itself cannot be created directly: made under another name, then renamed.
  overlay("self-tmp.qcow2", "self.qcow2");
  std::filesystem::rename(dir_->file("self-tmp.qcow2"), dir_->file("self.qcow2"));
  overlay("loop-a.qcow2", "loop-b.qcow2");
  overlay("loop-b.qcow2", "loop-c.qcow2");
  overlay("loop-c.qcow2", "loop-a.qcow2");
  const size_t depth = 300;
  ASSERT_EQ(run_limited({"create", "-q", "-f", "qcow2", dir_->file("deep-0.qcow2"), "1M"}).status, 0);
  for (size_t i = 1; i <= depth; i++) overlay(fmt::format("deep-{}.qcow2", i), fmt::format("deep-{}.qcow2", i - 1));
  const std::string deepest = dir_->file(fmt::format("deep-{}.qcow2", depth));
  for (const auto& [image, message] : {std::pair{dir_->file("self.qcow2"), "creates an infinite loop"},
                                       std::pair{dir_->file("loop-a.qcow2"), "creates an infinite loop"},
                                       std::pair{deepest, "the backing chain is longer than 256 images"}}) {
    for (std::vector<std::string> args : {std::vector<std::string>{"convert", "-O", "raw", image, dir_->file("chain.raw")},
                                          {"check", image}}) {
      const auto r = run_limited(args);
      EXPECT_EQ(r.status, 1) << describe(args[0], r);
      EXPECT_NE(r.err.find(message), std::string::npos) << describe(args[0], r);
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line of error: " << r.err;
    }
    EXPECT_EQ(run_limited({"info", image}).status, 0);
  }
  // A chain within the bound opens.
  const auto within = run_limited({"convert", "-O", "raw", dir_->file("deep-200.qcow2"), dir_->file("chain.raw")});
  EXPECT_EQ(within.status, 0) << describe("convert deep-200", within);
}

// Absurd sizes at creation fail cleanly, and do not leave a huge file behind.
TEST_F(DamagedImages, AbsurdCreateSizes) {
  const std::vector<std::vector<std::string>> requests = {
      {"create", "-f", "qcow2", "x", "16E"},
      {"create", "-f", "qcow2", "-o", "cluster_size=512", "x", "1P"},
      {"create", "-f", "qcow2", "-o", "cluster_size=2097152", "x", "16E"},
      {"create", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", "x", "8E"},
      {"create", "-f", "qcow2", "-o", "cluster_size=512,preallocation=metadata", "x", "1P"},
      {"create", "-f", "qcow2", "-o", "cluster_size=65536,preallocation=metadata", "x", "1E"},
      {"create", "-f", "qcow2", "x", "18446744073709551615"},
      {"create", "-f", "qcow2", "x", "99999999999999999999999"},
      {"create", "-f", "raw", "x", "16E"},
  };
  for (auto args : requests) {
    const std::string target = dir_->file("absurd.qcow2");
    std::filesystem::remove(target);
    std::replace(args.begin(), args.end(), std::string("x"), target);
    std::string what = "keel-img";
    for (const auto& a : args) what += " " + a;
    const auto r = run_limited(args);
    expect_sane(what, r, false);
    EXPECT_NE(r.status, 0) << describe(what, r);
    EXPECT_NE(r.err.find("keel-img: "), std::string::npos) << describe(what, r);
    struct stat st {};
    if (stat(target.c_str(), &st) == 0) {
      EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 64ull << 20) << what << " left a large file";
    }
  }
}

}  // namespace
}  // namespace keel::test
