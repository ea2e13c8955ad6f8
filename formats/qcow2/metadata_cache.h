// A bounded write-back cache of cluster-sized metadata tables (L2 tables or
// refcount blocks). Crash safety comes from ordering: a cache may depend on
// another, whose dirty tables then reach the file before any of its own. The
// L2 cache depends on the refcount cache, so a cluster is always counted on
// disk before a table points at it.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "base/async/task.h"
#include "block/file/file_node.h"
#include "block/node.h"

namespace keel::qcow2 {

class MetadataCache {
 public:
  struct Entry {
    uint64_t offset;
    block::AlignedBuffer data;
    bool dirty = false;
    uint64_t last_use = 0;
    unsigned pins = 0;
  };

  // A pinned table: it stays in the cache (and at this address) while held.
  class Ref {
   public:
    Ref() = default;
    explicit Ref(Entry* e) : entry_(e) { entry_->pins++; }
    Ref(Ref&& o) noexcept : entry_(std::exchange(o.entry_, nullptr)) {}
    Ref& operator=(Ref&& o) noexcept {
      release();
      entry_ = std::exchange(o.entry_, nullptr);
      return *this;
    }
    ~Ref() { release(); }
    std::byte* data() const { return entry_->data.data(); }
    uint64_t offset() const { return entry_->offset; }
    void mark_dirty() const { entry_->dirty = true; }
    explicit operator bool() const { return entry_ != nullptr; }

   private:
    void release() {
      if (entry_) entry_->pins--;
      entry_ = nullptr;
    }
    Entry* entry_ = nullptr;
  };

  MetadataCache(block::BlockNode& file, uint64_t table_size, size_t capacity);

  void set_dependency(MetadataCache* before) { depends_on_ = before; }
  // When false (lazy refcounts), dependent flushes skip the storage barrier.
  void set_barriers(bool on) { barriers_ = on; }

  // The table at `offset`, read from the file if not cached.
  Task<Ref> get(uint64_t offset);
  // A new zero-filled table at `offset` (no read); marked dirty.
  Task<Ref> get_new(uint64_t offset);
  // Writes every dirty table (after the dependency's).
  Task<void> flush();
  // Writes one table now (after the dependency's), e.g. a new L2 table before
  // the L1 entry that points to it.
  Task<void> write_now(const Ref& ref);
  // Drops a table whose cluster was freed; its contents no longer matter.
  void forget(uint64_t offset);
  // Drops every table without writing it (the structures were replaced).
  void drop_all() { entries_.clear(); }
  bool has_dirty() const;

 private:
  Task<void> make_room();
  Task<void> write_entry(Entry& e);
  Task<void> flush_dependency();

  block::BlockNode& file_;
  uint64_t table_size_;
  size_t capacity_;
  uint64_t clock_ = 0;
  MetadataCache* depends_on_ = nullptr;
  bool barriers_ = true;
  std::unordered_map<uint64_t, std::unique_ptr<Entry>> entries_;
};

}  // namespace keel::qcow2
