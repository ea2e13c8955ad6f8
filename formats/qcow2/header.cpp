#include "formats/qcow2/header.h"

#include <algorithm>
#include <cstring>

#include "base/endian.h"
#include "base/error.h"

namespace keel::qcow2 {

namespace {

constexpr size_t kFeatureNameLength = 46;

std::optional<std::vector<std::byte>> find_extension(const Header& h, uint32_t type) {
  for (const auto& e : h.extensions)
    if (e.type == type) return e.data;
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

Header parse_header(std::span<const std::byte> head, uint64_t file_size) {
  BigEndianReader r(head, "qcow2 header");
  if (head.size() < kV2HeaderLength) raise(EINVAL, "Image is too small for a qcow2 header ({} bytes)", head.size());
  if (r.get<uint32_t>(0) != kMagic) raise(EINVAL, "Image is not in qcow2 format");
  Header h;
  h.version = r.get<uint32_t>(4);
  if (h.version < 2 || h.version > 3) raise(ENOTSUP, "Unsupported qcow2 version {}", h.version);
  h.backing_file_offset = r.get<uint64_t>(8);
  h.backing_file_size = r.get<uint32_t>(16);
  h.cluster_bits = r.get<uint32_t>(20);
  h.size = r.get<uint64_t>(24);
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

  if (h.version == 2) {
    h.header_length = kV2HeaderLength;
    h.refcount_order = 4;
  } else {
    if (head.size() < kV3HeaderLength) raise(EINVAL, "qcow2 header exceeds cluster size");
    h.incompatible_features = r.get<uint64_t>(72);
    h.compatible_features = r.get<uint64_t>(80);
    h.autoclear_features = r.get<uint64_t>(88);
    h.refcount_order = r.get<uint32_t>(96);
    h.header_length = r.get<uint32_t>(100);
    if (h.header_length < kV3HeaderLength) raise(EINVAL, "qcow2 header too short");
    if (h.header_length > cluster || h.header_length > head.size()) raise(EINVAL, "qcow2 header exceeds cluster size");
    if (h.header_length % 8 != 0) raise(EINVAL, "qcow2 header length {} is not a multiple of 8", h.header_length);
    if (h.header_length > kV3HeaderLength) {
      uint8_t type = static_cast<uint8_t>(r.get<uint8_t>(104));
      if (type > 1) raise(ENOTSUP, "Unknown compression type {}", type);
      h.compression_type = static_cast<CompressionType>(type);
    }
  }
  if (h.refcount_order > 6) raise(EINVAL, "Reference count entry width too large; may not exceed 64 bits");
  if ((h.compression_type != CompressionType::Zlib) != bool(h.incompatible_features & kIncompatCompression))
    raise(EINVAL, "Compression type {} does not match the compression type incompatible feature bit", unsigned(h.compression_type));
  if (h.extended_l2() && h.cluster_bits < 14) raise(EINVAL, "Extended L2 entries require clusters of at least 16 KiB");
  if (h.crypt_method > 2) raise(EINVAL, "Unsupported encryption method: {}", h.crypt_method);

  // Tables must be cluster aligned, of bounded size, and inside the file.
  auto check_table = [&](const char* what, uint64_t offset, uint64_t bytes, uint64_t max_bytes) {
    if (bytes > max_bytes) raise(EFBIG, "{} too large ({} bytes, at most {})", what, bytes, max_bytes);
    if (bytes == 0) return;
    if (offset % cluster != 0) raise(EINVAL, "{} offset {:#x} is not cluster aligned", what, offset);
    if (offset > file_size || bytes > file_size - offset)
      raise(EINVAL, "{} at offset {:#x} ({} bytes) lies beyond the end of the image ({} bytes)", what, offset, bytes, file_size);
  };
  check_table("Reference count table", h.refcount_table_offset, uint64_t{h.refcount_table_clusters} << h.cluster_bits, kMaxRefTableBytes);
  if (h.refcount_table_clusters == 0) raise(EINVAL, "Image has no reference count table");
  check_table("Active L1 table", h.l1_table_offset, uint64_t{h.l1_size} * 8, kMaxL1Bytes);

  // The L1 table must be large enough to map the whole virtual disk.
  const uint64_t l2_entries = cluster / (h.extended_l2() ? 16 : 8);
  const uint64_t bytes_per_l1 = l2_entries * cluster;
  if (h.size > (uint64_t{1} << 62)) raise(EFBIG, "Image size {} is too large", h.size);
  if ((h.size + bytes_per_l1 - 1) / bytes_per_l1 > h.l1_size) raise(EINVAL, "L1 table is too small for the image size");

  if (h.nb_snapshots > kMaxSnapshots) raise(EINVAL, "Too many snapshots ({})", h.nb_snapshots);
  if (h.nb_snapshots && (h.snapshots_offset % cluster != 0 || h.snapshots_offset >= file_size))
    raise(EINVAL, "Snapshot table offset {:#x} is invalid", h.snapshots_offset);

  // Header extensions run from the end of the header to the backing file name
  // (if any) or the end of the first cluster.
  uint64_t ext_end = std::min<uint64_t>(cluster, head.size());
  if (h.backing_file_offset) ext_end = std::min<uint64_t>(ext_end, h.backing_file_offset);
  {
    uint64_t pos = h.header_length;
    while (pos + 8 <= ext_end) {
      uint32_t type = r.get<uint32_t>(pos);
      uint32_t len = r.get<uint32_t>(pos + 4);
      pos += 8;
      if (type == kExtEnd) break;
      if (len > ext_end - pos) raise(EINVAL, "Header extension {:#x} of {} bytes overruns the header cluster", type, len);
      for (const auto& e : h.extensions)
        if (e.type == type) raise(EINVAL, "Duplicate header extension {:#x}", type);
      auto bytes = r.get_bytes(pos, len);
      h.extensions.push_back({type, std::vector<std::byte>(bytes.begin(), bytes.end())});
      pos += (len + 7) & ~uint64_t{7};
    }
  }

  // Checked once the extensions are known, so the feature name table can name the bits.
  if (h.incompatible_features & ~kIncompatKnown)
    raise(ENOTSUP, "Unsupported qcow2 feature(s): {}", unknown_incompatible_features(h));

  if (h.backing_file_offset) {
    if (h.backing_file_size > kMaxBackingNameLength) raise(EINVAL, "Backing file name too long");
    if (h.backing_file_offset > cluster || h.backing_file_size > cluster - h.backing_file_offset)
      raise(EINVAL, "Backing file name at offset {} lies outside the header cluster", h.backing_file_offset);
    h.backing_file = r.get_string(h.backing_file_offset, h.backing_file_size);
  }
  if ((h.autoclear_features & kAutoclearBitmaps) && !h.bitmaps())
    raise(EINVAL, "Bitmaps autoclear bit is set but the image has no bitmaps extension");
  if (h.crypt_method == 2 && std::none_of(h.extensions.begin(), h.extensions.end(), [](auto& e) { return e.type == kExtCryptoHeader; }))
    raise(EINVAL, "LUKS encryption requires a full disk encryption header extension");
  return h;
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
