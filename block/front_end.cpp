#include "block/front_end.h"

#include <algorithm>
#include <limits>

#include "base/error.h"

namespace keel::block {

void check_request(const BlockNode& node, int64_t offset, int64_t length) {
  const auto size = static_cast<int64_t>(node.size());
  if (offset < 0 || length < 0 || offset > size || size - offset < length)
    raise(EIO, "Request of {} bytes at offset {} is outside the image ({} bytes)", length, offset, size);
}

void check_image_size(uint64_t size) {
  constexpr uint64_t kMaxLength =
      static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) & ~((uint64_t{1} << 30) - 1);
  if (size > kMaxLength) raise(EINVAL, "offset({}) exceeds maximum({})", size, kMaxLength);
}

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
