// Ordering between overlapping requests. A request that overlaps an earlier
// one still in flight (an aio request), where either writes, waits for it:
// "aio_write 0 4k; read -P 7 0 4k" then reads what was written, as it does
// in practice with qemu-io, whose worker threads start the write first.
// Requests that do not overlap run concurrently.
#pragma once

#include <cstdint>
#include <list>

#include "base/async/sync.h"
#include "base/async/task.h"

namespace keel::io {

class RequestOrder {
 public:
  struct Range {
    uint64_t begin;
    uint64_t end;
    bool write;
  };

  // Held while the request runs; its end lets waiting requests go.
  class Turn {
   public:
    Turn(RequestOrder* order, std::list<Range>::iterator at) : order_(order), at_(at) {}
    Turn(Turn&& o) noexcept : order_(std::exchange(o.order_, nullptr)), at_(o.at_) {}
    Turn& operator=(Turn&&) = delete;
    ~Turn();

   private:
    RequestOrder* order_;
    std::list<Range>::iterator at_;
  };

  // Waits for the earlier requests this one must follow, then registers it.
  Task<Turn> enter(uint64_t offset, uint64_t length, bool write);

 private:
  bool must_wait(const Range& r) const;

  std::list<Range> in_flight_;
  WaitQueue finished_;
};

}  // namespace keel::io
