#include "block/probed_raw_guard.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "block/format.h"

namespace keel::block {

namespace {

// The bytes probing looks at, as in qemu.
constexpr uint64_t kProbeBytes = 512;

class ProbedRawGuard final : public BlockNode {
 public:
  explicit ProbedRawGuard(std::unique_ptr<BlockNode> raw)
      : BlockNode(raw->filename(), raw->writable()), raw_(std::move(raw)) {}

  std::string_view format_name() const override { return raw_->format_name(); }
  uint64_t size() const override { return raw_->size(); }
  Limits limits() const override { return raw_->limits(); }
  Task<void> read(uint64_t offset, std::span<std::byte> buffer) override { co_await raw_->read(offset, buffer); }
  Task<void> write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags) override {
    if (offset < kProbeBytes && !data.empty()) co_await refuse_format_change(offset, data);
    co_await raw_->write(offset, data, flags);
  }
  Task<void> write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags) override {
    co_await raw_->write_zeroes(offset, length, flags);
  }
  Task<void> discard(uint64_t offset, uint64_t length) override { co_await raw_->discard(offset, length); }
  Task<void> flush() override { co_await raw_->flush(); }
  Task<BlockStatus> block_status(uint64_t offset, uint64_t length) override {
    co_return co_await raw_->block_status(offset, length);
  }
  Task<void> truncate(uint64_t size, Preallocation prealloc) override { co_await raw_->truncate(size, prealloc); }
  std::optional<uint64_t> allocated_size() const override { return raw_->allocated_size(); }
  FormatInfo format_info() const override { return raw_->format_info(); }
  Task<void> close() override { co_await raw_->close(); }

 private:
  // The first sector as the write would leave it must still probe as raw.
  Task<void> refuse_format_change(uint64_t offset, std::span<const std::byte> data) {
    std::vector<std::byte> head(std::min(kProbeBytes, raw_->size()));
    co_await raw_->read(0, head);
    if (offset < head.size())
      std::memcpy(head.data() + offset, data.data(), std::min<size_t>(data.size(), head.size() - offset));
    for (const FormatDriver* f : all_formats())
      if (f->name != format_name() && f->probe(head) > find_format(format_name())->probe(head))
        raise(EPERM, "Writing a {} header to an image probed as raw is not allowed", f->name);
  }

  std::unique_ptr<BlockNode> raw_;
};

}  // namespace

std::unique_ptr<BlockNode> guard_probed_raw(std::unique_ptr<BlockNode> raw) {
  return std::make_unique<ProbedRawGuard>(std::move(raw));
}

}  // namespace keel::block
