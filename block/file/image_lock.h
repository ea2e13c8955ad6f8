// Image locking compatible with QEMU's: open file description (OFD) locks on
// single bytes of the image file. Holding permission bit i locks byte 100+i;
// refusing to share permission i locks byte 200+i. Because the bytes match
// QEMU's, keel and QEMU processes see each other's locks.
#pragma once

#include <cstdint>
#include <string>

namespace keel::block {

enum Permission : uint32_t {
  kPermConsistentRead = 1u << 0,
  kPermWrite = 1u << 1,
  kPermWriteUnchanged = 1u << 2,
  kPermResize = 1u << 3,
  kPermAll = (1u << 4) - 1,
};

// Takes the locks for `perm` (what we use) and `shared` (what others may use),
// or raises EAGAIN with qemu's message naming the conflicting permission.
void lock_image(int fd, const std::string& path, uint32_t perm, uint32_t shared);

// What a format node needs of its file: readers take consistent read and
// refuse concurrent writers; writers also take write and resize. With
// force_share (qemu's -U) a read-only open takes nothing and shares everything.
struct LockRequest {
  uint32_t perm;
  uint32_t shared;
};
LockRequest lock_request(bool writable, bool force_share);

// Drops every lock `fd`'s open file description holds. Closing the last
// descriptor does the same, but only once the kernel lets go of the file:
// an io_uring request that has already completed may still hold it for a
// moment, and a reopen in that moment would find the old locks.
void unlock_image(int fd);

}  // namespace keel::block
