// A coroutine range lock for one event loop. Ranges [begin, end) are taken
// shared (reads: two shared ranges never conflict) or exclusive (writes).
// Order is by arrival: a request waits for every earlier request it conflicts
// with, held or still waiting, so a later one never overtakes an earlier one.
// Requests that do not conflict run concurrently. Not thread-safe.
//
// Users: keel-io orders overlapping requests as qemu-io does; the qcow2 driver
// keeps two writers from allocating the same guest cluster at once.
#pragma once

#include <cstdint>
#include <list>
#include <utility>

#include "base/async/sync.h"
#include "base/async/task.h"

namespace keel::block {

class RangeLock {
 public:
  enum class Mode { Shared, Exclusive };

 private:
  struct Entry {
    uint64_t begin;
    uint64_t end;
    Mode mode;
    bool held;
    bool conflicts(uint64_t b, uint64_t e, Mode m) const {
      return (mode == Mode::Exclusive || m == Mode::Exclusive) && begin < e && b < end;
    }
  };
  using Entries = std::list<Entry>;

 public:
  // Held while the request runs; releasing it lets waiting requests go.
  // An empty guard (default-constructed, moved from or released) holds nothing.
  class Guard {
   public:
    Guard() = default;
    Guard(Guard&& o) noexcept : lock_(std::exchange(o.lock_, nullptr)), at_(o.at_) {}
    Guard& operator=(Guard&& o) noexcept;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() { release(); }

    bool holds() const noexcept { return lock_ != nullptr; }
    void release();
    // Keeps only [begin, end) of the range, which must lie within it; an
    // empty range releases it.
    void shrink_to(uint64_t begin, uint64_t end);

   private:
    friend class RangeLock;
    Guard(RangeLock* lock, Entries::iterator at) : lock_(lock), at_(at) {}

    RangeLock* lock_ = nullptr;
    Entries::iterator at_;
  };

  RangeLock() = default;
  RangeLock(const RangeLock&) = delete;
  RangeLock& operator=(const RangeLock&) = delete;

  // Waits until no earlier conflicting request is held or waiting, then holds [begin, end).
  Task<Guard> lock(uint64_t begin, uint64_t end, Mode mode);
  // lock() for a caller holding `mutex_guard`, a guard of `mutex`: it is
  // dropped while waiting, so holders can take the mutex to finish, and held
  // again on return. The range is taken only once the mutex is held again.
  Task<Guard> lock(uint64_t begin, uint64_t end, Mode mode, CoMutex& mutex, CoMutex::Guard& mutex_guard);
  // Waits, dropping `mutex_guard` meanwhile, until no range conflicting with
  // [begin, end) is held, without taking it: for a caller that then acts
  // under `mutex` alone. Sound where every range is taken with the lock()
  // above and released under that same mutex: none can then be taken while
  // the caller holds it.
  Task<void> wait_unheld(uint64_t begin, uint64_t end, Mode mode, CoMutex& mutex, CoMutex::Guard& mutex_guard);
  // Whether a held range conflicts with [begin, end) in `mode`.
  bool held(uint64_t begin, uint64_t end, Mode mode) const;

 private:
  Guard enqueue(uint64_t begin, uint64_t end, Mode mode);
  // Whether an entry before `at` conflicts with it.
  bool blocked(Entries::const_iterator at) const;
  Task<void> wait_for_turn(Entries::iterator at);
  // Drops the guard until the entries change, then takes the mutex again.
  Task<void> wait_for_change(CoMutex& mutex, CoMutex::Guard& mutex_guard);
  void erase(Entries::iterator at);

  Entries entries_;  // in arrival order, held and waiting
  WaitQueue changed_;
};

}  // namespace keel::block
