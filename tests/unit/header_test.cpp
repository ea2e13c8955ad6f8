#include <gtest/gtest.h>

#include <cstring>

#include "base/endian.h"
#include "formats/qcow2/header.h"
#include "formats/qcow2/layout.h"

using namespace keel;
using namespace keel::qcow2;

namespace {

Header sample() {
  Header h;
  h.version = 3;
  h.cluster_bits = 16;
  h.size = 1 << 30;
  h.l1_size = 2;
  h.l1_table_offset = 0x30000;
  h.refcount_table_offset = 0x10000;
  h.refcount_table_clusters = 1;
  h.header_length = 112;
  h.extensions.push_back(feature_table_extension());
  return h;
}

std::string parse_error(std::vector<std::byte> bytes) {
  try {
    parse_header(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Qcow2Header, RoundTripsWithExtensions) {
  Header h = sample();
  h.extensions.push_back({0x12345678, {std::byte{1}, std::byte{2}, std::byte{3}}});  // unknown: kept
  h.compatible_features = kCompatLazyRefcounts;
  auto bytes = serialize_header(h);
  ASSERT_EQ(bytes.size(), 65536u);
  Header p = parse_header(bytes);
  EXPECT_EQ(p.size, h.size);
  EXPECT_EQ(p.l1_table_offset, h.l1_table_offset);
  EXPECT_EQ(p.refcount_order, 4u);
  EXPECT_EQ(p.header_length, 112u);
  ASSERT_EQ(p.extensions.size(), 2u);
  EXPECT_EQ(p.extensions[1].type, 0x12345678u);
  EXPECT_EQ(p.extensions[1].data.size(), 3u);
  EXPECT_EQ(serialize_header(p), bytes);
}

TEST(Qcow2Header, RejectsEachInvalidField) {
  auto bytes = serialize_header(sample());
  auto with = [&](size_t offset, auto value) {
    auto b = bytes;
    store_be(b.data() + offset, value);
    return parse_error(b);
  };
  EXPECT_NE(with(0, uint32_t{0x12345678}).find("not in qcow2 format"), std::string::npos);
  EXPECT_NE(with(4, uint32_t{1}).find("Unsupported qcow2 version 1"), std::string::npos);
  EXPECT_NE(with(4, uint32_t{4}).find("Unsupported qcow2 version 4"), std::string::npos);
  EXPECT_NE(with(20, uint32_t{8}).find("Unsupported cluster size"), std::string::npos);
  EXPECT_NE(with(20, uint32_t{22}).find("Unsupported cluster size"), std::string::npos);
  EXPECT_NE(with(36, uint32_t{1}).find("L1 table is too small"), std::string::npos);
  EXPECT_NE(with(36, uint32_t{0x80000000}).find("Active L1 table too large"), std::string::npos);
  EXPECT_NE(with(40, uint64_t{0x30001}).find("Active L1 table offset invalid"), std::string::npos);
  EXPECT_NE(with(56, uint32_t{0xffffffff}).find("Reference count table too large"), std::string::npos);
  EXPECT_NE(with(56, uint32_t{0}).find("Image does not contain a reference count table"), std::string::npos);
  EXPECT_NE(with(72, uint64_t{1} << 40).find("Unknown incompatible feature: 10000000000"), std::string::npos);
  EXPECT_NE(with(96, uint32_t{7}).find("may not exceed 64 bits"), std::string::npos);
  EXPECT_NE(with(100, uint32_t{100}).find("qcow2 header too short"), std::string::npos);
  EXPECT_NE(with(100, uint32_t{0x20000}).find("exceeds cluster size"), std::string::npos);
  EXPECT_NE(with(60, uint32_t{70000}).find("Snapshot table too large"), std::string::npos);
  EXPECT_NE(with(64, uint64_t{0x123}).find("Snapshot table offset invalid"), std::string::npos);
  EXPECT_NE(parse_error(std::vector<std::byte>(bytes.begin(), bytes.begin() + 40)).find("truncated"), std::string::npos);
}

TEST(Qcow2Header, ExtensionOverrunIsRejected) {
  Header h = sample();
  auto bytes = serialize_header(h);
  // The first extension (feature table) claims more bytes than the cluster holds.
  store_be<uint32_t>(bytes.data() + 112 + 4, 0x7fffffff);
  EXPECT_NE(parse_error(bytes).find("Header extension too large"), std::string::npos);
}

TEST(Qcow2Header, SizeIsWholeSectors) {
  auto bytes = serialize_header(sample());
  store_be<uint64_t>(bytes.data() + 24, (uint64_t{1} << 30) - 1);
  EXPECT_EQ(parse_header(bytes).size, (uint64_t{1} << 30) - 512);
}

TEST(Qcow2Header, BackingNameEndsAtNul) {
  Header h = sample();
  h.backing_file = std::string("ab\0cd", 5);
  auto bytes = serialize_header(h);
  EXPECT_EQ(parse_header(bytes).backing_file, "ab");
  bytes[load_be<uint64_t>(bytes.data() + 8)] = std::byte{0};
  EXPECT_TRUE(parse_header(bytes).backing_file.empty());
}

TEST(Qcow2Header, RepeatedExtensionsAreKeptAndTheLastBackingFormatWins) {
  Header h = sample();
  auto format = [](const char* name) {
    return HeaderExtension{kExtBackingFormat,
                           std::vector<std::byte>(reinterpret_cast<const std::byte*>(name),
                                                  reinterpret_cast<const std::byte*>(name) + std::strlen(name))};
  };
  h.extensions.push_back(format("raw"));
  h.extensions.push_back(format("qcow2"));
  EXPECT_EQ(parse_header(serialize_header(h)).backing_format(), "qcow2");
}

TEST(Qcow2Header, UnknownFeatureIsNamedFromTheFeatureTable) {
  Header h = sample();
  h.incompatible_features = 1ull << 7;
  HeaderExtension table{kExtFeatureTable, std::vector<std::byte>(48)};
  table.data[1] = std::byte{7};
  std::memcpy(table.data.data() + 2, "future feature", 14);
  h.extensions = {table};
  EXPECT_NE(parse_error(serialize_header(h)).find("future feature"), std::string::npos);
}

TEST(Qcow2Layout, CompressedDescriptorRoundTrip) {
  Header h = sample();
  Geometry g(h);
  for (uint64_t offset : {0x50000ull, 0x50123ull, 0x12345677ull}) {
    for (uint64_t length : {1ull, 511ull, 512ull, 4000ull, 65535ull}) {
      L2Entry e = L2Entry::compressed_descriptor(g, offset, length);
      EXPECT_EQ(e.kind(g), ClusterKind::Compressed);
      EXPECT_EQ(e.compressed_offset(g), offset);
      // The stored length covers the data, rounded to the end of its last sector.
      EXPECT_GE(e.compressed_length(g), length);
      EXPECT_EQ((offset + e.compressed_length(g)) % 512, 0u);
    }
  }
}

TEST(Qcow2Layout, ExtendedL2SubclusterKinds) {
  Header h = sample();
  h.incompatible_features |= kIncompatExtendedL2;
  Geometry g(h);
  EXPECT_EQ(g.l2_entries, 4096u);
  EXPECT_EQ(g.subcluster_size, 2048u);
  L2Entry e{0x70000 | kFlagCopied, (1ull << 3) | (1ull << (32 + 4))};
  EXPECT_EQ(subcluster_kind(e, g, 3), SubclusterKind::Data);
  EXPECT_EQ(subcluster_kind(e, g, 4), SubclusterKind::Zero);
  EXPECT_EQ(subcluster_kind(e, g, 5), SubclusterKind::Unallocated);
}
