// Differential fuzzing against qemu-img 7.2: images made by qemu in each
// configuration keel supports get seeded mutations of their metadata (header
// fields, L1 and L2 entries, extended L2 bitmaps, the refcount table, single
// refcounts), and keel-img and qemu-img must agree on every one:
//  - `check` gives the same verdict class (its exit status);
//  - where both read the image, they read the same guest data;
//  - after keel's `check -r all`, a fresh qemu-img check of the result gives
//    the verdict keel reported, and the guest data qemu read before is intact.
// The loop is bounded by a count per configuration (KEEL_DIFF_ITERATIONS,
// default 40). Every disagreement it found is kept below as a regression case.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

enum class Region { HeaderField, L1Entry, L2Entry, L2Bitmap, RefcountTableEntry, Refcount };
const char* region_name(Region r) {
  switch (r) {
    case Region::HeaderField:
      return "HeaderField";
    case Region::L1Entry:
      return "L1Entry";
    case Region::L2Entry:
      return "L2Entry";
    case Region::L2Bitmap:
      return "L2Bitmap";
    case Region::RefcountTableEntry:
      return "RefcountTableEntry";
    case Region::Refcount:
      return "Refcount";
  }
  return "?";
}

// Sets one value in the image: the `index`th slot of `region` becomes `value`.
// L2 slots count across the active L2 tables in L1 order; Refcount indexes host clusters.
struct Mutation {
  Region region;
  uint64_t index;
  uint64_t value;
};

std::string describe(const Mutation& m) {
  return fmt::format("{{Region::{}, {}, {:#x}}}", region_name(m.region), m.index, m.value);
}

struct HeaderField {
  uint64_t offset;
  unsigned bytes;
};
// The fields a damaged or hostile header can get wrong without failing the magic.
constexpr HeaderField kHeaderFields[] = {{8, 8},  {16, 4}, {20, 4}, {24, 8}, {32, 4}, {36, 4}, {40, 8}, {48, 8},
                                         {56, 4}, {60, 4}, {64, 8}, {72, 8}, {80, 8}, {88, 8}, {96, 4}, {100, 4}};

struct Config {
  std::string name;
  std::string options;
  bool snapshot = false;  // an internal snapshot, then more writes: shared clusters
  bool backing = false;   // an overlay over a qcow2 backing file full of data, reads falling through
};

std::ostream& operator<<(std::ostream& o, const Config& c) { return o << c.name; }

const std::vector<Config>& configs() {
  static const std::vector<Config> c = {
      {"v3_64k", ""},
      {"v2_4k", "compat=0.10,cluster_size=4k"},
      {"refcount1_extended_l2", "refcount_bits=1,extended_l2=on"},
      {"refcount64_512", "refcount_bits=64,cluster_size=512"},
      {"zstd_extended_l2_32k", "compression_type=zstd,extended_l2=on,cluster_size=32k"},
      {"lazy_refcount8", "lazy_refcounts=on,refcount_bits=8"},
      {"refcount2_16k", "refcount_bits=2,cluster_size=16k"},
      {"snapshot_v3", "", true},
      {"snapshot_v2_extended_l2", "extended_l2=on,cluster_size=16k", true},
      {"backing_v3", "", false, true},
      {"backing_extended_l2", "extended_l2=on,cluster_size=32k", false, true},
  };
  return c;
}

void must(const std::vector<std::string>& argv) {
  const auto r = run(argv);
  ASSERT_EQ(r.status, 0) << interop::describe(join(argv), r);
}

void make_base(const TempDir& t, const Config& c, const std::string& img) {
  std::vector<std::string> create{"qemu-img", "create", "-q", "-f", "qcow2"};
  if (!c.options.empty()) create.insert(create.end(), {"-o", c.options});
  if (c.backing) {
    // Named relative to the overlay, so the copies compared beside it find it too.
    const std::string backing = "backing-" + c.name + ".qcow2";
    ASSERT_NO_FATAL_FAILURE(must({"qemu-img", "create", "-q", "-f", "qcow2", t.file(backing), "2M"}));
    qemu_io(t.file(backing), "qcow2", {"write -P 0x31 0 2M"});
    create.insert(create.end(), {"-b", backing, "-F", "qcow2"});
  }
  create.insert(create.end(), {img, "2M"});
  ASSERT_NO_FATAL_FAILURE(must(create));
  write_file(t.file("random"), random_bytes(64 << 10, 11));
  qemu_io(img, "qcow2",
          {"write -P 0x11 0 100k", "write -z 128k 64k", "write -P 0x12 300k 3k", "write -c -P 0x13 512k 64k",
           "write -s " + t.file("random") + " 768k 64k", "write -P 0x14 1M 64k", "discard 1M 64k",
           "write -P 0x15 1500k 1k"});
  if (c.snapshot) {
    ASSERT_NO_FATAL_FAILURE(must({"qemu-img", "snapshot", "-c", "s1", img}));
    // Compressed writes go only where nothing is mapped yet (qemu refuses them elsewhere).
    qemu_io(img, "qcow2", {"write -P 0x21 0 8k", "write -c -P 0x22 1664k 64k", "write -P 0x23 1900k 8k"});
  }
}

// Where the structures of an image are, for choosing and applying mutations.
struct Tables {
  Qcow2Layout layout;
  std::vector<uint64_t> l2_tables;  // active L2 tables in L1 order
  uint64_t l2_entries;              // per table
  uint64_t file_clusters;
  uint64_t reftable_entries;

  explicit Tables(const std::string& img) : layout(Qcow2Layout::read(img)) {
    for (uint64_t i = 0; i < layout.l1_size; i++) {
      const uint64_t l2 = read_be(img, layout.l1_table_offset + i * 8, 8) & 0x00fffffffffffe00ull;
      if (l2) l2_tables.push_back(l2);
    }
    l2_entries = layout.cluster_size / layout.l2_entry_size;
    file_clusters = (file_size(img) + layout.cluster_size - 1) / layout.cluster_size;
    reftable_entries = read_be(img, 56, 4) * layout.cluster_size / 8;
  }
  uint64_t l2_slot(uint64_t index) const {
    return l2_tables[index / l2_entries] + index % l2_entries * layout.l2_entry_size;
  }
};

// Mutations are placed by the undamaged image's layout (`t`), so that one
// mutation of a header field cannot move where the next one lands.
void apply(const std::string& img, const Tables& t, const Mutation& m) {
  switch (m.region) {
    case Region::HeaderField: {
      const HeaderField& f = kHeaderFields[m.index % std::size(kHeaderFields)];
      write_be(img, f.offset, f.bytes, m.value);
      break;
    }
    case Region::L1Entry:
      write_be(img, t.layout.l1_table_offset + m.index * 8, 8, m.value);
      break;
    case Region::L2Entry:
      write_be(img, t.l2_slot(m.index), 8, m.value);
      break;
    case Region::L2Bitmap:
      write_be(img, t.l2_slot(m.index) + 8, 8, m.value);
      break;
    case Region::RefcountTableEntry:
      write_be(img, t.layout.refcount_table_offset + m.index * 8, 8, m.value);
      break;
    case Region::Refcount:
      t.layout.set_refcount(img, m.index, m.value);
      break;
  }
}

// Refcounts are found through the image's own refcount table, so they are set
// before any mutation can move it.
void apply_all(const std::string& img, const Tables& t, std::vector<Mutation> mutations) {
  std::stable_partition(mutations.begin(), mutations.end(),
                        [](const Mutation& m) { return m.region == Region::Refcount; });
  for (const Mutation& m : mutations) apply(img, t, m);
}

// A plausible-but-wrong 64-bit table entry: most damage is a flipped bit, a
// pointer at some other cluster of the file, a cleared or set flag.
uint64_t damaged_entry(std::mt19937_64& rng, uint64_t current, const Tables& t) {
  const uint64_t some_cluster = rng() % (t.file_clusters + 2) * t.layout.cluster_size;
  switch (rng() % 8) {
    case 0:
      return current ^ (1ull << (rng() % 64));
    case 1:
      return current ^ (1ull << (9 + rng() % 47));  // the offset bits
    case 2:
      return some_cluster | (current & (1ull << 63));
    case 3:
      return some_cluster | (1ull << 63);
    case 4:
      return current | 0x200;
    case 5:
      return current ^ (1ull << 62);  // the compressed flag
    case 6:
      return current ^ 1;  // the zero flag
    default:
      return rng();
  }
}

Mutation random_mutation(std::mt19937_64& rng, const std::string& img, const Tables& t) {
  for (;;) {
    const unsigned pick = rng() % 100;
    if (pick < 8) {
      const uint64_t i = rng() % std::size(kHeaderFields);
      const HeaderField& f = kHeaderFields[i];
      const uint64_t current = read_be(img, f.offset, f.bytes);
      const uint64_t bits = f.bytes * 8;
      const uint64_t value = rng() % 2 ? current ^ (1ull << (rng() % bits)) : (rng() % 2 ? rng() % 4096 : rng());
      return {Region::HeaderField, i, bits == 64 ? value : value & ((1ull << bits) - 1)};
    }
    if (pick < 20) {
      const uint64_t i = rng() % t.layout.l1_size;
      return {Region::L1Entry, i, damaged_entry(rng, read_be(img, t.layout.l1_table_offset + i * 8, 8), t)};
    }
    if (pick < 60 && !t.l2_tables.empty()) {
      // Mostly entries that map something, where damage matters most.
      uint64_t i = rng() % (t.l2_tables.size() * t.l2_entries);
      for (int tries = 0; tries < 64 && !read_be(img, t.l2_slot(i), 8); tries++)
        i = rng() % (t.l2_tables.size() * t.l2_entries);
      return {Region::L2Entry, i, damaged_entry(rng, read_be(img, t.l2_slot(i), 8), t)};
    }
    if (pick < 72 && !t.l2_tables.empty() && t.layout.l2_entry_size == 16) {
      const uint64_t i = rng() % std::min<uint64_t>(t.l2_tables.size() * t.l2_entries, 64);
      const uint64_t current = read_be(img, t.l2_slot(i) + 8, 8);
      return {Region::L2Bitmap, i, rng() % 2 ? current ^ (1ull << (rng() % 64)) : rng()};
    }
    if (pick < 80) {
      const uint64_t i = rng() % std::min<uint64_t>(t.reftable_entries, 4);
      return {Region::RefcountTableEntry, i,
              damaged_entry(rng, read_be(img, t.layout.refcount_table_offset + i * 8, 8), t)};
    }
    if (pick >= 80) {
      const uint64_t cluster = rng() % t.file_clusters;
      const uint64_t max = t.layout.refcount_order == 6 ? ~0ull : (1ull << (1u << t.layout.refcount_order)) - 1;
      const uint64_t choices[] = {0, 1, 2, max, rng() & max};
      return {Region::Refcount, cluster, choices[rng() % std::size(choices)]};
    }
  }
}

// Runs both tools on one mutated image; returns what they disagree on ("" if nothing).
std::string compare_tools(const TempDir& t, const std::string& damaged) {
  std::string problems;
  const std::string kimg = t.file("keel.qcow2"), qimg = t.file("qemu.qcow2");
  copy_file(damaged, kimg);
  copy_file(damaged, qimg);
  constexpr const char* kTimeout = "30";
  auto keel = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"timeout", "-k", "5", kTimeout, keel_bin("keel-img")});
    return run(args);
  };
  auto qemu = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"timeout", "-k", "5", kTimeout, "qemu-img"});
    return run(args);
  };
  const auto kc = keel({"check", "-f", "qcow2", kimg});
  const auto qc = qemu({"check", "-f", "qcow2", qimg});
  if (kc.status >= 124 || kc.err.find("runtime error") != std::string::npos ||
      kc.err.find("AddressSanitizer") != std::string::npos)
    problems += interop::describe("keel-img check crashed or hung", kc);
  if (kc.status != qc.status)
    problems += fmt::format("check verdicts differ: keel {} qemu {}\n{}\n{}\n", kc.status, qc.status,
                            interop::describe("keel", kc), interop::describe("qemu", qc));

  const auto kr = keel({"convert", "-U", "-f", "qcow2", "-O", "raw", kimg, t.file("keel.raw")});
  const auto qr = qemu({"convert", "-U", "-f", "qcow2", "-O", "raw", qimg, t.file("qemu.raw")});
  if (kr.status >= 124) problems += interop::describe("keel-img convert crashed or hung", kr);
  if (kr.status == 0 && qr.status == 0 && !files_identical(t.file("keel.raw"), t.file("qemu.raw")))
    problems += "both read the image, but read different guest data\n";
  if ((kr.status == 0) != (qr.status == 0))
    problems += fmt::format("one tool reads the image and the other does not\n{}\n{}\n",
                            interop::describe("keel convert", kr), interop::describe("qemu convert", qr));

  const auto repair = keel({"check", "-r", "all", "-f", "qcow2", kimg});
  if (repair.status >= 124) problems += interop::describe("keel-img check -r all crashed or hung", repair);
  if (repair.status != 1) {
    const auto after = qemu({"check", "-f", "qcow2", kimg});
    if (after.status != repair.status)
      problems += fmt::format("keel's repair reported {} but qemu-img check then says {}\n{}\n{}\n", repair.status,
                              after.status, interop::describe("keel -r all", repair),
                              interop::describe("qemu check after", after));
  }
  if (qr.status == 0 && repair.status != 1) {
    const auto reread = qemu({"convert", "-U", "-f", "qcow2", "-O", "raw", kimg, t.file("repaired.raw")});
    if (reread.status != 0 || !files_identical(t.file("repaired.raw"), t.file("qemu.raw")))
      problems += "keel's repair changed the guest data qemu read before it\n";
  }
  for (const char* f : {"keel.qcow2", "qemu.qcow2", "keel.raw", "qemu.raw", "repaired.raw"})
    std::filesystem::remove(t.file(f));
  return problems;
}

uint64_t iterations() {
  const char* env = std::getenv("KEEL_DIFF_ITERATIONS");
  return env ? std::strtoull(env, nullptr, 10) : 40;
}

class DifferentialCheck : public ::testing::TestWithParam<Config> {};

TEST_P(DifferentialCheck, KeelAndQemuAgreeOnMutatedImages) {
  KEEL_REQUIRE_QEMU();
  const Config& c = GetParam();
  TempDir t;
  const std::string base = t.file("base.qcow2"), damaged = t.file("damaged.qcow2");
  ASSERT_NO_FATAL_FAILURE(make_base(t, c, base));
  const Tables tables(base);
  std::mt19937_64 rng(std::hash<std::string>{}(c.name));
  int disagreements = 0;
  for (uint64_t i = 0; i < iterations() && disagreements < 5; i++) {
    copy_file(base, damaged);
    std::vector<Mutation> applied;
    const int count = 1 + static_cast<int>(rng() % 2);
    for (int k = 0; k < count; k++) applied.push_back(random_mutation(rng, base, tables));
    apply_all(damaged, tables, applied);
    const std::string problems = compare_tools(t, damaged);
    if (problems.empty()) continue;
    disagreements++;
    std::string mutations;
    for (const auto& m : applied) mutations += describe(m) + ", ";
    ADD_FAILURE() << "[" << c.name << "] iteration " << i << ": {\"" << c.name << "\", {" << mutations << "}},\n"
                  << problems;
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, DifferentialCheck, ::testing::ValuesIn(configs()),
                         [](const auto& info) { return info.param.name; });

// Disagreements the loop found once, kept so they stay fixed.
struct Regression {
  std::string config;
  std::vector<Mutation> mutations;
};

const std::vector<Regression>& regressions() {
  static const std::vector<Regression> r = {
      {"backing_extended_l2", {{Region::L2Entry, 46, 0x8000000000868000}, {Region::HeaderField, 7, 0x100008000}}},
      {"lazy_refcount8", {{Region::HeaderField, 13, 0xf34032856c92fad2}}},
      {"lazy_refcount8", {{Region::HeaderField, 6, 0x8000030000}, {Region::L2Entry, 3129, 0x8000000000040000}}},
      {"lazy_refcount8", {{Region::L1Entry, 0, 0x8000000008040000}}},
      {"lazy_refcount8", {{Region::L2Entry, 1419, 0x800000}, {Region::RefcountTableEntry, 0, 0x20001}}},
      {"lazy_refcount8", {{Region::L2Entry, 3986, 0x20000000000000}, {Region::HeaderField, 15, 0x1de}}},
      {"lazy_refcount8", {{Region::L2Entry, 972, 0x4000000000000000}, {Region::HeaderField, 6, 0x400030000}}},
      {"refcount1_extended_l2", {{Region::HeaderField, 10, 0x455fdc2d552d98e1}}},
      {"refcount1_extended_l2", {{Region::L1Entry, 0, 0x8080000000040000}, {Region::Refcount, 10, 0x2}}},
      {"refcount1_extended_l2", {{Region::L1Entry, 0, 0xa000000000040000}, {Region::HeaderField, 13, 0x2}}},
      {"refcount1_extended_l2", {{Region::L2Entry, 1520, 0x400}, {Region::HeaderField, 3, 0xa5e}}},
      {"refcount1_extended_l2", {{Region::L2Entry, 2917, 0x1}, {Region::RefcountTableEntry, 0, 0x4000000000020000}}},
      {"refcount1_extended_l2",
       {{Region::RefcountTableEntry, 0, 0x4000000000020000}, {Region::L2Entry, 0, 0x8000000000050200}}},
      {"refcount1_extended_l2", {{Region::RefcountTableEntry, 2, 0x4000000000000000}}},
      {"refcount2_16k", {{Region::HeaderField, 13, 0x37ba9e610f589a5a}}},
      {"refcount2_16k", {{Region::HeaderField, 5, 0x1001}}},
      {"refcount2_16k", {{Region::HeaderField, 6, 0x200000c000}}},
      {"refcount2_16k", {{Region::L1Entry, 0, 0x800000000000c000}, {Region::Refcount, 17, 0x2}}},
      {"refcount2_16k", {{Region::L1Entry, 0, 0x8000004000010000}}},
      {"refcount2_16k", {{Region::L2Entry, 64, 0x400000000001}, {Region::L1Entry, 0, 0x8001000000010000}}},
      {"refcount2_16k", {{Region::RefcountTableEntry, 1, 0x1}}},
      {"refcount2_16k", {{Region::RefcountTableEntry, 1, 0x4000000000000000}, {Region::L2Entry, 8, 0x4001}}},
      {"refcount64_512", {{Region::HeaderField, 10, 0x1}}},
      {"refcount64_512", {{Region::L1Entry, 11, 0x100000000}, {Region::L2Entry, 771, 0x5}}},
      {"refcount64_512", {{Region::L1Entry, 14, 0x8000}}},
      {"refcount64_512", {{Region::L1Entry, 24, 0x97ed03a1af670436}, {Region::L2Entry, 655, 0x8000000000023800}}},
      {"refcount64_512", {{Region::L1Entry, 41, 0x5fb69e972b64533d}, {Region::L1Entry, 26, 0xf800}}},
      {"refcount64_512", {{Region::L1Entry, 48, 0x800000000000}}},
      {"refcount64_512", {{Region::L2Entry, 494, 0xbde531396eb36eea}, {Region::RefcountTableEntry, 3, 0x19201}}},
      {"refcount64_512", {{Region::Refcount, 418, 0xffffffffffffffff}, {Region::L1Entry, 55, 0x800000000003d200}}},
      {"refcount64_512", {{Region::RefcountTableEntry, 0, 0x4000000000000400}, {Region::Refcount, 250, 0x2}}},
      {"refcount64_512", {{Region::RefcountTableEntry, 2, 0x810e00}}},
      {"refcount64_512", {{Region::RefcountTableEntry, 3, 0x4000000000019200}}},
      {"refcount64_512", {{Region::RefcountTableEntry, 3, 0xe54e00a707a34b45}, {Region::RefcountTableEntry, 0, 0x600}}},
      {"v2_4k", {{Region::HeaderField, 10, 0xf320f53c3e61278}}},
      {"v2_4k", {{Region::L1Entry, 0, 0x8000000000009000}, {Region::L1Entry, 0, 0x8000000000000000}}},
      {"v2_4k", {{Region::L1Entry, 0, 0x800000000000f000}}},
      {"v2_4k", {{Region::L2Entry, 1, 0x8400000000006000}, {Region::HeaderField, 6, 0x800000003000}}},
      {"v2_4k", {{Region::L2Entry, 14, 0x8000000000413000}, {Region::L1Entry, 0, 0x8000040000004000}}},
      {"v2_4k", {{Region::L2Entry, 196, 0x8000000000024001}}},
      {"v2_4k", {{Region::L2Entry, 20, 0x8000000000019001}}},
      {"v2_4k", {{Region::Refcount, 40, 0x2}, {Region::L1Entry, 0, 0x8000000000204000}}},
      {"v2_4k", {{Region::RefcountTableEntry, 0, 0x8000000000026000}, {Region::L2Entry, 375, 0x800000000003c000}}},
      {"v2_4k", {{Region::RefcountTableEntry, 3, 0x4000000000000000}}},
      {"v3_64k", {{Region::HeaderField, 10, 0x706}, {Region::L2Entry, 3223, 0x2000000}}},
      {"v3_64k", {{Region::HeaderField, 10, 0xe37}}},
      {"v3_64k", {{Region::L1Entry, 0, 0x8000000000030000}, {Region::RefcountTableEntry, 3, 0x157ee819f43585fb}}},
      {"v3_64k", {{Region::L1Entry, 0, 0x8000000000030000}}},
      {"v3_64k", {{Region::L2Entry, 3825, 0x80000000000000}, {Region::RefcountTableEntry, 3, 0x4000000000000000}}},
      {"v3_64k", {{Region::RefcountTableEntry, 0, 0x4000000000020000}, {Region::L2Entry, 0, 0x8000000000050001}}},
      {"v3_64k", {{Region::RefcountTableEntry, 0, 0x8000000000010000}, {Region::L1Entry, 0, 0x80000000000c0000}}},
      {"v3_64k", {{Region::RefcountTableEntry, 1, 0x1}}},
      {"v3_64k", {{Region::RefcountTableEntry, 1, 0x4000000000000000}, {Region::L2Entry, 4529, 0x1}}},
      {"v3_64k", {{Region::RefcountTableEntry, 1, 0x4000000000000000}}},
      {"zstd_extended_l2_32k", {{Region::HeaderField, 9, 0x3bb}}},
      {"zstd_extended_l2_32k", {{Region::L1Entry, 0, 0x8000000000020800}, {Region::HeaderField, 8, 0xbd}}},
      {"zstd_extended_l2_32k", {{Region::L1Entry, 0, 0x8002000000020000}, {Region::Refcount, 6, 0x2}}},
      {"zstd_extended_l2_32k", {{Region::L2Entry, 1105, 0x400}, {Region::RefcountTableEntry, 3, 0x4000000000000000}}},
      {"zstd_extended_l2_32k", {{Region::L2Entry, 1223, 0x70000}, {Region::HeaderField, 10, 0x1ab}}},
      {"zstd_extended_l2_32k", {{Region::Refcount, 3, 0x2}, {Region::L1Entry, 0, 0x8000000200020000}}},
      {"zstd_extended_l2_32k", {{Region::Refcount, 5, 0xffff}, {Region::HeaderField, 6, 0x40000000018000}}},
      {"zstd_extended_l2_32k",
       {{Region::RefcountTableEntry, 0, 0x4000000000010000}, {Region::L1Entry, 0, 0xc000000000020000}}},
      {"snapshot_v3", {{Region::RefcountTableEntry, 0, 0x60000}, {Region::HeaderField, 9, 0x168}}},
  };
  return r;
}

TEST(DifferentialCheckRegressions, StayFixed) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  std::map<std::string, std::string> bases;  // configuration -> its base image, made once
  for (const Regression& r : regressions()) {
    const auto config =
        std::find_if(configs().begin(), configs().end(), [&](const Config& c) { return c.name == r.config; });
    ASSERT_NE(config, configs().end()) << r.config;
    if (!bases.count(r.config)) {
      bases[r.config] = t.file(r.config + ".qcow2");
      ASSERT_NO_FATAL_FAILURE(make_base(t, *config, bases[r.config]));
    }
    const std::string& base = bases[r.config];
    const std::string img = t.file("damaged.qcow2");
    copy_file(base, img);
    std::string what = r.config + ":";
    for (const auto& m : r.mutations) what += " " + describe(m);
    apply_all(img, Tables(base), r.mutations);
    EXPECT_EQ(compare_tools(t, img), "") << what;
  }
}

}  // namespace
}  // namespace keel::test::interop
