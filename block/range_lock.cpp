#include "block/range_lock.h"

namespace keel::block {

RangeLock::Guard& RangeLock::Guard::operator=(Guard&& o) noexcept {
  if (this != &o) {
    release();
    lock_ = std::exchange(o.lock_, nullptr);
    at_ = o.at_;
  }
  return *this;
}

void RangeLock::Guard::release() {
  if (lock_) std::exchange(lock_, nullptr)->erase(at_);
}

void RangeLock::Guard::shrink_to(uint64_t begin, uint64_t end) {
  if (!lock_) return;
  if (begin >= end) {
    release();
    return;
  }
  at_->begin = begin;
  at_->end = end;
  lock_->changed_.notify_all();
}

RangeLock::Guard RangeLock::enqueue(uint64_t begin, uint64_t end, Mode mode) {
  const auto at = entries_.insert(entries_.end(), Entry{begin, end, mode, false});
  at->held = !blocked(at);
  return Guard(this, at);
}

bool RangeLock::blocked(Entries::const_iterator at) const {
  for (auto it = entries_.begin(); it != at; ++it)
    if (it->conflicts(at->begin, at->end, at->mode)) return true;
  return false;
}

Task<void> RangeLock::wait_for_turn(Entries::iterator at) {
  while (blocked(at)) co_await changed_.wait();
  at->held = true;
}

void RangeLock::erase(Entries::iterator at) {
  entries_.erase(at);
  changed_.notify_all();
}

Task<RangeLock::Guard> RangeLock::lock(uint64_t begin, uint64_t end, Mode mode) {
  Guard guard = enqueue(begin, end, mode);
  if (!guard.at_->held) co_await wait_for_turn(guard.at_);
  co_return std::move(guard);
}

// The turn is taken only with the mutex held, so that a range can be found
// held only by someone holding the mutex (what wait_unheld() relies on).
Task<RangeLock::Guard> RangeLock::lock(uint64_t begin, uint64_t end, Mode mode, CoMutex& mutex,
                                       CoMutex::Guard& mutex_guard) {
  Guard guard = enqueue(begin, end, mode);
  while (!guard.at_->held) {
    co_await wait_for_change(mutex, mutex_guard);
    guard.at_->held = !blocked(guard.at_);
  }
  co_return std::move(guard);
}

Task<void> RangeLock::wait_unheld(uint64_t begin, uint64_t end, Mode mode, CoMutex& mutex,
                                  CoMutex::Guard& mutex_guard) {
  while (held(begin, end, mode)) co_await wait_for_change(mutex, mutex_guard);
}

Task<void> RangeLock::wait_for_change(CoMutex& mutex, CoMutex::Guard& mutex_guard) {
  mutex_guard.unlock();
  co_await changed_.wait();
  mutex_guard = co_await mutex.lock();
}

bool RangeLock::held(uint64_t begin, uint64_t end, Mode mode) const {
  for (const Entry& e : entries_)
    if (e.held && e.conflicts(begin, end, mode)) return true;
  return false;
}

}  // namespace keel::block
