// Running programs from tests: keel's own tools (from $KEEL_BIN) and the
// peers they are compared with (qemu-img, qemu-io, ...), capturing output.
#pragma once

#include <string>
#include <vector>

namespace keel::test {

struct RunResult {
  int status = -1;  // exit status, or 128+signal
  std::string out;
  std::string err;
};

// Runs argv[0] (searched in PATH) with the given arguments; never uses a shell.
RunResult run(const std::vector<std::string>& argv, const std::string& stdin_data = "");

// Path of a keel program built alongside the tests ("keel-img" -> $KEEL_BIN/keel-img).
std::string keel_bin(const std::string& name);

// run() for a keel program: run_keel({"keel-img", "info", f}).
RunResult run_keel(std::vector<std::string> argv);

// A program started in the background with its standard streams on
// /dev/null, stopped (SIGTERM) and reaped when the object goes away: a peer
// holding an image open, or a server, for the length of a test.
class BackgroundProcess {
 public:
  explicit BackgroundProcess(const std::vector<std::string>& argv);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  bool started() const { return pid_ > 0; }
  int pid() const { return pid_; }
  // True once the program has ended (it is reaped then).
  bool exited();

 private:
  int pid_ = -1;
};

// True if `program` is on PATH.
bool have_program(const std::string& program);

// True once a Unix socket at `path` is listening (read from /proc/net/unix, so without connecting: a
// connection would count as a server's client). A socket file exists from bind(), before listen().
bool unix_socket_listening(const std::string& path);

}  // namespace keel::test
