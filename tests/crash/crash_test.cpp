// Crash safety of the qcow2 driver: crash_writer runs random requests against
// an image and is killed with SIGKILL at a random instant. Afterwards the
// image must pass `qemu-img check` (leaks allowed), and everything written
// before the last flush() that returned must read back intact, through keel
// and through `qemu-img convert -O raw`. Bytes written after that flush may
// hold their old value or the value of any of the requests in flight.
//
// KEEL_CRASH_SEED overrides the seed; KEEL_CRASH_KEEP names a directory where
// failing images are kept (default: /tmp/keel-crash-failures).
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

#include <gtest/gtest.h>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "block/format.h"
#include "tests/crash/crash_ops.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace keel::test {
namespace {

using crash::Batch;
using crash::Op;
using crash::OpKind;
using crash::OpStream;

constexpr uint64_t kDiskSize = 8ull << 20;
constexpr uint64_t kBatchesPerKilledRun = 400;
constexpr uint64_t kBatchesPerCleanRun = 25;

struct Config {
  const char* name;
  const char* creator;  // "keel-img" or "qemu-img"
  const char* options;
  uint64_t cluster_size;
  bool lazy_refcounts;
  int images;
  int runs_per_image;
};

const Config kConfigs[] = {
    {"c64k_rc16", "keel-img", "cluster_size=65536", 65536, false, 4, 12},
    {"c4k_rc1", "keel-img", "cluster_size=4096,refcount_bits=1", 4096, false, 4, 12},
    {"c64k_extl2_rc8", "keel-img", "cluster_size=65536,extended_l2=on,refcount_bits=8", 65536, false, 4, 12},
    {"c4k_lazy_rc64", "keel-img", "cluster_size=4096,lazy_refcounts=on,refcount_bits=64", 4096, true, 4, 12},
    {"c64k_lazy_extl2_rc2", "keel-img", "cluster_size=65536,lazy_refcounts=on,extended_l2=on,refcount_bits=2", 65536, true, 4, 12},
    {"c4k_v2_qemu", "qemu-img", "compat=0.10,cluster_size=4096", 4096, false, 3, 12},
    {"c32k_zstd_rc4_qemu", "qemu-img", "cluster_size=32768,compression_type=zstd,refcount_bits=4", 32768, false, 3, 12},
    {"c16k_extl2_lazy_qemu", "qemu-img", "cluster_size=16384,extended_l2=on,lazy_refcounts=on", 16384, true, 3, 12},
};

// Names the configuration in test names and messages.
void PrintTo(const Config& c, std::ostream* os) { *os << c.name; }

uint64_t base_seed() {
  const char* s = std::getenv("KEEL_CRASH_SEED");
  return s ? std::strtoull(s, nullptr, 0) : 0x6b65656c63726173ull;
}

std::string keep_dir() {
  const char* s = std::getenv("KEEL_CRASH_KEEP");
  return s ? s : "/tmp/keel-crash-failures";
}

struct WriterOutcome {
  int status = -1;  // exit status or 128+signal
  std::string log;
};

// When to kill the writer. Counted in the writer's own progress (batches it
// reports durable), not in wall time, so that slow builds (sanitizers, a
// loaded machine) kill at the same points of the request stream as fast ones.
struct KillPlan {
  bool kill = false;
  bool after_open = false;   // else count the delay from the start of the process
  uint64_t after_batches = 0;  // with after_open: wait until this many batches are durable
  std::chrono::microseconds delay{0};  // then wait this long, to land inside a batch
};

uint64_t durable_batches_so_far(const std::string& journal);

// Starts crash_writer, kills it as `plan` says (if it is still running), reaps it.
WriterOutcome run_writer(const std::string& image, const std::string& journal, const std::string& log, uint64_t seed,
                         uint64_t max_batches, const KillPlan& plan) {
  const std::string writer = keel_bin("crash_writer");
  std::vector<std::string> argv = {writer, image, journal, std::to_string(seed), std::to_string(max_batches)};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid;
  const int rc = posix_spawn(&pid, writer.c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot run " + writer);
  if (plan.kill) {
    if (plan.after_open) {
      // Wait for the writer to open the image (its journal says "O") and make
      // the planned number of batches durable. The deadline only keeps a
      // stuck writer from hanging the test; the writer is killed either way.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      std::error_code ec;
      for (;;) {
        siginfo_t info{};
        if (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0) break;  // already ended
        if (std::chrono::steady_clock::now() > give_up) break;
        if (std::filesystem::file_size(journal, ec) != 0 && durable_batches_so_far(journal) >= plan.after_batches) break;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
    std::this_thread::sleep_for(plan.delay);
    kill(pid, SIGKILL);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  WriterOutcome out;
  out.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream f(log);
  std::stringstream ss;
  ss << f.rdbuf();
  out.log = ss.str();
  return out;
}

struct JournalState {
  bool opened = false;
  bool done = false;
  uint64_t durable_batches = 0;
};

JournalState read_journal(const std::string& path) {
  JournalState j;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line == "O") j.opened = true;
    else if (line.rfind("F ", 0) == 0) j.durable_batches = std::strtoull(line.c_str() + 2, nullptr, 10);
    else if (line.rfind("D ", 0) == 0) j.done = true;
  }
  return j;
}

uint64_t durable_batches_so_far(const std::string& journal) { return read_journal(journal).durable_batches; }

// What an operation leaves in the disk, as a range and its bytes.
struct Effect {
  uint64_t lo, hi;
  std::vector<uint8_t> bytes;  // empty: zeros
  std::string what;
};

Effect effect_of(const Op& op, uint64_t disk, uint64_t cluster, uint64_t batch) {
  Effect e;
  crash::op_effect_range(op, disk, cluster, e.lo, e.hi);
  if (op.kind == OpKind::Write || op.kind == OpKind::Compressed) {
    e.bytes.resize(op.length);
    crash::fill_data(op.data_seed, e.bytes.data(), op.length);
  }
  e.what = fmt::format("batch {} {} [{:#x}, +{:#x})", batch, crash::op_name(op.kind), op.offset, op.length);
  return e;
}

uint8_t effect_byte(const Effect& e, uint64_t pos) { return e.bytes.empty() ? 0 : e.bytes[pos - e.lo]; }

void apply_effect(std::vector<uint8_t>& disk, const Effect& e) {
  if (e.bytes.empty()) std::memset(disk.data() + e.lo, 0, e.hi - e.lo);
  else std::memcpy(disk.data() + e.lo, e.bytes.data(), e.hi - e.lo);
}

// Checks `actual` against the durable model and the requests that may or may
// not have reached the image. Returns a description of the first few bad bytes.
std::string verify(const std::vector<uint8_t>& actual, const std::vector<uint8_t>& durable, const std::vector<Effect>& window,
                   uint64_t cluster) {
  std::string problems;
  int reported = 0;
  uint64_t bad_bytes = 0;
  constexpr uint64_t kChunk = 4096;
  for (uint64_t chunk = 0; chunk < actual.size(); chunk += kChunk) {
    const uint64_t n = std::min<uint64_t>(kChunk, actual.size() - chunk);
    if (std::memcmp(actual.data() + chunk, durable.data() + chunk, n) == 0) continue;
    for (uint64_t p = chunk; p < chunk + n; p++) {
      if (actual[p] == durable[p]) continue;
      bool ok = false;
      for (const Effect& e : window)
        if (p >= e.lo && p < e.hi && effect_byte(e, p) == actual[p]) ok = true;
      if (ok) continue;
      bad_bytes++;
      if (reported < 4) {
        reported++;
        std::string covering;
        for (const Effect& e : window)
          if (p >= e.lo && p < e.hi) covering += " [" + e.what + fmt::format(" -> {:#04x}]", effect_byte(e, p));
        problems += fmt::format("  guest byte {:#x} (cluster {}): read {:#04x}, durable {:#04x};{}\n", p, p / cluster, actual[p],
                                durable[p], covering.empty() ? " not touched since the last flush" : " in flight:" + covering);
      }
    }
  }
  if (bad_bytes) problems = fmt::format("{} bytes differ from every allowed value\n", bad_bytes) + problems;
  return problems;
}

std::vector<uint8_t> read_through_keel(const std::string& image) {
  EventLoop loop;
  block::OpenOptions options;
  options.format = "qcow2";
  auto node = loop.run(block::open_image(image, options));
  std::vector<uint8_t> out(node->size());
  constexpr uint64_t kStep = 1 << 20;
  for (uint64_t pos = 0; pos < out.size(); pos += kStep) {
    auto span = std::as_writable_bytes(std::span(out)).subspan(pos, std::min<uint64_t>(kStep, out.size() - pos));
    loop.run(node->read(pos, span));
  }
  return out;
}

void repair_through_keel_open(const std::string& image) {
  EventLoop loop;
  block::OpenOptions options;
  options.format = "qcow2";
  options.writable = true;
  auto node = loop.run(block::open_image(image, options));
  loop.run(node->close());
}

// After SIGKILL the kernel may keep the image's file open (and its OFD locks
// held) until io_uring requests the writer left in flight have finished;
// waits for the locks to go. Returns how long that took.
std::chrono::milliseconds wait_for_locks_released(const std::string& image) {
  const auto start = std::chrono::steady_clock::now();
  const int fd = open(image.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  for (;;) {
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 100;
    fl.l_len = 200;
    const bool locked = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    if (!locked || waited > std::chrono::seconds(10)) {
      close(fd);
      return waited;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

uint64_t incompatible_features(const std::string& image) {
  auto head = read_file(image);
  if (head.size() < 80 || head[7] < 3) return 0;
  uint64_t v = 0;
  for (int i = 72; i < 80; i++) v = v << 8 | head[i];
  return v;
}

std::string keep_failure(const std::string& image, const std::string& tag) {
  std::error_code ec;
  std::filesystem::create_directories(keep_dir(), ec);
  const std::string dest = keep_dir() + "/" + tag + ".qcow2";
  std::filesystem::copy_file(image, dest, std::filesystem::copy_options::overwrite_existing, ec);
  return ec ? std::string("(could not keep the image)") : dest;
}

class CrashTest : public ::testing::TestWithParam<Config> {};

TEST_P(CrashTest, KilledWriterLeavesConsistentImage) {
  const Config& cfg = GetParam();
  ASSERT_TRUE(have_program("qemu-img"));
  TempDir dir;
  uint64_t seed0 = base_seed();
  for (const char* c = cfg.name; *c; c++) seed0 = (seed0 ^ static_cast<uint8_t>(*c)) * 0x100000001b3ull;
  std::mt19937_64 rng(seed0);
  int total_runs = 0, killed_mid_run = 0, durable_flushes = 0, lock_waits = 0;
  std::chrono::milliseconds max_lock_wait{0};

  for (int img = 0; img < cfg.images; img++) {
    const std::string image = dir.file(fmt::format("{}-{}.qcow2", cfg.name, img));
    std::filesystem::remove(image);
    auto created = run(std::vector<std::string>{std::string(cfg.creator) == "keel-img" ? keel_bin("keel-img") : "qemu-img", "create", "-q",
                                                 "-f", "qcow2", "-o", cfg.options, image, std::to_string(kDiskSize)});
    ASSERT_EQ(created.status, 0) << cfg.creator << " create -o " << cfg.options << ": " << created.err;
    std::vector<uint8_t> baseline(kDiskSize, 0);

    for (int r = 0; r < cfg.runs_per_image; r++) {
      total_runs++;
      const uint64_t seed = rng();
      // Most runs are killed; the last run of each image ends normally, which
      // checks the model itself and a clean close.
      KillPlan plan;
      plan.kill = r != cfg.runs_per_image - 1;
      // A quarter of the kills count a delay of up to 50 ms from the start of
      // the process (so some land while the image is being opened or
      // repaired); the rest come after 0 to 15 durable batches plus up to
      // 5 ms, inside the request stream.
      plan.after_open = rng() % 4 != 0;
      plan.after_batches = plan.after_open ? rng() % 16 : 0;
      plan.delay = std::chrono::microseconds(plan.after_open ? rng() % 5001 : rng() % 50001);
      const uint64_t max_batches = plan.kill ? kBatchesPerKilledRun : kBatchesPerCleanRun;
      const std::string tag = fmt::format("{}-img{}-run{}-seed{:#x}", cfg.name, img, r, seed);
      const std::string journal = dir.file("journal"), log = dir.file("writer.log");
      std::filesystem::remove(journal);
      SCOPED_TRACE(tag + (plan.after_open ? fmt::format(" kill {}us after {} durable batches", plan.delay.count(), plan.after_batches)
                                          : fmt::format(" kill {}us after the start", plan.delay.count())));

      const WriterOutcome w = run_writer(image, journal, log, seed, max_batches, plan);
      ASSERT_TRUE(w.status == 0 || w.status == 128 + SIGKILL) << "writer failed (status " << w.status << "): " << w.log
                                                               << "image kept at " << keep_failure(image, tag);
      const auto lock_wait = wait_for_locks_released(image);
      max_lock_wait = std::max(max_lock_wait, lock_wait);
      if (lock_wait.count() > 0) lock_waits++;
      const JournalState j = read_journal(journal);
      if (w.status == 0) {
        ASSERT_TRUE(j.done) << "writer exited without finishing its journal";
      }
      if (w.status != 0 && j.durable_batches < max_batches) killed_mid_run++;
      if (j.durable_batches) durable_flushes++;

      // The durable model, and what may be in flight after it.
      OpStream stream(seed, kDiskSize, cfg.cluster_size);
      std::vector<uint8_t> durable = baseline;
      uint64_t b = 0;
      for (; b < j.durable_batches; b++) {
        Batch batch = stream.next();
        for (const Op& op : batch.ops) apply_effect(durable, effect_of(op, kDiskSize, cfg.cluster_size, b));
      }
      std::vector<Effect> window;
      if (!j.done) {
        for (; b < max_batches; b++) {
          Batch batch = stream.next();
          for (const Op& op : batch.ops) window.push_back(effect_of(op, kDiskSize, cfg.cluster_size, b));
          if (batch.flush_after) break;
        }
      }

      ASSERT_EQ(incompatible_features(image) & 2, 0u) << "the writer marked the image corrupt: " << w.log
                                                      << "image kept at " << keep_failure(image, tag);

      if (cfg.lazy_refcounts) {
        // The dirty bit is set: refcounts are repaired when keel opens the
        // image read-write, or by check -r all.
        if (r % 2 == 0) {
          try {
            repair_through_keel_open(image);
          } catch (const Error& e) {
            FAIL() << "keel could not open the dirty image read-write: " << e.what() << "\nimage kept at " << keep_failure(image, tag);
          }
        } else {
          auto fixed = run_keel({"keel-img", "check", "-r", "all", image});
          ASSERT_EQ(fixed.status, 0) << "keel-img check -r all:\n" << fixed.out << fixed.err << "image kept at " << keep_failure(image, tag);
        }
        ASSERT_EQ(incompatible_features(image) & 1, 0u) << "dirty bit still set after repair";
      }

      auto qcheck = run({"qemu-img", "check", "-f", "qcow2", image});
      ASSERT_TRUE(qcheck.status == 0 || qcheck.status == 3) << "qemu-img check status " << qcheck.status << ":\n" << qcheck.out << qcheck.err
                                                             << "writer log: " << w.log << "image kept at " << keep_failure(image, tag);
      auto kcheck = run_keel({"keel-img", "check", "-f", "qcow2", image});
      EXPECT_TRUE(kcheck.status == 0 || kcheck.status == 3) << "keel-img check status " << kcheck.status << " (qemu-img check said "
                                                             << qcheck.status << "):\n" << kcheck.out << kcheck.err
                                                             << "image kept at " << keep_failure(image, tag + "-keelcheck");

      std::vector<uint8_t> actual;
      try {
        actual = read_through_keel(image);
      } catch (const Error& e) {
        FAIL() << "keel cannot read the image: " << e.what() << "\nimage kept at " << keep_failure(image, tag);
      }
      ASSERT_EQ(actual.size(), kDiskSize);
      const std::string problems = verify(actual, durable, window, cfg.cluster_size);
      ASSERT_TRUE(problems.empty()) << "data lost (journal: " << j.durable_batches << " batches durable, " << window.size()
                                    << " requests possibly in flight):\n" << problems << "image kept at " << keep_failure(image, tag);

      const std::string raw = dir.file("converted.raw");
      auto conv = run({"qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, raw});
      ASSERT_EQ(conv.status, 0) << "qemu-img convert: " << conv.err << "image kept at " << keep_failure(image, tag);
      const auto via_qemu = read_file(raw);
      std::filesystem::remove(raw);
      ASSERT_EQ(via_qemu.size(), kDiskSize);
      if (via_qemu != actual) {
        const std::string qproblems = verify(via_qemu, durable, window, cfg.cluster_size);
        uint64_t first = 0;
        while (via_qemu[first] == actual[first]) first++;
        FAIL() << "qemu-img reads different data than keel (first difference at guest byte " << fmt::format("{:#x}", first)
               << "); against the model:\n" << (qproblems.empty() ? "  qemu's data is allowed by the model\n" : qproblems)
               << "image kept at " << keep_failure(image, tag);
      }
      baseline = std::move(actual);
    }
  }
  RecordProperty("runs", total_runs);
  std::printf("[ %s ] %d runs, %d killed before finishing, %d with at least one durable flush; image locks outlived the killed writer "
              "%d times (longest %lld ms)\n",
              cfg.name, total_runs, killed_mid_run, durable_flushes, lock_waits, static_cast<long long>(max_lock_wait.count()));
  // The kill must land while requests are running, not only before the image is open.
  EXPECT_GT(durable_flushes, total_runs / 3);
}

INSTANTIATE_TEST_SUITE_P(Configs, CrashTest, ::testing::ValuesIn(kConfigs),
                         [](const ::testing::TestParamInfo<Config>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace keel::test
