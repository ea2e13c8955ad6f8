// An NBD server (keel-nbd or qemu-nbd, started the same way) serving one image
// on a Unix socket in a test's directory, for tests that talk to it as clients.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace keel::test {

enum class NbdServerKind { Keel, Qemu };

std::string nbd_server_name(NbdServerKind kind);

class NbdServerProcess {
 public:
  // Runs `<server> -t -k <socket> <arguments...>` (the arguments end with the image); returns once the socket exists.
  NbdServerProcess(NbdServerKind kind, const std::string& socket, const std::vector<std::string>& arguments);
  const std::string& socket() const { return socket_; }
  int pid() const { return process_->pid(); }
  bool exited() { return process_->exited(); }
  // Stops the server (SIGTERM) and waits for it, so the image is closed and unlocked.
  void stop() { process_.reset(); }

  // From /proc: the resident set in bytes and the open descriptors.
  size_t rss_bytes() const;
  size_t open_fds() const;

 private:
  std::string socket_;
  std::unique_ptr<BackgroundProcess> process_;
};

}  // namespace keel::test
