#include "block/file/image_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/error.h"

namespace keel::block {

namespace {

constexpr off_t kPermLockBase = 100;
constexpr off_t kSharedLockBase = 200;
constexpr const char* kPermNames[] = {"consistent read", "write", "write unchanged", "resize"};

// Runs an OFD lock command of `type` on the single byte `byte`.
int byte_lock(int fd, int command, short type, off_t byte, struct flock* result = nullptr) {
  struct flock fl = {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  int r = fcntl(fd, command, &fl);
  if (result) *result = fl;
  return r;
}

void set_read_lock(int fd, off_t byte) {
  if (byte_lock(fd, F_OFD_SETLK, F_RDLCK, byte) < 0) raise_errno(errno, "Failed to lock byte");
}

void unlock_byte(int fd, off_t byte) { byte_lock(fd, F_OFD_SETLK, F_UNLCK, byte); }

// True when another open file description holds a lock on `byte`.
bool locked_by_other(int fd, off_t byte) {
  struct flock fl;
  if (byte_lock(fd, F_OFD_GETLK, F_WRLCK, byte, &fl) < 0) return false;
  return fl.l_type != F_UNLCK;
}

}  // namespace

void unlock_image(int fd) {
  struct flock fl = {};
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file
  fcntl(fd, F_OFD_SETLK, &fl);
}

LockRequest lock_request(bool writable, bool force_share) {
  if (writable) return {kPermConsistentRead | kPermWrite | kPermResize, kPermConsistentRead | kPermWriteUnchanged};
  if (force_share) return {0, kPermAll};
  return {kPermConsistentRead, kPermConsistentRead | kPermWriteUnchanged};
}

void lock_image(int fd, const std::string& path, uint32_t perm, uint32_t shared) {
  for (unsigned bit = 0; bit < 4; bit++) {
    uint32_t mask = 1u << bit;
    if (perm & mask) set_read_lock(fd, kPermLockBase + bit);
    if (!(shared & mask)) set_read_lock(fd, kSharedLockBase + bit);
  }
  for (unsigned bit = 0; bit < 4; bit++) {
    uint32_t mask = 1u << bit;
    const char* conflict = nullptr;
    if ((perm & mask) && locked_by_other(fd, kSharedLockBase + bit)) conflict = "";
    else if (!(shared & mask) && locked_by_other(fd, kPermLockBase + bit)) conflict = "shared ";
    if (conflict) {
      for (unsigned b = 0; b < 4; b++) {
        unlock_byte(fd, kPermLockBase + b);
        unlock_byte(fd, kSharedLockBase + b);
      }
      raise(EAGAIN, "Failed to get {}\"{}\" lock\nIs another process using the image [{}]?", conflict, kPermNames[bit],
            path);
    }
  }
}

}  // namespace keel::block
