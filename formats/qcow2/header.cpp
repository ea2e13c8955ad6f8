#include "formats/qcow2/header.h"

#include <algorithm>
#include <cstring>

#include "base/endian.h"
#include "base/error.h"
#include "base/warning.h"

namespace keel::qcow2 {

namespace {

constexpr size_t kFeatureNameLength = 46;

// The last extension of a type: a repeated one replaces the earlier, as in qemu.
std::optional<std::vector<std::byte>> find_extension(const Header& h, uint32_t type) {
  for (auto e = h.extensions.rbegin(); e != h.extensions.rend(); ++e)
    if (e->type == type) return e->data;
  return std::nullopt;
}

std::string bytes_to_string(const std::vector<std::byte>& data) {
  std::string s(reinterpret_cast<const char*>(data.data()), data.size());
  return s.substr(0, s.find('\0'));
}

}  // namespace

std::optional<std::string> Header::backing_format() const {
  auto e = find_extension(*this, kExtBackingFormat);
  if (!e) return std::nullopt;
  return bytes_to_string(*e);
}

std::optional<std::string> Header::data_file() const {
  auto e = find_extension(*this, kExtDataFile);
  if (!e) return std::nullopt;
  return bytes_to_string(*e);
}

std::optional<BitmapsExtension> Header::bitmaps() const {
  auto e = find_extension(*this, kExtBitmaps);
  if (!e || e->size() < 24) return std::nullopt;
  BigEndianReader r(*e, "bitmaps extension");
  return BitmapsExtension{r.get<uint32_t>(0), r.get<uint64_t>(8), r.get<uint64_t>(16)};
}

namespace {

constexpr uint32_t kMaxBitmaps = 65535;
constexpr uint64_t kMaxBitmapDirectoryBytes = 1024ull * kMaxBitmaps;  // qemu's QCOW2_MAX_BITMAP_DIRECTORY_SIZE

// Bitmaps are only trusted while the autoclear bit says they are in sync;
// otherwise the extension is kept but not interpreted, with qemu's warning.
void check_bitmaps_extension(const Header& h) {
  if (!(h.autoclear_features & kAutoclearBitmaps)) {
    if (h.version < 3)
      warn("This qcow2 v2 image contains bitmaps, but they may have been modified by a program without "
           "persistent bitmap support; so now they must all be considered inconsistent");
    else
      warn("a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent");
    // Without a newline, as qemu prints it; naming keel-img whichever tool opened the image, as qemu names qemu-img.
    note("Some clusters may be leaked, run 'keel-img check -r' on the image file to fix.");
    return;
  }
  const BigEndianReader r(h.extensions.back().data, "bitmaps extension");
  const BitmapsExtension ext = *h.bitmaps();
  if (r.get<uint32_t>(4) != 0) raise(EINVAL, "bitmaps_ext: Reserved field is not zero");
  if (ext.nb_bitmaps == 0) raise(EINVAL, "found bitmaps extension with zero bitmaps");
  if (ext.nb_bitmaps > kMaxBitmaps)
    raise(EINVAL, "bitmaps_ext: Image has {} bitmaps, exceeding the QEMU supported maximum of {}", ext.nb_bitmaps,
          kMaxBitmaps);
  if (ext.directory_offset % h.cluster_size() != 0) raise(EINVAL, "bitmaps_ext: invalid bitmap directory offset");
  if (ext.directory_size > kMaxBitmapDirectoryBytes)
    raise(EINVAL, "bitmaps_ext: bitmap directory size ({}) exceeds the maximum supported size ({})", ext.directory_size,
          kMaxBitmapDirectoryBytes);
}

// qemu's qcow2_validate_table(): bounded size and a cluster aligned offset.
// The table's place in the file is not checked: past the end reads as zeros.
void validate_table(const Header& h, const char* what, uint64_t offset, uint64_t entries, uint64_t entry_size,
                    uint64_t max_bytes) {
  if (entries > max_bytes / entry_size) raise(EFBIG, "{} too large", what);
  const uint64_t bytes = entries * entry_size;
  if (offset > uint64_t{INT64_MAX} - bytes || offset % h.cluster_size() != 0) raise(EINVAL, "{} offset invalid", what);
}

void check_compression_type(const Header& h) {
  if (h.compression_type != CompressionType::Zlib && h.compression_type != CompressionType::Zstd)
    raise(ENOTSUP, "qcow2: unknown compression type: {}", unsigned(h.compression_type));
  const bool flagged = h.incompatible_features & kIncompatCompression;
  if (h.compression_type == CompressionType::Zlib && flagged)
    raise(EINVAL, "qcow2: Compression type incompatible feature bit must not be set");
  if (h.compression_type != CompressionType::Zlib && !flagged)
    raise(EINVAL, "qcow2: Compression type incompatible feature bit must be set");
}

// The extension area runs from the end of the header to the backing file name
// (if any) or the end of the first cluster; extensions are taken in file
// order, and an area without an end marker simply ends. As in qemu, repeated
// extensions are accepted (the last backing format wins) and only the known
// types are checked.
void parse_extensions(Header& h, const BigEndianReader& r) {
  const uint64_t end = h.backing_file_offset ? h.backing_file_offset : h.cluster_size();
  uint64_t pos = h.header_length;
  while (pos < end) {
    const uint32_t type = r.get<uint32_t>(pos);
    const uint32_t len = r.get<uint32_t>(pos + 4);
    pos += 8;
    if (pos > end || len > end - pos) raise(EINVAL, "Header extension too large");
    if (type == kExtEnd) return;
    switch (type) {
      case kExtBackingFormat:
        if (len >= kMaxBackingFormatLength)
          raise(EINVAL, "ERROR: ext_backing_format: len={} too large (>={})", len, kMaxBackingFormatLength);
        break;
      case kExtCryptoHeader:
        if (h.crypt_method != kCryptLuks)
          raise(EINVAL, "CRYPTO header extension only expected with LUKS encryption method");
        if (len != 16) raise(EINVAL, "CRYPTO header extension size {}, but expected size 16", len);
        break;
      case kExtBitmaps:
        if (len != 24) raise(EINVAL, "bitmaps_ext: Invalid extension length");
        break;
    }
    auto bytes = r.get_bytes(pos, len);
    h.extensions.push_back({type, std::vector<std::byte>(bytes.begin(), bytes.end())});
    if (type == kExtBitmaps) check_bitmaps_extension(h);
    pos += (len + 7) & ~uint64_t{7};
  }
}

}  // namespace

Header parse_header(std::span<const std::byte> head) {
  BigEndianReader r(head, "qcow2 header");
  if (r.get<uint32_t>(0) != kMagic) raise(EINVAL, "Image is not in qcow2 format");
  Header h;
  h.version = r.get<uint32_t>(4);
  if (h.version < 2 || h.version > 3) raise(ENOTSUP, "Unsupported qcow2 version {}", h.version);
  h.backing_file_offset = r.get<uint64_t>(8);
  h.backing_file_size = r.get<uint32_t>(16);
  h.cluster_bits = r.get<uint32_t>(20);
  const uint64_t stored_size = r.get<uint64_t>(24);
  // As qemu, the disk is a whole number of sectors: a partial last sector does not exist.
  h.size = stored_size / 512 * 512;
  h.crypt_method = r.get<uint32_t>(32);
  h.l1_size = r.get<uint32_t>(36);
  h.l1_table_offset = r.get<uint64_t>(40);
  h.refcount_table_offset = r.get<uint64_t>(48);
  h.refcount_table_clusters = r.get<uint32_t>(56);
  h.nb_snapshots = r.get<uint32_t>(60);
  h.snapshots_offset = r.get<uint64_t>(64);

  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits)
    raise(EINVAL, "Unsupported cluster size: 2^{}", h.cluster_bits);
  const uint64_t cluster = h.cluster_size();
  if (head.size() < cluster) raise(EINVAL, "qcow2 header cluster is incomplete ({} bytes)", head.size());

  if (h.version == 2) {
    h.header_length = kV2HeaderLength;
    h.refcount_order = 4;
  } else {
    h.incompatible_features = r.get<uint64_t>(72);
    h.compatible_features = r.get<uint64_t>(80);
    h.autoclear_features = r.get<uint64_t>(88);
    h.refcount_order = r.get<uint32_t>(96);
    h.header_length = r.get<uint32_t>(100);
    if (h.header_length < kV3HeaderLength) raise(EINVAL, "qcow2 header too short");
    if (h.header_length > cluster) raise(EINVAL, "qcow2 header exceeds cluster size");
    if (h.header_length > kV3HeaderLength) h.compression_type = static_cast<CompressionType>(r.get<uint8_t>(104));
  }
  if (h.backing_file_offset > cluster) raise(EINVAL, "Invalid backing file offset");

  // The feature name table, if any, names unknown bits; the extensions are
  // otherwise checked only once the tables are (the order of qemu's messages).
  if (h.incompatible_features & ~kIncompatKnown) {
    Header named = h;
    try {
      parse_extensions(named, r);
    } catch (const Error&) {
      named.extensions.clear();
    }
    raise(ENOTSUP, "Unsupported qcow2 feature(s): {}", unknown_incompatible_features(named));
  }
  // Extended L2 entries split a cluster into 32 subclusters of at least 512 bytes.
  if (h.extended_l2() && h.cluster_bits < 14) raise(EINVAL, "Unsupported subcluster size: {}", cluster / 32);
  check_compression_type(h);
  if (h.refcount_order > 6) raise(EINVAL, "Reference count entry width too large; may not exceed 64 bits");
  if (h.crypt_method > kCryptLuks) raise(EINVAL, "Unsupported encryption method {}", h.crypt_method);

  if (h.refcount_table_clusters == 0) raise(EINVAL, "Image does not contain a reference count table");
  validate_table(h, "Reference count table", h.refcount_table_offset, h.refcount_table_clusters, cluster,
                 kMaxRefTableBytes);
  validate_table(h, "Snapshot table", h.snapshots_offset, h.nb_snapshots, kSnapshotHeaderSize,
                 kSnapshotHeaderSize * kMaxSnapshots);
  validate_table(h, "Active L1 table", h.l1_table_offset, h.l1_size, 8, kMaxL1Bytes);

  // The L1 table must map the whole disk (the size as stored, as qemu checks it).
  const uint64_t bytes_per_l1 = cluster / (h.extended_l2() ? 16 : 8) * cluster;
  const uint64_t l1_needed = stored_size / bytes_per_l1 + (stored_size % bytes_per_l1 != 0);
  if (l1_needed > INT32_MAX) raise(EFBIG, "Image is too big");
  if (l1_needed > h.l1_size) raise(EINVAL, "L1 table is too small");

  parse_extensions(h, r);

  // qemu crashes on such an image; keel refuses it.
  if (h.crypt_method == kCryptLuks && !find_extension(h, kExtCryptoHeader))
    raise(EINVAL, "LUKS encryption requires a full disk encryption header extension");
  if (h.backing_file_offset) {
    if (h.backing_file_size > std::min<uint64_t>(kMaxBackingNameLength, cluster - h.backing_file_offset))
      raise(EINVAL, "Backing file name too long");
    // A C string to qemu: a NUL ends it, and an empty name means no backing file.
    h.backing_file = r.get_string(h.backing_file_offset, h.backing_file_size);
    h.backing_file.resize(std::strlen(h.backing_file.c_str()));
  }
  return h;
}

void check_tables_inside_file(const Header& h, uint64_t file_size) {
  auto inside = [&](const char* what, uint64_t offset, uint64_t bytes) {
    if (bytes && (offset > file_size || bytes > file_size - offset))
      raise(EINVAL, "{} at offset {:#x} ({} bytes) lies beyond the end of the image ({} bytes)", what, offset, bytes,
            file_size);
  };
  inside("Reference count table", h.refcount_table_offset, uint64_t{h.refcount_table_clusters} << h.cluster_bits);
  inside("Active L1 table", h.l1_table_offset, uint64_t{h.l1_size} * 8);
}

std::vector<std::byte> serialize_header(const Header& h) {
  const uint64_t cluster = h.cluster_size();
  std::vector<std::byte> out(cluster);
  std::byte* p = out.data();
  store_be<uint32_t>(p + 0, kMagic);
  store_be<uint32_t>(p + 4, h.version);
  store_be<uint32_t>(p + 20, h.cluster_bits);
  store_be<uint64_t>(p + 24, h.size);
  store_be<uint32_t>(p + 32, h.crypt_method);
  store_be<uint32_t>(p + 36, h.l1_size);
  store_be<uint64_t>(p + 40, h.l1_table_offset);
  store_be<uint64_t>(p + 48, h.refcount_table_offset);
  store_be<uint32_t>(p + 56, h.refcount_table_clusters);
  store_be<uint32_t>(p + 60, h.nb_snapshots);
  store_be<uint64_t>(p + 64, h.snapshots_offset);
  uint64_t pos = kV2HeaderLength;
  if (h.version >= 3) {
    store_be<uint64_t>(p + 72, h.incompatible_features);
    store_be<uint64_t>(p + 80, h.compatible_features);
    store_be<uint64_t>(p + 88, h.autoclear_features);
    store_be<uint32_t>(p + 96, h.refcount_order);
    uint32_t length = std::max<uint32_t>(h.header_length, kV3HeaderLength + 8);
    store_be<uint32_t>(p + 100, length);
    p[104] = static_cast<std::byte>(h.compression_type);
    pos = length;
  }
  // Version 2 images have extensions too (the backing format), right after the 72-byte header.
  for (const auto& e : h.extensions) {
    uint64_t padded = (e.data.size() + 7) & ~uint64_t{7};
    if (pos + 8 + padded + 8 > cluster) raise(ENOSPC, "qcow2 header extensions do not fit in the first cluster");
    store_be<uint32_t>(p + pos, e.type);
    store_be<uint32_t>(p + pos + 4, static_cast<uint32_t>(e.data.size()));
    std::memcpy(p + pos + 8, e.data.data(), e.data.size());
    pos += 8 + padded;
  }
  pos += 8;  // end-of-extensions marker (zeros)
  if (!h.backing_file.empty()) {
    if (h.backing_file.size() > kMaxBackingNameLength) raise(EINVAL, "Backing file name too long");
    if (pos + h.backing_file.size() > cluster) raise(ENOSPC, "Backing file name does not fit in the header cluster");
    store_be<uint64_t>(p + 8, pos);
    store_be<uint32_t>(p + 16, static_cast<uint32_t>(h.backing_file.size()));
    std::memcpy(p + pos, h.backing_file.data(), h.backing_file.size());
  }
  return out;
}

HeaderExtension feature_table_extension() {
  struct Feature {
    uint8_t type;
    uint8_t bit;
    const char* name;
  };
  static constexpr Feature features[] = {
      {0, 0, "dirty bit"}, {0, 1, "corrupt bit"}, {0, 2, "external data file"}, {0, 3, "compression type"},
      {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"}, {2, 0, "bitmaps"}, {2, 1, "raw external data"},
  };
  HeaderExtension ext{kExtFeatureTable, std::vector<std::byte>(std::size(features) * 48)};
  for (size_t i = 0; i < std::size(features); i++) {
    std::byte* e = ext.data.data() + i * 48;
    e[0] = static_cast<std::byte>(features[i].type);
    e[1] = static_cast<std::byte>(features[i].bit);
    std::memcpy(e + 2, features[i].name, std::min(std::strlen(features[i].name), kFeatureNameLength));
  }
  return ext;
}

std::string unknown_incompatible_features(const Header& h) {
  std::string out;
  uint64_t unknown = h.incompatible_features & ~kIncompatKnown;
  for (unsigned bit = 0; bit < 64; bit++) {
    if (!(unknown & (1ull << bit))) continue;
    std::string name;
    for (const auto& e : h.extensions) {
      if (e.type != kExtFeatureTable) continue;
      for (size_t off = 0; off + 48 <= e.data.size(); off += 48) {
        if (e.data[off] == std::byte{0} && static_cast<unsigned>(e.data[off + 1]) == bit) {
          std::string s(reinterpret_cast<const char*>(e.data.data() + off + 2), kFeatureNameLength);
          name = s.substr(0, s.find('\0'));
        }
      }
    }
    if (!out.empty()) out += ", ";
    out += name.empty() ? fmt::format("Unknown incompatible feature: {:x}", 1ull << bit) : name;
  }
  return out;
}

}  // namespace keel::qcow2
