// Shared helpers for the interop tests: keel-img is run next to qemu-img (and
// qemu-io, qemu-nbd) on the same inputs and the results are compared.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace keel::test::interop {

// Skips the current test when the qemu tools are missing.
#define KEEL_REQUIRE_QEMU()                                                       \
  do {                                                                            \
    if (!::keel::test::have_program("qemu-img") || !::keel::test::have_program("qemu-io")) \
      GTEST_SKIP() << "qemu-img/qemu-io not installed";                           \
  } while (0)

// run() of `qemu-img args...`.
RunResult qemu_img(const std::vector<std::string>& args);
// run() of `keel-img args...` (the binary built with the tests).
RunResult keel_img(const std::vector<std::string>& args);
// Same, but with `dir` as working directory (via `env -C`, no shell).
RunResult qemu_img_in(const std::string& dir, const std::vector<std::string>& args);
RunResult keel_img_in(const std::string& dir, const std::vector<std::string>& args);

// The command line and everything a run printed, for failure messages.
std::string describe(const std::string& what, const RunResult& r);
std::string join(const std::vector<std::string>& args);

// Replaces every occurrence of `from` with `to`.
std::string replace_all(std::string s, const std::string& from, const std::string& to);
// qemu-img's stderr with its program prefix turned into keel-img's.
std::string as_keel_stderr(const std::string& qemu_stderr);

// Runs the same qemu-img command line with both tools and expects the same
// status, stdout, and stderr (program name aside); returns keel-img's result.
RunResult same_as_qemu(const std::vector<std::string>& args);
std::vector<std::string> split_lines(const std::string& s);

// qemu-io's output with timings masked, as qemu iotests' _filter_qemu_io does
// for the two report lines (and -C's line).
std::string mask_timings(const std::string& out);
// qemu-io's stderr with its program prefix turned into keel-io's.
std::string as_keel_io_stderr(const std::string& qemu_stderr);

// The reports in a qemu-io/keel-io output as a sorted list (a report ends with its statistics line).
std::vector<std::string> report_set(const std::string& out);

// One command line run by qemu-io in `qdir` and by keel-io in `kdir`.
struct Runs {
  RunResult qemu, keel;
};
Runs run_both(const std::string& qdir, const std::string& kdir, const std::vector<std::string>& args,
              const std::string& input = "");
// Expects the same status, stdout (timings masked; reports as a set where `unordered`) and stderr.
void expect_same(const Runs& r, const std::string& what, bool unordered);

// Runs qemu-io on `image` (format `fmt`) with one -c per command; fails the
// test (ADD_FAILURE) if qemu-io reports an error.
void qemu_io(const std::string& image, const std::string& fmt, const std::vector<std::string>& commands);

// Byte-for-byte comparison of two files, naming the first difference.
::testing::AssertionResult files_identical(const std::string& a, const std::string& b);

// `qemu-img map --output=json IMG` with host offsets dropped and adjacent
// extents of the same kind merged: the allocation layout of an image.
nlohmann::json allocation_map(const std::string& image, const std::string& fmt);
// Compares two allocation_map()s, naming the first extent that differs.
::testing::AssertionResult same_allocation(const nlohmann::json& keel, const nlohmann::json& qemu);

// Raw source with mixed content: random, zero, text and sparse regions.
// `size` need not be cluster aligned.
std::vector<uint8_t> mixed_content(size_t size, uint64_t seed);

// Big-endian field access on an image file.
uint64_t read_be(const std::string& path, uint64_t offset, unsigned bytes);
void write_be(const std::string& path, uint64_t offset, unsigned bytes, uint64_t value);
uint64_t file_size(const std::string& path);
void copy_file(const std::string& from, const std::string& to);

// Minimal qcow2 header view for targeted corruption.
struct Qcow2Layout {
  uint32_t version;
  uint32_t cluster_bits;
  uint64_t cluster_size;
  uint32_t l1_size;
  uint64_t l1_table_offset;
  uint64_t refcount_table_offset;
  uint32_t refcount_order;  // refcount_bits = 1 << refcount_order
  uint32_t l2_entry_size;   // 8, or 16 with extended L2 entries
  static Qcow2Layout read(const std::string& path);
  // Host offset of the refcount block covering host cluster `cluster` (0 if none).
  uint64_t refblock_for(const std::string& path, uint64_t cluster) const;
  uint64_t get_refcount(const std::string& path, uint64_t cluster) const;
  void set_refcount(const std::string& path, uint64_t cluster, uint64_t value) const;
  // Host offset of the data cluster behind guest offset `guest` (0 if unallocated).
  uint64_t data_cluster_for(const std::string& path, uint64_t guest) const;
  // File offset of the L2 entry mapping guest offset `guest` (0 if its L2 table is missing);
  // with extended L2 its subcluster bitmap follows 8 bytes later.
  uint64_t l2_entry_offset(const std::string& path, uint64_t guest) const;
};

}  // namespace keel::test::interop
