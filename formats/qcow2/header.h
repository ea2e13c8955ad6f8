// The qcow2 header and its extensions: parsed and validated in one place
// before any other part of the driver trusts a field, and serialised back with
// unknown extensions preserved byte for byte.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace keel::qcow2 {

constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
constexpr uint32_t kV2HeaderLength = 72;
constexpr uint32_t kV3HeaderLength = 104;
constexpr uint32_t kMinClusterBits = 9;
constexpr uint32_t kMaxClusterBits = 21;
constexpr uint64_t kMaxL1Bytes = 32ull << 20;        // qemu's QCOW_MAX_L1_SIZE
constexpr uint64_t kMaxRefTableBytes = 8ull << 20;   // qemu's QCOW_MAX_REFTABLE_SIZE
constexpr uint32_t kMaxSnapshots = 65536;
constexpr uint32_t kMaxBackingNameLength = 1023;
constexpr uint32_t kMaxBackingFormatLength = 16;  // qemu's buffer, with its terminating NUL
constexpr uint64_t kSnapshotHeaderSize = 40;      // fixed part of a snapshot table entry
constexpr uint32_t kCryptAes = 1;
constexpr uint32_t kCryptLuks = 2;

// Feature bits.
constexpr uint64_t kIncompatDirty = 1ull << 0;
constexpr uint64_t kIncompatCorrupt = 1ull << 1;
constexpr uint64_t kIncompatDataFile = 1ull << 2;
constexpr uint64_t kIncompatCompression = 1ull << 3;
constexpr uint64_t kIncompatExtendedL2 = 1ull << 4;
constexpr uint64_t kIncompatKnown = (1ull << 5) - 1;
constexpr uint64_t kCompatLazyRefcounts = 1ull << 0;
constexpr uint64_t kAutoclearBitmaps = 1ull << 0;
constexpr uint64_t kAutoclearDataFileRaw = 1ull << 1;

// Header extension types.
constexpr uint32_t kExtEnd = 0;
constexpr uint32_t kExtBackingFormat = 0xe2792aca;
constexpr uint32_t kExtFeatureTable = 0x6803f857;
constexpr uint32_t kExtBitmaps = 0x23852875;
constexpr uint32_t kExtCryptoHeader = 0x0537be77;
constexpr uint32_t kExtDataFile = 0x44415441;

enum class CompressionType : uint8_t { Zlib = 0, Zstd = 1 };

struct HeaderExtension {
  uint32_t type;
  std::vector<std::byte> data;
};

struct BitmapsExtension {
  uint32_t nb_bitmaps;
  uint64_t directory_size;
  uint64_t directory_offset;
};

struct Header {
  uint32_t version = 3;
  uint64_t backing_file_offset = 0;
  uint32_t backing_file_size = 0;
  uint32_t cluster_bits = 16;
  uint64_t size = 0;
  uint32_t crypt_method = 0;
  uint32_t l1_size = 0;
  uint64_t l1_table_offset = 0;
  uint64_t refcount_table_offset = 0;
  uint32_t refcount_table_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  uint64_t incompatible_features = 0;
  uint64_t compatible_features = 0;
  uint64_t autoclear_features = 0;
  uint32_t refcount_order = 4;
  uint32_t header_length = kV3HeaderLength;
  CompressionType compression_type = CompressionType::Zlib;

  // Extensions in file order, including ones keel does not interpret.
  std::vector<HeaderExtension> extensions;
  std::string backing_file;

  uint64_t cluster_size() const { return uint64_t{1} << cluster_bits; }
  bool extended_l2() const { return incompatible_features & kIncompatExtendedL2; }
  uint32_t refcount_bits() const { return 1u << refcount_order; }
  std::optional<std::string> backing_format() const;
  std::optional<BitmapsExtension> bitmaps() const;
  std::optional<std::string> data_file() const;
};

// Parses and validates the header, accepting and refusing what qemu 7.2 does
// with its messages. `head` holds at least the first cluster, zeros past the
// end of the file (as qemu reads them). Raises with a message naming the bad field.
Header parse_header(std::span<const std::byte> head);

// qemu opens images whose L1 or refcount table lies past the end of the file
// (reading zeros); keel refuses to write to one, as its allocations would be wrong.
void check_tables_inside_file(const Header& header, uint64_t file_size);

// Serialises the header, its extensions and the backing file name into one
// cluster-sized buffer. Raises if they do not fit.
std::vector<std::byte> serialize_header(const Header& header);

// The feature name table qemu writes into new images.
HeaderExtension feature_table_extension();

// Names of set bits in `incompatible_features` that keel does not know, as qemu lists them.
std::string unknown_incompatible_features(const Header& header);

}  // namespace keel::qcow2
