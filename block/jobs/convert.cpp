#include "block/jobs/convert.h"

#include <algorithm>
#include <cstring>

#include "base/async/sync.h"
#include "base/error.h"
#include "base/units.h"
#include "base/zero_bytes.h"
#include "block/file/file_node.h"

namespace keel::block {

namespace {

constexpr uint64_t kChunkSize = 2ull << 20;  // qemu's IO_BUF_SIZE
// A zero run is one chunk up to this size: skipping (or zeroing) it is cheap,
// and a huge empty image then takes thousands of steps rather than millions.
constexpr uint64_t kMaxZeroChunk = 64ull << 30;

struct Chunk {
  uint64_t offset;  // in the concatenation of the sources, which is also the target offset
  uint64_t length;
  bool zero;
  uint64_t sequence;
};

class ConvertJob {
 public:
  ConvertJob(const std::vector<BlockNode*>& sources, BlockNode& target, const ConvertOptions& options)
      : sources_(sources), target_(target), options_(options) {
    for (BlockNode* s : sources_) total_ += s->size();
    // Zeros are detected in units of the sparse size, as qemu does; chunks
    // end on target cluster boundaries so workers rarely share a cluster.
    // Compressed output is written in whole clusters.
    unit_ = options.compress ? target.cluster_size() : std::max<uint64_t>(options.sparse_size, 512);
    chunk_align_ = std::max(unit_, target.cluster_size());
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
  // The source holding byte `offset` of the concatenation, and the offset within it.
  std::pair<BlockNode*, uint64_t> locate(uint64_t offset) const {
    for (BlockNode* s : sources_) {
      if (offset < s->size()) return {s, offset};
      offset -= s->size();
    }
    return {nullptr, 0};
  }

  // Reads [offset, offset + out.size()) of the concatenation, across sources if need be.
  Task<void> read(uint64_t offset, std::span<std::byte> out) {
    uint64_t done = 0;
    while (done < out.size()) {
      auto [source, local] = locate(offset + done);
      const uint64_t n = std::min<uint64_t>(out.size() - done, source->size() - local);
      co_await source->read(local, out.subspan(done, n));
      done += n;
    }
  }

  // Claims the next chunk; false when the sources are exhausted or a worker failed.
  Task<bool> claim(Chunk& chunk) {
    auto guard = co_await claim_lock_.lock();
    if (failed_ || position_ >= total_) co_return false;
    auto [source, local] = locate(position_);
    const uint64_t in_source = source->size() - local;
    BlockStatus st;
    if (options_.sparse_size == 0) {
      st.data = true;
      st.length = std::min(in_source, kChunkSize);
    } else {
      st = co_await source->block_status(local, std::min(in_source, kMaxZeroChunk));
      st.length = std::clamp<uint64_t>(st.length, 1, in_source);
    }
    uint64_t length = 0;
    bool zero = st.zero && !st.data && position_ % unit_ == 0;
    if (zero) {
      // A zero run may end mid-unit only at the very end; elsewhere the rest
      // of the unit (possibly from the next source) is copied as data.
      length = position_ + st.length == total_ ? st.length : align_down(st.length, unit_);
      zero = length > 0;
    }
    if (!zero) {
      length = std::min(st.length, kChunkSize);
      const uint64_t aligned_end = align_up(position_ + length, chunk_align_);
      length =
          std::min(aligned_end - position_ <= kChunkSize ? aligned_end : align_up(position_ + length, unit_), total_) -
          position_;
    }
    chunk = Chunk{position_, length, zero, next_sequence_++};
    position_ += length;
    co_return true;
  }

  // Compressed clusters are packed into the image in whatever order they are
  // ready, so compression needs no turn and overlaps across chunks.
  bool ordered() const { return !options_.out_of_order && !options_.compress; }

  Task<void> wait_turn(uint64_t sequence) {
    if (!ordered()) co_return;
    while (written_sequence_ != sequence && !failed_) co_await turn_.wait();
    if (failed_) raise(ECANCELED, "convert cancelled");
  }

  void end_turn() {
    if (!ordered()) return;
    written_sequence_++;
    turn_.notify_all();
  }

  Task<void> write_data(uint64_t offset, std::span<std::byte> data) {
    if (options_.compress) {
      const uint64_t cluster = target_.cluster_size();
      TaskGroup group;
      for (uint64_t pos = 0; pos < data.size(); pos += cluster) {
        // The last cluster is padded with zeros up to the target's end (the
        // buffer is zero beyond the data read).
        const uint64_t length = std::min<uint64_t>(cluster, target_.size() - (offset + pos));
        auto piece = data.subspan(pos, length);
        // A zero cluster is not worth compressing: skip or zero it (unless -S 0).
        if (options_.sparse_size && is_zero(piece.data(), piece.size())) {
          if (!zero_target()) group.spawn(target_.write_zeroes(offset + pos, length, ZeroFlags{.may_unmap = true}));
          continue;
        }
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
      if (!zero)
        co_await target_.write(offset + pos, data.subspan(pos, end - pos));
      else if (!zero_target())
        co_await target_.write_zeroes(offset + pos, end - pos, ZeroFlags{.may_unmap = true});
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
          if (!zero_target()) co_await target_.write_zeroes(chunk.offset, chunk.length, ZeroFlags{.may_unmap = true});
          end_turn();
        } else {
          auto data = buffer.span(0, chunk.length);
          co_await read(chunk.offset, data);
          if (options_.compress) std::memset(buffer.data() + chunk.length, 0, buffer.size() - chunk.length);
          co_await wait_turn(chunk.sequence);
          co_await write_data(chunk.offset, options_.compress ? buffer.span(0, align_up(chunk.length, unit_)) : data);
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
  uint64_t chunk_align_ = 4096;
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
  if (target.size() < total) raise(EINVAL, "output file is smaller than input file");
  ConvertJob job(sources, target, options);
  co_await job.run();
}

}  // namespace keel::block
