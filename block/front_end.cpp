#include "block/front_end.h"

#include <algorithm>

#include "base/error.h"

namespace keel::block {

Task<void> write_compressed(BlockNode& node, uint64_t offset, std::span<const std::byte> data) {
  check_request(node, static_cast<int64_t>(offset), static_cast<int64_t>(data.size()));
  const uint64_t cluster = node.cluster_size();
  if (!node.supports_compressed_writes() || cluster == 0) {
    co_await node.write_compressed(offset, data);  // raises the driver's ENOTSUP
    co_return;
  }
  if (offset % cluster != 0 || (data.size() % cluster != 0 && offset + data.size() != node.size()))
    raise(EINVAL, "Compressed writes must start on a cluster boundary and cover whole clusters");
  for (size_t done = 0; done < data.size(); done += cluster)
    co_await node.write_compressed(offset + done, data.subspan(done, std::min<size_t>(cluster, data.size() - done)));
}

}  // namespace keel::block
