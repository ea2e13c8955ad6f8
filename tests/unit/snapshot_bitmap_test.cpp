// The pieces of qemu-nbd -l and -B that need no image: snapshot references
// and their lookup, bitmap table decoding and the runs of a bitmap's bits.
#include <gtest/gtest.h>

#include <cstring>

#include "base/endian.h"
#include "base/error.h"
#include "block/snapshot_ref.h"
#include "formats/qcow2/dirty_bitmap.h"
#include "formats/qcow2/snapshot_table.h"

using namespace keel;
using namespace keel::qcow2;

namespace {

Snapshot named(std::string id, std::string name) {
  Snapshot s{};
  s.id = std::move(id);
  s.name = std::move(name);
  return s;
}

// Ids and names chosen so that an id-or-name lookup must prefer ids: snapshot "1" is also named "2".
SnapshotTable table() {
  SnapshotTable t;
  t.snapshots = {named("1", "2"), named("2", "base"), named("3", "base")};
  return t;
}

std::string found(const block::SnapshotRef& ref) {
  const SnapshotTable t = table();
  const Snapshot* s = find_snapshot(t, ref);
  return s ? s->id : "none";
}

std::vector<std::byte> table_bytes(std::initializer_list<uint64_t> words) {
  std::vector<std::byte> bytes(words.size() * 8);
  size_t i = 0;
  for (uint64_t w : words) store_be<uint64_t>(bytes.data() + 8 * i++, w);
  return bytes;
}

std::string decode_error(std::initializer_list<uint64_t> words) {
  try {
    decode_bitmap_table(table_bytes(words), 65536, "b0");
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

}  // namespace

TEST(SnapshotRef, ParsesQemuSyntax) {
  const block::SnapshotRef bare = block::parse_snapshot_ref("snap1");
  EXPECT_TRUE(bare.id_or_name);
  EXPECT_EQ(bare.id, "snap1");
  EXPECT_FALSE(bare.name);
  const block::SnapshotRef both = block::parse_snapshot_ref("snapshot.id=1,snapshot.name=a b");
  EXPECT_FALSE(both.id_or_name);
  EXPECT_EQ(both.id, "1");
  EXPECT_EQ(both.name, "a b");
  // A later key overrides an earlier one; an empty value is a value.
  EXPECT_EQ(block::parse_snapshot_ref("snapshot.id=1,snapshot.id=2").id, "2");
  EXPECT_EQ(block::parse_snapshot_ref("snapshot.name=").name, "");
  EXPECT_THROW(block::parse_snapshot_ref("snapshot.foo=1"), Error);
  EXPECT_THROW(block::parse_snapshot_ref("snapshot.id=1,other=2"), Error);
}

TEST(SnapshotLookup, ByIdByNameAndIdOrNameAsQemu) {
  EXPECT_EQ(found({.id = "2"}), "2");
  EXPECT_EQ(found({.name = "2"}), "1");
  EXPECT_EQ(found({.name = "base"}), "2");  // the first of equal names
  EXPECT_EQ(found({.id = "3", .name = "base"}), "3");
  EXPECT_EQ(found({.id = "1", .name = "base"}), "none");   // both must match
  EXPECT_EQ(found({.id = "2", .id_or_name = true}), "2");  // an id before a name
  EXPECT_EQ(found({.id = "base", .id_or_name = true}), "2");
  EXPECT_EQ(found({.id = "nosuch", .id_or_name = true}), "none");
  EXPECT_EQ(found({}), "none");
  EXPECT_EQ(found({.id = ""}), "none");
}

TEST(BitmapTable, DecodesEntryKinds) {
  const auto entries = decode_bitmap_table(table_bytes({0, 1, 0x30000}), 65536, "b0");
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].kind, BitmapTableEntry::Kind::AllClear);
  EXPECT_EQ(entries[1].kind, BitmapTableEntry::Kind::AllSet);
  EXPECT_EQ(entries[2].kind, BitmapTableEntry::Kind::Stored);
  EXPECT_EQ(entries[2].offset, 0x30000u);
}

TEST(BitmapTable, RefusesDamagedEntriesWithQemuWording) {
  const std::string message = "Could not read bitmap_table table from image for bitmap 'b0': Invalid argument";
  EXPECT_EQ(decode_error({0x30200}), message);                 // unaligned data cluster
  EXPECT_EQ(decode_error({0x30000 | 2}), message);             // reserved low bits
  EXPECT_EQ(decode_error({0x30000 | (1ull << 60)}), message);  // reserved high bits
  EXPECT_EQ(decode_error({0x30000 | 1}), message);             // all-set flag with a data cluster
  EXPECT_EQ(decode_error({0, 1}), "");
}

TEST(BitmapTable, EntriesCoverTheDiskAtTheGranularity) {
  // 16 MiB at 4 KiB: 4096 bits, 512 bytes: one 64 KiB cluster; 1 TiB at 512 bytes: 256 MiB of bits.
  EXPECT_EQ(bitmap_table_entries(16 << 20, 4096, 65536), 1u);
  EXPECT_EQ(bitmap_table_entries(1ull << 40, 512, 65536), 4096u);
  EXPECT_EQ(bitmap_table_entries(0, 65536, 65536), 0u);
  EXPECT_EQ(bitmap_table_entries(65536ull * 8 * 65536 + 1, 65536, 65536), 2u);
}

TEST(BitmapBits, RunsFollowTheBitsAndStopAtTheDiskEnd) {
  // 100 granules of 512 bytes and a partial one: 51200 + 100 bytes.
  BitmapBits bits(51300, 512);
  bits.bytes()[0] = std::byte{0x06};  // granules 1 and 2
  bits.bytes()[2] = std::byte{0xff};  // granules 16..23
  bits.bytes()[3] = std::byte{0x01};  // granule 24
  EXPECT_EQ(bits.run_at(0, 51300).length, 512u);
  EXPECT_FALSE(bits.run_at(0, 51300).dirty);
  EXPECT_EQ(bits.run_at(512, 51300 - 512).length, 1024u);
  EXPECT_TRUE(bits.run_at(700, 10000).dirty);
  EXPECT_EQ(bits.run_at(700, 10000).length, 1536u - 700);  // from inside a granule
  EXPECT_EQ(bits.run_at(1536, 49764).length, 16 * 512u - 1536);
  EXPECT_EQ(bits.run_at(16 * 512, 100000).length, 9 * 512u);               // across a whole 0xff byte
  EXPECT_EQ(bits.run_at(16 * 512, 100).length, 100u);                      // bounded by the query
  EXPECT_EQ(bits.run_at(25 * 512, 1ull << 30).length, 51300u - 25 * 512);  // bounded by the disk
  bits.set(51250, 50);                                                     // the last, partial granule
  EXPECT_TRUE(bits.run_at(51200, 100).dirty);
  EXPECT_EQ(bits.run_at(51200, 100).length, 100u);
  bits.set(51300, 4096);  // past the end: nothing
  bits.set(0, 1);
  EXPECT_TRUE(bits.run_at(0, 51300).dirty);
  EXPECT_EQ(bits.run_at(0, 51300).length, 3 * 512u);
}
