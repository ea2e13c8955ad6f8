// An image file made under a temporary name and renamed over its target only
// once complete and durable, so that a killed tool leaves either the old file
// (or none) or the whole new image under the target's name, never a plausible
// but incomplete one. qemu-img instead truncates the target at create.
//
// The temporary file is `.<name>.keel-XXXXXX` beside the file the target names
// (through symbolic links, which keep pointing at the new image), so that
// relative backing names resolve the same. Where a replacement could not look
// like the file it replaces (a device, a FIFO, a file with other hard links,
// an owner, mode or extended attribute that cannot be carried over) or the
// directory refuses a new file, the image is written in place, as qemu-img does.
#pragma once

#include <string>

#include "base/error.h"

namespace keel::tools {

class AtomicOutput {
 public:
  // Chooses where the image for `target` is made. An existing regular target
  // must be writable and not in use (qemu's writer locks, held on it until
  // the output is committed or dropped); raises as qemu-img's create would.
  explicit AtomicOutput(const std::string& target);
  // Unless committed: removes the temporary file.
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  // The name to create, open and write the image under.
  const std::string& path() const { return temporary_.empty() ? target_ : temporary_; }
  bool in_place() const { return temporary_.empty(); }

  // Flushes the image to stable storage, renames it over the target and
  // flushes the directory. The image must be closed (or at least idle).
  void commit();

  // `e` with the temporary name replaced by the target's, so that messages
  // name the file the user asked for.
  Error with_target_name(const Error& e) const;

 private:
  // Creates the temporary file beside `resolved_`; leaves in_place() on failure.
  void make_temporary();
  // Gives the temporary file the owner and extended attributes of the file it
  // replaces (its mode comes at commit); false if it cannot.
  bool copy_identity();
  void remove_temporary() noexcept;
  void release_target() noexcept;

  std::string target_;     // as given
  std::string resolved_;   // the file the target names, symbolic links followed
  std::string temporary_;  // empty: written in place
  int temporary_fd_ = -1;
  int target_fd_ = -1;     // the existing target, holding its locks; -1 if there is none
};

}  // namespace keel::tools
