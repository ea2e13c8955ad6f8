// Backing chains: where an image's backing file is, and opening it as the
// read-only node under the image, as qemu opens a qcow2 image's backing child.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/async/task.h"
#include "block/format.h"

namespace keel::block {

// The longest chain keel opens; deeper ones are refused rather than exhausting
// descriptors and stack. qemu sets no bound, but chains are a few dozen deep at most.
constexpr size_t kMaxBackingChainLength = 256;

// qemu's path_combine(): a backing file name is relative to the directory of
// the image naming it, unless it is absolute (or a URI).
std::string combine_paths(const std::string& image, const std::string& backing);

// Opens the backing file `name` that the image `overlay` (opened with
// `options`) names, in `format` or probed when nullopt: read-only, taking
// consistent read and sharing no write, with the overlay's cache mode and
// force-share. Errors read "Could not open backing file: ..." as qemu's do; a
// loop or a chain longer than kMaxBackingChainLength fails with ELOOP.
Task<std::unique_ptr<BlockNode>> open_backing(const BlockNode& overlay, const std::string& name,
                                              const std::optional<std::string>& format, const OpenOptions& options);

// What qemu's bdrv_img_create() makes sure of before creating `filename`
// over the backing file `name`: that it opens (read-only, sharing
// everything) in `format`, and that a format was given at all (the error
// names the probed one). Returns the backing node's size, the new image's
// size when none is given.
Task<uint64_t> check_backing_for_create(const std::string& filename, const std::string& name,
                                        const std::optional<std::string>& format);

}  // namespace keel::block
