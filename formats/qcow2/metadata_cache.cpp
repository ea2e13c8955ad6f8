#include "formats/qcow2/metadata_cache.h"

#include <vector>

#include "base/async/sync.h"

namespace keel::qcow2 {

MetadataCache::MetadataCache(block::BlockNode& file, uint64_t table_size, size_t capacity)
    : file_(file), table_size_(table_size), capacity_(capacity < 2 ? 2 : capacity) {}

bool MetadataCache::has_dirty() const {
  for (const auto& [offset, e] : entries_)
    if (e->dirty) return true;
  return false;
}

Task<MetadataCache::Ref> MetadataCache::get(uint64_t offset) {
  auto it = entries_.find(offset);
  if (it != entries_.end()) {
    it->second->last_use = ++clock_;
    co_return Ref(it->second.get());
  }
  co_await make_room();
  auto entry = std::make_unique<Entry>(Entry{offset, block::AlignedBuffer(table_size_)});
  co_await file_.read(offset, entry->data.span());
  // A concurrent get() may have loaded the same table while this one read.
  it = entries_.find(offset);
  if (it != entries_.end()) {
    it->second->last_use = ++clock_;
    co_return Ref(it->second.get());
  }
  entry->last_use = ++clock_;
  Entry* raw = entry.get();
  entries_.emplace(offset, std::move(entry));
  co_return Ref(raw);
}

Task<MetadataCache::Ref> MetadataCache::get_new(uint64_t offset) {
  auto it = entries_.find(offset);
  if (it == entries_.end()) {
    co_await make_room();
    it = entries_.emplace(offset, std::make_unique<Entry>(Entry{offset, block::AlignedBuffer(table_size_)})).first;
  } else {
    std::fill(it->second->data.data(), it->second->data.data() + table_size_, std::byte{0});
  }
  it->second->dirty = true;
  it->second->last_use = ++clock_;
  co_return Ref(it->second.get());
}

void MetadataCache::forget(uint64_t offset) {
  auto it = entries_.find(offset);
  if (it != entries_.end() && it->second->pins == 0) entries_.erase(it);
  else if (it != entries_.end()) it->second->dirty = false;
}

Task<void> MetadataCache::flush_dependency() {
  if (depends_on_ && depends_on_->has_dirty()) {
    co_await depends_on_->flush();
    if (barriers_) co_await file_.flush();
  }
}

Task<void> MetadataCache::write_entry(Entry& e) {
  e.pins++;
  try {
    co_await file_.write(e.offset, std::span<const std::byte>(e.data.data(), table_size_));
  } catch (...) {
    e.pins--;
    throw;
  }
  e.pins--;
  e.dirty = false;
}

Task<void> MetadataCache::make_room() {
  while (entries_.size() >= capacity_) {
    Entry* victim = nullptr;
    for (auto& [offset, e] : entries_)
      if (e->pins == 0 && (!victim || e->last_use < victim->last_use)) victim = e.get();
    if (!victim) co_return;  // everything pinned: grow past capacity for now
    if (victim->dirty) {
      co_await flush_dependency();
      co_await write_entry(*victim);
      continue;  // state may have changed while writing; choose again
    }
    entries_.erase(victim->offset);
  }
}

Task<void> MetadataCache::write_now(const Ref& ref) {
  co_await flush_dependency();
  auto it = entries_.find(ref.offset());
  if (it != entries_.end() && it->second->dirty) co_await write_entry(*it->second);
}

Task<void> MetadataCache::flush() {
  if (!has_dirty()) co_return;
  co_await flush_dependency();
  std::vector<Entry*> dirty;
  for (auto& [offset, e] : entries_)
    if (e->dirty) dirty.push_back(e.get());
  TaskGroup group;
  for (Entry* e : dirty) group.spawn(write_entry(*e));
  co_await group.join();
}

}  // namespace keel::qcow2
