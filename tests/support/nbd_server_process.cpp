#include "tests/support/nbd_server_process.h"

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace keel::test {

std::string nbd_server_name(NbdServerKind kind) { return kind == NbdServerKind::Keel ? "keel-nbd" : "qemu-nbd"; }

NbdServerProcess::NbdServerProcess(NbdServerKind kind, const std::string& socket,
                                   const std::vector<std::string>& arguments)
    : socket_(socket) {
  std::vector<std::string> argv{kind == NbdServerKind::Keel ? keel_bin("keel-nbd") : "qemu-nbd", "-t", "-k", socket};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  process_ = std::make_unique<BackgroundProcess>(argv);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  struct stat st;
  while (stat(socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    if (process_->exited() || std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error(argv[0] + " did not start serving " + socket);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

size_t NbdServerProcess::rss_bytes() const {
  std::ifstream status("/proc/" + std::to_string(pid()) + "/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      size_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    std::getline(status, key);
  }
  throw std::runtime_error("no VmRSS for the server");
}

size_t NbdServerProcess::open_fds() const {
  const auto dir = std::filesystem::directory_iterator("/proc/" + std::to_string(pid()) + "/fd");
  return static_cast<size_t>(std::distance(std::filesystem::begin(dir), std::filesystem::end(dir)));
}

}  // namespace keel::test
