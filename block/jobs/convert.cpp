#include "block/jobs/convert.h"

#include <algorithm>
#include <cstring>

#include "base/async/sync.h"
#include "base/error.h"
#include "base/units.h"
#include "block/file/file_node.h"

namespace keel::block {

namespace {

constexpr uint64_t kChunkSize = 2ull << 20;  // qemu's IO_BUF_SIZE
constexpr uint64_t kMaxZeroChunk = 1ull << 30;

bool is_zero(const std::byte* p, size_t n) {
  // Compare word-wise; buffers are aligned.
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  size_t words = n / 8;
  for (size_t i = 0; i < words; i++)
    if (w[i]) return false;
  for (size_t i = words * 8; i < n; i++)
    if (p[i] != std::byte{0}) return false;
  return true;
}

struct Chunk {
  uint64_t target_offset;
  BlockNode* source;
  uint64_t source_offset;
  uint64_t length;
  bool zero;
  uint64_t sequence;
};

class ConvertJob {
 public:
  ConvertJob(const std::vector<BlockNode*>& sources, BlockNode& target, const ConvertOptions& options)
      : sources_(sources), target_(target), options_(options) {
    for (BlockNode* s : sources_) total_ += s->size();
    // Work in units that do not split target clusters, so qcow2 targets get whole-cluster writes.
    unit_ = std::max<uint64_t>({options.sparse_size, target.cluster_size(), 512});
    if (options.compress) unit_ = target.cluster_size();
  }

  Task<void> run() {
    report(0);
    TaskGroup workers;
    for (unsigned i = 0; i < std::max(1u, options_.parallel); i++) workers.spawn(worker());
    co_await workers.join();
    co_await target_.flush();
    report(100);
  }

 private:
  // Claims the next chunk; false when the source is exhausted or a worker failed.
  Task<bool> claim(Chunk& chunk) {
    auto guard = co_await claim_lock_.lock();
    while (source_index_ < sources_.size() && source_offset_ >= sources_[source_index_]->size()) {
      source_index_++;
      source_offset_ = 0;
    }
    if (failed_ || source_index_ >= sources_.size()) co_return false;
    BlockNode* source = sources_[source_index_];
    const uint64_t offset = source_offset_;
    const uint64_t remaining = source->size() - offset;
    BlockStatus st;
    if (options_.sparse_size == 0) {
      st.data = true;
      st.length = std::min(remaining, kChunkSize);
    } else {
      st = co_await source->block_status(offset, std::min(remaining, kMaxZeroChunk));
      st.length = std::clamp<uint64_t>(st.length, 1, remaining);
    }
    uint64_t length;
    bool zero = st.zero && !st.data;
    if (zero && offset % unit_ == 0) {
      length = st.length == remaining ? remaining : align_down(st.length, unit_);
      if (length == 0) zero = false;
    } else {
      zero = false;
    }
    if (!zero) {
      length = std::min(std::min(st.length, kChunkSize), remaining);
      length = std::min(align_up(offset + length, unit_) - offset, remaining);
      length = std::min(length, std::max(kChunkSize, unit_));
    }
    chunk = Chunk{position_, source, offset, length, zero, next_sequence_++};
    source_offset_ += length;
    position_ += length;
    co_return true;
  }

  Task<void> wait_turn(uint64_t sequence) {
    if (options_.out_of_order) co_return;
    while (written_sequence_ != sequence && !failed_) co_await turn_.wait();
    if (failed_) raise(ECANCELED, "convert cancelled");
  }

  void end_turn() {
    if (options_.out_of_order) return;
    written_sequence_++;
    turn_.notify_all();
  }

  Task<void> write_data(uint64_t offset, std::span<const std::byte> data) {
    if (options_.compress) {
      const uint64_t cluster = target_.cluster_size();
      TaskGroup group;
      for (uint64_t pos = 0; pos < data.size(); pos += cluster) {
        auto piece = data.subspan(pos, std::min<uint64_t>(cluster, data.size() - pos));
        if (is_zero(piece.data(), piece.size()) && zero_target()) continue;
        group.spawn(target_.write_compressed(offset + pos, piece));
      }
      co_await group.join();
      co_return;
    }
    if (options_.sparse_size == 0) {
      co_await target_.write(offset, data);
      co_return;
    }
    // Split into runs of zero and non-zero units; write the data runs, and
    // zero the zero runs unless the target already reads as zeros.
    uint64_t pos = 0;
    while (pos < data.size()) {
      const uint64_t step = std::min<uint64_t>(unit_, data.size() - pos);
      const bool zero = is_zero(data.data() + pos, step);
      uint64_t end = pos + step;
      while (end < data.size()) {
        const uint64_t next = std::min<uint64_t>(unit_, data.size() - end);
        if (is_zero(data.data() + end, next) != zero) break;
        end += next;
      }
      if (!zero) co_await target_.write(offset + pos, data.subspan(pos, end - pos));
      else if (!zero_target()) co_await target_.write_zeroes(offset + pos, end - pos, ZeroFlags{.may_unmap = true});
      pos = end;
    }
  }

  bool zero_target() const { return options_.target_is_zero; }

  Task<void> worker() {
    AlignedBuffer buffer(std::max(kChunkSize, unit_));
    try {
      Chunk chunk;
      while (co_await claim(chunk)) {
        if (chunk.zero) {
          co_await wait_turn(chunk.sequence);
          if (!zero_target()) co_await target_.write_zeroes(chunk.target_offset, chunk.length, ZeroFlags{.may_unmap = true});
          end_turn();
        } else {
          auto data = buffer.span(0, chunk.length);
          co_await chunk.source->read(chunk.source_offset, data);
          co_await wait_turn(chunk.sequence);
          co_await write_data(chunk.target_offset, data);
          end_turn();
        }
        done_ += chunk.length;
        report(total_ ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0);
      }
    } catch (...) {
      failed_ = true;
      turn_.notify_all();
      throw;
    }
  }

  void report(double percent) {
    if (options_.progress) options_.progress(percent);
  }

  const std::vector<BlockNode*>& sources_;
  BlockNode& target_;
  const ConvertOptions& options_;
  uint64_t total_ = 0;
  uint64_t unit_ = 4096;
  size_t source_index_ = 0;
  uint64_t source_offset_ = 0;
  uint64_t position_ = 0;
  uint64_t next_sequence_ = 0;
  uint64_t written_sequence_ = 0;
  uint64_t done_ = 0;
  bool failed_ = false;
  WaitQueue turn_;
  CoMutex claim_lock_;
};

}  // namespace

Task<void> convert(const std::vector<BlockNode*>& sources, BlockNode& target, const ConvertOptions& options) {
  uint64_t total = 0;
  for (BlockNode* s : sources) total += s->size();
  if (target.size() < total) raise(EINVAL, "The target is smaller than the source ({} < {} bytes)", target.size(), total);
  ConvertJob job(sources, target, options);
  co_await job.run();
}

}  // namespace keel::block
