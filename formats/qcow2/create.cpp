#include "formats/qcow2/create.h"

#include "base/endian.h"
#include "base/error.h"
#include "base/units.h"
#include "formats/qcow2/header.h"
#include "formats/qcow2/qcow2_node.h"
#include "formats/qcow2/refcounts.h"

namespace keel::qcow2 {

using namespace keel::block;

const std::vector<OptionSpec>& create_options() {
  // Order is qemu's "Formatting ..." order; "-o help" sorts by name.
  static const std::vector<OptionSpec> specs = {
      {"cluster_size", OptionType::Size, "qcow2 cluster size", "65536"},
      {"extended_l2", OptionType::Bool, "Extended L2 tables", "off"},
      {"preallocation", OptionType::String, "Preallocation mode (allowed values: off, metadata, falloc, full)",
       std::nullopt},
      {"compression_type", OptionType::String, "Compression method used for image cluster compression", "zlib"},
      {"size", OptionType::Size, "Virtual disk size", std::nullopt},
      {"compat", OptionType::String, "Compatibility level (v2 [0.10] or v3 [1.1])", std::nullopt},
      {"backing_file", OptionType::String, "File name of a base image", std::nullopt},
      {"backing_fmt", OptionType::String, "Image format of the base image", std::nullopt},
      {"data_file", OptionType::String, "File name of an external data file", std::nullopt},
      {"data_file_raw", OptionType::Bool, "The external data file must stay valid as a raw image", std::nullopt},
      {"encryption", OptionType::Bool,
       "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", std::nullopt},
      {"encrypt.format", OptionType::String, "Encrypt the image, format choices: 'aes', 'luks'", std::nullopt},
      {"lazy_refcounts", OptionType::Bool, "Postpone refcount updates", "off"},
      {"refcount_bits", OptionType::Number, "Width of a reference count entry in bits", "16"},
  };
  return specs;
}

Task<void> create_image(const CreateRequest& request) {
  const OptionValues& o = request.options;
  const uint64_t cluster_size = o.get_size("cluster_size").value_or(65536);
  if (!is_power_of_two(cluster_size) || cluster_size < 512 || cluster_size > (2u << 20))
    raise(EINVAL, "Cluster size must be a power of two between 512 and 2048k");
  const std::string compat = o.get("compat").value_or("1.1");
  uint32_t version;
  if (compat == "0.10" || compat == "v2")
    version = 2;
  else if (compat == "1.1" || compat == "v3")
    version = 3;
  else
    raise(EINVAL, "Parameter 'version' does not accept value '{}'", compat);
  const bool lazy = o.get_bool("lazy_refcounts").value_or(false);
  const bool extended_l2 = o.get_bool("extended_l2").value_or(false);
  const uint64_t refcount_bits = o.get_number("refcount_bits").value_or(16);
  if (!is_power_of_two(refcount_bits) || refcount_bits > 64)
    raise(EINVAL, "Refcount width must be a power of two and may not exceed 64 bits");
  const std::string compression = o.get("compression_type").value_or("zlib");
  if (compression != "zlib" && compression != "zstd")
    raise(EINVAL, "Parameter 'compression-type' does not accept value '{}'", compression);
  Preallocation prealloc = Preallocation::Off;
  if (auto p = o.get("preallocation")) {
    auto parsed = parse_preallocation(*p);
    if (!parsed) raise(EINVAL, "Parameter 'preallocation' does not accept value '{}'", *p);
    prealloc = *parsed;
  }
  if (version < 3 && lazy)
    raise(EINVAL, "Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)");
  if (version < 3 && refcount_bits != 16)
    raise(
        EINVAL,
        "Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)");
  if (version < 3 && extended_l2)
    raise(EINVAL,
          "Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)");
  if (version < 3 && compression != "zlib")
    raise(EINVAL,
          "Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or "
          "greater)");
  if (extended_l2 && cluster_size < 16384)
    raise(EINVAL, "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
  const std::optional<std::string> backing_file = o.get("backing_file");
  const std::optional<std::string> backing_fmt = o.get("backing_fmt");
  if (backing_fmt && !backing_file) raise(EINVAL, "Backing format cannot be used without backing file");
  if (backing_file && prealloc != Preallocation::Off && !extended_l2)
    raise(EINVAL, "Backing file and preallocation can only be used at the same time if extended_l2 is on");
  if (o.has("data_file") || o.has("data_file_raw")) raise(ENOTSUP, "External data files are not supported yet");
  if (o.get_bool("encryption").value_or(false) || o.has("encrypt.format"))
    raise(ENOTSUP, "Encryption is not supported yet");

  Header h;
  h.version = version;
  h.cluster_bits = static_cast<uint32_t>(__builtin_ctzll(cluster_size));
  h.size = 0;  // until the L1 table exists
  h.refcount_order = static_cast<uint32_t>(__builtin_ctzll(refcount_bits));
  h.header_length = version >= 3 ? kV3HeaderLength + 8 : kV2HeaderLength;
  if (compression == "zstd") {
    h.compression_type = CompressionType::Zstd;
    h.incompatible_features |= kIncompatCompression;
  }
  if (extended_l2) h.incompatible_features |= kIncompatExtendedL2;
  if (lazy) h.compatible_features |= kCompatLazyRefcounts;
  if (backing_file) {
    h.backing_file = *backing_file;
    // qemu writes the backing format first, and into version 2 images too.
    if (backing_fmt)
      h.extensions.push_back(
          {kExtBackingFormat,
           std::vector<std::byte>(reinterpret_cast<const std::byte*>(backing_fmt->data()),
                                  reinterpret_cast<const std::byte*>(backing_fmt->data()) + backing_fmt->size())});
  }
  // qemu 7.2 writes the feature name table only into images with clusters larger than 4 KiB.
  if (version >= 3 && cluster_size > 4096) h.extensions.push_back(feature_table_extension());
  {
    const Geometry geo(h);
    if (geo.l1_entries_for(request.size) * 8 > kMaxL1Bytes)
      raise(EFBIG, "Image size is too large for this cluster size");
  }

  // Cluster 0: header; cluster 1: refcount table; cluster 2: its first
  // refcount block, counting clusters 0..2. The L1 table comes from the
  // allocator once the image is open, like every later allocation.
  h.refcount_table_offset = cluster_size;
  h.refcount_table_clusters = 1;
  // Laid out before the file exists: a header that cannot hold the backing name makes no image, as in qemu.
  std::vector<std::byte> header_bytes;
  try {
    header_bytes = serialize_header(h);
  } catch (const Error& e) {
    if (e.code() != ENOSPC || !backing_file) throw;
    raise(ENOSPC, "Could not assign backing file '{}' with format '{}': {}", *backing_file, backing_fmt.value_or(""),
          errno_text(ENOSPC));
  }
  FileNode::create(request.filename, 0, Preallocation::Off);
  {
    auto file = FileNode::open(request.filename, FileOptions{.writable = true, .cache = {}});
    co_await file->write(0, header_bytes);
    std::vector<std::byte> table(cluster_size);
    store_be<uint64_t>(table.data(), 2 * cluster_size);
    co_await file->write(cluster_size, table);
    std::vector<std::byte> block(cluster_size);
    for (uint64_t c = 0; c < 3; c++) set_refcount_entry(block.data(), c, h.refcount_order, 1);
    co_await file->write(2 * cluster_size, block);
    co_await file->flush();
  }

  OpenOptions open_options{.format = std::string("qcow2"), .writable = true, .no_backing = true};
  auto node = co_await Qcow2Node::open(open_file(request.filename, open_options), open_options);
  co_await node->allocate_l1_table(request.size);
  co_await node->preallocate(prealloc);
  co_await node->close();
  co_await node->file_node().flush();
}

}  // namespace keel::qcow2
