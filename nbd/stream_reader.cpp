#include "nbd/stream_reader.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"


namespace keel::nbd {

void StreamReader::prepend(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  std::vector<std::byte> joined(bytes.begin(), bytes.end());
  joined.insert(joined.end(), buffer_.begin() + static_cast<ptrdiff_t>(begin_),
                buffer_.begin() + static_cast<ptrdiff_t>(end_));
  if (joined.size() > buffer_.size()) buffer_.resize(joined.size());
  std::copy(joined.begin(), joined.end(), buffer_.begin());
  begin_ = 0;
  end_ = joined.size();
}

Task<bool> StreamReader::read_exact(std::span<std::byte> out) {
  size_t done = 0;
  while (done < out.size()) {
    if (begin_ == end_) {
      begin_ = end_ = 0;
      const size_t want = out.size() - done;
      // Large payloads go straight to their destination; short messages are read ahead.
      if (want >= kBufferSize) {
        const size_t n = co_await transport_->read_some(out.subspan(done));
        if (n == 0) break;
        done += n;
        continue;
      }
      if (buffer_.size() < kBufferSize) buffer_.resize(kBufferSize);
      end_ = co_await transport_->read_some(buffer_);
      if (end_ == 0) break;
    }
    const size_t take = std::min(end_ - begin_, out.size() - done);
    std::memcpy(out.data() + done, buffer_.data() + begin_, take);
    begin_ += take;
    done += take;
  }
  if (done == out.size()) co_return true;
  if (done == 0) co_return false;
  raise(ECONNRESET, "connection closed in the middle of a message");
}

Task<void> StreamReader::skip(uint64_t length) {
  std::vector<std::byte> scratch(std::min<uint64_t>(length, 64 * 1024));
  while (length > 0) {
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(length, scratch.size()));
    if (!co_await read_exact(std::span(scratch).first(piece))) raise(ECONNRESET, "connection closed");
    length -= piece;
  }
}

std::vector<std::byte> StreamReader::take_buffered() {
  std::vector<std::byte> out(buffer_.begin() + static_cast<ptrdiff_t>(begin_),
                             buffer_.begin() + static_cast<ptrdiff_t>(end_));
  begin_ = end_ = 0;
  return out;
}

}  // namespace keel::nbd
