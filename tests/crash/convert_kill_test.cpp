// Atomic output of `keel-img convert`: the tool is killed at random points of
// its progress, and the target's name must then hold either what it held
// before (nothing, or the old file) or the complete image — never a partial
// one. qemu-img leaves a truncated image that `qemu-img check` calls clean.
//
// Kill points are counted in the tool's own progress lines (-p), read from a
// pipe, not in wall time; what the tool printed before it died also tells
// how far it got: no "100%" yet means the copy was incomplete, so the target
// must be untouched; the final newline comes after the rename, so the image
// must be complete.
//
// KEEL_CRASH_SEED overrides the seed.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace keel::test {
namespace {

constexpr uint64_t kSourceSize = 24ull << 20;
constexpr int kRuns = 30;
constexpr auto kStuckLimit = std::chrono::seconds(120);  // only keeps a hung tool from hanging the test

uint64_t base_seed() {
  const char* s = std::getenv("KEEL_CRASH_SEED");
  return s ? std::strtoull(s, nullptr, 0) : 0x636f6e76657274ull;
}

// keel-img started with its stdout on a pipe and its stderr in a log file.
class Tool {
 public:
  // With `blocked_stdout`, the pipe is full before the tool starts, so its
  // first progress line blocks it until the pipe is read or closed.
  Tool(const std::vector<std::string>& argv, const std::string& log, bool blocked_stdout) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) throw std::runtime_error("pipe2");
    read_fd_ = fds[0];
    if (blocked_stdout) {
      fcntl(fds[1], F_SETFL, O_NONBLOCK);
      while (::write(fds[1], "#", 1) == 1) {
      }
      fcntl(fds[1], F_SETFL, 0);
    }
    std::vector<std::string> args_text = argv;
    args_text[0] = keel_bin(argv[0]);
    std::vector<char*> args;
    for (auto& a : args_text) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // The signals under test act as they would from a shell.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    const int rc = posix_spawn(&pid_, args_text[0].c_str(), &actions, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(fds[1]);
    if (rc != 0) throw std::runtime_error("cannot run " + args_text[0]);
  }
  ~Tool() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      reap();
    }
    close_stdout();
  }

  // Reads progress until the tool has printed `lines` of them (or ended).
  void wait_for_lines(int lines) {
    while (printed_lines() < lines && read_some()) {
    }
  }

  // Signals the tool, reads what it printed until it is gone, and reaps it;
  // returns its exit status, or 128 + the signal that ended it.
  int end_with(int sig) {
    ::kill(pid_, sig);
    return finish();
  }
  int finish() {
    while (read_some()) {
    }
    return reap();
  }
  void close_stdout() {
    if (read_fd_ >= 0) ::close(read_fd_);
    read_fd_ = -1;
  }
  int reap() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // Everything the tool wrote to stdout.
  const std::string& printed() const { return printed_; }
  int printed_lines() const { return static_cast<int>(std::count(printed_.begin(), printed_.end(), '\r')); }

 private:
  bool read_some() {
    char buffer[256];
    const ssize_t n = ::read(read_fd_, buffer, sizeof buffer);
    if (n <= 0) return false;
    printed_.append(buffer, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int read_fd_ = -1;
  std::string printed_;
};

// The files in `dir` whose names mark them as keel's temporary outputs.
std::vector<std::string> temporaries(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename();
    if (name.front() == '.' && name.find(".keel-") != std::string::npos) found.push_back(entry.path());
  }
  return found;
}

std::string describe_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return "absent";
  return fmt::format("{} bytes", std::filesystem::file_size(path, ec));
}

// True if `target` reads as `source` through qemu-img and, for qcow2, checks clean.
::testing::AssertionResult complete_image(const std::string& source, const std::string& target,
                                          const std::string& format) {
  const auto cmp = run({"qemu-img", "compare", "-f", "qcow2", "-F", format, source, target});
  if (cmp.status != 0) return ::testing::AssertionFailure() << "qemu-img compare: " << cmp.out << cmp.err;
  if (format == "qcow2") {
    const auto chk = run({"qemu-img", "check", "-f", "qcow2", target});
    if (chk.status != 0) return ::testing::AssertionFailure() << "qemu-img check: " << chk.out << chk.err;
  }
  return ::testing::AssertionSuccess();
}

struct Fixture {
  TempDir dir;
  std::string source = dir.file("src.qcow2"), target = dir.file("out.img"), log = dir.file("convert.log");
  std::string work = dir.file("work");
  Fixture() {
    // Data in every chunk, with zero runs, so the copy prints a dozen progress lines.
    std::vector<uint8_t> data = random_bytes(kSourceSize, 7);
    for (uint64_t off = 0; off < kSourceSize; off += 3 << 20) std::memset(data.data() + off, 0, 256 << 10);
    write_file(dir.file("src.raw"), data);
    const auto made = run({"qemu-img", "convert", "-f", "raw", "-O", "qcow2", dir.file("src.raw"), source});
    EXPECT_EQ(made.status, 0) << made.err;
    std::filesystem::create_directory(work);
    target = work + "/out.img";
  }
};

struct TargetKind {
  std::string format;
  std::vector<std::string> args;
};

const TargetKind kTargets[] = {
    {"qcow2", {"-O", "qcow2"}},
    {"raw", {"-O", "raw"}},
    {"qcow2", {"-c", "-O", "qcow2"}},  // through the page cache
    {"qcow2", {"-O", "qcow2", "-o", "cluster_size=4k", "-m", "1"}},
};

TEST(crash_convert, KilledConvertLeavesOldTargetOrCompleteImage) {
  if (!have_program("qemu-img")) GTEST_SKIP() << "qemu-img not installed";
  Fixture f;
  std::mt19937_64 rng(base_seed());
  int untouched = 0, complete = 0, killed = 0, stale = 0;
  for (int r = 0; r < kRuns; r++) {
    const TargetKind& kind = kTargets[static_cast<size_t>(r) % std::size(kTargets)];
    // Every sixth run ends normally; the others are killed after 0 to 29
    // progress lines (0: while the tool starts; it prints 27 and a newline),
    // some of them a moment later.
    const bool kill = r % 6 != 5;
    const int after_lines = static_cast<int>(rng() % 30);
    const auto delay = std::chrono::microseconds(rng() % 2 == 0 ? 0 : rng() % 3000);
    const bool old_target = rng() % 2 == 0;
    SCOPED_TRACE(fmt::format("run {} (convert {}): {}{}", r, fmt::join(kind.args, " "),
                             kill ? fmt::format("SIGKILL after {} progress lines + {} us", after_lines, delay.count())
                                  : "no kill",
                             old_target ? ", over an existing file" : ""));

    std::filesystem::remove(f.target);  // a new inode: no locks left by the last killed tool
    std::vector<uint8_t> old;
    if (old_target) {
      old = random_bytes(1 << 20, 100 + r);
      write_file(f.target, old);
    }
    std::vector<std::string> argv = {"keel-img", "convert", "-p", "-f", "qcow2"};
    argv.insert(argv.end(), kind.args.begin(), kind.args.end());
    argv.insert(argv.end(), {f.source, f.target});
    Tool tool(argv, f.log, false);
    int status;
    if (kill) {
      tool.wait_for_lines(after_lines);
      std::this_thread::sleep_for(delay);
      status = tool.end_with(SIGKILL);
    } else {
      status = tool.finish();
    }
    const std::string& printed = tool.printed();
    std::ifstream log_file(f.log);
    std::stringstream log;
    log << log_file.rdbuf();
    ASSERT_TRUE(status == 0 || status == 128 + SIGKILL) << "status " << status << ": " << log.str();
    if (status != 0) killed++;

    const bool copied = printed.find("(100.00/100%)") != std::string::npos;
    const bool renamed = !printed.empty() && printed.back() == '\n';
    const bool exists = std::filesystem::exists(f.target);
    const bool unchanged = old_target ? exists && read_file(f.target) == old : !exists;
    if (unchanged) {
      untouched++;
      EXPECT_FALSE(renamed) << "the tool printed its final newline (after the rename) but the target is unchanged";
    } else {
      complete++;
      EXPECT_TRUE(copied) << "the target changed before the copy was complete";
      ASSERT_TRUE(complete_image(f.source, f.target, kind.format))
          << "the target holds neither the old file nor the complete image (" << describe_file(f.target)
          << "); progress: " << printed;
    }
    const auto left = temporaries(f.work);
    if (status == 0) {
      EXPECT_FALSE(unchanged) << "convert succeeded but did not replace the target";
      EXPECT_TRUE(left.empty()) << "a successful convert left " << left.front();
    }
    // SIGKILL cannot be caught: a temporary file may stay, never under the target's name.
    stale += static_cast<int>(left.size());
    for (const auto& t : left) std::filesystem::remove(t);
  }
  std::printf("[ crash_convert ] %d runs, %d killed; target unchanged %d times, complete %d times; "
              "%d stale temporaries\n",
              kRuns, killed, untouched, complete, stale);
  EXPECT_GT(untouched, 0) << "no kill landed before the rename";
}

// SIGINT, SIGTERM, SIGHUP and SIGPIPE (stdout closed under -p) remove the
// temporary file as they end the tool. The tool is held at its first progress
// line (its stdout pipe is full), after the image was created, so it cannot
// finish before the signal.
TEST(crash_convert, SignalRemovesTemporaryFile) {
  if (!have_program("qemu-img")) GTEST_SKIP() << "qemu-img not installed";
  Fixture f;
  int n = 0;
  for (const int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) {
    for (const bool old_target : {false, true}) {
      SCOPED_TRACE(fmt::format("{}{}", strsignal(sig), old_target ? ", over an existing file" : ""));
      std::filesystem::remove(f.target);
      const std::vector<uint8_t> old = random_bytes(1 << 20, 200 + n++);
      if (old_target) write_file(f.target, old);
      Tool tool({"keel-img", "convert", "-p", "-f", "qcow2", "-O", "qcow2", f.source, f.target}, f.log, true);
      const auto give_up = std::chrono::steady_clock::now() + kStuckLimit;
      while (temporaries(f.work).empty() && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      ASSERT_EQ(temporaries(f.work).size(), 1u) << "no temporary output appeared";
      int status;
      if (sig == SIGPIPE) {
        tool.close_stdout();
        status = tool.reap();
      } else {
        status = tool.end_with(sig);
      }
      EXPECT_EQ(status, 128 + sig);
      const auto left = temporaries(f.work);
      EXPECT_TRUE(left.empty()) << "left " << left.front();
      if (old_target) {
        EXPECT_EQ(read_file(f.target), old) << "the old target changed";
      } else {
        EXPECT_FALSE(std::filesystem::exists(f.target)) << "a target appeared: " << describe_file(f.target);
      }
      for (const auto& t : left) std::filesystem::remove(t);
    }
  }
}

}  // namespace
}  // namespace keel::test
