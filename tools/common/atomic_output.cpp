#include "tools/common/atomic_output.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "block/file/image_lock.h"

namespace keel::tools {

namespace {

// Signals that end the process by default and that a user or a supervisor
// sends to stop a tool: the temporary file goes with the process. SIGKILL
// cannot be caught; it leaves a stale temporary file, never a partial target.
constexpr int kCleanupSignals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE};
constexpr int kSymlinkHops = 40;  // as the kernel's ELOOP limit
constexpr size_t kSuffixLength = 6;
constexpr int kNameAttempts = 100;

char g_cleanup_path[PATH_MAX];
std::atomic<bool> g_cleanup_armed{false};
struct sigaction g_previous[std::size(kCleanupSignals)];
bool g_installed[std::size(kCleanupSignals)];

void remove_and_reraise(int sig) {
  if (g_cleanup_armed.exchange(false)) ::unlink(g_cleanup_path);
  // SA_RESETHAND restored the default action: end the way the signal says.
  ::raise(sig);
}

void arm_cleanup(const std::string& path) {
  if (path.size() >= sizeof g_cleanup_path) return;
  std::memcpy(g_cleanup_path, path.c_str(), path.size() + 1);
  g_cleanup_armed = true;
  for (size_t i = 0; i < std::size(kCleanupSignals); i++) {
    struct sigaction action {};
    action.sa_handler = remove_and_reraise;
    action.sa_flags = SA_RESETHAND;
    sigemptyset(&action.sa_mask);
    // A signal the caller ignores (nohup's SIGHUP) stays ignored.
    g_installed[i] = ::sigaction(kCleanupSignals[i], nullptr, &g_previous[i]) == 0 &&
                     g_previous[i].sa_handler != SIG_IGN && ::sigaction(kCleanupSignals[i], &action, nullptr) == 0;
  }
}

void disarm_cleanup() {
  g_cleanup_armed = false;
  for (size_t i = 0; i < std::size(kCleanupSignals); i++)
    if (std::exchange(g_installed[i], false)) ::sigaction(kCleanupSignals[i], &g_previous[i], nullptr);
}

// "dir/" of a path ("" for a bare name), and the name after it.
std::string directory_part(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

// The file `path` names once symbolic links in its last component are followed.
std::string follow_links(std::string path) {
  for (int hop = 0; hop < kSymlinkHops; hop++) {
    char link[PATH_MAX];
    const ssize_t n = ::readlink(path.c_str(), link, sizeof link);
    if (n < 0 || static_cast<size_t>(n) == sizeof link) break;
    const std::string to(link, static_cast<size_t>(n));
    path = to.front() == '/' ? to : directory_part(path) + to;
  }
  return path;
}

std::string random_suffix() {
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device device;
  std::uniform_int_distribution<size_t> pick(0, sizeof kChars - 2);
  std::string s;
  for (size_t i = 0; i < kSuffixLength; i++) s += kChars[pick(device)];
  return s;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
  return s;
}

}  // namespace

AtomicOutput::AtomicOutput(const std::string& target) : target_(target), resolved_(follow_links(target)) {
  if (target.empty()) return;  // no name to rename to: the create reports it, as qemu-img's does
  struct stat st;
  if (::lstat(resolved_.c_str(), &st) < 0) {
    // No such file yet: made new. Other errors are left to the create, which
    // reports them as qemu-img does.
    if (errno == ENOENT) make_temporary();
    return;
  }
  if (!S_ISREG(st.st_mode) || st.st_nlink != 1) return;
  // qemu-img's create opens the target for writing and takes the writer's
  // locks before truncating it; the same checks, without the truncation.
  target_fd_ = ::open(resolved_.c_str(), O_RDWR | O_CLOEXEC);
  if (target_fd_ < 0) raise(errno, "Could not create '{}': {}", target_, errno_text(errno));
  try {
    const block::LockRequest req = block::lock_request(true, false);
    block::lock_image(target_fd_, target_, req.perm, req.shared);
  } catch (const Error&) {
    ::close(target_fd_);
    throw;
  }
  make_temporary();
  // Written in place after all: the create takes these locks itself (and
  // OFD locks of two descriptions conflict even within one process).
  if (in_place()) release_target();
}

AtomicOutput::~AtomicOutput() {
  remove_temporary();
  release_target();
}

void AtomicOutput::release_target() noexcept {
  if (target_fd_ < 0) return;
  block::unlock_image(target_fd_);
  ::close(target_fd_);
  target_fd_ = -1;
}

void AtomicOutput::make_temporary() {
  const std::string directory = directory_part(resolved_);
  std::string name = resolved_.substr(directory.size());
  const std::string tag = ".keel-";
  // Room for the dot, the tag and the suffix within one directory entry.
  name.resize(std::min<size_t>(name.size(), NAME_MAX - 1 - tag.size() - kSuffixLength));
  for (int attempt = 0; attempt < kNameAttempts; attempt++) {
    const std::string candidate = directory + "." + name + tag + random_suffix();
    // Armed first, so that no signal finds the file created but unknown.
    arm_cleanup(candidate);
    const int fd = ::open(candidate.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int error = errno;
      disarm_cleanup();
      if (error == EEXIST) continue;
      return;  // e.g. the directory is not writable: in place, as qemu-img
    }
    temporary_ = candidate;
    temporary_fd_ = fd;
    if (!copy_identity()) remove_temporary();
    return;
  }
}

bool AtomicOutput::copy_identity() {
  if (target_fd_ < 0) return true;
  struct stat old, now;
  if (::fstat(target_fd_, &old) < 0 || ::fstat(temporary_fd_, &now) < 0) return false;
  if ((old.st_uid != now.st_uid || old.st_gid != now.st_gid) && ::fchown(temporary_fd_, old.st_uid, old.st_gid) < 0)
    return false;
  // Extended attributes hold ACLs and security labels.
  const ssize_t list_size = ::flistxattr(target_fd_, nullptr, 0);
  if (list_size < 0) return errno == ENOTSUP;
  std::vector<char> names(static_cast<size_t>(list_size));
  if (::flistxattr(target_fd_, names.data(), names.size()) != list_size) return false;
  for (size_t pos = 0; pos < names.size(); pos += std::strlen(names.data() + pos) + 1) {
    const char* attr = names.data() + pos;
    const ssize_t size = ::fgetxattr(target_fd_, attr, nullptr, 0);
    if (size < 0) return false;
    std::vector<char> value(static_cast<size_t>(size));
    if (::fgetxattr(target_fd_, attr, value.data(), value.size()) != size) return false;
    if (::fsetxattr(temporary_fd_, attr, value.data(), value.size(), 0) < 0) return false;
  }
  return true;
}

void AtomicOutput::remove_temporary() noexcept {
  if (temporary_.empty()) return;
  ::unlink(temporary_.c_str());
  disarm_cleanup();
  ::close(temporary_fd_);
  temporary_.clear();
  temporary_fd_ = -1;
}

void AtomicOutput::commit() {
  if (in_place()) return;
  if (target_fd_ >= 0) {
    struct stat old;
    if (::fstat(target_fd_, &old) < 0 || ::fchmod(temporary_fd_, old.st_mode & 07777) < 0)
      raise(errno, "Could not give '{}' the mode of the file it replaces: {}", target_, errno_text(errno));
  }
  if (::fsync(temporary_fd_) < 0) raise(errno, "Could not flush '{}': {}", target_, errno_text(errno));
  if (::rename(temporary_.c_str(), resolved_.c_str()) < 0)
    raise(errno, "Could not rename the new image to '{}': {}", target_, errno_text(errno));
  disarm_cleanup();
  ::close(temporary_fd_);
  temporary_.clear();
  temporary_fd_ = -1;
  // The rename is durable once the directory is; file systems that cannot
  // flush a directory (EINVAL) have nothing to flush.
  const std::string directory = directory_part(resolved_);
  const int dir_fd = ::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) raise(errno, "Could not open the directory of '{}': {}", target_, errno_text(errno));
  const int flushed = ::fsync(dir_fd);
  const int flush_error = errno;
  ::close(dir_fd);
  if (flushed < 0 && flush_error != EINVAL)
    raise(flush_error, "Could not flush the directory of '{}': {}", target_, errno_text(flush_error));
  release_target();
}

Error AtomicOutput::with_target_name(const Error& e) const {
  if (in_place()) return e;
  return Error(e.code(), replace_all(e.message(), temporary_, target_));
}

}  // namespace keel::tools
