// Cluster compression for qcow2: raw deflate (no zlib header, 4 KiB window,
// as qemu writes it) and zstd. Each thread keeps its own compressor and
// decompressor contexts and reuses them for every cluster.
#pragma once

#include <cstddef>
#include <optional>
#include <span>

#include "formats/qcow2/header.h"

namespace keel::qcow2 {

// Compresses `in` into `out`; nullopt if the result does not fit in `out`.
std::optional<size_t> compress_cluster(CompressionType type, std::span<const std::byte> in, std::span<std::byte> out);

// Decompresses into exactly `out.size()` bytes, ignoring trailing input (the
// stored length is rounded to sectors). Raises EIO on malformed input.
void decompress_cluster(CompressionType type, std::span<const std::byte> in, std::span<std::byte> out);

}  // namespace keel::qcow2
