#include "formats/qcow2/compression.h"

#include <zlib.h>
#include <zstd.h>

#include <memory>

#include "base/error.h"

namespace keel::qcow2 {

namespace {

constexpr int kDeflateWindowBits = -12;  // raw deflate, 4 KiB window

struct DeflateContext {
  z_stream stream{};
  DeflateContext() {
    if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kDeflateWindowBits, 9, Z_DEFAULT_STRATEGY) != Z_OK)
      throw std::bad_alloc();
  }
  ~DeflateContext() { deflateEnd(&stream); }
};

struct InflateContext {
  z_stream stream{};
  InflateContext() {
    if (inflateInit2(&stream, kDeflateWindowBits) != Z_OK) throw std::bad_alloc();
  }
  ~InflateContext() { inflateEnd(&stream); }
};

struct ZstdContexts {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx{ZSTD_createCCtx(), ZSTD_freeCCtx};
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx{ZSTD_createDCtx(), ZSTD_freeDCtx};
};

DeflateContext& deflate_context() {
  thread_local DeflateContext ctx;
  return ctx;
}
InflateContext& inflate_context() {
  thread_local InflateContext ctx;
  return ctx;
}
ZstdContexts& zstd_contexts() {
  thread_local ZstdContexts ctx;
  return ctx;
}

}  // namespace

std::optional<size_t> compress_cluster(CompressionType type, std::span<const std::byte> in, std::span<std::byte> out) {
  if (type == CompressionType::Zlib) {
    z_stream& s = deflate_context().stream;
    deflateReset(&s);
    s.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
    s.avail_in = static_cast<uInt>(in.size());
    s.next_out = reinterpret_cast<Bytef*>(out.data());
    s.avail_out = static_cast<uInt>(out.size());
    if (deflate(&s, Z_FINISH) != Z_STREAM_END) return std::nullopt;
    return out.size() - s.avail_out;
  }
  ZSTD_CCtx* cctx = zstd_contexts().cctx.get();
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n)) return std::nullopt;
  return n;
}

void decompress_cluster(CompressionType type, std::span<const std::byte> in, std::span<std::byte> out) {
  if (type == CompressionType::Zlib) {
    z_stream& s = inflate_context().stream;
    inflateReset(&s);
    s.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
    s.avail_in = static_cast<uInt>(in.size());
    s.next_out = reinterpret_cast<Bytef*>(out.data());
    s.avail_out = static_cast<uInt>(out.size());
    int ret = inflate(&s, Z_FINISH);
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && s.avail_out == 0) return;
    raise(EIO, "Could not decompress cluster (zlib: {})", s.msg ? s.msg : "incomplete data");
  }
  ZSTD_DCtx* dctx = zstd_contexts().dctx.get();
  ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  ZSTD_outBuffer output{out.data(), out.size(), 0};
  // The stored data may be followed by padding; stop once a cluster is produced.
  while (output.pos < output.size) {
    const size_t before_in = input.pos, before_out = output.pos;
    size_t ret = ZSTD_decompressStream(dctx, &output, &input);
    if (ZSTD_isError(ret)) raise(EIO, "Could not decompress cluster (zstd: {})", ZSTD_getErrorName(ret));
    if (ret == 0 && output.pos < output.size) raise(EIO, "Could not decompress cluster (zstd: frame ends early)");
    if (input.pos == before_in && output.pos == before_out)
      raise(EIO, "Could not decompress cluster (zstd: input ends early)");
  }
}

}  // namespace keel::qcow2
