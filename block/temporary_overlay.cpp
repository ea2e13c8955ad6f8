#include "block/temporary_overlay.h"

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "base/error.h"

namespace keel::block {

namespace {

// An empty file of a fresh name; the caller formats it.
std::string create_temporary_file() {
  const char* env = std::getenv("TMPDIR");
  std::string dir = env && *env ? env : "/tmp";
  // /tmp is often a tmpfs, a poor place for a disk's worth of writes.
  if (dir == "/tmp") dir = "/var/tmp";
  std::string name = dir + "/vl.XXXXXX";
  std::vector<char> path(name.begin(), name.end());
  path.push_back('\0');
  const int fd = ::mkstemp(path.data());
  if (fd < 0) raise_errno(errno, fmt::format("Could not create temporary overlay in '{}'", dir));
  ::close(fd);
  return path.data();
}

}  // namespace

Task<std::unique_ptr<BlockNode>> open_with_temporary_overlay(const ImageOptions& options) {
  ImageOptions image_options = options;
  image_options.open.writable = false;
  std::unique_ptr<BlockNode> image = co_await open_image(image_options);

  const std::string path = create_temporary_file();
  std::unique_ptr<BlockNode> overlay;
  std::exception_ptr error;
  try {
    // Named rather than temporaries in the co_await expressions, which GCC 12 destroys twice.
    const CreateRequest request{.filename = path, .size = image->size()};
    co_await find_format("qcow2")->create(request);
    const OpenOptions overlay_options{
        .format = std::string("qcow2"), .writable = options.open.writable, .cache = options.open.cache};
    overlay = co_await open_image(path, overlay_options);
  } catch (...) {
    error = std::current_exception();
  }
  ::unlink(path.c_str());
  if (error) std::rethrow_exception(error);
  overlay->attach_backing(std::move(image));
  co_return overlay;
}

}  // namespace keel::block
