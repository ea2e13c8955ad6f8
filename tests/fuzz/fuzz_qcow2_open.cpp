// libFuzzer target: the input is a qcow2 image. It is opened read-only (info,
// a few reads and block-status queries, its persistent bitmaps queried and
// its first internal snapshot loaded and read, as keel-nbd -B and -l do, a
// consistency check) and, on a
// private copy, read-write (a small write, zeroes, a flush, close), and on
// another copy repaired as check -r all repairs it. keel::Error
// is the expected answer to bad input; anything else (a crash, a sanitizer
// report, a leak, an allocation sized by a damaged field, a hang) is a bug.
//
// The image lives in a memfd and is opened through /proc/self/fd/N, so no
// files are left behind. KEEL_FUZZ_PASSES=ro (or rw, or repair) runs only
// that pass, to explore one path while a bug in another is open.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "block/format.h"
#include "block/image_info.h"
#include "tools/common/image_info_output.h"
#include "tools/common/json_output.h"

namespace {

using keel::Task;

// Reads and writes stay small whatever the image claims about itself.
constexpr uint64_t kMaxIo = 64 * 1024;

class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("keel-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) std::abort();
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { close(fd_); }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

keel::EventLoop& loop() {
  static keel::EventLoop* l = new keel::EventLoop();
  return *l;
}

// Offsets to probe: the start, the middle, the end, and one chosen by the input.
std::vector<uint64_t> probe_offsets(uint64_t size, const uint8_t* data, size_t n) {
  std::vector<uint64_t> out = {0, size / 2, size > 4096 ? size - 4096 : 0};
  uint64_t pick = 0;
  for (size_t i = 0; i < n && i < 8; i++) pick = pick << 8 | data[n - 1 - i];
  if (size) out.push_back(pick % size);
  return out;
}

// A consistency check (a repair with CheckFix::All), then close.
void check_and_close(keel::block::BlockNode& node, keel::block::CheckFix fix) {
  try {
    (void)loop().run(node.check(fix));
  } catch (const keel::Error&) {
  }
  try {
    loop().run(node.close());
  } catch (const keel::Error&) {
  }
}

// The names of the persistent bitmaps `info` lists.
std::vector<std::string> bitmap_names(const keel::block::FormatInfo& info) {
  std::vector<std::string> names;
  for (const auto& [key, value] : info.specific) {
    const auto* list = std::get_if<keel::block::InfoList>(&value.value);
    if (key != "bitmaps" || !list) continue;
    for (const keel::block::InfoValue& bitmap : *list)
      if (const auto* fields = std::get_if<keel::block::InfoFields>(&bitmap.value))
        for (const auto& [field, v] : *fields)
          if (const auto* name = std::get_if<std::string>(&v.value); field == "name" && name) names.push_back(*name);
  }
  return names;
}

void query_bitmaps(keel::block::BlockNode& node, const std::vector<uint64_t>& offsets) {
  std::vector<std::string> names;
  try {
    names = bitmap_names(node.format_info());
  } catch (const keel::Error&) {
    return;
  }
  for (size_t i = 0; i < names.size() && i < 2; i++) {
    try {
      const auto bitmap = loop().run(node.dirty_bitmap(names[i]));
      if (!bitmap || bitmap->inconsistent()) continue;
      for (uint64_t offset : offsets)
        if (offset < node.size()) (void)loop().run(bitmap->query(offset, node.size() - offset));
    } catch (const keel::Error&) {
    }
  }
}

void read_probes(keel::block::BlockNode& node, const std::vector<uint64_t>& offsets) {
  const uint64_t disk = node.size();
  std::vector<std::byte> buffer(kMaxIo);
  for (uint64_t offset : offsets) {
    if (offset >= disk) continue;
    const uint64_t len = std::min<uint64_t>(kMaxIo, disk - offset);
    try {
      loop().run(node.read(offset, std::span(buffer).first(len)));
    } catch (const keel::Error&) {
    }
    try {
      (void)loop().run(node.block_status(offset, disk - offset));
    } catch (const keel::Error&) {
    }
  }
}

// The first internal snapshot loaded read-only and read, as keel-nbd -l serves it.
void read_first_snapshot(keel::block::BlockNode& node, const std::vector<uint64_t>& offsets) {
  try {
    const keel::block::FormatInfo info = node.format_info();
    if (info.snapshots.empty()) return;
    loop().run(node.load_snapshot({.id = info.snapshots.front().id}));
  } catch (const keel::Error&) {
    return;
  }
  read_probes(node, offsets);
}

void read_only_pass(const std::string& path, const uint8_t* data, size_t size) {
  keel::block::OpenOptions options;
  options.format = "qcow2";
  std::unique_ptr<keel::block::BlockNode> node;
  try {
    node = loop().run(keel::block::open_image(path, options));
  } catch (const keel::Error&) {
    return;
  }
  try {
    auto info = keel::block::image_info(*node);
    (void)keel::tools::image_info_human(info);
    (void)keel::tools::format_json_pretty(keel::tools::image_info_json(info));
  } catch (const keel::Error&) {
  }
  const std::vector<uint64_t> offsets = probe_offsets(node->size(), data, size);
  read_probes(*node, offsets);
  query_bitmaps(*node, offsets);
  check_and_close(*node, keel::block::CheckFix::None);
  read_first_snapshot(*node, offsets);
}

void read_write_pass(const std::string& path, const uint8_t* data, size_t size) {
  keel::block::OpenOptions options;
  options.format = "qcow2";
  options.writable = true;
  std::unique_ptr<keel::block::BlockNode> node;
  try {
    node = loop().run(keel::block::open_image(path, options));
  } catch (const keel::Error&) {
    return;
  }
  const uint64_t disk = node->size();
  const auto offsets = probe_offsets(disk, data, size);
  std::vector<std::byte> pattern(4096 + 512);
  for (size_t i = 0; i < pattern.size(); i++) pattern[i] = static_cast<std::byte>(i * 7 + 1);
  for (size_t i = 0; i < offsets.size(); i++) {
    const uint64_t offset = offsets[i];
    const uint64_t len = std::min<uint64_t>(pattern.size() - i * 100, disk - offset);
    try {
      if (i % 2 == 0) loop().run(node->write(offset + 0, std::span<const std::byte>(pattern).first(len), {}));
      else loop().run(node->write_zeroes(offset, len, {.may_unmap = i == 3}));
    } catch (const keel::Error&) {
    }
  }
  try {
    if (node->supports_compressed_writes() && node->cluster_size() && disk >= node->cluster_size()) {
      std::vector<std::byte> cluster(node->cluster_size(), std::byte{0x61});
      loop().run(node->write_compressed(0, cluster));
    }
  } catch (const keel::Error&) {
  }
  try {
    if (disk) loop().run(node->discard(0, std::min<uint64_t>(disk, 1 << 20)));
  } catch (const keel::Error&) {
  }
  try {
    loop().run(node->flush());
  } catch (const keel::Error&) {
  }
  try {
    loop().run(node->close());
  } catch (const keel::Error&) {
  }
}

// check -r all, as keel-img runs it: opened for repair, repaired, closed.
void repair_pass(const std::string& path) {
  keel::block::OpenOptions options;
  options.format = "qcow2";
  options.writable = true;
  options.for_repair = true;
  std::unique_ptr<keel::block::BlockNode> node;
  try {
    node = loop().run(keel::block::open_image(path, options));
  } catch (const keel::Error&) {
    return;
  }
  check_and_close(*node, keel::block::CheckFix::All);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string passes = std::getenv("KEEL_FUZZ_PASSES") ? std::getenv("KEEL_FUZZ_PASSES") : "all";
  auto runs = [](const char* pass) { return passes == "all" || passes == pass; };
  if (runs("ro")) {
    MemFile ro(data, size);
    read_only_pass(ro.path(), data, size);
  }
  if (runs("rw")) {
    MemFile rw(data, size);
    read_write_pass(rw.path(), data, size);
  }
  if (runs("repair")) {
    MemFile repair(data, size);
    repair_pass(repair.path());
  }
  return 0;
}
