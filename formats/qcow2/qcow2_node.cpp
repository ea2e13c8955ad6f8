#include "formats/qcow2/qcow2_node.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/async/thread_pool.h"
#include "base/endian.h"
#include "base/units.h"
#include "block/backing.h"
#include "formats/qcow2/check.h"
#include "formats/qcow2/compression.h"
#include "formats/qcow2/corruption.h"

namespace keel::qcow2 {

using block::AlignedBuffer;
using block::BlockStatus;

namespace {

constexpr uint64_t kMaxL2CacheBytes = 32ull << 20;

// The external data file an image names must exist; the raw flag needs one.
// As in qemu, a relative name is taken from the working directory, not the image's.
void check_data_file(const Header& h) {
  const std::optional<std::string> name = h.data_file();
  if (!(h.incompatible_features & kIncompatDataFile)) {
    if (h.autoclear_features & kAutoclearDataFileRaw) raise(EINVAL, "data-file-raw requires a data file");
    return;
  }
  if (!name) raise(EINVAL, "'data-file' is required for this image");
  if (::access(name->c_str(), F_OK) != 0) {
    const int code = errno;
    raise(code, "Could not open '{}': {}", *name, errno_text(code));
  }
}

}  // namespace

Qcow2Node::Qcow2Node(std::unique_ptr<block::BlockNode> file, Header header, const block::OpenOptions& options)
    : BlockNode(file->filename(), options.writable), header_(std::move(header)), geo_(header_), cache_(options.cache) {
  set_file(std::move(file));
  lazy_refcounts_ = header_.compatible_features & kCompatLazyRefcounts;
  const uint64_t l2_tables_for_disk = std::max<uint64_t>(1, geo_.l1_entries_for(header_.size));
  const uint64_t l2_capacity =
      std::clamp<uint64_t>(l2_tables_for_disk, 16, std::max<uint64_t>(16, kMaxL2CacheBytes / geo_.cluster_size));
  l2_cache_ = std::make_unique<MetadataCache>(*file_, geo_.cluster_size, l2_capacity);
  // Enough refcount blocks to describe the whole disk plus its metadata, within the same memory bound.
  const uint64_t refcounts_per_block = geo_.cluster_size * 8 / header_.refcount_bits();
  const uint64_t refblocks_for_disk =
      div_round_up(div_round_up(header_.size, geo_.cluster_size), refcounts_per_block) * 5 / 4 + 4;
  const uint64_t refblock_capacity =
      std::clamp<uint64_t>(refblocks_for_disk, 4, std::max<uint64_t>(4, kMaxL2CacheBytes / 4 / geo_.cluster_size));
  refblock_cache_ = std::make_unique<MetadataCache>(*file_, geo_.cluster_size, refblock_capacity);
  // A cluster is counted on disk before an L2 table points at it; with lazy
  // refcounts the order is relaxed and the dirty bit covers the gap.
  if (!lazy_refcounts_) l2_cache_->set_dependency(refblock_cache_.get());
}

Task<std::unique_ptr<Qcow2Node>> Qcow2Node::open(std::unique_ptr<block::BlockNode> file,
                                                 const block::OpenOptions& options) {
  // At least the whole first cluster, with zeros past the end of a short file, as qemu reads it.
  std::vector<std::byte> head(4096);
  co_await file->read(0, head);
  const uint32_t bits = load_be<uint32_t>(head.data() + 20);
  if (bits >= kMinClusterBits && bits <= kMaxClusterBits && (uint64_t{1} << bits) > head.size()) {
    head.resize(uint64_t{1} << bits);
    co_await file->read(0, head);
  }
  Header header = parse_header(head);
  if (options.writable && !options.for_repair) {
    check_tables_inside_file(header, file->size());
    if (header.incompatible_features & kIncompatCorrupt)
      raise(EACCES, "qcow2: Image is corrupt; cannot be opened read/write");
  }
  // qemu-img info opens no data file (BDRV_O_NO_IO); every other open needs it.
  if (!options.no_backing) check_data_file(header);

  std::unique_ptr<Qcow2Node> node(new Qcow2Node(std::move(file), std::move(header), options));
  const Header& h = node->header_;

  std::vector<std::byte> bytes(uint64_t{h.l1_size} * 8);
  co_await node->file_->read(h.l1_table_offset, bytes);
  node->l1_.resize(h.l1_size);
  for (size_t i = 0; i < node->l1_.size(); i++) {
    node->l1_[i] = load_be<uint64_t>(bytes.data() + i * 8);
    if (node->l1_[i] & kOffsetMask) node->l2_tables_.insert(node->l1_[i] & kOffsetMask);
  }

  bytes.assign(uint64_t{h.refcount_table_clusters} << h.cluster_bits, std::byte{0});
  co_await node->file_->read(h.refcount_table_offset, bytes);
  std::vector<uint64_t> table(bytes.size() / 8);
  for (size_t i = 0; i < table.size(); i++) table[i] = load_be<uint64_t>(bytes.data() + i * 8);
  node->refcounts_ = std::make_unique<Refcounts>(*node->file_, node->header_, *node->refblock_cache_, std::move(table));
  node->refcounts_->set_barriers(!options.cache.no_flush);

  node->snapshots_ = co_await read_snapshot_table(*node->file_, h);
  node->bitmaps_ = co_await read_bitmap_directory(*node->file_, h);

  if (h.crypt_method)
    node->io_refusal_ = "encrypted qcow2 images are not supported yet";
  else if (h.incompatible_features & kIncompatDataFile)
    node->io_refusal_ = "qcow2 images with an external data file are not supported yet";

  if (options.writable && node->io_refusal_) raise(ENOTSUP, "{}", *node->io_refusal_);
  // Before anything is written, so that an image whose chain cannot be opened stays untouched.
  if (!h.backing_file.empty() && !options.no_backing)
    node->backing_ = co_await block::open_backing(*node, h.backing_file, h.backing_format(), options);

  if (options.writable) {
    try {
      co_await node->refcounts_->find_end();
    } catch (const Corruption&) {
      // A repair rebuilds the refcounts anyway; anything else must not write.
      if (!options.for_repair) throw;
    }
    if ((h.incompatible_features & kIncompatDirty) && !options.for_repair) {
      // Refcounts may be stale after a crash with lazy refcounts: rebuild them.
      co_await check_image(*node, CheckFix::All);
      co_await node->update_incompatible_features(0, kIncompatDirty);
    }
    // keel maintains no autoclear feature (such as bitmaps); clearing the bits
    // tells other programs that those structures are no longer in sync.
    if (node->header_.autoclear_features) {
      node->header_.autoclear_features = 0;
      std::byte field[8] = {};
      co_await node->file_->write(88, field);
    }
  }
  co_return node;
}

void Qcow2Node::require_io() const {
  if (corrupt_) raise(ENOMEDIUM, "Image '{}' was found corrupt and serves no more requests", filename_);
  if (io_refusal_) raise(ENOTSUP, "{}", *io_refusal_);
}

void Qcow2Node::mark_bitmaps(uint64_t offset, uint64_t length) {
  for (const auto& b : loaded_bitmaps_) b->mark_written(offset, length);
}

Task<void> Qcow2Node::load_snapshot(const block::SnapshotRef& ref) {
  const Snapshot* s = find_snapshot(snapshots_, ref);
  if (!s) raise(ENOENT, "Can't find snapshot");
  if (writable_) raise(EINVAL, "Device must be read only to load a snapshot temporarily");
  if (s->l1_table_offset & (geo_.cluster_size - 1)) raise(EINVAL, "Snapshot L1 table offset invalid");
  if (uint64_t{s->l1_size} * 8 > kMaxL1Bytes) raise(EFBIG, "Snapshot L1 table too large");
  if (s->l1_table_offset > INT64_MAX - uint64_t{s->l1_size} * 8) raise(EINVAL, "Snapshot L1 table offset invalid");
  // Past the end of the file the table reads as zeros, as in qemu: unallocated clusters.
  std::vector<std::byte> bytes(uint64_t{s->l1_size} * 8);
  co_await file_->read(s->l1_table_offset, bytes);
  auto guard = co_await meta_lock_.lock();
  l1_.assign(s->l1_size, 0);
  l2_tables_.clear();
  for (size_t i = 0; i < l1_.size(); i++) {
    l1_[i] = load_be<uint64_t>(bytes.data() + i * 8);
    if (l1_[i] & kOffsetMask) l2_tables_.insert(l1_[i] & kOffsetMask);
  }
}

Task<std::shared_ptr<block::DirtyBitmap>> Qcow2Node::dirty_bitmap(const std::string& name) {
  for (const auto& b : loaded_bitmaps_)
    if (b->name() == name) co_return b;
  for (const BitmapInfo& info : bitmaps_) {
    if (info.name != name) continue;
    std::shared_ptr<Qcow2DirtyBitmap> bitmap = co_await Qcow2DirtyBitmap::load(*file_, header_, info);
    loaded_bitmaps_.push_back(bitmap);
    co_return bitmap;
  }
  co_return nullptr;
}

void Qcow2Node::require_writable() const {
  require_io();
  if (!writable_) raise(EACCES, "Image '{}' is opened read-only", filename_);
}

Task<void> Qcow2Node::update_incompatible_features(uint64_t set, uint64_t clear) {
  if (header_.version < 3) co_return;
  header_.incompatible_features = (header_.incompatible_features | set) & ~clear;
  if (clear & kIncompatCorrupt) corrupt_ = false;
  std::byte field[8];
  store_be<uint64_t>(field, header_.incompatible_features);
  co_await file_->write(72, field);
  co_await file_->flush();
}

Task<void> Qcow2Node::write_header() {
  auto bytes = serialize_header(header_);
  co_await file_->write(0, bytes);
}

Task<void> Qcow2Node::signal_corruption(const std::string& why, std::vector<std::string>* notices) {
  auto report = [&](std::string line) {
    if (notices)
      notices->push_back(std::move(line));
    else
      fmt::print(stderr, "{}\n", line);
  };
  if (!writable_) {
    if (!corruption_reported_)
      report(fmt::format("qcow2: Image is corrupt: {}; further non-fatal corruption events will be suppressed", why));
    corruption_reported_ = true;
    co_return;
  }
  if (corrupt_) co_return;
  corrupt_ = true;
  report(fmt::format("qcow2: Marking image as corrupt: {}; further corruption events will be suppressed", why));
  co_await update_incompatible_features(kIncompatCorrupt, 0);
}

void Qcow2Node::check_bitmap(const L2Entry& e, uint64_t l2_offset, uint64_t index, bool for_write) const {
  if (!e.has_invalid_bitmap(geo_)) return;
  if (for_write)
    raise_corruption("Invalid cluster entry found (L2 offset: {:#x}, L2 index: {})", l2_offset, c_hex(index));
  raise_corruption("Invalid cluster entry found  (L2 offset: {:#x}, L2 index: {})", l2_offset, c_hex(index));
}

L2Entry Qcow2Node::load_entry(const MetadataCache::Ref& table, uint64_t index) const {
  const std::byte* p = table.data() + index * geo_.l2_entry_size;
  L2Entry e{load_be<uint64_t>(p), 0};
  if (geo_.extended_l2) e.bitmap = load_be<uint64_t>(p + 8);
  return e;
}

void Qcow2Node::store_entry(const MetadataCache::Ref& table, uint64_t index, const L2Entry& entry) const {
  std::byte* p = table.data() + index * geo_.l2_entry_size;
  store_be<uint64_t>(p, entry.word);
  if (geo_.extended_l2) store_be<uint64_t>(p + 8, entry.bitmap);
  table.mark_dirty();
}

const char* Qcow2Node::metadata_at(uint64_t host, uint64_t length, Metadata writing) const {
  auto overlaps = [&](Metadata kind, uint64_t start, uint64_t bytes) {
    return kind != writing && bytes && host < start + bytes && start < host + length;
  };
  if (overlaps(Metadata::Header, 0, geo_.cluster_size)) return "qcow2_header";
  if (overlaps(Metadata::ActiveL1, header_.l1_table_offset, uint64_t{header_.l1_size} * 8)) return "active L1 table";
  if (overlaps(Metadata::RefcountTable, header_.refcount_table_offset,
               uint64_t{header_.refcount_table_clusters} << geo_.cluster_bits))
    return "refcount table";
  if (overlaps(Metadata::SnapshotTable, header_.snapshots_offset, snapshots_.table_bytes)) return "snapshot table";
  for (uint64_t c = geo_.cluster_start(host); c < host + length; c += geo_.cluster_size) {
    if (writing != Metadata::RefcountBlock && refcounts_->is_refcount_block(c)) return "refcount block";
    if (writing != Metadata::ActiveL2 && l2_tables_.count(c)) return "active L2 table";
  }
  return nullptr;
}

void Qcow2Node::check_metadata_overlap(uint64_t host, uint64_t length, Metadata writing) const {
  if (const char* what = metadata_at(host, length, writing))
    raise_corruption("Preventing invalid write on metadata (overlaps with {})", what);
}

void Qcow2Node::check_data_offset(uint64_t host, uint64_t l2_offset, uint64_t index) const {
  if (host & (geo_.cluster_size - 1))
    raise_corruption("Cluster allocation offset {:#x} unaligned (L2 offset: {:#x}, L2 index: {})", host, l2_offset,
                     c_hex(index));
}

Task<void> Qcow2Node::set_l1_entry(uint64_t index, uint64_t value) {
  l2_tables_.erase(l1_[index] & kOffsetMask);
  if (value & kOffsetMask) l2_tables_.insert(value & kOffsetMask);
  l1_[index] = value;
  std::byte entry[8];
  store_be<uint64_t>(entry, value);
  co_await file_->write(header_.l1_table_offset + index * 8, entry);
}

Task<MetadataCache::Ref> Qcow2Node::get_l2(uint64_t l1_index, bool allocate) {
  if (l1_index >= l1_.size()) {
    // A snapshot's L1 table may be shorter than the disk (qemu-nbd -l): the rest is unallocated.
    if (!allocate) co_return MetadataCache::Ref();
    raise_corruption("L1 index {} is outside the L1 table ({} entries)", l1_index, l1_.size());
  }
  const uint64_t entry = l1_[l1_index];
  const uint64_t offset = entry & kOffsetMask;
  if (offset) {
    if (offset & (geo_.cluster_size - 1))
      raise_corruption("L2 table offset {:#x} unaligned (L1 index: {})", offset, c_hex(l1_index));
    if ((offset >> geo_.cluster_bits) >= refcounts_->end_cluster()) {
      // Past the end of the file a table reads as zeros, as in qemu, but is never written.
      if (!allocate) co_return MetadataCache::Ref();
      raise_corruption("L2 table offset {:#x} lies beyond the end of the image (L1 index: {})", offset,
                       c_hex(l1_index));
    }
    if (!allocate) co_return co_await l2_cache_->get(offset);
    // The table is about to change: it must not be some other structure.
    check_metadata_overlap(offset, geo_.cluster_size, Metadata::ActiveL2);
    if (entry & kFlagCopied) co_return co_await l2_cache_->get(offset);
  }
  if (!allocate) co_return MetadataCache::Ref();

  // A new table, or a private copy of one shared with a snapshot.
  const uint64_t fresh = co_await refcounts_->allocate_clusters(1);
  check_metadata_overlap(fresh, geo_.cluster_size);
  auto table = co_await l2_cache_->get_new(fresh);
  if (offset) {
    auto old = co_await l2_cache_->get(offset);
    std::memcpy(table.data(), old.data(), geo_.cluster_size);
    refcounts_->free_later(offset, geo_.cluster_size);
  }
  co_await l2_cache_->write_now(table);
  if (!lazy_refcounts_) co_await file_->flush();
  co_await set_l1_entry(l1_index, fresh | kFlagCopied);
  co_return table;
}

Task<std::vector<Qcow2Node::Segment>> Qcow2Node::map_range(uint64_t offset, uint64_t length) {
  const uint64_t l1_index = geo_.l1_index(offset);
  const uint64_t end = std::min(offset + length, (l1_index + 1) * geo_.bytes_per_l2());
  std::vector<Segment> segments;
  auto push = [&](uint64_t len, SubclusterKind kind, uint64_t host) {
    if (!segments.empty()) {
      Segment& last = segments.back();
      if (last.kind == kind && kind != SubclusterKind::Compressed &&
          (kind != SubclusterKind::Data || last.host + last.length == host)) {
        last.length += len;
        return;
      }
    }
    segments.push_back({len, kind, host});
  };
  auto table = co_await get_l2(l1_index, false);
  if (!table) {
    // L1 entries without tables in a row make one unallocated run, so that a
    // status query over a huge empty image is one call, not one per table.
    uint64_t run_end = end;
    for (uint64_t next = l1_index + 1; run_end < offset + length && (next >= l1_.size() || !(l1_[next] & kOffsetMask));
         next++)
      run_end = std::min(offset + length, (next + 1) * geo_.bytes_per_l2());
    push(run_end - offset, SubclusterKind::Unallocated, 0);
    co_return segments;
  }
  uint64_t pos = offset;
  while (pos < end) {
    const uint64_t index = geo_.l2_index(pos);
    const L2Entry e = load_entry(table, index);
    const uint64_t cluster_start = geo_.cluster_start(pos);
    const uint64_t cluster_end = std::min(end, cluster_start + geo_.cluster_size);
    const ClusterKind kind = e.kind(geo_);
    check_bitmap(e, table.offset(), index, false);
    if (header_.version < 3 && (kind == ClusterKind::ZeroPlain || kind == ClusterKind::ZeroAlloc))
      raise_corruption("Zero cluster entry found in pre-v3 image (L2 offset: {:#x}, L2 index: {})", table.offset(),
                       c_hex(index));
    if (kind == ClusterKind::Normal || kind == ClusterKind::ZeroAlloc)
      check_data_offset(e.host_offset(), table.offset(), index);
    if (kind == ClusterKind::Compressed) {
      push(cluster_end - pos, SubclusterKind::Compressed, e.word);
      pos = cluster_end;
      continue;
    }
    while (pos < cluster_end) {
      const uint64_t in = pos - cluster_start;
      const unsigned sc = static_cast<unsigned>(in / geo_.subcluster_size);
      const uint64_t sc_end = std::min(cluster_end, cluster_start + (sc + 1) * geo_.subcluster_size);
      const SubclusterKind k = subcluster_kind(e, geo_, sc);
      push(sc_end - pos, k, k == SubclusterKind::Data ? e.host_offset() + in : 0);
      pos = sc_end;
    }
  }
  co_return segments;
}

Task<void> Qcow2Node::read_compressed(uint64_t l2_word, std::span<std::byte> cluster) {
  const L2Entry e{l2_word, 0};
  const uint64_t offset = e.compressed_offset(geo_);
  const uint64_t length = e.compressed_length(geo_);
  if (length > 2 * geo_.cluster_size + 512)
    raise_corruption("Compressed cluster descriptor {:#x} has an invalid length {}", l2_word, length);
  std::vector<std::byte> stored(length);
  co_await file_->read(offset, stored);
  const CompressionType type = header_.compression_type;
  co_await loop().pool().run([&] { decompress_cluster(type, stored, cluster); });
}

void Qcow2Node::attach_backing(std::unique_ptr<block::BlockNode> backing) { backing_ = std::move(backing); }

Task<void> Qcow2Node::read_backing(uint64_t offset, std::span<std::byte> out) {
  const uint64_t below = backing_ && offset < backing_->size() ? backing_->size() - offset : 0;
  const uint64_t available = std::min<uint64_t>(out.size(), below);
  if (available) {
    // The backing image reports its own corruption; to this one it is an I/O error.
    try {
      co_await backing_->read(offset, out.first(available));
    } catch (const Corruption& c) {
      throw Error(c.code(), c.message());
    }
  }
  std::memset(out.data() + available, 0, out.size() - available);
}

Task<void> Qcow2Node::read(uint64_t offset, std::span<std::byte> buffer) {
  if (offset > header_.size || buffer.size() > header_.size - offset)
    raise(EINVAL, "Read of {} bytes at offset {} is past the end of the image ({} bytes)", buffer.size(), offset,
          header_.size);
  require_io();
  uint64_t done = 0;
  while (done < buffer.size()) {
    std::vector<Segment> segments;
    co_await guard_corruption([&]() -> Task<void> {
      auto guard = co_await meta_lock_.lock();
      segments = co_await map_range(offset + done, buffer.size() - done);
    });
    TaskGroup group;
    std::vector<AlignedBuffer> scratch;
    scratch.reserve(segments.size());
    for (const Segment& s : segments) {
      std::span<std::byte> out = buffer.subspan(done, s.length);
      switch (s.kind) {
        case SubclusterKind::Data:
          group.spawn(file_->read(s.host, out));
          break;
        case SubclusterKind::Zero:
          std::memset(out.data(), 0, out.size());
          break;
        case SubclusterKind::Unallocated:
          group.spawn(read_backing(offset + done, out));
          break;
        case SubclusterKind::Compressed: {
          const uint64_t in = geo_.cluster_offset_in(offset + done);
          if (in == 0 && out.size() == geo_.cluster_size) {
            group.spawn(read_compressed(s.host, out));
          } else {
            scratch.emplace_back(geo_.cluster_size);
            AlignedBuffer& whole = scratch.back();
            group.spawn([](Qcow2Node* self, uint64_t word, std::span<std::byte> cluster, std::span<std::byte> dst,
                           uint64_t at) -> Task<void> {
              co_await self->read_compressed(word, cluster);
              std::memcpy(dst.data(), cluster.data() + at, dst.size());
            }(this, s.host, whole.span(), out, in));
          }
          break;
        }
      }
      done += s.length;
    }
    co_await guard_corruption([&]() -> Task<void> { co_await group.join(); });
  }
}

Task<void> Qcow2Node::flush_metadata() {
  co_await refblock_cache_->flush();
  co_await l2_cache_->flush();
  if (refcounts_->has_pending_frees()) {
    // Tables that dropped references are on disk; only now may the counts fall.
    if (!lazy_refcounts_) co_await file_->flush();
    std::vector<uint64_t> released = co_await refcounts_->apply_pending_frees();
    co_await refblock_cache_->flush();
    for (uint64_t c : released) {
      l2_cache_->forget(c << geo_.cluster_bits);
      co_await file_->discard(c << geo_.cluster_bits, geo_.cluster_size);
    }
  }
}

Task<void> Qcow2Node::flush() {
  if (writable_ && !corrupt_) {
    co_await guard_corruption([&]() -> Task<void> {
      auto guard = co_await meta_lock_.lock();
      co_await flush_metadata();
    });
  }
  co_await file_->flush();
}

Task<void> Qcow2Node::close() {
  if (!writable_ || corrupt_) co_return;
  co_await flush();
  if (marked_dirty_) {
    co_await update_incompatible_features(0, kIncompatDirty);
    marked_dirty_ = false;
  }
}

Task<BlockStatus> Qcow2Node::block_status(uint64_t offset, uint64_t length) {
  BlockStatus st;
  if (offset >= header_.size) {
    st.length = length;
    st.zero = true;
    co_return st;
  }
  require_io();
  std::vector<Segment> segments;
  co_await guard_corruption([&]() -> Task<void> {
    auto guard = co_await meta_lock_.lock();
    segments = co_await map_range(offset, std::min(length, header_.size - offset));
  });
  const Segment& s = segments.front();
  st.length = s.length;
  switch (s.kind) {
    case SubclusterKind::Data:
      st.data = st.allocated = st.allocated_in_chain = true;
      st.host_offset = s.host;
      break;
    case SubclusterKind::Zero:
      st.zero = st.allocated = st.allocated_in_chain = true;
      break;
    case SubclusterKind::Unallocated:
      if (!backing_)
        st.zero = true;
      else
        co_return co_await backing_status(offset, st.length);
      break;
    case SubclusterKind::Compressed:
      st.data = st.allocated = st.allocated_in_chain = st.compressed = true;
      break;
  }
  co_return st;
}

Task<BlockStatus> Qcow2Node::backing_status(uint64_t offset, uint64_t length) {
  const uint64_t backing_size = backing_->size();
  BlockStatus st;
  if (offset >= backing_size) {
    // Past the end of a shorter backing node: zeros that qemu counts as that node's own.
    st.length = length;
    st.zero = st.allocated_in_chain = true;
  } else {
    try {
      st = co_await backing_->block_status(offset, std::min(length, backing_size - offset));
    } catch (const Corruption& c) {
      throw Error(c.code(), c.message());
    }
    st.length = std::clamp<uint64_t>(st.length, 1, std::min(length, backing_size - offset));
  }
  st.allocated = false;
  st.depth++;
  co_return st;
}

Task<void> Qcow2Node::allocate_l1_table(uint64_t size) {
  const uint64_t entries = geo_.l1_entries_for(size);
  if (entries * 8 > kMaxL1Bytes) raise(EFBIG, "Image size is too large for this cluster size");
  auto guard = co_await meta_lock_.lock();
  const uint64_t offset =
      co_await refcounts_->allocate_clusters(std::max<uint64_t>(1, div_round_up(entries * 8, geo_.cluster_size)));
  std::vector<std::byte> zeros(entries * 8);
  co_await file_->write(offset, zeros);
  header_.l1_table_offset = offset;
  header_.l1_size = static_cast<uint32_t>(entries);
  header_.size = size;
  l1_.assign(entries, 0);
  co_await flush_metadata();
  co_await write_header();
}

Task<void> Qcow2Node::truncate(uint64_t size, block::Preallocation prealloc) {
  require_writable();
  if (size < header_.size) raise(ENOTSUP, "qcow2 images cannot be shrunk yet");
  if (prealloc != block::Preallocation::Off)
    raise(ENOTSUP, "Preallocation is not supported when growing qcow2 images yet");
  // The new area must read as zeros, not as the backing file's data past the
  // old end; v2 images cannot mark it zero, so qemu refuses to grow them.
  const bool uncovers_backing = backing_ && backing_->size() > header_.size && size > header_.size;
  if (uncovers_backing && header_.version < 3)
    raise(ENOTSUP, "Failed to zero out new clusters: {}", errno_text(ENOTSUP));
  auto guard = co_await meta_lock_.lock();
  const uint64_t entries = geo_.l1_entries_for(size);
  if (entries * 8 > kMaxL1Bytes) raise(EFBIG, "Image size is too large for this cluster size");
  if (entries > l1_.size()) {
    // A larger L1 table elsewhere; the header switches to it in one write.
    const uint64_t clusters = div_round_up(entries * 8, geo_.cluster_size);
    const uint64_t offset = co_await refcounts_->allocate_clusters(clusters);
    std::vector<std::byte> bytes(entries * 8);
    for (size_t i = 0; i < l1_.size(); i++) store_be<uint64_t>(bytes.data() + i * 8, l1_[i]);
    co_await file_->write(offset, bytes);
    co_await flush_metadata();
    co_await file_->flush();
    const uint64_t old_offset = header_.l1_table_offset;
    const uint64_t old_bytes = uint64_t{header_.l1_size} * 8;
    std::byte field[12];
    store_be<uint32_t>(field, static_cast<uint32_t>(entries));
    store_be<uint64_t>(field + 4, offset);
    co_await file_->write(36, field);
    co_await file_->flush();
    header_.l1_table_offset = offset;
    header_.l1_size = static_cast<uint32_t>(entries);
    l1_.resize(entries, 0);
    refcounts_->free_later(old_offset, std::max<uint64_t>(old_bytes, 1));
  }
  std::byte field[8];
  store_be<uint64_t>(field, size);
  co_await file_->write(24, field);
  const uint64_t old_size = header_.size;
  header_.size = size;
  if (uncovers_backing) {
    // As qemu: zero (sub)clusters from the first boundary, zeros written before it.
    const uint64_t zero_start = align_up(old_size, geo_.subcluster_size);
    if (size > zero_start && !co_await zeroize(zero_start, size, false, guard))
      raise(ENOTSUP, "Failed to zero out new clusters: {}", errno_text(ENOTSUP));
    guard.unlock();
    if (zero_start > old_size) {
      AlignedBuffer zeros(std::min(zero_start, size) - old_size);
      co_await write(old_size, zeros.span());
    }
  }
}

Task<void> Qcow2Node::preallocate(block::Preallocation mode) {
  if (mode == block::Preallocation::Off) co_return;
  // Over a backing file (extended L2 only) the subclusters stay unallocated, reading through, as in qemu.
  const uint64_t bitmap = geo_.extended_l2 && header_.backing_file.empty() ? kAllSubclustersAllocated : 0;
  // Map every cluster, one L2 table's worth at a time, to contiguous host clusters.
  uint64_t last_cluster = 0;
  for (uint64_t pos = 0; pos < header_.size;) {
    auto guard = co_await meta_lock_.lock();
    const uint64_t l1_index = geo_.l1_index(pos);
    const uint64_t end = std::min(header_.size, (l1_index + 1) * geo_.bytes_per_l2());
    auto table = co_await get_l2(l1_index, true);
    const uint64_t count = div_round_up(end - pos, geo_.cluster_size);
    const uint64_t host = co_await refcounts_->allocate_clusters(count);
    for (uint64_t i = 0; i < count; i++)
      store_entry(table, geo_.l2_index(pos) + i, L2Entry{(host + i * geo_.cluster_size) | kFlagCopied, bitmap});
    guard.unlock();
    const uint64_t bytes = count * geo_.cluster_size;
    last_cluster = host + bytes - geo_.cluster_size;
    if (mode == block::Preallocation::Full) {
      AlignedBuffer zeros(std::min<uint64_t>(bytes, 4ull << 20));
      for (uint64_t done = 0; done < bytes; done += zeros.size())
        co_await file_->write(host + done, zeros.span(0, std::min<uint64_t>(zeros.size(), bytes - done)));
    } else if (file_->size() < host + bytes) {
      // The data clusters are at the end of the file: grow it, reserving the space for falloc.
      co_await file_->truncate(host + bytes, mode == block::Preallocation::Falloc ? block::Preallocation::Falloc
                                                                                  : block::Preallocation::Off);
    } else if (mode == block::Preallocation::Falloc) {
      co_await file_->write_zeroes(host, bytes, {});
    }
    pos = end;
  }
  // As qemu does, the last cluster takes space in the file even with metadata
  // preallocation, so the file really covers every mapped cluster.
  if (mode == block::Preallocation::Metadata && header_.size)
    co_await file_->write_zeroes(last_cluster, geo_.cluster_size, {});
  auto guard = co_await meta_lock_.lock();
  co_await flush_metadata();
}

Task<void> Qcow2Node::rebuild_refcounts(const std::vector<uint64_t>& counts) { co_await refcounts_->rebuild(counts); }

}  // namespace keel::qcow2
