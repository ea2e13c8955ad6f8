// Vocabulary shared by every node of the block graph: request flags, cache
// modes, preallocation modes, and what block_status() reports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keel::block {

// qemu's -t/-T cache modes. `direct` = O_DIRECT, `no_flush` = flushes are
// ignored, `writethrough` = every write is followed by a flush.
// `buffered_fallback` turns a refusal of O_DIRECT by the file system (tmpfs,
// some FUSE) into a plain page-cache open instead of an error.
struct CacheMode {
  bool direct = false;
  bool no_flush = false;
  bool writethrough = false;
  bool buffered_fallback = false;

  static std::optional<CacheMode> parse(std::string_view name);
};

enum class Preallocation { Off, Metadata, Falloc, Full };
std::optional<Preallocation> parse_preallocation(std::string_view name);
std::string_view preallocation_name(Preallocation p);

struct WriteFlags {
  bool fua = false;  // durable before the request completes
};

struct ZeroFlags {
  bool may_unmap = false;    // the range may be deallocated
  bool no_fallback = false;  // fail with ENOTSUP rather than write zero buffers
};

// What a range of a node holds, for the first `length` bytes from the query.
struct BlockStatus {
  uint64_t length = 0;
  bool data = false;       // reads come from stored data (not known zero)
  bool zero = false;       // reads return zeros
  bool allocated = false;  // this node (not a backing node) decides the contents
  // Some node of the backing chain decides the contents (qemu's allocated
  // "above"); a range no node holds reads as zeros.
  bool allocated_in_chain = false;
  bool compressed = false;
  // Where the data lives in the file child of the deciding node, when it is stored uncompressed.
  std::optional<uint64_t> host_offset;
  unsigned depth = 0;  // the node that decides (or the last one asked): 0 this node, n the n-th backing node
};

}  // namespace keel::block
