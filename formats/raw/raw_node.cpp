// raw: the format driver that exposes its file child byte for byte, and its registration.
#include "base/error.h"
#include "base/units.h"
#include "block/format.h"

namespace keel::raw {

using namespace keel::block;

namespace {

class RawNode final : public BlockNode {
 public:
  explicit RawNode(std::unique_ptr<BlockNode> file) : BlockNode(file->filename(), file->writable()) {
    set_file(std::move(file));
  }

  std::string_view format_name() const override { return "raw"; }
  // Disks are whole 512-byte sectors: a file's partial last sector reads as
  // zeros beyond its end, as in qemu.
  uint64_t size() const override { return align_up(file_->size(), 512); }
  Limits limits() const override { return file_->limits(); }
  // What the protocol node knows, as qemu's raw forwards bdrv_get_info to its file.
  FormatInfo format_info() const override { return {.dirty = file_->format_info().dirty}; }

  Task<void> read(uint64_t offset, std::span<std::byte> buffer) override {
    check_range(offset, buffer.size());
    co_await file_->read(offset, buffer);
  }
  Task<void> write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags) override {
    check_range(offset, data.size());
    co_await file_->write(offset, data, flags);
  }
  Task<void> write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags) override {
    check_range(offset, length);
    co_await file_->write_zeroes(offset, length, flags);
  }
  Task<void> discard(uint64_t offset, uint64_t length) override {
    check_range(offset, length);
    co_await file_->discard(offset, length);
  }
  Task<void> flush() override { co_await file_->flush(); }
  Task<BlockStatus> block_status(uint64_t offset, uint64_t length) override {
    BlockStatus st = co_await file_->block_status(offset, length);
    st.allocated = st.allocated_in_chain = true;
    co_return st;
  }
  Task<void> truncate(uint64_t size, Preallocation prealloc) override { co_await file_->truncate(size, prealloc); }

 private:
  void check_range(uint64_t offset, uint64_t length) const {
    if (offset > size() || length > size() - offset)
      raise(EINVAL, "Request of {} bytes at offset {} is past the end of '{}' ({} bytes)", length, offset, filename_,
            size());
  }
};

int probe(std::span<const std::byte>) { return 1; }

Task<std::unique_ptr<BlockNode>> open(std::unique_ptr<BlockNode> file, const OpenOptions&) {
  co_return std::make_unique<RawNode>(std::move(file));
}

const std::vector<OptionSpec>& create_options() {
  static const std::vector<OptionSpec> specs = {
      {"size", OptionType::Size, "Virtual disk size", std::nullopt},
      {"preallocation", OptionType::String, "Preallocation mode (allowed values: off, falloc, full)", std::nullopt},
  };
  return specs;
}

Task<void> create(const CreateRequest& request) {
  Preallocation prealloc = Preallocation::Off;
  if (auto p = request.options.get("preallocation")) {
    auto parsed = parse_preallocation(*p);
    if (!parsed) raise(EINVAL, "invalid parameter value: {}", *p);
    if (*parsed == Preallocation::Metadata) raise(EINVAL, "Unsupported preallocation mode: metadata");
    prealloc = *parsed;
  }
  FileNode::create(request.filename, request.size, prealloc);
  co_return;
}

const FormatDriver kDriver{"raw", probe, open, create, create_options};
const FormatRegistration kRegistration(kDriver);

}  // namespace

}  // namespace keel::raw
