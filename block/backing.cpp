#include "block/backing.h"

#include <sys/stat.h>

#include <algorithm>

#include "base/error.h"

namespace keel::block {

namespace {

std::optional<std::pair<uint64_t, uint64_t>> file_identity(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return std::nullopt;
  return std::pair<uint64_t, uint64_t>{st.st_dev, st.st_ino};
}

}  // namespace

std::string combine_paths(const std::string& image, const std::string& backing) {
  if (backing.empty() || backing[0] == '/' || backing.find("://") != std::string::npos) return backing;
  auto slash = image.rfind('/');
  if (slash == std::string::npos) return backing;
  return image.substr(0, slash + 1) + backing;
}

Task<std::unique_ptr<BlockNode>> open_backing(const BlockNode& overlay, const std::string& name,
                                              const std::optional<std::string>& format, const OpenOptions& options) {
  const std::string path = combine_paths(overlay.filename(), name);
  OpenOptions backing_options{
      .format = format, .force_share = options.force_share, .cache = options.cache, .overlays = options.overlays};
  if (const auto id = file_identity(overlay.filename())) backing_options.overlays.push_back(*id);
  // Refused here, once, without the context every level of the chain would add.
  if (backing_options.overlays.size() >= kMaxBackingChainLength)
    raise(ELOOP, "Could not open backing file: the backing chain is longer than {} images", kMaxBackingChainLength);
  const auto id = file_identity(path);
  if (id && std::find(backing_options.overlays.begin(), backing_options.overlays.end(), *id) !=
                backing_options.overlays.end())
    raise(ELOOP, "Could not open backing file: Backing file '{}' creates an infinite loop", path);
  try {
    co_return co_await open_image(path, backing_options);
  } catch (const Error& e) {
    if (e.code() == ELOOP) throw;
    throw e.with_context("Could not open backing file");
  }
}

Task<uint64_t> check_backing_for_create(const std::string& filename, const std::string& name,
                                        const std::optional<std::string>& format) {
  const std::string path = combine_paths(filename, name);
  const OpenOptions options{.format = format, .force_share = true};
  std::unique_ptr<BlockNode> node;
  try {
    node = co_await open_image(path, options);
  } catch (const Error& e) {
    throw Error(e.code(), e.message() + "\nCould not open backing image.");
  }
  if (!format)
    raise(EINVAL, "Backing file specified without backing format\nDetected format of {}.", node->format_name());
  co_return node->size();
}

}  // namespace keel::block
