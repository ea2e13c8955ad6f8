// qcow2 headers read as qemu 7.2 reads them: an image made by qemu-img has one
// header field or extension damaged by hand, and keel-img must open what
// qemu-img opens and refuse what it refuses, with the same message, for info,
// check and a convert to raw (whose output must then be the same bytes).
// Also: create lays out the header cluster exactly as qemu does.
#include <algorithm>
#include <filesystem>
#include <functional>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

using Bytes = std::vector<uint8_t>;

void put(Bytes& b, uint64_t offset, unsigned bytes, uint64_t value) {
  if (b.size() < offset + bytes) b.resize(offset + bytes);
  for (unsigned i = 0; i < bytes; i++) b[offset + bytes - 1 - i] = static_cast<uint8_t>(value >> (8 * i));
}
uint64_t get(const Bytes& b, uint64_t offset, unsigned bytes) {
  uint64_t v = 0;
  for (unsigned i = 0; i < bytes; i++) v = v << 8 | b.at(offset + i);
  return v;
}
void put_text(Bytes& b, uint64_t offset, const std::string& text) {
  if (b.size() < offset + text.size()) b.resize(offset + text.size());
  std::copy(text.begin(), text.end(), b.begin() + static_cast<std::ptrdiff_t>(offset));
}

constexpr uint32_t kBackingFormat = 0xe2792aca, kFeatureTable = 0x6803f857, kBitmaps = 0x23852875;
constexpr uint32_t kCrypto = 0x0537be77, kDataFile = 0x44415441, kUnknown = 0xdeadbeef;
constexpr uint64_t kCluster = 65536;

// Offset of the end-of-extensions marker of a valid image.
uint64_t extensions_end(const Bytes& b) {
  uint64_t pos = get(b, 4, 4) == 3 ? get(b, 100, 4) : 72;
  while (get(b, pos, 4) != 0) pos += 8 + ((get(b, pos + 4, 4) + 7) & ~uint64_t{7});
  return pos;
}
// Appends an extension header (and data) where the end marker was.
uint64_t add_extension(Bytes& b, uint32_t type, uint32_t length, const std::string& data = "") {
  const uint64_t at = extensions_end(b);
  put(b, at, 4, type);
  put(b, at + 4, 4, length);
  put_text(b, at + 8, data);
  return at + 8;
}
void bitmaps_extension(Bytes& b, uint32_t count, uint32_t reserved, uint64_t dir_size, uint64_t dir_offset) {
  const uint64_t at = add_extension(b, kBitmaps, 24);
  put(b, at, 4, count);
  put(b, at + 4, 4, reserved);
  put(b, at + 8, 8, dir_size);
  put(b, at + 16, 8, dir_offset);
  put(b, 88, 8, 1);  // the bitmaps autoclear bit: the extension is in use
}
// A backing file name right after the extensions.
void backing_name(Bytes& b, const std::string& name, uint32_t size) {
  const uint64_t at = extensions_end(b) + 8;
  put(b, 8, 8, at);
  put(b, 16, 4, size);
  put_text(b, at, name);
}

// The images the damage starts from: made by qemu-img, with data in them.
enum class Base { V3, V2 };

struct HeaderCase {
  std::string name;
  std::function<void(Bytes&)> damage;
  Base base = Base::V3;
  // Empty: check is compared too. Otherwise why it is not (a difference of
  // `check` itself, not of opening the image, which info and convert cover).
  std::string check_differs = "";
  std::string convert_differs = "";
};

std::ostream& operator<<(std::ostream& o, const HeaderCase& c) { return o << c.name; }

class HeaderConformance : public ::testing::TestWithParam<HeaderCase> {
 protected:
  static void SetUpTestSuite() {
    if (!have_program("qemu-img") || !have_program("qemu-io")) return;
    dir_ = new TempDir();
    make_base(dir_->file("base-v3.qcow2"), "compat=1.1");
    make_base(dir_->file("base-v2.qcow2"), "compat=0.10");
    // What a backing file provides differs from the bases' own data.
    const std::string backing = dir_->file("backing.qcow2");
    ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", backing, "1M"}).status, 0);
    qemu_io(backing, "qcow2", {"write -P 0x33 128k 64k"});
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static void make_base(const std::string& path, const std::string& options) {
    ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", "-o", options + ",cluster_size=65536", path, "1M"}).status, 0);
    qemu_io(path, "qcow2", {"write -P 0x5a 0 64k", "write -P 0xa5 960k 64k"});
  }
  static Bytes load(const std::string& path) {
    Bytes b(file_size(path));
    FILE* f = std::fopen(path.c_str(), "rb");
    EXPECT_EQ(std::fread(b.data(), 1, b.size(), f), b.size());
    std::fclose(f);
    return b;
  }
  static void store(const std::string& path, const Bytes& b) {
    FILE* f = std::fopen(path.c_str(), "wb");
    EXPECT_EQ(std::fwrite(b.data(), 1, b.size(), f), b.size());
    std::fclose(f);
  }
  static TempDir* dir_;
};

TempDir* HeaderConformance::dir_ = nullptr;

// Same status, stdout and stderr; qemu's messages name qemu-img inside lines
// too ("run 'qemu-img check -r'"), where keel names itself.
void expect_same(const std::string& what, const RunResult& k, const RunResult& q) {
  EXPECT_EQ(k.status, q.status) << describe("keel-img " + what, k) << "\n" << describe("qemu-img " + what, q);
  EXPECT_EQ(k.out, q.out) << what;
  EXPECT_EQ(k.err, replace_all(q.err, "qemu-img", "keel-img")) << what;
}

TEST_P(HeaderConformance, OpensAndRefusesAsQemu) {
  KEEL_REQUIRE_QEMU();
  const HeaderCase& c = GetParam();
  const std::string image = dir_->file("case-" + c.name + ".qcow2");
  Bytes bytes = load(dir_->file(c.base == Base::V3 ? "base-v3.qcow2" : "base-v2.qcow2"));
  c.damage(bytes);
  store(image, bytes);

  for (const std::vector<std::string>& args : {std::vector<std::string>{"info", "-f", "qcow2", image},
                                              {"info", "-f", "qcow2", "--output=json", image}}) {
    expect_same(join(args), keel_img(args), qemu_img(args));
  }
  if (c.check_differs.empty()) {
    const std::vector<std::string> args{"check", "-f", "qcow2", image};
    expect_same(join(args), keel_img(args), qemu_img(args));
  }
  if (c.convert_differs.empty()) {
    const std::string keel_raw = image + ".keel.raw", qemu_raw = image + ".qemu.raw";
    const auto k = keel_img({"convert", "-f", "qcow2", "-O", "raw", image, keel_raw});
    const auto q = qemu_img({"convert", "-f", "qcow2", "-O", "raw", image, qemu_raw});
    expect_same("convert -O raw " + image, k, q);
    if (k.status == 0 && q.status == 0) {
      EXPECT_TRUE(files_identical(keel_raw, qemu_raw));
    }
  }
}

// qemu's check opens such images in its own repair-friendly way and reports
// the damage as check errors; keel's check (formats/qcow2/check.cpp) is separate work.
const char* kCheckReportsDamage =
    "qemu-img check reports this damage as check errors, keel-img check refuses or words it differently";

std::vector<HeaderCase> header_cases() {
  std::vector<HeaderCase> v;
  auto add = [&](std::string name, std::function<void(Bytes&)> f) { v.push_back({std::move(name), std::move(f)}); };
  auto add_v2 = [&](std::string name, std::function<void(Bytes&)> f) {
    v.push_back({std::move(name), std::move(f), Base::V2});
  };
  auto add_check_differs = [&](std::string name, std::function<void(Bytes&)> f) {
    v.push_back({std::move(name), std::move(f), Base::V3, kCheckReportsDamage});
  };

  // Virtual size: whole sectors only.
  add("size_not_sector_multiple", [](Bytes& b) { put(b, 24, 8, (1 << 20) + 100); });
  add("size_511", [](Bytes& b) { put(b, 24, 8, 511); });
  add("size_1", [](Bytes& b) { put(b, 24, 8, 1); });
  add("size_0", [](Bytes& b) { put(b, 24, 8, 0); });
  add("size_2e62", [](Bytes& b) { put(b, 24, 8, 1ull << 62); });
  add("size_2e62_plus_sector", [](Bytes& b) { put(b, 24, 8, (1ull << 62) + 512); });
  add("size_2e63", [](Bytes& b) { put(b, 24, 8, 1ull << 63); });

  // Backing file name: a C string; empty means none.
  add("backing_name_empty", [](Bytes& b) { backing_name(b, "", 5); });
  add("backing_name_nul_first", [](Bytes& b) { backing_name(b, std::string("\0abcd", 5), 5); });
  add("backing_name_nul_inside", [](Bytes& b) { backing_name(b, std::string("ab\0cdefg", 8), 8); });
  add("backing_name_size_0", [](Bytes& b) { backing_name(b, "", 0); });
  // Read through (convert): the name ends at the NUL, the last format wins.
  add("backing_name_nul_then_junk", [](Bytes& b) { backing_name(b, std::string("backing.qcow2\0junk", 18), 18); });
  add("backing_formats_qcow2_then_raw", [](Bytes& b) {
    add_extension(b, kBackingFormat, 5, "qcow2");
    add_extension(b, kBackingFormat, 3, "raw");
    backing_name(b, "backing.qcow2", 13);
  });
  add("backing_formats_raw_then_qcow2", [](Bytes& b) {
    add_extension(b, kBackingFormat, 3, "raw");
    add_extension(b, kBackingFormat, 5, "qcow2");
    backing_name(b, "backing.qcow2", 13);
  });
  add("backing_offset_0_size_10", [](Bytes& b) { put(b, 16, 4, 10); });
  add("backing_name_inside_header", [](Bytes& b) {
    put(b, 8, 8, 8);
    put(b, 16, 4, 10);
  });
  add("backing_name_over_extensions", [](Bytes& b) {
    put(b, 8, 8, 112);
    put(b, 16, 4, 10);
  });
  add("backing_name_1023", [](Bytes& b) { backing_name(b, std::string(1023, 'x'), 1023); });
  add("backing_name_1024", [](Bytes& b) { backing_name(b, std::string(1024, 'x'), 1024); });
  add("backing_name_crosses_cluster", [](Bytes& b) {
    put(b, 8, 8, kCluster - 4);
    put(b, 16, 4, 10);
  });
  add("backing_offset_past_cluster", [](Bytes& b) {
    put(b, 8, 8, kCluster + 8);
    put(b, 16, 4, 10);
  });
  add("backing_offset_cluster_end", [](Bytes& b) {
    put(b, 8, 8, kCluster);
    put(b, 16, 4, 0);
  });

  // Snapshot table fields.
  add_check_differs("snapshots_at_offset_0", [](Bytes& b) { put(b, 60, 4, 1); });
  add_check_differs("no_snapshots_garbage_offset", [](Bytes& b) { put(b, 64, 8, 0x123456789); });
  add("no_snapshots_aligned_garbage_offset", [](Bytes& b) { put(b, 64, 8, 1ull << 40); });
  add_check_differs("snapshot_offset_unaligned", [](Bytes& b) {
    put(b, 60, 4, 1);
    put(b, 64, 8, 0x30008);
  });
  add_check_differs("snapshot_offset_past_eof", [](Bytes& b) {
    put(b, 60, 4, 1);
    put(b, 64, 8, 1ull << 40);
  });
  add_check_differs("snapshots_65537", [](Bytes& b) {
    put(b, 60, 4, 65537);
    put(b, 64, 8, kCluster);
  });
  add_check_differs("snapshots_65536_garbage", [](Bytes& b) {
    put(b, 60, 4, 65536);
    put(b, 64, 8, kCluster);
  });

  // Feature bits.
  add("autoclear_data_file_raw_without_data_file", [](Bytes& b) { put(b, 88, 8, 2); });
  add("autoclear_bitmaps_without_extension", [](Bytes& b) { put(b, 88, 8, 1); });
  add("autoclear_unknown", [](Bytes& b) { put(b, 88, 8, 1ull << 10); });
  add("compatible_unknown", [](Bytes& b) { put(b, 80, 8, 1ull << 10); });
  add("incompatible_data_file_without_extension", [](Bytes& b) { put(b, 72, 8, 4); });
  add("incompatible_unknown_bit5", [](Bytes& b) { put(b, 72, 8, 1ull << 5); });
  add("incompatible_unknown_named", [](Bytes& b) {
    put(b, 72, 8, 1ull << 9);
    const uint64_t at = add_extension(b, kFeatureTable, 48);
    put(b, at, 1, 0);
    put(b, at + 1, 1, 9);
    put_text(b, at + 2, "future feature");
  });
  add("incompatible_corrupt_and_unknown", [](Bytes& b) { put(b, 72, 8, 2 | 1ull << 5); });
  add("incompatible_corrupt", [](Bytes& b) { put(b, 72, 8, 2); });
  add("incompatible_dirty", [](Bytes& b) { put(b, 72, 8, 1); });
  add("incompatible_compression_with_zlib", [](Bytes& b) { put(b, 72, 8, 8); });
  add("extended_l2_with_4k_clusters", [](Bytes& b) {
    put(b, 72, 8, 16);
    put(b, 20, 4, 12);
  });

  // Header extensions.
  add("extensions_without_end_marker", [](Bytes& b) {
    const uint64_t at = extensions_end(b);
    add_extension(b, kUnknown, static_cast<uint32_t>(kCluster - at - 8));
  });
  add("extensions_padding_reaches_cluster_end", [](Bytes& b) {
    const uint64_t at = extensions_end(b);
    add_extension(b, kUnknown, static_cast<uint32_t>(kCluster - at - 12));
  });
  add("extension_end_marker_in_last_8_bytes", [](Bytes& b) {
    const uint64_t at = extensions_end(b);
    add_extension(b, kUnknown, static_cast<uint32_t>(kCluster - at - 16));
  });
  add("extension_overruns_cluster_by_1", [](Bytes& b) {
    const uint64_t at = extensions_end(b);
    add_extension(b, kUnknown, static_cast<uint32_t>(kCluster - at - 8 + 1));
  });
  add("extension_length_max", [](Bytes& b) { add_extension(b, kUnknown, 0xffffffffu); });
  add("extension_overruns_backing_name", [](Bytes& b) {
    add_extension(b, kUnknown, 64);
    put(b, 8, 8, extensions_end(b) - 32);
    put(b, 16, 4, 4);
  });
  add("backing_format_twice", [](Bytes& b) {
    add_extension(b, kBackingFormat, 5, "qcow2");
    add_extension(b, kBackingFormat, 3, "raw");
    backing_name(b, "missing.img", 11);
  });
  add("unknown_extension_twice", [](Bytes& b) {
    add_extension(b, 0x1234, 1, "a");
    add_extension(b, 0x1234, 1, "b");
  });
  add("feature_table_twice", [](Bytes& b) { add_extension(b, kFeatureTable, 48); });
  add("feature_table_odd_length", [](Bytes& b) { add_extension(b, kFeatureTable, 47); });
  add("unknown_extension_garbage_padding", [](Bytes& b) {
    const uint64_t at = add_extension(b, kUnknown, 3, "abc");
    put(b, at + 3, 5, 0xffffffffffull);
  });
  for (uint32_t length : {0u, 15u, 16u, 1023u, 2000u})
    add("backing_format_length_" + std::to_string(length),
        [length](Bytes& b) { add_extension(b, kBackingFormat, length, "qcow2"); });
  add("bitmaps_extension_short", [](Bytes& b) { add_extension(b, kBitmaps, 16); });
  add("bitmaps_extension_long", [](Bytes& b) { add_extension(b, kBitmaps, 32); });
  add("bitmaps_extension_autoclear_clear", [](Bytes& b) {
    bitmaps_extension(b, 1, 0, 64, 1ull << 40);
    put(b, 88, 8, 0);
  });
  add_v2("bitmaps_extension_v2", [](Bytes& b) { add_extension(b, kBitmaps, 24); });
  add("bitmaps_zero_bitmaps", [](Bytes& b) { bitmaps_extension(b, 0, 0, 64, kCluster); });
  add("bitmaps_65536_bitmaps", [](Bytes& b) { bitmaps_extension(b, 65536, 0, 64, kCluster); });
  add("bitmaps_reserved_field", [](Bytes& b) { bitmaps_extension(b, 1, 1, 64, kCluster); });
  add("bitmaps_directory_huge", [](Bytes& b) { bitmaps_extension(b, 1, 0, 1ull << 40, kCluster); });
  add("bitmaps_directory_64M", [](Bytes& b) { bitmaps_extension(b, 1, 0, 64ull << 20, kCluster); });
  add("bitmaps_directory_empty", [](Bytes& b) { bitmaps_extension(b, 1, 0, 0, kCluster); });
  add("bitmaps_directory_unaligned", [](Bytes& b) { bitmaps_extension(b, 1, 0, 64, kCluster + 8); });
  add("crypto_extension_without_encryption", [](Bytes& b) { add_extension(b, kCrypto, 16); });
  add("crypto_extension_short", [](Bytes& b) {
    put(b, 32, 4, 2);
    add_extension(b, kCrypto, 8);
  });
  add("data_file_extension_without_bit", [](Bytes& b) { add_extension(b, kDataFile, 4, "data"); });
  add("data_file_missing", [](Bytes& b) {
    add_extension(b, kDataFile, 4, "data");
    put(b, 72, 8, 4);
  });
  add("data_file_raw_missing", [](Bytes& b) {
    add_extension(b, kDataFile, 4, "data");
    put(b, 72, 8, 4);
    put(b, 88, 8, 2);
  });
  add("unknown_extension", [](Bytes& b) { add_extension(b, kUnknown, 3, "abc"); });
  add_v2("v2_backing_format", [](Bytes& b) {
    add_extension(b, kBackingFormat, 3, "raw");
    backing_name(b, "missing.img", 11);
  });
  add_v2("v2_unknown_extension", [](Bytes& b) { add_extension(b, kUnknown, 3, "abc"); });
  add_v2("v2_extension_overrun", [](Bytes& b) { add_extension(b, kUnknown, 0xfffffff0u); });

  // Header length and the fields it covers.
  for (uint32_t length : {0u, 72u, 100u, 104u, 105u, 108u, 112u, 120u, 128u, 65524u, 65528u, 65536u, 65537u, 65544u})
    add("header_length_" + std::to_string(length), [length](Bytes& b) { put(b, 100, 4, length); });
  add("header_length_104_with_zstd_byte", [](Bytes& b) {
    put(b, 100, 4, 104);
    put(b, 104, 1, 1);
  });
  add("compression_type_zstd_without_bit", [](Bytes& b) { put(b, 104, 1, 1); });
  add("compression_type_zstd", [](Bytes& b) {
    put(b, 104, 1, 1);
    put(b, 72, 8, 8);
  });
  add("compression_type_2", [](Bytes& b) { put(b, 104, 1, 2); });
  add("compression_type_2_and_refcount_order_7", [](Bytes& b) {
    put(b, 104, 1, 2);
    put(b, 96, 4, 7);
  });
  add("header_padding_garbage", [](Bytes& b) { put(b, 107, 1, 0xff); });
  add("refcount_order_7", [](Bytes& b) { put(b, 96, 4, 7); });
  add("refcount_order_0", [](Bytes& b) { put(b, 96, 4, 0); });
  add("crypt_method_3", [](Bytes& b) { put(b, 32, 4, 3); });
  for (uint32_t version : {0u, 1u, 4u})
    add("version_" + std::to_string(version), [version](Bytes& b) { put(b, 4, 4, version); });
  for (uint32_t bits : {8u, 22u})
    add("cluster_bits_" + std::to_string(bits), [bits](Bytes& b) { put(b, 20, 4, bits); });
  add("magic", [](Bytes& b) { put(b, 0, 4, 0x12345678); });
  add("truncated_to_8_bytes", [](Bytes& b) { b.resize(8); });
  add("truncated_to_72_bytes", [](Bytes& b) { b.resize(72); });
  add_check_differs("truncated_to_104_bytes", [](Bytes& b) { b.resize(104); });
  v.push_back({"v2_truncated_to_72_bytes", [](Bytes& b) { b.resize(72); }, Base::V2, kCheckReportsDamage});

  // Tables: size and alignment are checked, the place in the file is not.
  add("l1_size_0", [](Bytes& b) { put(b, 36, 4, 0); });
  add("l1_size_too_large", [](Bytes& b) { put(b, 36, 4, 0x10000000); });
  add("l1_offset_unaligned", [](Bytes& b) { put(b, 40, 8, 0x30200); });
  add_check_differs("l1_offset_past_eof", [](Bytes& b) { put(b, 40, 8, 1ull << 40); });
  add_check_differs("reftable_offset_past_eof", [](Bytes& b) { put(b, 48, 8, 1ull << 40); });
  add_check_differs("reftable_clusters_0", [](Bytes& b) { put(b, 56, 4, 0); });
  add("reftable_clusters_too_many", [](Bytes& b) { put(b, 56, 4, 0x10000000); });
  add("reftable_offset_unaligned", [](Bytes& b) { put(b, 48, 8, 0x10200); });
  // Which of two problems qemu names first.
  add_check_differs("reftable_clusters_0_and_unaligned", [](Bytes& b) {
    put(b, 56, 4, 0);
    put(b, 48, 8, 0x10200);
  });
  add("l1_size_0_and_unaligned", [](Bytes& b) {
    put(b, 36, 4, 0);
    put(b, 40, 8, 0x30200);
  });
  add("l1_too_large_and_size_2e62", [](Bytes& b) {
    put(b, 36, 4, 0x10000000);
    put(b, 24, 8, 1ull << 62);
  });
  add("size_2e62_and_l1_unaligned", [](Bytes& b) {
    put(b, 24, 8, 1ull << 62);
    put(b, 40, 8, 0x30200);
  });
  add_check_differs("snapshot_and_l1_unaligned", [](Bytes& b) {
    put(b, 60, 4, 1);
    put(b, 64, 8, 0x30008);
    put(b, 40, 8, 0x30200);
  });
  add("snapshots_too_many_and_reftable_unaligned", [](Bytes& b) {
    put(b, 60, 4, 70000);
    put(b, 48, 8, 0x10200);
  });
  add("bad_backing_format_and_l1_size_0", [](Bytes& b) {
    add_extension(b, kBackingFormat, 20);
    put(b, 36, 4, 0);
  });
  add("bad_backing_format_and_long_backing_name", [](Bytes& b) {
    add_extension(b, kBackingFormat, 20);
    put(b, 8, 8, 1000);
    put(b, 16, 4, 2000);
  });
  add("unknown_bit_and_extension_overrun", [](Bytes& b) {
    put(b, 72, 8, 1ull << 5);
    add_extension(b, kUnknown, 0xffffff);
  });

  // Deliberately different, so not compared:
  // - crypt_method 2 (LUKS) without a crypto header extension: qemu-img info
  //   crashes (SIGSEGV), check/convert say "Missing CRYPTO header for crypt
  //   method 2"; keel refuses with its own message everywhere.
  // - crypt_method 1 (AES): info matches, but qemu's check and convert ask for
  //   a key secret where keel does not support encryption at all.
  // - the L1 table at offset 0 (the header read as L1 entries): opens alike,
  //   but qemu's convert reads L2 tables past the end as zeros, keel refuses.
  // - the extended L2 bit set on an image written without it: opens alike, but
  //   qemu's check and reads refuse the L2 entries (extended L2 validation is separate work).
  v.push_back({"extended_l2_with_64k_clusters", [](Bytes& b) { put(b, 72, 8, 16); }, Base::V3,
               "the L2 entries' subcluster bitmaps are validated by check.cpp",
               "reads do not validate subcluster bitmaps yet"});
  v.push_back({"aes_encryption", [](Bytes& b) { put(b, 32, 4, 1); }, Base::V3, "qemu wants a key secret",
               "keel cannot decrypt"});
  v.push_back({"l1_offset_0", [](Bytes& b) { put(b, 40, 8, 0); }, Base::V3, kCheckReportsDamage,
               "the read path refuses L2 tables past the end of the file"});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Header, HeaderConformance, ::testing::ValuesIn(header_cases()),
                         [](const auto& info) { return info.param.name; });

// Names are untrusted bytes; qemu's JSON escapes everything outside printable
// ASCII as \uXXXX with upper-case digits (surrogate pairs above U+FFFF).
TEST(HeaderNames, NonAsciiNamesPrintedAsQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir tmp;
  const std::string image = tmp.file("img.qcow2");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", image, "1M"}).status, 0);
  ASSERT_EQ(qemu_img({"snapshot", "-c", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80x", image}).status, 0);
  ASSERT_EQ(qemu_img({"rebase", "-u", "-b", "b\xc3\xa4" "cking\x7f", "-F", "raw", image}).status, 0);
  for (const std::vector<std::string>& args : {std::vector<std::string>{"info", image}, {"info", "--output=json", image}})
    same_as_qemu(args);
}

// create lays out the first cluster as qemu does: the feature name table only
// with clusters above 4 KiB, the backing format first, the name after the end marker.
struct LayoutCase {
  std::string name;
  std::vector<std::string> args;  // after "create -f qcow2"; the image is "img", base is "base.qcow2"
};

std::ostream& operator<<(std::ostream& o, const LayoutCase& c) { return o << join(c.args); }

class CreateLayout : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(CreateLayout, SameHeaderClusterAsQemu) {
  KEEL_REQUIRE_QEMU();
  const LayoutCase& c = GetParam();
  TempDir tmp;
  const std::string keel_dir = tmp.file("keel"), qemu_dir = tmp.file("qemu");
  for (const auto& d : {keel_dir, qemu_dir}) {
    std::filesystem::create_directory(d);
    ASSERT_EQ(qemu_img_in(d, {"create", "-q", "-f", "qcow2", "base.qcow2", "1M"}).status, 0);
    qemu_io(d + "/base.qcow2", "qcow2", {"write -P 0x5a 0 64k"});
  }
  std::vector<std::string> args{"create", "-f", "qcow2"};
  args.insert(args.end(), c.args.begin(), c.args.end());
  args.push_back("img");
  args.push_back("1M");
  const auto k = keel_img_in(keel_dir, args);
  const auto q = qemu_img_in(qemu_dir, args);
  EXPECT_EQ(k.status, q.status) << describe("keel-img " + join(args), k) << "\n" << describe("qemu-img", q);
  EXPECT_EQ(k.out, q.out);
  EXPECT_EQ(k.err, as_keel_stderr(q.err));
  EXPECT_EQ(std::filesystem::exists(keel_dir + "/img"), std::filesystem::exists(qemu_dir + "/img"));
  if (q.status != 0) return;
  EXPECT_TRUE(files_identical(keel_dir + "/img", qemu_dir + "/img"));
  for (const std::vector<std::string>& cmd : {std::vector<std::string>{"info", "img"}, {"check", "img"}}) {
    EXPECT_EQ(qemu_img_in(keel_dir, cmd).out, qemu_img_in(qemu_dir, cmd).out) << join(cmd);
    EXPECT_EQ(keel_img_in(keel_dir, cmd).out, qemu_img_in(qemu_dir, cmd).out) << "keel-img " << join(cmd);
  }
  // qemu reads through the backing file keel's header names.
  if (std::find(c.args.begin(), c.args.end(), "base.qcow2") != c.args.end())
    qemu_io(keel_dir + "/img", "qcow2", {"read -P 0x5a 0 64k"});
}

std::vector<LayoutCase> layout_cases() {
  std::vector<LayoutCase> v;
  for (const char* cluster : {"512", "1k", "4k", "8k", "64k"}) {
    const std::string o = std::string("cluster_size=") + cluster;
    v.push_back({std::string("plain_") + cluster, {"-o", o}});
    v.push_back({std::string("backing_") + cluster, {"-o", o, "-b", "base.qcow2", "-F", "qcow2"}});
    v.push_back({std::string("v2_backing_") + cluster, {"-o", o + ",compat=0.10", "-b", "base.qcow2", "-F", "qcow2"}});
  }
  // The longest names that fit a 512-byte header cluster, and one more byte.
  v.push_back({"backing_name_fills_512", {"-o", "cluster_size=512", "-u", "-b", std::string(376, 'b'), "-F", "qcow2"}});
  v.push_back(
      {"backing_name_overflows_512", {"-o", "cluster_size=512", "-u", "-b", std::string(377, 'b'), "-F", "qcow2"}});
  v.push_back({"backing_name_1023", {"-u", "-b", std::string(1023, 'b'), "-F", "qcow2"}});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Create, CreateLayout, ::testing::ValuesIn(layout_cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace keel::test::interop
