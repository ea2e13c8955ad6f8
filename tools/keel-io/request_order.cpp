#include "tools/keel-io/request_order.h"

#include <algorithm>

namespace keel::io {

RequestOrder::Turn::~Turn() {
  if (!order_) return;
  order_->in_flight_.erase(at_);
  order_->finished_.notify_all();
}

bool RequestOrder::must_wait(const Range& r) const {
  return std::any_of(in_flight_.begin(), in_flight_.end(),
                     [&](const Range& o) { return (r.write || o.write) && r.begin < o.end && o.begin < r.end; });
}

Task<RequestOrder::Turn> RequestOrder::enter(uint64_t offset, uint64_t length, bool write) {
  // A zero-length request still follows writes at its offset.
  const Range range{offset, offset + std::max<uint64_t>(length, 1), write};
  while (must_wait(range)) co_await finished_.wait();
  co_return Turn(this, in_flight_.insert(in_flight_.end(), range));
}

}  // namespace keel::io
